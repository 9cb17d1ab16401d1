"""A trainer killed with SIGKILL in the middle of writing a checkpoint resumes from the last complete one.

The run is the real CLI in a child process; its checkpoint writer is wrapped so that on the chosen save it writes half
of the file and then the process SIGKILLs itself: a kill that lands mid-write every time, not by luck of timing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from safetensors import safe_open

from stream_predictor.model import load_model

from conftest import ROOT

DYING = """
import os, signal, sys
import stream_predictor.learn.train as train
real, saves, kill_at = train.save_file, [0], int(sys.argv[1])

def dying(tensors, filename, metadata=None):
    saves[0] += 1
    real(tensors, filename, metadata=metadata)
    if saves[0] == kill_at:
        os.truncate(filename, os.path.getsize(filename) // 2)  # half of it reached the disk
        os.kill(os.getpid(), signal.SIGKILL)

train.save_file = dying
from stream_predictor.cli import main
sys.exit(main(sys.argv[2:]))
"""


def run(*args: str, kill_at: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", DYING, str(kill_at), *args] if kill_at else [sys.executable, "run.py", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def checkpoint_meta(path: Path, key: str) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()[key])


def leftovers(d: Path) -> list[Path]:
    return [p for p in d.iterdir() if p.name.endswith(".tmp")]


def test_train_killed_while_checkpointing_resumes_from_the_last_complete_checkpoint(tmp_path):
    data = tmp_path / "s"
    assert run("record", "--source", "synthetic:bounce?width=64&height=48&seed=1", "--out", str(data),
               "record.frames=300").returncode == 0
    out = tmp_path / "w.safetensors"
    args = ["train", "--data", str(data), "--out", str(out), "model.input_size=[48,64]", "model.hidden=16",
            "model.feature_dim=32", "train.epochs=4", "train.windows_per_epoch=64", "train.batch_size=8",
            "train.seq_len=4", "train.val_fraction=0", "train.threads=1", "--json"]
    r = run(*args, kill_at=3)  # killed while writing the checkpoint of epoch 3
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    run_dir = tmp_path / "w.run"
    assert leftovers(run_dir), "the kill left no half-written file: it did not land mid-write"

    done = checkpoint_meta(run_dir / "checkpoint.safetensors", "checkpoint")  # the last complete one
    assert done["epoch"] >= 1

    r = run(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoint.safetensors'} at epoch {done['epoch'] + 1}, step {done['step']}" in r.stdout
    assert "half-written" in r.stderr and not leftovers(run_dir)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    history = json.loads((tmp_path / "w.metrics.json").read_text())["history"]
    assert result["steps"] == 32 and len(history) == 4  # the epochs before the kill, and the rest
    assert load_model(out).classes == ["left", "straight", "right"]


def test_tune_killed_while_checkpointing_resumes_from_the_last_complete_checkpoint(tmp_path):
    out = tmp_path / "rl.safetensors"
    args = ["tune", "--config", "pong", "--init", str(ROOT / "weights" / "pong_bc.safetensors"), "--envs", "2",
            "--frames", "192", "--out", str(out), "tune.rollout=32", "tune.minibatches=2", "tune.threads=1",
            "tune.value_warmup=64", "tune.save_every=64", "source.max_episode_steps=40", "--json"]
    r = run(*args, kill_at=2)  # killed while writing the checkpoint at 128 frames
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert leftovers(tmp_path / "rl.run")
    assert checkpoint_meta(tmp_path / "rl.run" / "checkpoint.safetensors", "tune_checkpoint")["frames"] == 64

    r = run(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout and "at 64 frames" in r.stdout
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["frames"] == 192 and result["updates"] == 3
    assert not leftovers(tmp_path / "rl.run") and load_model(out).classes == ["up", "stay", "down"]
