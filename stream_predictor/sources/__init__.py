"""`open_source(spec)`: one function from a source spec to a Source.

Specs: `0` (camera index), `path/video.mp4`, `rtsp://…` / `http://…`, `screen`, `screen:x,y,w,h`,
`window:TITLE` (X11), `ale:Pong`, `dir/of/images`, `session_dir` (a recorded session), `synthetic:bounce`,
`synthetic:dot`, `synthetic:gestures` (a webcam stand-in). Options follow a `?`, e.g.
`ale:Pong?seed=3&frameskip=4`, `synthetic:bounce?fps=60&frames=500`, `screen:0,0,800,600?monitor=1`.
Options not in the spec come from the `source` config section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import SourceConfig, checked_option
from ..errors import ConfigError, SourceError
from .base import Frame, Source

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp")
SCHEMES = ("screen", "window", "ale", "synthetic", *STREAM_SCHEMES)
OPTIONS = {
    "camera": {"width", "height", "fps", "fourcc"},
    "screen": {"monitor", "fps", "sync"},
    "window": {"fps", "sync"},
    "ale": {"seed", "frameskip", "sticky", "max_episode_steps", "sync", "flicker", "delay", "repeat", "drop"},
    "synthetic": {"width", "height", "fps", "frames", "seed", "task"},
    "images": {"fps"},
    "video": set(),
    "session": {"stride"},
    "stream": set(),
}

__all__ = ["Frame", "Source", "SourceSpec", "open_source", "parse_spec"]


@dataclass
class SourceSpec:
    kind: str  # camera, video, stream, screen, ale, synthetic, images
    target: str  # camera index, path, URL, region, game, pattern
    options: dict = field(default_factory=dict)


def _options(text: str, kind: str, spec: str) -> dict:
    options = {}
    for part in filter(None, text.split("&")):
        key, sep, value = part.partition("=")
        if not sep:
            raise SourceError(f"source option '{part}' in '{spec}' is not key=value")
        if key not in OPTIONS[kind]:
            known = ", ".join(sorted(OPTIONS[kind])) or "none"
            raise SourceError(f"unknown option '{key}' for source kind '{kind}' in '{spec}'; known: {known}")
        # the same types and ranges as the source.* config keys of the same name
        try:
            options[key] = checked_option(SourceConfig, key, yaml.safe_load(value), f"source option '{key}' in '{spec}'")
        except ConfigError as e:
            raise SourceError(str(e)) from None
    return options


def parse_spec(spec: str) -> SourceSpec:
    """Split a spec into kind, target and options; no device or file is opened."""
    spec = str(spec).strip()
    if not spec:
        raise SourceError("empty source spec")
    if any(ord(c) < 32 or ord(c) == 127 for c in spec):
        raise SourceError(f"source spec {spec!r} contains control characters")
    base = spec.partition("?")[0]
    if re.fullmatch(r"\d+", base) or re.fullmatch(r"/dev/video\d+", base):  # a camera by index or by device node
        return SourceSpec("camera", re.sub(r"\D", "", base), _options(spec.partition("?")[2], "camera", spec))
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):(//)?(.*)$", spec)
    if m and len(m.group(1)) > 1:  # one letter is a Windows drive, C:\…
        scheme = m.group(1).lower()
        if scheme in STREAM_SCHEMES:
            return SourceSpec("stream", spec)
        if scheme not in SCHEMES:
            if Path(spec).exists():
                return _path_spec(spec)
            raise SourceError(f"unknown source scheme '{scheme}:' in '{spec}'; known: 0 (camera), a file or folder, "
                              + ", ".join(f"{s}:" for s in SCHEMES))
        target, _, query = m.group(3).partition("?")
        return SourceSpec(scheme, target, _options(query, scheme, spec))
    if spec == "screen" or spec.startswith("screen?"):
        return SourceSpec("screen", "", _options(spec.partition("?")[2], "screen", spec))
    base, _, query = spec.partition("?")
    if query and not Path(spec).exists():
        parsed = _path_spec(base)
        parsed.options = _options(query, parsed.kind, spec)
        return parsed
    return _path_spec(spec)


def _path_spec(spec: str) -> SourceSpec:
    path = Path(spec)
    if (path / "meta.yaml").is_file():
        return SourceSpec("session", spec)
    if path.is_dir():
        return SourceSpec("images", spec)
    if path.exists():
        return SourceSpec("video", spec)
    raise SourceError(f"source not found: '{spec}' is no file, folder, camera index or known scheme")


def _region(target: str, spec: str) -> tuple[int, int, int, int] | None:
    if not target:
        return None
    parts = target.split(",")
    if len(parts) != 4 or not all(re.fullmatch(r"\d+", p.strip()) for p in parts):
        raise SourceError(f"screen region must be x,y,w,h in pixels, got '{target}' in '{spec}'")
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def open_source(spec: str, cfg: SourceConfig | None = None, options: dict | None = None) -> Source:
    """Open the source a spec names; `options` are set over the spec's own (e.g. a game's seed).

    Raises SourceError (a UserError) with one clear line.
    """
    cfg = cfg or SourceConfig()
    s = parse_spec(spec)
    for key in options or {}:
        if key not in OPTIONS[s.kind]:
            raise SourceError(f"option '{key}' does not apply to '{spec}' (a {s.kind} source)")
    o = {**s.options, **(options or {})}
    if s.kind == "camera":
        from .video import Camera

        return Camera(int(s.target), o.get("width", cfg.width), o.get("height", cfg.height), o.get("fps", cfg.fps),
                      cfg.read_timeout_s, str(o.get("fourcc", "")))
    if s.kind == "video":
        from .video import VideoFile

        return VideoFile(s.target)
    if s.kind == "stream":
        from .video import Stream

        return Stream(s.target, cfg.read_timeout_s)
    if s.kind == "session":
        from .session import SessionSource

        return SessionSource(s.target, stride=int(o.get("stride", 1)))
    if s.kind == "images":
        from .images import ImageFolder

        return ImageFolder(s.target, **o)
    if s.kind == "screen":
        from .screen import Screen

        return Screen(_region(s.target, spec), monitor=int(o.get("monitor", 1)), fps=float(o.get("fps", cfg.fps)),
                      sync=bool(o.get("sync", False)))
    if s.kind == "window":
        from .screen import Screen

        if not s.target:
            raise SourceError(f"name the window after 'window:', e.g. window:Pong (got '{spec}')")
        fps = float(o.get("fps", cfg.fps))
        return Screen(fps=fps, window=s.target, sync=bool(o.get("sync", fps > 0)))
    if s.kind == "ale":
        from .ale import AleGame

        if not s.target:
            raise SourceError(f"name a game after 'ale:', e.g. ale:Pong (got '{spec}')")
        return AleGame(s.target, seed=o.get("seed", cfg.seed), frameskip=o.get("frameskip", cfg.frameskip),
                       sticky=o.get("sticky", cfg.sticky), max_episode_steps=o.get("max_episode_steps", cfg.max_episode_steps),
                       sync=bool(o.get("sync", False)), flicker=float(o.get("flicker", cfg.flicker)),
                       delay=o.get("delay", cfg.delay), repeat=float(o.get("repeat", cfg.repeat)),
                       drop=float(o.get("drop", cfg.drop)))
    return _synthetic(s.target or "bounce", o, cfg)


def _synthetic(pattern: str, o: dict, cfg: SourceConfig) -> Source:
    from .synthetic import MovingDot, Synthetic

    frames, seed = int(o.get("frames", 0)), o.get("seed", cfg.seed)
    if "task" in o and pattern != "gestures":
        raise SourceError(f"option 'task' applies to synthetic:gestures only, not synthetic:{pattern}")
    if pattern == "gestures":
        from .gestures import Gestures

        return Gestures(width=o.get("width", cfg.width or 160), height=o.get("height", cfg.height or 120),
                        fps=float(o.get("fps", cfg.fps or 15.0)), frames=frames, seed=seed, task=str(o.get("task", "gesture")))
    if pattern == "dot":
        return MovingDot(width=o.get("width", cfg.width or 96), height=o.get("height", cfg.height or 96),
                         fps=float(o.get("fps", cfg.fps or 30.0)), frames=frames, seed=seed)
    return Synthetic(pattern, width=o.get("width", cfg.width or 160), height=o.get("height", cfg.height or 120),
                     fps=float(o.get("fps", cfg.fps or 60.0)), frames=frames, seed=seed)
