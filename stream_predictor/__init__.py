"""stream_predictor: a live video stream in, a control decision out on every tick."""

import os

# FFmpeg's own log lines (e.g. "[mjpeg @ 0x…] overread") would break the one-line errors; ours say what matters.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from .config import Config, load_config  # noqa: E402 - after the environment above
from .errors import UserError  # noqa: E402
from .model import StreamModel, build_model, load_model, save_model  # noqa: E402
from .runtime import Agent, ModelAgent, MultiPredictor, Predictor, Sink, Tick  # noqa: E402
from .sources import Source, open_source  # noqa: E402

__all__ = ["Agent", "Config", "ModelAgent", "MultiPredictor", "Predictor", "Sink", "Source", "StreamModel", "Tick", "UserError",
           "build_model", "load_config", "load_model", "open_source", "save_model"]
