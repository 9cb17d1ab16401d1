"""stream_predictor: a live video stream in, a control decision out on every tick."""

from .config import Config, load_config
from .errors import UserError
from .model import build_model, load_model, save_model
from .predictor import Predictor, Tick
from .sources import open_source

__all__ = ["Config", "Predictor", "Tick", "UserError", "build_model", "load_config", "load_model", "open_source", "save_model"]
