"""Where ticks go. A sink is a callable taking a Tick, with an optional `close()`."""

from .jsonl import CallbackSink, JsonlSink

__all__ = ["CallbackSink", "JsonlSink"]
