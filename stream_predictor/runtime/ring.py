"""FrameRing: the one thing the capture and inference threads share.

N preallocated slots hold the newest frames with their seq and timestamps. One writer, one reader.

- `write()` never blocks. (A writer that can decode in place asks for a slot with `claim()` first.)
  In a lossy ring (live sources, realtime replay) it overwrites the oldest
  slot; in a lossless ring (lockstep replay) the writer first calls `wait_space()`, so nothing
  unread is ever overwritten.
- `wait_newer(last_seq, timeout)` waits on a Condition and hands each frame over at most once: the
  newest one in a lossy ring, the next one in a lossless ring. It reports how many frames with a
  seq in between were skipped, so skipped + handed over = written.
- The slot of the frame handed out is pinned until the reader's next `wait_newer` (or `release()`),
  so its pixels cannot change underneath the reader; the writer uses another slot.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..sources.base import Frame


@dataclass
class RingFrame:
    seq: int
    t_capture: float
    image: np.ndarray  # BGR uint8 (H, W, 3), a view into a pinned slot: copy it to keep it
    first: bool  # this frame, or a skipped one since the last hand-over, started an episode
    skipped: int  # frames overwritten unseen since the previous hand-over
    reward: float = 0.0  # a game's score change since the previous hand-over (skipped frames' included)


class FrameRing:
    def __init__(self, size: int, lossless: bool = False) -> None:
        if size < 2:
            raise ValueError("a FrameRing needs at least 2 slots")
        self.size, self.lossless = size, lossless
        self._cond = threading.Condition()
        self._slots: np.ndarray | None = None  # (N, H, W, 3) uint8, allocated at the first frame
        self._seq = np.full(size, -1, np.int64)
        self._t = np.zeros(size)
        self._first = np.zeros(size, bool)
        self._reward = np.zeros(size)  # the sum of every reward written up to each slot's frame
        self._reward_written = self._reward_read = 0.0
        self._newest = -1  # seq of the newest frame written
        self._read = -1  # seq of the last frame handed over
        self._pinned = -1  # slot pinned by the reader
        self._first_seq = -1  # newest seq written with `first` set: a skipped episode start still resets the reader
        self.skipped = 0  # frames overwritten before the reader saw them
        self.closed = False
        self.error: BaseException | None = None

    # --- writer side -------------------------------------------------------------------------
    def claim(self) -> tuple[int, np.ndarray] | None:
        """A free slot for the writer to decode into (no copy later), or None before the first frame.

        The slot holds no valid frame until `write()`, so the reader cannot be handed it meanwhile.
        """
        with self._cond:
            if self._slots is None:
                return None
            slot = self._free_slot()
            self._seq[slot] = -1
            return slot, self._slots[slot]

    def write(self, frame: Frame, claimed: tuple[int, np.ndarray] | None = None) -> None:
        """Publish a frame: in place if it was decoded into the `claimed` slot, else copied into the oldest free one.
        Never blocks on the reader."""
        image = frame.image
        with self._cond:
            if claimed is not None and image is claimed[1]:
                slot = claimed[0]
            else:
                if self._slots is None or self._slots.shape[1:] != image.shape:
                    self._slots = np.empty((self.size, *image.shape), np.uint8)  # a pinned view keeps the old array alive
                    self._seq[:] = -1
                slot = self._free_slot()
                self._slots[slot] = image
            self._seq[slot] = frame.seq
            self._t[slot] = frame.t_capture
            self._first[slot] = frame.first
            self._reward_written += frame.reward
            self._reward[slot] = self._reward_written
            if frame.first:
                self._first_seq = frame.seq
            self._newest = frame.seq
            self._cond.notify_all()

    def _free_slot(self) -> int:
        empty = np.flatnonzero(self._seq < 0)
        if empty.size and empty[0] != self._pinned:
            return int(empty[0])
        order = np.argsort(self._seq)
        return int(order[0] if order[0] != self._pinned else order[1])

    def wait_space(self, timeout: float | None = None) -> bool:
        """Lossless rings: wait until writing cannot overwrite an unread frame. False on close/timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self.closed and self._newest - self._read >= self.size - 1:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self.closed

    def close(self, error: BaseException | None = None) -> None:
        """End of stream (or an error): wakes every waiter. Frames already written can still be read."""
        with self._cond:
            self.closed = True
            self.error = self.error or error
            self._cond.notify_all()

    # --- reader side -------------------------------------------------------------------------
    def wait_newer(self, last_seq: int, timeout: float | None = None) -> RingFrame | None:
        """The next frame after `last_seq` to hand over, or None on timeout or at the end of the stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._pinned = -1
            while True:
                slot = self._pick(last_seq)
                if slot is not None:
                    break
                if self.closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            seq = int(self._seq[slot])
            self._pinned = slot
            self._read = max(self._read, seq)
            self.skipped += seq - last_seq - 1
            self._cond.notify_all()  # a lossless writer may be waiting for space
            first = bool(self._first[slot]) or last_seq < self._first_seq <= seq
            reward, self._reward_read = float(self._reward[slot]) - self._reward_read, float(self._reward[slot])
            return RingFrame(seq, float(self._t[slot]), self._slots[slot], first, seq - last_seq - 1, reward)

    def _pick(self, last_seq: int) -> int | None:
        newer = np.flatnonzero(self._seq > last_seq)
        if newer.size == 0:
            return None
        seqs = self._seq[newer]
        return int(newer[np.argmin(seqs) if self.lossless else np.argmax(seqs)])

    def release(self) -> None:
        with self._cond:
            self._pinned = -1

    @property
    def newest_seq(self) -> int:
        return self._newest
