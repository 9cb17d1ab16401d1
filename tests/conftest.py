"""Shared fixtures: a real encoded video, a real X server (Xvfb), tiny model configs."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_predictor.sources.synthetic import Synthetic

ROOT = Path(__file__).resolve().parent.parent


def sigint_default() -> None:
    """`preexec_fn` for a child that a test stops with SIGINT. A job a shell starts in the background inherits
    SIGINT ignored, and Python then leaves it ignored: Ctrl-C must work in the child however pytest was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def board_tags(log_dir: Path) -> dict[str, list[str]]:
    """What a TensorBoard log directory holds: {"scalars": [...tags], "images": [...tags]}, read with tensorboard itself."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    tags = acc.Tags()
    return {"scalars": tags["scalars"], "images": tags["images"]}


def write_video(path: Path, frames: int = 60, size: tuple[int, int] = (160, 120), fps: float = 30.0) -> Path:
    """Encode `frames` synthetic frames (W, H = size) with cv2.VideoWriter (MJPG in .avi)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "cv2.VideoWriter could not open an MJPG writer"
    src = Synthetic("bounce", width=size[0], height=size[1], seed=3)
    for i in range(frames):
        writer.write(src.render(i))
    writer.release()
    return path


def decode_all(path: Path) -> np.ndarray:
    """Every frame as a plain cv2 read loop decodes it: (T, H, W, 3) BGR uint8."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", frames=60)


@pytest.fixture(scope="session")
def xvfb():
    """A real X server on a free display; sets DISPLAY for the tests that use it."""
    if shutil.which("Xvfb") is None:
        if os.environ.get("CI"):
            pytest.fail("Xvfb is not installed; .ci/run installs it")
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    from stream_predictor.games.desktop import x_display

    with x_display(private=True, size="1024x768x24") as display, pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISPLAY", display)  # x_display leaves the environment alone: the tests' programs find it here
        yield display


@pytest.fixture
def small_disk(tmp_path):
    """`small_disk(size)`: a fresh tmpfs of `size` (e.g. "2m") mounted in tmp_path, a real disk that fills."""
    import subprocess

    mounts = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            if os.environ.get("CI"):
                pytest.fail("the full-disk tests mount a tmpfs and need root (CI runs as root)")
            pytest.skip("mounting a small tmpfs needs root")
        d = tmp_path / f"disk{len(mounts)}"
        d.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], check=True)
        mounts.append(d)
        return d

    yield mount
    for d in mounts:
        subprocess.run(["umount", "-l", str(d)], check=False)


def prev_action_model(weights: Path = ROOT / "weights" / "pong.safetensors", scale: float = 1.0, seed: int = 0):
    """The model in `weights` with `model.prev_action` on: its LSTM's input widened by the one-hot previous class, whose
    weights are drawn at random (N(0, scale)) so that what was pressed moves the decisions."""
    import torch

    from stream_predictor.model import load_model
    from stream_predictor.model.stream_model import with_prev_action

    model = with_prev_action(load_model(weights))
    with torch.no_grad():
        k = len(model.classes)
        model.rnn.weight_ih_l0[:, -k:] = torch.randn(model.rnn.weight_ih_l0.shape[0], k,
                                                     generator=torch.Generator().manual_seed(seed)) * scale
    return model.eval()
