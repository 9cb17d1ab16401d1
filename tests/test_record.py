"""Recording, sessions, import, crash safety and the keyboard labeller, all for real."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from stream_predictor.config import load_config
from stream_predictor.errors import UserError
from stream_predictor.learn.labellers import label_from_keys
from stream_predictor.learn.record import import_video, record
from stream_predictor.session import SessionWriter, load_session
from stream_predictor.sources import open_source
from stream_predictor.sources.synthetic import Synthetic

from conftest import ROOT, decode_all, sigint_default, write_video


def test_record_synthetic_with_oracle_labels(tmp_path):
    cfg = load_config(overrides=["record.frames=250", "record.segment_frames=100"])
    summary = record(cfg, "synthetic:bounce?width=64&height=48&seed=4", tmp_path / "s", status=False)
    assert summary["frames"] == 250 and summary["skipped"] == 0
    session = load_session(tmp_path / "s")
    assert session.frames == 250 and session.classes == ["left", "straight", "right"]
    assert [p.name for p in session.segments] == ["000000.avi", "000001.avi", "000002.avi"]
    truth = Synthetic("bounce", 64, 48, seed=4)
    assert [session.classes[i] for i in session.labels] == [truth.label_of(i) for i in range(250)]
    assert sum(summary["classes"].values()) == 250
    # Every segment is readable on its own, and the whole session plays back as a source.
    assert len(decode_all(session.segments[1])) == 100
    src = open_source(str(tmp_path / "s"))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f.image)
    assert len(frames) == 250
    for i in (0, 10, 249):
        np.testing.assert_array_equal(frames[i], truth.render(i))  # FFV1 segments are lossless


def test_record_refuses_to_overwrite(tmp_path):
    cfg = load_config(overrides=["record.frames=5"])
    record(cfg, "synthetic:bounce", tmp_path / "s", status=False)
    with pytest.raises(UserError, match="already holds a session"):
        record(cfg, "synthetic:bounce", tmp_path / "s", status=False)


def test_record_ale_with_the_expert(tmp_path):
    cfg = load_config(overrides=["record.frames=120", "record.segment_frames=60", "expert.coast=16"])
    summary = record(cfg, "ale:Pong?seed=7", tmp_path / "pong", status=False)
    session = load_session(tmp_path / "pong")
    assert session.classes == ["up", "stay", "down"] and session.frames == 120
    assert session.meta["expert"]["coast"] == 16 and session.meta["labeller"] == "ExpertLabeller"  # reproducible labels
    assert len(set(session.labels.tolist())) >= 2  # the expert really steers
    assert summary["frames"] == 120


def test_sigkill_loses_at_most_the_open_segment_and_the_session_trains(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, str(ROOT / "run.py"), "record", "--source", "synthetic:bounce?width=64&height=48&fps=400",
           "--out", str(out), "replay=realtime", "record.segment_frames=50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not (out / "video" / "000003.avi").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.07)  # somewhere inside a later segment
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    session = load_session(out)
    assert session.frames >= 200 and session.frames % 50 == 0
    assert len(session.segments) * 50 >= session.frames
    from stream_predictor.learn.train import train

    cfg = load_config(overrides=["model.input_size=[48,64]", "model.hidden=16", "model.feature_dim=32", "train.max_steps=3",
                                 "train.seq_len=4", "train.batch_size=4", f"train.cache_dir={tmp_path / 'cache'}"])
    metrics = train(cfg, [str(out)], tmp_path / "w.safetensors", progress=False)
    assert metrics["steps"] == 3 and (tmp_path / "w.safetensors").exists()


def test_sigint_finishes_the_open_segment(tmp_path):
    out = tmp_path / "interrupted"
    cmd = [sys.executable, str(ROOT / "run.py"), "record", "--source", "synthetic:bounce?width=64&height=48&fps=200",
           "--out", str(out), "replay=realtime", "record.segment_frames=1000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=sigint_default)
    deadline = time.monotonic() + 30
    while not (out / "video" / "000000.tmp.avi").exists():  # the first segment is being written
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=10)
    session = load_session(out)
    assert 20 < session.frames < 1000  # the one open segment was finished, not lost


@pytest.mark.parametrize("contents, words", [
    ("frame,label\n0,left\n1,left\n2,left\n3,left\n4,left\n5,left\n", "rows but the video has only 5 frames"),
    ("frame,label\n0,left\n1,jump\n", "unknown label 'jump'"),
    ("frame,label\n0,left\n2,left\n", "should be 1"),
    ("frame,label\n0,left,extra\n", "expected 'frame,label'"),
    ("frm,lbl\n0,left\n", "first row"),
])
def test_bad_labels_are_clear_errors(tmp_path, contents, words):
    with SessionWriter(tmp_path / "s", ["left", "right"], 30.0, "test", segment_frames=10) as w:
        for i in range(5):
            w.add(np.full((16, 16, 3), i, np.uint8), "left")
    (tmp_path / "s" / "labels.csv").write_text(contents)
    with pytest.raises(UserError, match=words):
        load_session(tmp_path / "s")


def test_import_a_labelled_video(tmp_path):
    video = write_video(tmp_path / "mine.avi", frames=40, size=(96, 64))
    labels = tmp_path / "mine.csv"
    labels.write_text("frame,label\n" + "".join(f"{i},{'left' if i < 20 else 'right'}\n" for i in range(40)))
    import_video(video, labels, tmp_path / "s", ["left", "straight", "right"], segment_frames=16)
    session = load_session(tmp_path / "s")
    assert session.frames == 40 and len(session.segments) == 3
    assert session.labels.tolist() == [0] * 20 + [2] * 20
    short = tmp_path / "short.csv"
    short.write_text("frame,label\n" + "".join(f"{i},left\n" for i in range(30)))
    with pytest.raises(UserError, match="30 labels but .* has 40 frames"):
        import_video(video, short, tmp_path / "s2", ["left", "right"])
    assert not (tmp_path / "s2").exists()  # nothing half-imported is left behind
    with pytest.raises(UserError, match="unknown label"):
        import_video(video, labels, tmp_path / "s3", ["left", "straight"])


def test_import_cli(tmp_path):
    video = write_video(tmp_path / "v.avi", frames=10, size=(64, 48))
    (tmp_path / "l.csv").write_text("frame,label\n" + "".join(f"{i},straight\n" for i in range(10)))
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "import", "--video", str(video), "--labels", str(tmp_path / "l.csv"),
                        "--out", str(tmp_path / "s")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert load_session(tmp_path / "s").frames == 10


@pytest.mark.parametrize("pressed, preset, label", [
    (set(), "lsr3", "straight"), ({"a"}, "lsr3", "left"), ({"right"}, "lsr3", "right"), ({"a", "d"}, "lsr3", "straight"),
    (set(), "wasd9", "none"), ({"w"}, "wasd9", "W"), ({"w", "a"}, "wasd9", "WA"), ({"s", "d"}, "wasd9", "SD"),
    ({"w", "s", "a"}, "wasd9", "A"), ({"up", "right"}, "wasd9", "WD"),
    (set(), "gestures", "none"), ({"1"}, "gestures", "swipe_left"), ({"right"}, "gestures", "swipe_right"),
    ({"3", "c"}, "gestures", "circle"), ({"h"}, "gestures", "hold"), ({"1", "2"}, "gestures", "none"), ({"x"}, "gestures", "none"),
])
def test_key_presets(pressed, preset, label):
    assert label_from_keys(pressed, preset) == label


def test_keyboard_labeller_reads_real_keys_under_xvfb(xvfb):
    probe = subprocess.Popen([sys.executable, str(ROOT / "tests" / "keyboard_probe.py"), "lsr3"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def ask(command: str) -> str:
        probe.stdin.write(command + "\n")
        probe.stdin.flush()
        return probe.stdout.readline().strip()

    def label_while_held(*keys: str, want: str) -> str:
        for k in keys:
            subprocess.run(["xdotool", "keydown", k], check=True)
        deadline = time.monotonic() + 3
        while (got := ask("label")) != want and time.monotonic() < deadline:
            time.sleep(0.02)
        for k in keys:
            subprocess.run(["xdotool", "keyup", k], check=True)
        return got

    try:
        assert probe.stdout.readline().strip() == "ready"
        assert ask("label") == "straight"
        assert label_while_held("a", want="left") == "left"
        assert label_while_held("Right", want="right") == "right"
        time.sleep(0.1)
        assert label_while_held("a", "d", want="straight") == "straight"
        assert ask("paused") == "False"
        subprocess.run(["xdotool", "key", "F9"], check=True)
        deadline = time.monotonic() + 3
        while ask("paused") != "True" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ask("paused") == "True"
    finally:
        probe.stdin.close()
        probe.wait(5)


def test_record_cli_summary(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "record", "--source", "synthetic:bounce", "--out", str(tmp_path / "s"),
                        "--frames", "30", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    import json

    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 30
    assert cv2.VideoCapture(str(tmp_path / "s" / "video" / "000000.avi")).isOpened()


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_playback_and_training_restart_at_the_same_frames(tmp_path, stride):
    """Episode starts that fall between kept frames: the session played back as a source and the training targets
    mark the same kept frame (the first one at or after each start)."""
    from stream_predictor.session import aligned_targets

    synth = Synthetic("bounce", width=32, height=24)
    with SessionWriter(tmp_path / "s", ["left", "straight", "right"], 30.0, "test") as writer:
        for i in range(20):
            writer.add(synth.render(i), synth.label_of(i), first=i in (7, 12))
    session = load_session(tmp_path / "s")
    assert session.episode_starts == [0, 7, 12]
    source = open_source(f"{tmp_path / 's'}?stride={stride}")
    played = [f.first for f in iter(source.read, None)]
    _, targets, firsts = aligned_targets(session, 0, stride)
    assert played == firsts.tolist() and len(played) == len(targets)
    assert [i * stride for i in np.flatnonzero(firsts)] == sorted({-(-s // stride) * stride for s in (0, 7, 12)})
