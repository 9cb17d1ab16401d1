"""stream_predictor: a live video stream in, a control decision out on every tick.

The names below are imported on first use, so that a program that runs an exported graph (onnxruntime) never
imports torch.
"""

import importlib
import os

# FFmpeg's own log lines (e.g. "[mjpeg @ 0x…] overread") would break the one-line errors; ours say what matters.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

_WHERE = {
    "Config": ".config", "load_config": ".config", "UserError": ".errors",
    "StreamModel": ".model", "build_model": ".model", "load_model": ".model", "save_model": ".model",
    "Agent": ".runtime", "ModelAgent": ".runtime", "MultiPredictor": ".runtime", "Predictor": ".runtime", "Sink": ".runtime",
    "Tick": ".runtime", "Source": ".sources", "open_source": ".sources",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
