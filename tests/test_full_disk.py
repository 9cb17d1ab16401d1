"""A disk that fills: a real tmpfs of a few MiB. One clear error; what was finished stays whole and loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_predictor.config import ModelConfig
from stream_predictor.errors import DiskFullError
from stream_predictor.learn.train import load_checkpoint, save_checkpoint
from stream_predictor.model import build_model
from stream_predictor.session import SessionWriter, load_session

from conftest import ROOT, decode_all

SMALL = ["model.input_size=[48,48]", "model.hidden=16", "model.feature_dim=32"]
ENDLESS = "synthetic:bounce?fps=0&frames=1000000&width=160&height=120"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, timeout=180,
                          cwd=ROOT)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "disk" in lines[0]
    return lines[0]


def no_temporary_files(d: Path) -> bool:
    return not [p for p in d.rglob("*") if ".tmp" in p.name]


def check_session(d: Path) -> int:
    """Loads; every segment decodes to exactly its share of the labels; returns the frame count."""
    session = load_session(d)
    decoded = sum(len(decode_all(seg)) for seg in session.segments)
    assert decoded == session.frames == len(session.labels) > 0
    return session.frames


def test_recording_onto_a_disk_that_fills(small_disk):
    disk = small_disk("3m")
    r = run_cli("record", "--source", ENDLESS, "--out", str(disk / "s"), "record.segment_frames=40", "replay=lockstep")
    line = one_error_line(r)
    frames = check_session(disk / "s")
    assert f"{frames} frames" in line and no_temporary_files(disk)


def test_a_write_that_fails_anyway_discards_only_the_open_segment(small_disk):
    """Space taken by somebody else mid-segment: the video writer fails silently, which the writer notices."""
    disk = small_disk("3m")
    rng = np.random.default_rng(0)
    writer = SessionWriter(disk / "s", ["a", "b"], 30.0, "test", segment_frames=20)
    for i in range(40):  # two whole segments
        writer.add(rng.integers(0, 255, (120, 160, 3), np.uint8), "ab"[i % 2])
    for _ in range(5):
        writer.add(rng.integers(0, 255, (120, 160, 3), np.uint8), "a")
    with open(disk / "filler", "wb") as f:  # everything that is left
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    with pytest.raises(DiskFullError, match="40 frames in 2 finished segments"):
        for _ in range(20):
            writer.add(rng.integers(0, 255, (120, 160, 3), np.uint8), "b")
    writer.close()
    assert check_session(disk / "s") == 40 and no_temporary_files(disk)


def test_the_jsonl_sink_on_a_full_disk_keeps_whole_lines(small_disk):
    disk = small_disk("1m")
    r = run_cli("predict", "--source", ENDLESS, "--sink", str(disk / "ticks.jsonl"), *SMALL)
    one_error_line(r)
    lines = (disk / "ticks.jsonl").read_text().splitlines()
    assert len(lines) > 1000
    assert [json.loads(line)["seq"] for line in lines] == list(range(len(lines)))


def test_the_video_sink_stops_with_a_playable_file(small_disk):
    disk = small_disk("3m")
    r = run_cli("predict", "--source", ENDLESS, "--sink", str(disk / "out.avi"), *SMALL)
    line = one_error_line(r)
    frames = decode_all(disk / "out.avi")
    assert len(frames) > 10 and f"after {len(frames)} frames" in line


def test_a_checkpoint_on_a_full_disk_leaves_the_previous_one_whole(small_disk, tmp_path):
    model = build_model(ModelConfig(input_size=[48, 48], hidden=64, feature_dim=128))  # ~0.5 MB with Adam's state
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 2, 1, 48, 48)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "probe.safetensors", model, opt, {"step": 0})
    disk = small_disk(f"{int(1.5 * (tmp_path / 'probe.safetensors').stat().st_size) // 1024}k")  # room for one, not two
    path = disk / "checkpoint.safetensors"
    save_checkpoint(path, model, opt, {"step": 1})
    with pytest.raises(DiskFullError, match="previous one is intact"):
        save_checkpoint(path, model, opt, {"step": 2})
    assert load_checkpoint(path, model, opt)["step"] == 1 and no_temporary_files(disk)
