"""Deprecated module path: `Predictor` and `Tick` live in `stream_predictor.runtime` (import them from `stream_predictor`)."""

import warnings

from .runtime.predictor import Predictor
from .runtime.tick import Tick

warnings.warn("stream_predictor.predictor is deprecated; import Predictor from stream_predictor", DeprecationWarning, stacklevel=2)

__all__ = ["Predictor", "Tick"]
