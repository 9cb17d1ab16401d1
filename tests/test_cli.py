"""The CLI as users run it: a real subprocess, its stdout, stderr and exit code."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_capture_json_on_a_video(video):
    r = cli("capture", "--source", str(video), "--seconds", "10", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(out) >= {"source", "width", "height", "frames", "fps", "skipped", "reconnects"}
    assert (out["width"], out["height"], out["frames"], out["skipped"]) == (160, 120, 60, 0)
    assert out["fps"] > 0


def test_capture_ale_with_override():
    r = cli("capture", "--source", "ale:Pong", "--seconds", "1", "--json", "source.seed=5")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert (out["width"], out["height"]) == (160, 210) and out["frames"] > 10


@pytest.mark.parametrize("args, words", [
    (["capture", "--source", "missing.mp4"], "source not found"),
    (["capture", "--source", "foo:bar"], "unknown source scheme"),
    (["capture", "--source", "7"], "no camera at index 7"),
    (["capture", "--source", "synthetic:bounce", "model.hiden=3"], "model.hidden"),
    (["capture", "--source", "synthetic:bounce", "--bogus"], "--bogus"),
    (["predict", "--source", "synthetic:bounce", "--weights", "nope.safetensors"], "no such weights file"),
    (["capture", "--config", "nope.yaml"], "config file not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    r = cli(*args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_corrupt_weights_are_refused(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    r = cli("predict", "--source", "synthetic:bounce?frames=3", "--weights", str(bad))
    assert r.returncode == 2 and "not a safetensors weights file" in r.stderr
