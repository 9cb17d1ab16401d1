"""A normal install: the wheel built from this tree, installed (not editable) into a fresh virtual environment, plays
from another folder with the shipped config and weights, and `python -m stream_predictor` is the CLI there too."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def run(*cmd: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_the_wheel_installed_elsewhere_plays_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                str(ROOT), cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(wheels.glob("stream_predictor-*.whl"))
    env = tmp_path / "venv"
    assert run(sys.executable, "-m", "venv", str(env), cwd=tmp_path).returncode == 0
    py = env / "bin" / "python"
    installed = run(str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel), cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-2000:]
    # the dependencies (torch, opencv, ale-py…) come from this environment, after the wheel: the package itself only
    # from the fresh environment, where nothing of the checkout is
    site = run(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    (tmp_path / "venv" / site.split(str(env) + "/", 1)[1] / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run(str(py), "-c", "import stream_predictor, sys; print(stream_predictor.__file__)", cwd=elsewhere)
    assert where.stdout.strip().startswith(str(env)), where.stdout + where.stderr
    r = run(str(env / "bin" / "stream-predictor"), "play", "--episodes", "1", "--json", "source.max_episode_steps=300",
            cwd=elsewhere)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["episodes"] == 1 and len(out["scores"]) == 1 and "mean_score" in out
    r = run(str(py), "-m", "stream_predictor", "play", "--config", "flickering_pong", "--episodes", "1", "--json",
            "source.max_episode_steps=200", cwd=elsewhere)
    assert r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["episodes"] == 1, r.stderr[-3000:]
