"""The README's commands run as written: the record → train → evaluate quickstart and the Python example."""

import json
import re
import shlex
import subprocess
import sys

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def block(heading: str, language: str) -> str:
    """The first fenced code block in the README section that starts with `heading`."""
    section = README.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_readme_stays_short():
    assert len(README.encode()) <= 10 * 1024


def test_quickstart_commands_run_as_written(tmp_path):
    lines = [line for line in block("## Record → train → evaluate", "bash").splitlines() if line.strip()]
    assert [shlex.split(line)[2] for line in lines] == ["record", "record", "train", "eval"]
    for line in lines:
        args = shlex.split(line)
        assert args[:2] == ["python", "run.py"], line
        r = subprocess.run([sys.executable, str(ROOT / "run.py"), *args[2:]], capture_output=True, text=True, cwd=tmp_path,
                           timeout=600)
        assert r.returncode == 0, (line, r.stderr[-2000:])
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["accuracy"] > 0.5 and result["stream_offline_agreement"] == 1.0  # the motion task is learnt
    assert (tmp_path / "runs" / "motion.curves.png").exists()


def test_python_example_runs_as_written(tmp_path):
    """From an empty folder, as a user pastes it: the shipped weights are found, every frame gets a tick."""
    code = block("## Python", "python")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    seqs = [int(line.split()[0]) for line in r.stdout.splitlines()]
    assert seqs == list(range(300))  # one tick per frame, in order (lockstep)
