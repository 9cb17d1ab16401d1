"""Webcam users: pretrained encoders through torchvision's weights API, training on cached features of a frozen encoder,
the synthetic gesture stand-in, live-camera conveniences, and docs/webcam.md's stand-in commands as written."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from stream_predictor import build_model, load_config, load_model, save_model
from stream_predictor.errors import ConfigError, SourceError, UserError
from stream_predictor.learn.data import cached_features, encode_pixels, load_data
from stream_predictor.learn.record import record
from stream_predictor.learn.train import train
from stream_predictor.runtime.tick import Tick
from stream_predictor.sinks.video import annotate, recording_overlay
from stream_predictor.sinks.web import WebSink
from stream_predictor.sources import open_source
from stream_predictor.sources.gestures import GESTURES, POSES
from stream_predictor.sources.video import camera_report

from conftest import ROOT

MOBILENET_FILE = "mobilenet_v3_small-047dcff4.pth"  # torchvision's name for its ImageNet weights
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # any download is refused at once


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    """A TORCH_HOME holding a mobilenet_v3_small weights file under torchvision's name, as a download leaves it."""
    home = tmp_path_factory.mktemp("torch_home")
    torch.manual_seed(7)
    net = torchvision.models.mobilenet_v3_small(weights=None)
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), home / "hub" / "checkpoints" / MOBILENET_FILE)
    return home


@pytest.fixture(scope="module")
def gesture_sessions(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("gestures")
    cfg = load_config("gesture")
    out = []
    for seed in (1, 2, 3):
        record(cfg, f"synthetic:gestures?seed={seed}&width=96&height=72&frames=300", root / f"s{seed}", status=False)
        out.append(root / f"s{seed}")
    return out


def small(torch_home: Path, monkeypatch, *overrides: str):
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    for k, v in OFFLINE.items():
        monkeypatch.setenv(k, v)
    return load_config("gesture", ["model.input_size=[64,64]", "model.hidden=32", "train.batch_size=4", "train.seq_len=8",
                                   "train.tensorboard=false", "train.threads=1", *overrides])


# --- the stand-in ------------------------------------------------------------------------------------------------
def test_gestures_are_a_pure_function_of_seed_and_frame_with_both_labellings():
    a, b = open_source("synthetic:gestures?seed=5"), open_source("synthetic:gestures?seed=5")
    assert np.array_equal(a.render(123), b.render(123)) and not np.array_equal(a.render(123), a.render(124))
    assert not np.array_equal(a.render(123), open_source("synthetic:gestures?seed=6").render(123))
    labels = [a.label_of(i) for i in range(3000)]
    assert set(labels) == set(GESTURES) and a.truth_classes == GESTURES
    pose = open_source("synthetic:gestures?seed=5&task=pose")
    assert {pose.label_of(i) for i in range(3000)} == set(POSES)
    # a swipe needs memory: the same pose label shows up under different gestures
    both = {(pose.label_of(i), labels[i]) for i in range(3000)}
    assert ("open_middle", "swipe_left") in both and ("open_middle", "swipe_right") in both and ("open_middle", "hold") in both
    with pytest.raises(SourceError, match="unknown task"):
        open_source("synthetic:gestures?task=wave")
    with pytest.raises(SourceError, match="gestures only"):
        open_source("synthetic:dot?task=pose")


# --- pretrained encoders ------------------------------------------------------------------------------------------
def test_pretrained_weights_load_from_the_placed_file_with_their_preprocessing(torch_home, monkeypatch, tmp_path):
    cfg = small(torch_home, monkeypatch, "model.input_size=[84,84]")  # the default size: the weights' own size wins
    model = build_model(cfg.model)
    placed = torch.load(torch_home / "hub" / "checkpoints" / MOBILENET_FILE, weights_only=True)
    for key, value in model.encoder.state_dict().items():
        torch.testing.assert_close(value, placed[key], rtol=0, atol=0)
    assert not model.cfg.grayscale and model.cfg.input_size == [224, 224]
    assert model.cfg.mean == pytest.approx([0.485, 0.456, 0.406]) and model.cfg.std == pytest.approx([0.229, 0.224, 0.225])
    assert build_model(small(torch_home, monkeypatch).model).cfg.input_size == [64, 64]  # a size the user chose stays
    # the weights file carries the preprocessing and loads without the pretrained file (nothing is downloaded)
    save_model(model, tmp_path / "m.safetensors")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    again = load_model(tmp_path / "m.safetensors")
    assert again.cfg == model.cfg
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    torch.testing.assert_close(again.preprocess(frame), model.preprocess(frame))


def test_pretrained_offline_is_one_line_that_says_where_the_file_goes(tmp_path, gesture_sessions):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "th"), **OFFLINE}
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "train", "--config", "gesture", "--data",
                        *map(str, gesture_sessions), "--out", str(tmp_path / "w.safetensors"), "model.input_size=[64,64]",
                        f"train.cache_dir={tmp_path / 'cache'}"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    assert str(tmp_path / "th" / "hub" / "checkpoints" / MOBILENET_FILE) in lines[0] and "model.pretrained=false" in lines[0]
    assert not (tmp_path / "w.safetensors").exists()
    with pytest.raises(ConfigError, match="torchvision encoder"):
        build_model(load_config(None, ["model.pretrained=true"]).model)  # nature_cnn has no pretrained weights


