"""The streaming runtime: capture thread → ring → engine → agent → Predictor → ticks for the sinks.

Names are imported on first use: the torch engine only when it is asked for.
"""

import importlib

_WHERE = {
    "Agent": ".agent", "Decision": ".agent", "ModelAgent": ".agent", "resolve_mode": ".agent",
    "CaptureThread": ".capture", "FeatureRing": ".engine", "TickEngine": ".engine", "MultiPredictor": ".multi",
    "graph_agent": ".onnx_engine", "OnnxEngine": ".onnx_engine", "Predictor": ".predictor", "FrameRing": ".ring",
    "RingFrame": ".ring", "CallbackSink": ".tick", "Sink": ".tick", "Tick": ".tick", "Timings": ".tick",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
