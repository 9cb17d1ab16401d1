"""stream_predictor: a live video stream in, a control decision out on every tick."""

from .config import Config, load_config
from .errors import UserError
from .sources import open_source

__all__ = ["Config", "UserError", "load_config", "open_source"]
