"""Where ticks go: each sink is a `runtime.tick.Sink`.

`open_sinks(specs, classes, cfg)` builds them from specs:
`-` / `jsonl:PATH` / `PATH.jsonl` (JSON lines), `csv:PATH` / `PATH.csv`, `udp:PORT`, `tcp:PORT` (host from
`sink.host`, 127.0.0.1 by default; `udp://HOST:PORT` names one), `video:PATH` / `PATH.mp4|.avi` (annotated),
`preview` (a window), `keys` (key presses, see `keys.*` config), `web` / `web:PORT` (a live page, `sink.web_port`
by default; port 0 picks a free one).
"""

from __future__ import annotations

import re

from ..config import Config
from ..errors import UserError
from ..files import check_writable
from ..runtime.tick import CallbackSink, Sink
from .jsonl import CsvSink, JsonlSink

__all__ = ["CallbackSink", "CsvSink", "JsonlSink", "Sink", "open_sink", "open_sinks"]


def _address(rest: str, cfg: Config, spec: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?://([^:/]+):)?(\d+)", rest)
    if not m or not 0 <= int(m.group(2)) < 65536:
        raise UserError(f"sink '{spec}': expected PORT or //HOST:PORT, e.g. udp:5005 or tcp://127.0.0.1:5006")
    return m.group(1) or cfg.sink.host, int(m.group(2))


def _kind(spec: str) -> tuple[str, str]:
    r"""(kind, the rest): a bare path (or C:\…) by its extension."""
    kind, sep, rest = spec.partition(":")
    if spec in ("-", "jsonl"):
        return "jsonl", ""
    if spec in ("preview", "keys", "web"):
        return spec, ""
    if not sep or len(kind) == 1:
        return {".csv": "csv", ".mp4": "video", ".avi": "video"}.get(spec[spec.rfind("."):].lower(), "jsonl"), spec
    return kind, rest


def output_file(spec: str) -> str | None:
    """The file a sink spec writes (None: stdout, the network, a window, keys)."""
    kind, rest = _kind(spec)
    return rest if kind in ("jsonl", "csv", "video") and rest not in ("", "-") else None


def open_sink(spec: str, classes: list[str], cfg: Config) -> Sink:
    kind, rest = _kind(spec)
    if kind == "jsonl":
        return JsonlSink(rest or None, flush_every=64)
    if kind == "csv":
        return CsvSink(rest, classes)
    if kind in ("udp", "tcp"):
        from .net import TcpSink, UdpSink

        host, port = _address(rest, cfg, spec)
        return UdpSink(port, host) if kind == "udp" else TcpSink(port, host)
    if kind == "video":
        from .video import VideoSink

        return VideoSink(rest, classes, cfg.sink.video_fps)
    if kind == "preview":
        from .video import PreviewSink

        return PreviewSink(classes, mirror=cfg.sink.mirror)
    if kind == "keys":
        from .keys import KeySink

        return KeySink(classes, cfg.keys)
    if kind == "web":
        from .web import WebSink

        if rest and not (rest.isdigit() and int(rest) < 65536):
            raise UserError(f"sink '{spec}': expected web or web:PORT, e.g. web:8765")
        return WebSink(classes, cfg.sink.host, int(rest) if rest else cfg.sink.web_port, mirror=cfg.sink.mirror)
    raise UserError(f"unknown sink '{spec}'; known: -, jsonl:PATH, csv:PATH, udp:PORT, tcp:PORT, video:PATH, preview, keys, web")


def open_sinks(specs: list[str], classes: list[str], cfg: Config) -> list[Sink]:
    """All the sinks named; every output file is checked for writing before any opens (a bad path costs nothing), and
    if one fails to open, those opened before it are closed again."""
    for spec in specs:
        if (path := output_file(spec)) is not None:
            check_writable(path)
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sinks.append(open_sink(spec, classes, cfg))
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return sinks
