"""Record sessions: source → capture thread → labeller → SessionWriter. And import a labelled video.

The recorder is the ring's reader, like the Predictor. On a game somebody must play: the expert that
labels, or with `policy` weights a model, deciding through the runtime's `ModelAgent` exactly as it
plays (mode, window, smoothing), while the expert labels what it sees (DAgger). The game then waits
for each decision (`sync`), so the expert reads the RAM of the frame it labels.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import torch

from ..config import Config
from ..errors import UserError
from ..games.agents import action_table
from ..model import load_model
from ..runtime.agent import Agent
from ..runtime.backends import model_agent
from ..runtime.capture import CaptureThread
from ..session import SessionWriter, check_new_session
from ..sinks.video import RecordingWindow
from ..sources import open_source, parse_spec
from ..sources.ale import AleGame
from .labellers import make_labeller

log = logging.getLogger(__name__)



class StatusLine:
    """One status line on stderr, rewritten in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.tty = sys.stderr.isatty()
        self.every = every_s if self.tty else 5.0
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            print(("\r" + text.ljust(100)) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def record(cfg: Config, spec: str, out: str | Path, status: bool = True) -> dict:
    """Record until the source ends, a limit is reached or Ctrl-C; returns a summary. Nothing finished is lost."""
    rc = cfg.record
    check_new_session(out)  # before anything opens or prints
    parsed = parse_spec(spec)
    options = {"sync": parsed.options.get("sync", True)} if parsed.kind == "ale" else None  # the game waits for each move
    source = open_source(spec, cfg.source, options)
    try:
        window = RecordingWindow(cfg.sink.mirror) if rc.preview else None
        labeller = make_labeller(rc.labeller, source, labelling_preset(cfg), cfg.keys.pause_key, cfg.expert)
        policy, actions = _player(cfg, source, labeller.classes)
    except BaseException:
        source.close()
        raise
    counts: Counter[str] = Counter()
    line = StatusLine()
    countdown = rc.countdown if source.live else 0.0  # a live source does not wait: count down first
    t0 = time.monotonic() + countdown  # recording starts when the countdown ends
    recorded = skipped = 0
    try:
        with SessionWriter(out, labeller.classes, source.fps, spec, rc.segment_frames, rc.codec,
                           extra={**labeller.describe(), "policy": rc.policy or None}) as writer, \
                CaptureThread(source, cfg.source.ring_size, cfg.replay) as cap:
            for frame in cap.frames():
                if (left := t0 - time.monotonic()) > 0:  # get ready: frames are shown, not recorded
                    if status:
                        line.show(f"recording starts in {math.ceil(left)}", force=True)
                    if window is not None and not window.show(frame.image, f"{math.ceil(left)}", None):
                        break
                    continue
                if (rc.frames and recorded >= rc.frames) or (rc.seconds and time.monotonic() - t0 >= rc.seconds):
                    break
                skipped += frame.skipped
                label = labeller.label(frame)
                if window is not None and not window.show(frame.image, None, "PAUSED" if labeller.paused else label):
                    break
                if actions:  # a game: the expert's label is its move, unless a model plays
                    move = label if policy is None else policy.classes[policy.decide(frame.image, frame.first).class_id]
                    source.act(actions[labeller.classes.index(move)])
                if not labeller.paused:
                    writer.add(frame.image, label, frame.first)
                    counts[label] += 1
                    recorded += 1
                if status:
                    elapsed = time.monotonic() - t0
                    line.show(f"{'PAUSED ' if labeller.paused else ''}recording {recorded} frames, "
                              f"{recorded / max(elapsed, 1e-9):.1f} fps, " + " ".join(f"{c}={counts[c]}" for c in labeller.classes))
    finally:
        labeller.close()
        if window is not None:
            window.close()
        if status:
            line.show(f"recorded {recorded} frames: " + " ".join(f"{c}={counts[c]}" for c in labeller.classes), force=True)
            line.done()
    return {"out": str(out), "frames": writer.frames, "seconds": round(time.monotonic() - t0, 2),
            "classes": {c: counts[c] for c in labeller.classes}, "skipped": skipped, **source.summary()}


def labelling_preset(cfg: Config) -> str:
    """The key preset keyboard labelling reads: `keys.preset`, or the deprecated `record.keys` where it is set."""
    if cfg.record.keys:
        log.warning("record.keys is deprecated: set keys.preset=%s (one key preset for labelling and pressing)",
                    cfg.record.keys)
        return cfg.record.keys
    return cfg.keys.preset


def _player(cfg: Config, source, classes: list[str]) -> tuple[Agent | None, list[int]]:
    """Who plays a game while it is recorded: (the policy model's agent or None for the labeller itself, the
    action of each class). Not a game: (None, [])."""
    if not isinstance(source, AleGame):
        if cfg.record.policy:
            raise UserError(f"record.policy plays a game; {source.name} is not one")
        return None, []
    policy = None
    if cfg.record.policy:
        model = load_model(cfg.record.policy)
        if model.classes != classes:
            raise UserError(f"policy classes {model.classes} differ from the labeller's {classes}")
        torch.set_num_threads(cfg.predict.threads)  # one thread: a second one fights the capture thread for the core
        policy = model_agent(model, cfg.predict)
    return policy, action_table(source, classes)


def import_video(video: str | Path, labels: str | Path, out: str | Path, classes: list[str], segment_frames: int = 300,
                 codec: str = "MJPG") -> dict:
    """A user's own video + labels CSV (frame,label) → a session directory."""
    cap = cv2.VideoCapture(str(video))
    if not Path(video).is_file() or not cap.isOpened():
        raise UserError(f"cannot read video {video}")
    labels_path = Path(labels)
    if not labels_path.is_file():
        raise UserError(f"no such labels file: {labels}")
    with open(labels_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["frame", "label"]:
        raise UserError(f"{labels}: the first row must be 'frame,label'")
    by_frame: dict[int, str] = {}
    for row_no, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].strip().isdigit():
            raise UserError(f"{labels}, row {row_no}: expected 'frame,label', got {row}")
        if row[1] not in classes:
            raise UserError(f"{labels}, row {row_no}: unknown label {row[1]!r}; classes are {classes} (set model.classes)")
        by_frame[int(row[0])] = row[1]
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if sorted(by_frame) != list(range(len(by_frame))):
        raise UserError(f"{labels}: frames must be numbered 0..N-1 with one row each")
    if n > 0 and n != len(by_frame):
        raise UserError(f"{labels} has {len(by_frame)} labels but {video} has {n} frames")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    existed = Path(out).exists()
    try:
        with SessionWriter(out, classes, fps, str(video), segment_frames, codec, extra={"labeller": "import"}) as writer:
            i = 0
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                if i >= len(by_frame):
                    raise UserError(f"{video} has more frames than {labels} has labels ({len(by_frame)})")
                writer.add(image, by_frame[i])
                i += 1
        if i != len(by_frame):
            raise UserError(f"{labels} has {len(by_frame)} labels but {video} has {i} frames (header said {n})")
    except UserError:
        if not existed:
            shutil.rmtree(out, ignore_errors=True)  # no half-imported session left behind
        raise
    finally:
        cap.release()
    return {"out": str(out), "frames": writer.frames}
