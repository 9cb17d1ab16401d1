"""Deprecated module path: `MultiPredictor` lives in `stream_predictor.runtime` (import it from `stream_predictor`)."""

import warnings

from .runtime.multi import MultiPredictor

warnings.warn("stream_predictor.multi is deprecated; import MultiPredictor from stream_predictor", DeprecationWarning, stacklevel=2)

__all__ = ["MultiPredictor"]
