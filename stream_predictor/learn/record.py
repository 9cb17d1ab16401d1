"""Record sessions: source → capture thread → labeller → SessionWriter. And import a labelled video.

A game is played through the runtime's decision loop, the Predictor, like `play`: by the expert that labels, or with
`policy` weights by a model deciding through its `ModelAgent` exactly as it plays (mode, window, smoothing) while the
expert labels what it sees (DAgger). The game then waits for each decision (`sync`), so the expert reads the RAM of
the frame it labels. Other sources are labelled as their frames arrive (keyboard, a synthetic source's truth).
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2

from ..config import Config
from ..errors import UserError
from ..games.agents import ActionSink, action_table
from ..games.registry import state_reader
from ..model import load_model
from ..runtime.agent import Agent, LabelledAgent
from ..runtime.backends import model_agent
from ..runtime.capture import CaptureThread
from ..runtime.predictor import Predictor
from ..runtime.tick import Sink, Tick
from ..session import SessionWriter, check_new_session
from ..sinks.video import RecordingWindow
from ..sources import open_source, parse_spec
from ..sources.ale import AleGame
from ..sources.base import Source
from .labellers import ExpertLabeller, Labeller, make_labeller

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
    """Record until the source ends, a limit is reached or Ctrl-C; returns a summary. Nothing finished is lost.

    A game is played through the runtime's decision loop (a Predictor) by the expert, or by `record.policy` while the
    expert labels (DAgger), the action sink pressing each decision; anything else is labelled as it arrives
    (keyboard, a synthetic source's truth), with a countdown first for a live source."""
    rc = cfg.record
    check_new_session(out)  # before anything opens or prints
    parsed = parse_spec(spec)
    options = {"sync": parsed.options.get("sync", True)} if parsed.kind == "ale" else None  # the game waits for each move
    source = open_source(spec, cfg.source, options)
    try:
        window = RecordingWindow(cfg.sink.mirror) if rc.preview else None
        labeller = make_labeller(rc.labeller, source, labelling_preset(cfg), cfg.keys.pause_key, cfg.expert)
        policy = _policy(cfg, source, labeller.classes)
    except BaseException:
        source.close()
        raise
    progress = RecordProgress(labeller, status)
    try:
        with SessionWriter(out, labeller.classes, source.fps, spec, rc.segment_frames, rc.codec,
                           extra={**labeller.describe(), "policy": rc.policy or None}) as writer:
            if isinstance(source, AleGame) and (policy is not None or isinstance(labeller, ExpertLabeller)):
                _record_game(cfg, source, labeller, policy, writer, window, progress)
            else:
                _record_frames(cfg, source, labeller, writer, window, progress)
    finally:
        labeller.close()
        if window is not None:
            window.close()
        progress.done()
    return {"out": str(out), "frames": writer.frames, "seconds": round(time.monotonic() - progress.t0, 2),
            "classes": dict(progress.counts), "skipped": progress.skipped, **source.summary()}


class RecordProgress:
    """What has been recorded (frames, labels, frames skipped), shown on one status line."""

    def __init__(self, labeller: Labeller, status: bool) -> None:
        self.labeller, self.status, self.line = labeller, status, StatusLine()
        self.counts: Counter[str] = Counter({c: 0 for c in labeller.classes})
        self.recorded = self.skipped = 0
        self.t0 = time.monotonic()

    def add(self, label: str, skipped: int) -> None:
        self.skipped += skipped
        if not self.labeller.paused:
            self.counts[label] += 1
            self.recorded += 1
        if self.status:
            rate = self.recorded / max(time.monotonic() - self.t0, 1e-9)
            self.line.show(f"{'PAUSED ' if self.labeller.paused else ''}recording {self.recorded} frames, {rate:.1f} fps, "
                           + " ".join(f"{c}={n}" for c, n in self.counts.items()))

    def full(self, rc) -> bool:
        return bool((rc.frames and self.recorded >= rc.frames) or (rc.seconds and time.monotonic() - self.t0 >= rc.seconds))

    def done(self) -> None:
        if self.status:
            self.line.show(f"recorded {self.recorded} frames: " + " ".join(f"{c}={n}" for c, n in self.counts.items()),
                           force=True)
            self.line.done()


class LabelledRecording(Sink):
    """Each decided frame into the session with its label: the player's own decision, or the labeller's where a policy
    plays (DAgger); finished once the session is full or the preview window is closed. Before the action sink, so that
    the expert labels the game as it is at this frame, and `state` (the game's RAM state, for state.csv) reads it so."""

    needs_frames = True

    def __init__(self, writer: SessionWriter, labeller: Labeller, own_labels: bool, window: RecordingWindow | None,
                 progress: RecordProgress, rc, state: Callable[[], dict[str, float]] | None = None) -> None:
        self.writer, self.labeller, self.own, self.window, self.progress, self.rc = writer, labeller, own_labels, window, progress, rc
        self.state = state

    def __call__(self, tick: Tick) -> None:
        if self.progress.full(self.rc):
            self.finished = True
            return
        label = tick.class_name if self.own else tick.label if tick.label is not None else self.labeller.label(tick)
        if self.window is not None and not self.window.show(tick.image, None, label):
            self.finished = True
            return
        self.writer.add(tick.image, label, tick.first, tick.class_name, self.state() if self.state else None)
        self.progress.add(label, tick.skipped)


def _record_game(cfg: Config, game: AleGame, labeller: Labeller, policy: Agent | None, writer: SessionWriter,
                 window: RecordingWindow | None, progress: RecordProgress) -> None:
    """The expert, or the policy, plays the game through the Predictor; each frame is recorded with the expert's label."""
    player = policy if policy is not None else labeller.expert
    if policy is not None and isinstance(labeller, ExpertLabeller):  # DAgger: the expert decides beside the model
        player = LabelledAgent(policy, labeller.expert)
    sinks = [LabelledRecording(writer, labeller, policy is None, window, progress, cfg.record, state_reader(game)),
             ActionSink(game, labeller.classes)]
    with Predictor.from_config(player, cfg, game, sinks) as predictor:
        predictor.run()


def _record_frames(cfg: Config, source: Source, labeller: Labeller, writer: SessionWriter, window: RecordingWindow | None,
                   progress: RecordProgress) -> None:
    """Frames labelled as they arrive (the keys held, a synthetic source's truth); on a game, the keys held play it."""
    rc = cfg.record
    actions = action_table(source, labeller.classes) if isinstance(source, AleGame) else None
    countdown = rc.countdown if source.live else 0.0  # a live source does not wait: count down first
    progress.t0 = time.monotonic() + countdown  # recording starts when the countdown ends
    with CaptureThread(source, cfg.source.ring_size, cfg.replay) as cap:
        for frame in cap.frames():
            if (left := progress.t0 - time.monotonic()) > 0:  # get ready: frames are shown, not recorded
                if progress.status:
                    progress.line.show(f"recording starts in {math.ceil(left)}", force=True)
                if window is not None and not window.show(frame.image, f"{math.ceil(left)}", None):
                    break
                continue
            if progress.full(rc):
                break
            label = labeller.label(frame)
            if window is not None and not window.show(frame.image, None, "PAUSED" if labeller.paused else label):
                break
            if actions is not None:
                source.act(actions[labeller.classes.index(label)])
            if not labeller.paused:
                writer.add(frame.image, label, frame.first)
            progress.add(label, frame.skipped)


def labelling_preset(cfg: Config) -> str:
    """The key preset keyboard labelling reads: `keys.preset`, or the deprecated `record.keys` where it is set."""
    if cfg.record.keys:
        log.warning("record.keys is deprecated: set keys.preset=%s (one key preset for labelling and pressing)",
                    cfg.record.keys)
        return cfg.record.keys
    return cfg.keys.preset


def _policy(cfg: Config, source: Source, classes: list[str]) -> Agent | None:
    """The agent of `record.policy` (a model that plays a game while the expert labels), or None."""
    if not cfg.record.policy:
        return None
    if not isinstance(source, AleGame):
        raise UserError(f"record.policy plays a game; {source.name} is not one")
    model = load_model(cfg.record.policy)
    if model.classes != classes:
        raise UserError(f"policy classes {model.classes} differ from the labeller's {classes}")
    return model_agent(model, cfg.predict)


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