def test_a_broken_pretrained_file_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / MOBILENET_FILE).write_bytes(b"not a weights file")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="cannot read .*delete it"):
        build_model(load_config("gesture").model)


# --- frozen encoder, cached features -------------------------------------------------------------------------------
def test_feature_cache_is_reused_and_invalidated_by_weights_and_preprocessing(torch_home, monkeypatch, tmp_path,
                                                                               gesture_sessions):
    cfg = small(torch_home, monkeypatch)
    model = build_model(replace(cfg.model, classes=list(GESTURES)))
    data = load_data(gesture_sessions[:1], model.preproc, tmp_path, progress=False)
    first = cached_features(data, model, tmp_path, progress=False).pixels[0]
    assert first.shape == (len(data.targets[0]), model.feature_dim)
    np.testing.assert_allclose(first[:40], encode_pixels(model, data.pixels[0][:40]).numpy(), atol=1e-5)
    files = sorted((tmp_path / "features").glob("*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    cached_features(data, model, tmp_path, progress=False)  # the same: read back, not encoded again
    assert sorted((tmp_path / "features").glob("*.npy")) == files and files[0].stat().st_mtime_ns == stamp
    with torch.no_grad():
        model.encoder.features[0][0].weight.mul_(0.5)  # other encoder weights
    changed = cached_features(data, model, tmp_path, progress=False).pixels[0]
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2 and not np.allclose(changed, first)
    other = build_model(replace(cfg.model, classes=list(GESTURES), input_size=[48, 48]))  # other preprocessing
    cached_features(load_data(gesture_sessions[:1], other.preproc, tmp_path, progress=False), other, tmp_path, progress=False)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 3


def test_frozen_encoder_on_cached_features_equals_end_to_end_with_encoder_gradients_off(torch_home, monkeypatch, tmp_path,
                                                                                        gesture_sessions):
    common = ["train.augment=false", "train.epochs=5", "train.windows_per_epoch=4", "train.warmup_steps=2",
              f"train.cache_dir={tmp_path / 'cache'}"]
    runs = {}
    for cache in ("true", "false"):
        cfg = small(torch_home, monkeypatch, *common, f"train.feature_cache={cache}")
        runs[cache] = train(cfg, gesture_sessions[:2], tmp_path / f"{cache}.safetensors", val_dirs=gesture_sessions[2:],
                            progress=False)
    cached, direct = runs["true"], runs["false"]
    assert [h["step"] for h in cached["history"]] == [1, 2, 3, 4, 5]  # one step per epoch: the loss after every step
    losses = [h["train_loss"] for h in cached["history"]]
    assert losses == pytest.approx([h["train_loss"] for h in direct["history"]], rel=1e-4, abs=1e-5)
    assert len(set(losses)) == 5  # it learns: every step's loss differs
    assert [h["val_loss"] for h in cached["history"]] == pytest.approx([h["val_loss"] for h in direct["history"]], rel=1e-4)
    a, b = load_model(tmp_path / "true.safetensors"), load_model(tmp_path / "false.safetensors")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=name)
    start = build_model(a.cfg)  # the placed file: the frozen encoder never moved, batch-norm statistics included
    for (name, x), y in zip(a.encoder.state_dict().items(), start.encoder.state_dict().values()):
        assert torch.equal(x, y), name
    assert cached["frozen_encoder"] and cached["encode_seconds"] > 0


def test_unfreeze_after_trains_the_encoder_from_that_epoch_on(torch_home, monkeypatch, tmp_path, gesture_sessions, capsys):
    cfg = small(torch_home, monkeypatch, "train.epochs=2", "train.windows_per_epoch=8", "train.unfreeze_after=1",
                "train.encoder_lr_scale=0.5", f"train.cache_dir={tmp_path / 'cache'}", "train.val_fraction=0")
    train(cfg, gesture_sessions[:2], tmp_path / "u.safetensors", progress=False)
    assert "epoch 2: the encoder trains from here, at lr × 0.5" in capsys.readouterr().out
    tuned, start = load_model(tmp_path / "u.safetensors"), build_model(load_model(tmp_path / "u.safetensors").cfg)
    moved = [k for k, v in tuned.encoder.state_dict().items() if not torch.equal(v, start.encoder.state_dict()[k])]
    assert moved and any(k.endswith("weight") for k in moved)


def test_precise_batch_norm_statistics_follow_the_weights_as_trained(torch_home, monkeypatch, tmp_path, gesture_sessions):
    """MobileNetV3 averages its batch-norm statistics with momentum 0.01: after a few steps they still describe the
    initial weights. Recomputed after the epoch, they describe the trained ones on the training frames."""
    error = {}
    for frames in (0, 512):
        cfg = small(torch_home, monkeypatch, "model.pretrained=false", "train.freeze_encoder=false", "train.epochs=1",
                    "train.windows_per_epoch=12", "train.val_fraction=0", f"train.precise_bn={frames}",
                    f"train.cache_dir={tmp_path / 'cache'}")
        train(cfg, gesture_sessions[:1], tmp_path / f"bn{frames}.safetensors", progress=False)
        model = load_model(tmp_path / f"bn{frames}.safetensors")
        pixels = load_data(gesture_sessions[:1], model.preproc, tmp_path / "cache", progress=False).pixels[0]
        conv, norm = model.encoder.features[0][0], model.encoder.features[0][1]
        with torch.no_grad():
            out = conv(model.preproc.normalize(torch.from_numpy(np.array(pixels))))
        error[frames] = (norm.running_mean - out.mean((0, 2, 3))).abs().max().item()
    assert error[512] < 0.2 * error[0], error


# --- live-camera conveniences -------------------------------------------------------------------------------------
def tick_of(image: np.ndarray) -> Tick:
    return Tick(seq=1, t_capture=0.0, t_decision=0.0, latency_ms=1.0, class_id=1, class_name="b", probs=[0.2, 0.8],
                skipped=0, image=image)


def test_mirror_flips_what_people_see_not_what_the_model_sees():
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :20] = 255  # a white band on the left
    plain, mirrored = annotate(tick_of(image), ["a", "b"]), annotate(tick_of(image), ["a", "b"], mirror=True)
    plain, mirrored = plain[:60], mirrored[:60]  # the panel beside may be taller than the frame
    assert plain[:, :20].min() == 255 and mirrored[:, 60:80].min() == 255 and mirrored[:, :20].max() == 0
    web = WebSink(["a", "b"], port=0, mirror=True)
    try:
        web.attach(lambda im: im, dict)
        side = web.composite(image)
        assert side[:, 122:160].min() == 255 and side[:, :38].max() == 0  # doubled to 120 high: 160 wide, band on the right
    finally:
        web.close()
    counting = recording_overlay(image, "3", None, mirror=True)
    assert counting.shape[0] == 120 and counting[:, 120:160].mean() > 200  # doubled, flipped
    assert (counting[40:80, 60:100] == 255).any()  # the digit in the middle
    recording = recording_overlay(image, None, "hold")
    assert tuple(recording[16, 16]) == (0, 0, 255)  # the red dot


