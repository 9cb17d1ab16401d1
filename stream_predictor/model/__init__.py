"""The model: encoders, the one preprocessing path, StreamModel, and weights files."""

from .encoders import ENCODERS, build_encoder
from .io import load_aux, load_model, save_model
from .stream_model import State, StreamModel, build_model

__all__ = ["ENCODERS", "State", "StreamModel", "build_encoder", "build_model", "load_aux", "load_model", "save_model"]
