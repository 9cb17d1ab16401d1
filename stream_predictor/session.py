"""Recorded sessions: video segments + one label per frame + meta.yaml.

```
session_dir/
  meta.yaml     source, fps, width, height, classes (ordered), created, frames, segment_frames,
                episode_starts (frames where a new episode begins: the recurrent state restarts there)
  labels.csv    frame,label          one row per frame; label is a class name from meta.yaml
  pressed.csv   frame,pressed        optional (`record` writes it): the class the player pressed on the frame, which differs
                                     from the label where a model played and the expert labelled; without it, the labels
  state.csv     frame,NAME,…         optional: what the game's RAM says on each frame (a game's `state`, e.g. Pong's ball
                                     and paddles): privileged targets for training only, never a model's input
  video/        000000.avi, 000001.avi, …   each a few seconds, each readable on its own
```

Crash safety: a segment is written as `NNNNNN.tmp.avi` and renamed when it is complete; only
then are its labels appended to labels.csv (flushed and fsynced) and meta.yaml rewritten (atomically).
A killed recorder therefore loses at most the segment being written, and everything before it loads.
A disk that fills ends the recording with one `DiskFullError`: the free space is checked as frames come (the video
writer cannot report a full disk), the open segment is closed while there is room, and if a write fails anyway the
open segment is discarded and labels.csv cut back to the finished ones.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from .errors import DiskFullError, UserError
from .files import free_bytes, is_disk_full, low_on_space, write_text_atomic

SEGMENT_GLOB = "[0-9]*.avi"


def check_new_session(out: str | Path) -> None:
    """Refuse an --out that already holds a session: a recording never overwrites another."""
    d = Path(out)
    if (d / "meta.yaml").exists() or (d / "labels.csv").exists():
        raise UserError(f"{d} already holds a session; choose a new --out")


class _Rows:
    """A CSV beside labels.csv with one row per frame, written segment by segment just before the segment's labels
    (which commit it), and cut back with them if a segment fails."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path, self.pending = path, []
        self.file = open(path, "w", newline="")  # noqa: SIM115 - closed in close()
        self.file.write(",".join(["frame", *header]) + "\n")
        self.at = self.file.tell()  # the end of the finished segments' rows

    def write(self, start: int, count: int) -> None:
        for i, row in enumerate(self.pending[:count]):
            self.file.write(f"{start + i},{row}\n")
        self.file.flush()
        self.pending = []

    def commit(self) -> None:
        """The segment's labels are written: its rows stay."""
        self.at = self.file.tell()

    def restore(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass  # its buffer could not be flushed; the truncation below drops whatever part of it reached the disk
        os.truncate(self.path, self.at)

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()


class SessionWriter:
    """Append labelled frames (BGR uint8 (H, W, 3)) to a new session directory."""

    def __init__(self, out: str | Path, classes: list[str], fps: float, source: str, segment_frames: int = 300,
                 codec: str = "MJPG", extra: dict | None = None) -> None:
        self.dir = Path(out)
        check_new_session(out)
        (self.dir / "video").mkdir(parents=True, exist_ok=True)
        self.classes, self.fps, self.segment_frames, self.codec = list(classes), fps or 30.0, segment_frames, codec
        self.meta = {"source": source, "fps": float(self.fps), "width": None, "height": None, "classes": self.classes,
                     "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "frames": 0, "segment_frames": segment_frames,
                     "episode_starts": [0], **(extra or {})}
        self._starts: list[int] = []  # episode starts inside the segment being written
        self.frames = 0  # frames in finished segments
        self._segment = 0
        self._writer: cv2.VideoWriter | None = None
        self._pending: list[str] = []  # labels of the segment being written
        self._failed = False  # a full disk (or another error) ended the recording
        self._labels = open(self.dir / "labels.csv", "w", newline="")  # noqa: SIM115 - closed in close()
        self._labels.write("frame,label\n")
        self._rows = {"pressed": _Rows(self.dir / "pressed.csv", ["pressed"])}  # state.csv joins at the first state
        self._flush_meta()

    def _seg_path(self, tmp: bool) -> Path:
        return self.dir / "video" / f"{self._segment:06d}{'.tmp' if tmp else ''}.avi"

    def add(self, image: np.ndarray, label: str, first: bool = False, pressed: str | None = None,
            state: dict[str, float] | None = None) -> None:
        """Append one BGR uint8 (H, W, 3) frame; `first` marks the start of a new episode; `pressed`: the class the
        player pressed on it, where that is not the label; `state`: the game's privileged state on it (state.csv: the
        same names on every frame)."""
        pressed = label if pressed is None else pressed
        if label not in self.classes or pressed not in self.classes:
            raise ValueError(f"label {label!r} or pressed {pressed!r} is not one of {self.classes}")
        if state is not None and "state" not in self._rows:
            if self.frames + len(self._pending):
                raise ValueError("a game state must come with every frame, from the first")
            self._rows["state"] = _Rows(self.dir / "state.csv", list(state))
        if self._failed:
            raise UserError(f"{self.dir}: the recording stopped after an error; nothing more is written")
        h, w = image.shape[:2]
        if self._writer is None:
            if self.meta["width"] is None:
                self.meta.update(width=w, height=h)
            elif (w, h) != (self.meta["width"], self.meta["height"]):
                raise UserError(f"frame size changed from {self.meta['width']}x{self.meta['height']} to {w}x{h} during recording")
            self._check_space(image.nbytes)
            self._writer = cv2.VideoWriter(str(self._seg_path(True)), cv2.VideoWriter_fourcc(*self.codec), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UserError(f"cannot write video with codec {self.codec!r} to {self._seg_path(True)}")
        elif len(self._pending) % 16 == 0:
            self._check_space(image.nbytes)
        if first and self.frames + len(self._pending) > 0:
            self._starts.append(self.frames + len(self._pending))
        # The label first, then the frame: a Ctrl-C/SIGTERM between the two leaves one label too many, which
        # _finish_segment trims by the frames actually in the file; never a frame without its label.
        self._pending.append(label)
        self._rows["pressed"].pending.append(pressed)
        if "state" in self._rows:
            self._rows["state"].pending.append(",".join(f"{v:g}" for v in (state or {}).values()))
        self._writer.write(image)
        if len(self._pending) >= self.segment_frames:
            self._finish_segment()

    def _check_space(self, frame_bytes: int) -> None:
        """Stop while the disk still has room to finish the open segment cleanly (the video writer itself cannot report
        a full disk): below 1 MiB + 64 frames' worth, the segment is closed as it is and the recording ends."""
        free = low_on_space(self._seg_path(True), len(self._pending), frame_bytes)
        if free is not None:
            self._finish_segment()
            self._failed = True
            raise DiskFullError(f"disk nearly full ({free // 1024} KiB free) while recording to {self.dir}: stopped; "
                                f"{self.frames} frames in {self._segment} finished segments are kept")

    def _finish_segment(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        tmp = self._seg_path(True)
        labels_at = self._labels.tell()
        try:
            written = int(cv2.VideoCapture(str(tmp)).get(cv2.CAP_PROP_FRAME_COUNT))
            if written < len(self._pending) and free_bytes(self.dir) < (1 << 20):
                raise OSError(28, "No space left on device")  # the video writer ran out of room without saying so
            del self._pending[written:]
            self._starts = [i for i in self._starts if i < self.frames + written]
            tmp.replace(self._seg_path(False))
            try:
                for rows in self._rows.values():  # before the labels, which commit the segment
                    rows.write(self.frames, len(self._pending))
                for i, label in enumerate(self._pending):
                    self._labels.write(f"{self.frames + i},{label}\n")
                self._labels.flush()
                os.fsync(self._labels.fileno())
                self.frames += len(self._pending)
                for rows in self._rows.values():
                    rows.commit()
                self.meta["episode_starts"] += self._starts
                self._flush_meta()
            except BaseException:
                self._seg_path(False).unlink(missing_ok=True)  # a segment without its labels would not load
                raise
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            self._failed = True
            self._restore_labels(labels_at)
            if is_disk_full(e) or is_disk_full(e.__context__):
                raise DiskFullError(f"disk full while recording to {self.dir}: {self.frames} frames in {self._segment} "
                                    f"finished segments are kept; the open segment was discarded") from None
            raise
        self._pending, self._starts = [], []
        self._segment += 1

    def _restore_labels(self, size: int) -> None:
        """labels.csv (and the files beside it) back to their rows of finished segments (a partly written row would
        break loading)."""
        try:
            self._labels.close()
        except OSError:
            pass  # its buffer could not be flushed; the truncation below drops whatever part of it reached the disk
        os.truncate(self.dir / "labels.csv", size)
        for rows in self._rows.values():
            rows.restore()

    def _flush_meta(self) -> None:
        self.meta["frames"] = self.frames
        write_text_atomic(self.dir / "meta.yaml", yaml.safe_dump(self.meta, sort_keys=False))

    def close(self) -> None:
        """Finish the open segment. Idempotent."""
        if self._labels.closed:
            return
        if not self._failed:
            self._finish_segment()
        if not self._labels.closed:
            self._labels.close()
        for rows in self._rows.values():
            rows.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Session:
    dir: Path
    meta: dict
    classes: list[str]
    labels: np.ndarray  # (N,) int64 class index per frame
    pressed: np.ndarray  # (N,) int64 the class pressed on each frame (pressed.csv; the labels where there is none)
    segments: list[Path]  # video files, in order
    fps: float
    episode_starts: list[int]  # frames that begin an episode (always 0)
    state: np.ndarray | None = None  # (N, S) float32: the game's state per frame (state.csv), if recorded
    state_names: list[str] | None = None  # its columns

    @property
    def frames(self) -> int:
        return len(self.labels)


def is_session(path: str | Path) -> bool:
    return (Path(path) / "meta.yaml").is_file()


def load_session(path: str | Path) -> Session:
    """Read and check a session directory. Any problem is a UserError naming the file and row."""
    d = Path(path)
    if not d.is_dir():
        raise UserError(f"no such session directory: {d}")
    if not is_session(d):
        raise UserError(f"{d} is not a session: meta.yaml is missing")
    try:
        meta = yaml.safe_load((d / "meta.yaml").read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{d / 'meta.yaml'}: not valid YAML ({str(e).splitlines()[0]})") from None
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise UserError(f"{d / 'meta.yaml'}: 'classes' must be a list of at least two class names")
    index = {c: i for i, c in enumerate(classes)}
    labels_file = d / "labels.csv"
    if not labels_file.is_file():
        raise UserError(f"{d} is not a session: labels.csv is missing")
    labels = _class_column(labels_file, "label", index)
    if not labels:
        raise UserError(f"{labels_file}: no labelled frames")
    segments = sorted((d / "video").glob(SEGMENT_GLOB)) if (d / "video").is_dir() else []
    segments = [s for s in segments if ".tmp" not in s.name]
    if not segments:
        raise UserError(f"{d}: no video segments in {d / 'video'}")
    counts = [int(cv2.VideoCapture(str(s)).get(cv2.CAP_PROP_FRAME_COUNT)) for s in segments]
    video_frames = sum(counts)
    if video_frames < len(labels):
        raise UserError(f"{d}: labels.csv has {len(labels)} rows but the video has only {video_frames} frames")
    # More frames than labels is a crash only when exactly the last segment lacks its labels (the recorder writes a
    # segment's labels just after finishing its video); the labelled part is used. Anything else is a broken session.
    if video_frames > len(labels) and video_frames - counts[-1] != len(labels):
        raise UserError(f"{d}: labels.csv has {len(labels)} rows but the video has {video_frames} frames (label rows are missing)")
    starts = meta.get("episode_starts") or [0]
    if not isinstance(starts, list) or not all(isinstance(i, int) and 0 <= i for i in starts):
        raise UserError(f"{d / 'meta.yaml'}: 'episode_starts' must be a list of frame numbers")
    starts = sorted({0, *(i for i in starts if i < len(labels))})
    pressed = labels
    if (d / "pressed.csv").is_file():
        pressed = _class_column(d / "pressed.csv", "pressed", index)
        if len(pressed) < len(labels):
            raise UserError(f"{d / 'pressed.csv'} has {len(pressed)} rows, fewer than the {len(labels)} of labels.csv")
        pressed = pressed[: len(labels)]
    state, names = _state_rows(d / "state.csv", len(labels)) if (d / "state.csv").is_file() else (None, None)
    return Session(d, meta, classes, np.asarray(labels, np.int64), np.asarray(pressed, np.int64), segments,
                   float(meta.get("fps") or 30.0), starts, state, names)


def _state_rows(path: Path, frames: int) -> tuple[np.ndarray, list[str]]:
    """state.csv: (frames, S) float32 and the S names; a UserError names the row of any problem."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0] != "frame" or len(header) < 2:
            raise UserError(f"{path}: the first row must be 'frame,NAME,…', got {header}")
        rows = []
        for row_no, row in enumerate(reader, start=2):
            if len(rows) == frames:
                break
            try:
                if len(row) != len(header) or int(row[0]) != len(rows):
                    raise ValueError
                rows.append([float(v) for v in row[1:]])
            except ValueError:
                raise UserError(f"{path}, row {row_no}: expected frame {len(rows)} and {len(header) - 1} numbers, got {row}") from None
    if len(rows) < frames:
        raise UserError(f"{path} has {len(rows)} rows, fewer than the {frames} of labels.csv")
    return np.asarray(rows, np.float32), header[1:]


def _class_column(path: Path, column: str, index: dict[str, int]) -> list[int]:
    """The class ids of a `frame,<column>` CSV, one row per frame in order; a UserError names the row of any problem."""
    out = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != ["frame", column]:
            raise UserError(f"{path}: the first row must be 'frame,{column}', got {header}")
        for row_no, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise UserError(f"{path}, row {row_no}: expected 'frame,{column}', got {row}")
            frame, name = row
            if not frame.strip().isdigit() or int(frame) != len(out):
                raise UserError(f"{path}, row {row_no}: frame {frame!r} should be {len(out)} (one row per frame, in order)")
            if name not in index:
                raise UserError(f"{path}, row {row_no}: unknown {column} {name!r}; classes are {list(index)}")
            out.append(index[name])
    return out


class SessionFrames:
    """A session's frames in order, decoded segment by segment: the one reader of the format's video.

    `read(out)` decodes the next frame (into `out` when it has the frame's shape), `skip()` passes one
    without decoding; both return None / False after `stop` frames or at the end of the video.
    """

    def __init__(self, session: Session, stop: int | None = None) -> None:
        self.stop = session.frames if stop is None else min(stop, session.frames)
        self.index = 0  # the next frame's number
        self._segments = list(session.segments)
        self._cap: cv2.VideoCapture | None = None

    def _next(self, decode: bool, out: np.ndarray | None) -> tuple[bool, np.ndarray | None]:
        while self.index < self.stop:
            if self._cap is None:
                if not self._segments:
                    break
                self._cap = cv2.VideoCapture(str(self._segments.pop(0)))
            if decode:
                ok, image = self._cap.read(out) if out is not None else self._cap.read()
            else:
                ok, image = self._cap.grab(), None
            if ok:
                self.index += 1
                return True, image
            self._cap.release()
            self._cap = None
        return False, None

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        """The next frame, BGR uint8 (H, W, 3), or None at the end."""
        return self._next(True, out)[1]

    def skip(self) -> bool:
        return self._next(False, None)[0]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __iter__(self) -> Iterator[np.ndarray]:
        while (image := self.read()) is not None:
            yield image


def kept_firsts(episode_starts: list[int], n: int, stride: int = 1) -> np.ndarray:
    """(ceil(n / stride),) bools over every stride-th of the first n frames: true at the first kept frame of each
    episode, i.e. at the kept frame at or after each start. Training and playback both restart the state there."""
    firsts = np.zeros(-(-n // stride), bool)
    steps = -(-np.asarray(episode_starts, np.int64) // stride)
    firsts[steps[steps < len(firsts)]] = True
    return firsts


def previous_pressed(session: Session, n: int, stride: int = 1) -> np.ndarray:
    """(ceil(n / stride),) the class pressed just before each kept frame (frame i - 1 for frame i), -1 (none) where an
    episode starts: what a model with `model.prev_action` reads beside each frame."""
    kept = np.arange(0, n, stride)
    prev = np.where(kept > 0, session.pressed[np.maximum(kept - 1, 0)], -1)
    prev[kept_firsts(session.episode_starts, n, stride)] = -1
    return prev


def aligned_targets(session: Session, label_delay: int = 0, stride: int = 1) -> tuple[int, np.ndarray, np.ndarray]:
    """How training pairs frames with labels: frame i with the label of frame i + label_delay, every stride-th frame.

    Returns (n, targets, firsts): the first n frames are used; targets (ceil(n / stride),) class indices, and
    firsts (same length) from `kept_firsts`.
    """
    n = session.frames - label_delay
    if n < 2:
        raise UserError(f"{session.dir}: too few frames ({session.frames}) for label_delay {label_delay}")
    return n, session.labels[label_delay : label_delay + n : stride], kept_firsts(session.episode_starts, n, stride)