def test_camera_report_says_what_the_camera_gives_and_what_it_refused():
    got = {"width": 640, "height": 480, "fps": 30.0, "fourcc": "MJPG"}
    assert camera_report("camera 0", (0, 0, 0.0), got) == "camera 0: 640x480 at 30 fps, MJPG"
    line = camera_report("camera 0", (1280, 720, 60.0), got)
    assert line.startswith("camera 0: 640x480 at 30 fps") and "asked for 1280x720 at 60 fps" in line
    assert "asked" not in camera_report("camera 0", (640, 480, 30.0), got)


def test_record_counts_down_before_a_live_source(xvfb, tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "record", "--source", "screen?fps=10", "--out", str(tmp_path / "s"),
           "record.countdown=2", "record.seconds=1", "record.labeller=keyboard"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DISPLAY": xvfb}, timeout=60)
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert "recording starts in 2" in r.stderr and "recording starts in 1" in r.stderr
    meta = (tmp_path / "s" / "meta.yaml").read_text()
    frames = int(re.search(r"^frames: (\d+)", meta, re.M).group(1))
    assert elapsed > 3.0 and 3 <= frames <= 15  # two seconds counted down, then about one second (10 fps) recorded


# --- docs/webcam.md as written -------------------------------------------------------------------------------------
def test_the_stand_in_quickstart_runs_as_written(torch_home, tmp_path):
    doc = (ROOT / "docs" / "webcam.md").read_text()
    section = doc.split("## The same on the synthetic stand-in", 1)[1]
    lines = [ln for ln in re.search(r"```bash\n(.*?)```", section, re.S).group(1).splitlines() if ln.strip()]
    assert [shlex.split(ln)[2] for ln in lines] == ["record"] * 4 + ["train", "predict"]
    env = {**os.environ, "TORCH_HOME": str(torch_home), **OFFLINE}
    for line in lines:
        args = shlex.split(line)
        assert args[:2] == ["python", "run.py"], line
        r = subprocess.run([sys.executable, str(ROOT / "run.py"), *args[2:]], capture_output=True, text=True, cwd=tmp_path,
                           env=env, timeout=900)
        assert r.returncode == 0, (line, r.stderr[-2000:])
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 300 and "web view: http://127.0.0.1:" in r.stderr
    weights = load_model(tmp_path / "runs" / "gestures.safetensors")
    assert weights.classes == list(GESTURES) and weights.cfg.encoder == "mobilenet_v3_small" and not weights.cfg.grayscale
    metrics = json.loads((tmp_path / "runs" / "gestures.metrics.json").read_text())
    assert metrics["frozen_encoder"] and metrics["final"]["accuracy"] > 0.0
