"""Seeing what the agent sees: an annotated video file, and a live preview window.

Each frame is drawn with the decided class, one bar per class probability, and the capture → decision
latency. Both need the frames in the ticks (`needs_frames`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import DiskFullError, UserError
from ..files import low_on_space
from ..runtime.tick import Sink, Tick

BAR_W, ROW_H = 120, 16


def annotate(tick: Tick, classes: list[str], scale: int = 1, mirror: bool = False) -> np.ndarray:
    """The tick's frame (BGR) with a side panel: class bars, the decision highlighted, and the latency. `mirror` flips
    the frame left to right (a selfie view of a camera facing the user; the model still sees it unflipped)."""
    image = np.ascontiguousarray(tick.image[:, ::-1]) if mirror else tick.image
    image = image if scale == 1 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    h = max(image.shape[0], ROW_H * (len(classes) + 2))
    panel = np.full((h, BAR_W + 80, 3), 32, np.uint8)
    for i, (name, p) in enumerate(zip(classes, tick.probs)):
        y = ROW_H * i + 4
        colour = (80, 200, 80) if i == tick.class_id else (160, 160, 160)
        cv2.rectangle(panel, (76, y), (76 + int(BAR_W * p), y + ROW_H - 4), colour, -1)
        cv2.putText(panel, name[:10], (2, y + ROW_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    y = ROW_H * (len(classes) + 1)
    cv2.putText(panel, f"{tick.latency_ms:.1f} ms  #{tick.seq}", (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1,
                cv2.LINE_AA)
    canvas = np.zeros((h, image.shape[1] + panel.shape[1], 3), np.uint8)
    canvas[: image.shape[0], : image.shape[1]] = image
    canvas[:, image.shape[1] :] = panel
    return canvas


class VideoSink(Sink):
    """Writes annotated frames to a video file (.mp4 → mp4v, .avi → MJPG), or an animated GIF (.gif, up to `gif_frames`
    frames, written by Pillow when the run ends: for short clips in READMEs)."""

    needs_frames = True

    def __init__(self, path: str | Path, classes: list[str], fps: float = 30.0, gif_frames: int = 600) -> None:
        self.path, self.classes, self.fps = Path(path), classes, fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0
        self.gif: list[np.ndarray] | None = [] if self.path.suffix.lower() == ".gif" else None
        self.gif_frames = gif_frames

    def __call__(self, tick: Tick) -> None:
        if tick.image is None or tick.stale:
            return
        frame = annotate(tick, self.classes)
        if self.gif is not None:
            if len(self.gif) < self.gif_frames:
                self.gif.append(frame[:, :, ::-1].copy())  # RGB for Pillow
                self.frames += 1
            return
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (frame.shape[1], frame.shape[0]))
            if not self.writer.isOpened():
                raise UserError(f"cannot write video to {self.path} (unsupported extension or folder not writable)")
        if self.frames % 16 == 0 and (free := low_on_space(self.path, self.frames, frame.nbytes)) is not None:
            self.writer.release()  # finished while there is room: the file stays playable
            self.writer, self.finished = None, True
            raise DiskFullError(f"disk nearly full ({free // 1024} KiB free): stopped writing {self.path} after "
                                f"{self.frames} frames; the file is complete")
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        if self.gif:
            from PIL import Image

            images = [Image.fromarray(f).quantize(64) for f in self.gif]  # a GIF times its frames in 1/100 s
            images[0].save(self.path, save_all=True, append_images=images[1:], duration=10 * round(100 / self.fps), loop=0,
                           optimize=True)
            self.gif = []


class PreviewSink(Sink):
    """A cv2.imshow window with the annotated frames; closing it (or pressing q / Esc) stops the predictor."""

    needs_frames = True

    def __init__(self, classes: list[str], title: str = "stream-predictor", scale: int = 2, mirror: bool = False) -> None:
        need_display("the preview window")
        self.classes, self.title, self.scale, self.mirror = classes, title, scale, mirror
        self.shown = 0

    def __call__(self, tick: Tick) -> None:
        if tick.image is None or tick.stale:
            return
        self.shown += 1
        if not show_window(self.title, annotate(tick, self.classes, self.scale, self.mirror)):
            self.finished = True

    def close(self) -> None:
        close_window(self.title)


def need_display(what: str) -> None:
    """A window needs an X display on Linux: one line saying so, before anything else opens."""
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        raise UserError(f"{what} needs a display: DISPLAY is not set")


def show_window(title: str, image: np.ndarray) -> bool:
    """Show an image in the window `title`; False once the user pressed q or Esc there."""
    cv2.imshow(title, image)
    return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)


def close_window(title: str) -> None:
    try:
        cv2.destroyWindow(title)
        cv2.waitKey(1)
    except cv2.error:
        pass


def recording_overlay(image: np.ndarray, countdown: str | None, label: str | None, mirror: bool = False) -> np.ndarray:
    """What `record` shows (record.preview): the frame (flipped with `mirror`, small frames doubled) with the countdown
    in large digits, or once recording, a red dot and the label being recorded."""
    out = np.ascontiguousarray(image[:, ::-1]) if mirror else image.copy()
    if out.shape[0] < 240:
        out = cv2.resize(out, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    h, w = out.shape[:2]
    if countdown is not None:
        scale = h / 80
        (tw, th), _ = cv2.getTextSize(countdown, cv2.FONT_HERSHEY_SIMPLEX, scale, max(2, int(scale * 2)))
        org = ((w - tw) // 2, (h + th) // 2)
        cv2.putText(out, countdown, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(4, int(scale * 5)), cv2.LINE_AA)
        cv2.putText(out, countdown, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), max(2, int(scale * 2)), cv2.LINE_AA)
    else:
        cv2.circle(out, (16, 16), 8, (0, 0, 255), -1, cv2.LINE_AA)
        cv2.putText(out, label or "", (32, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, label or "", (32, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class RecordingWindow:
    """The window `record` shows while recording (record.preview); closing it, q or Esc stops the recording."""

    title = "stream-predictor: recording"

    def __init__(self, mirror: bool = False) -> None:
        need_display("record.preview")
        self.mirror, self.shown = mirror, 0

    def show(self, image: np.ndarray, countdown: str | None, label: str | None) -> bool:
        """Show one frame; False once the user asked to stop."""
        self.shown += 1
        return show_window(self.title, recording_overlay(image, countdown, label, self.mirror))

    def close(self) -> None:
        close_window(self.title)
