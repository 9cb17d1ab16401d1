"""The streaming runtime: capture thread → ring → engine → agent → Predictor → ticks for the sinks."""

from .agent import Agent, Decision, ModelAgent, resolve_mode
from .capture import CaptureThread
from .engine import FeatureRing, TickEngine
from .multi import MultiPredictor
from .predictor import Predictor
from .ring import FrameRing, RingFrame
from .tick import CallbackSink, Sink, Tick, Timings

__all__ = ["Agent", "CallbackSink", "CaptureThread", "Decision", "FeatureRing", "FrameRing", "ModelAgent", "MultiPredictor",
           "Predictor", "RingFrame", "Sink", "Tick", "TickEngine", "Timings", "resolve_mode"]
