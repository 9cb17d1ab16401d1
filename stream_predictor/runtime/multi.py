"""`MultiPredictor`, the K-stream form of the Predictor's loop (runtime/predictor.py), under its own module name."""

from .predictor import MultiPredictor

__all__ = ["MultiPredictor"]
