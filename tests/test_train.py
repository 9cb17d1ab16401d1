"""Training for real at tiny sizes: the motion task, both regimes, resume, eval through the Predictor, DDP."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from stream_predictor.config import load_config
from stream_predictor.learn.data import LaneSampler, load_data
from stream_predictor.learn.evaluate import evaluate
from stream_predictor.learn.record import record
from stream_predictor.learn.train import train
from stream_predictor.model import load_model
from stream_predictor.model.preprocess import Preprocess

from conftest import ROOT, board_tags

TINY = ["model.input_size=[48,64]", "model.hidden=64", "model.feature_dim=128", "train.lr=1e-3", "train.threads=2",
        "train.epochs=1000", "train.windows_per_epoch=1600"]


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    """Two recorded sessions of the motion task: the label is the ball's direction since the previous frame."""
    root = tmp_path_factory.mktemp("motion")
    for name, seed, frames in (("a", 1, 2000), ("b", 2, 800)):
        cfg = load_config(overrides=[f"record.frames={frames}"])
        record(cfg, f"synthetic:bounce?width=64&height=48&seed={seed}", root / name, status=False)
    return root


def cfg_for(motion, *extra):
    return load_config(overrides=[*TINY, f"train.cache_dir={motion / 'cache'}", *extra])


def test_memory_learns_motion_and_a_single_frame_cannot(motion, tmp_path):
    results = {}
    for t in (8, 1):
        cfg = cfg_for(motion, f"train.seq_len={t}", "train.max_steps=300")
        m = train(cfg, [str(motion / "a")], tmp_path / f"m{t}.safetensors", val_dirs=[str(motion / "b")], progress=False)
        results[t] = m["final"]["accuracy"]
    majority = np.bincount(load_data([motion / "b"], Preprocess([48, 64], True, [], [0.5], [0.5]), motion / "cache",
                                     progress=False).targets[0]).max() / 800
    assert results[8] > 0.6, results
    assert results[1] < majority + 0.1, results  # no memory: near chance
    assert results[8] > results[1] + 0.25


def test_stateful_training_outputs_and_eval_through_the_predictor(motion, tmp_path):
    out = tmp_path / "w.safetensors"
    cfg = cfg_for(motion, "train.mode=stateful", "train.seq_len=16", "train.batch_size=8", "train.max_steps=200")
    metrics = train(cfg, [str(motion / "a")], out, val_dirs=[str(motion / "b")], progress=False)
    for suffix in (".metrics.json", ".curves.png", ".confusion.png"):
        assert out.with_suffix("").with_name("w" + suffix).exists()
    tags = board_tags(tmp_path / "w.tb")  # the same run, for TensorBoard
    assert {"epoch/train_loss", "epoch/val_accuracy", "epoch/lr", "epoch/frames_per_s", "step/loss"} <= set(tags["scalars"])
    assert tags["images"] == ["confusion"]
    saved = json.loads((tmp_path / "w.metrics.json").read_text())
    assert saved["steps"] == 200 and saved["mode"] == "stateful" and saved["frames_per_s"] > 0
    model = load_model(out)
    assert model.trained["mode"] == "stateful" and model.classes == ["left", "straight", "right"]
    result = evaluate(model, [str(motion / "b")], cfg, tmp_path / "eval.png")
    assert result["mode"] == "stateful" and result["frames"] == 800
    assert result["stream_offline_agreement"] == 1.0  # the threads decide exactly as the offline model
    assert result["accuracy"] == result["offline_accuracy"] == pytest.approx(metrics["final"]["accuracy"])
    assert result["accuracy"] > 0.5
    assert (tmp_path / "eval.png").stat().st_size > 1000


def test_eval_cli_json(motion, tmp_path):
    out = tmp_path / "w.safetensors"
    train(cfg_for(motion, "train.seq_len=8", "train.max_steps=20"), [str(motion / "a")], out, progress=False)
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "eval", "--weights", str(out), "--data", str(motion / "b"), "--json",
                        f"train.cache_dir={motion / 'cache'}"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result) >= {"accuracy", "macro_f1", "recall", "confusion", "offline_accuracy"}
    assert result["mode"] == "windowed" and result["window"] == 8
    assert result["accuracy"] == result["offline_accuracy"]
    assert 0 < result["accuracy_after_warmup"] <= 1  # frames whose window was full: all but the first 7 of 800


def test_frames_since_episode_start():
    from stream_predictor.learn.evaluate import frames_since_start

    assert frames_since_start(np.array([1, 0, 0, 1, 0, 0, 0, 1], bool)).tolist() == [0, 1, 2, 0, 1, 2, 3, 0]


def test_resume_continues_from_the_checkpoint(motion, tmp_path):
    out = tmp_path / "r.safetensors"
    base = ["train.seq_len=4", "train.windows_per_epoch=160", "train.batch_size=16"]
    first = train(cfg_for(motion, *base, "train.epochs=2"), [str(motion / "a")], out, progress=False)
    assert first["steps"] == 20 and len(first["history"]) == 2
    second = train(cfg_for(motion, *base, "train.epochs=3"), [str(motion / "a")], out, resume=True, progress=False)
    assert second["steps"] == 30 and [h["epoch"] for h in second["history"]] == [1, 2, 3]


def test_max_steps_and_label_delay(motion, tmp_path):
    m = train(cfg_for(motion, "train.seq_len=4", "train.max_steps=7", "train.label_delay=3", "train.stride=2"), [str(motion / "a")],
              tmp_path / "d.safetensors", progress=False)
    assert m["steps"] == 7
    assert load_model(tmp_path / "d.safetensors").trained == {"mode": "windowed", "seq_len": 4, "label_delay": 3, "stride": 2,
                                                                "source_size": [48, 64]}
    pre = Preprocess([48, 64], True, [], [0.5], [0.5])
    plain = load_data([motion / "a"], pre, motion / "cache", progress=False)
    delayed = load_data([motion / "a"], pre, motion / "cache", label_delay=3, stride=2, progress=False)
    np.testing.assert_array_equal(delayed.targets[0], plain.targets[0][3::2][: len(delayed.targets[0])])
    np.testing.assert_array_equal(delayed.pixels[0][5], plain.pixels[0][10])  # frame 10 is paired with label 13
    assert delayed.targets[0][5] == plain.targets[0][13]


def test_frame_cache_is_reused_and_keyed_by_preprocessing(motion, tmp_path):
    cache = tmp_path / "cache"
    pre = Preprocess([48, 64], True, [], [0.5], [0.5])
    a = load_data([motion / "b"], pre, cache, progress=False).pixels[0]
    files = sorted(cache.glob("*.npy"))
    b = load_data([motion / "b"], pre, cache, progress=False).pixels[0]
    assert sorted(cache.glob("*.npy")) == files and np.array_equal(a, b)
    load_data([motion / "b"], Preprocess([24, 32], True, [], [0.5], [0.5]), cache, progress=False)
    assert len(list(cache.glob("*.npy"))) == 2
    assert a.dtype == np.uint8 and a.shape == (800, 1, 48, 64)


def test_two_writers_build_the_same_frame_cache_at_once(motion, tmp_path):
    """Two trainings started together on new data both decode it; neither may break the other's file."""
    import threading

    cache, pre = tmp_path / "cache", Preprocess([48, 64], True, [], [0.5], [0.5])
    start, results, errors = threading.Barrier(2), [], []

    def build():
        start.wait()
        try:
            results.append(np.array(load_data([motion / "b"], pre, cache, progress=False).pixels[0]))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 2 and np.array_equal(results[0], results[1])
    assert [p.name.endswith(".tmp.npy") for p in cache.iterdir()] == [False]  # one cache file, no leftovers


def test_lanes_reset_at_session_starts_and_skip_burn_in(motion):
    pre = Preprocess([48, 64], True, [], [0.5], [0.5])
    data = load_data([motion / "a", motion / "b"], pre, motion / "cache", progress=False)
    sampler = LaneSampler(data, seq_len=10, lanes=4, burn_in=5)
    chunks = list(sampler.batches(epoch=0))
    assert len(chunks) == len(sampler)
    x, y, first, w = chunks[0].pixels, chunks[0].targets, chunks[0].first, chunks[0].weight
    assert x.shape == (4, 10, 1, 48, 64) and y.shape == first.shape == w.shape == (4, 10)
    assert first[:, 0].all()
    # Lanes start at 700-frame spacings over 2,800 frames (sessions start at 0 and 2,000): at most one lane can
    # begin at a session start. The others carry no loss on their first 5 frames (burn-in), unless a session
    # starts inside them; the loss counts again after the burn-in.
    mid = [lane for lane in range(4) if w[lane, 0] == 0]
    assert len(mid) >= 3
    for lane in mid:
        assert (w[lane, :5] == 0).all() or first[lane, 1:5].any()
        assert (w[lane, 5:] == 1).all()
    seen_first = torch.cat([c.first[:, 1:] for c in chunks], 1).sum()
    assert seen_first >= 1  # the boundary between the two sessions is inside some chunk


def test_ddp_with_two_cpu_processes(motion, tmp_path):
    args = ["run.py", "train", "--data", str(motion / "a"), "--val", str(motion / "b"), "--json", *TINY,
            f"train.cache_dir={motion / 'cache'}", "train.seq_len=8", "train.threads=1"]
    # torch's launcher through this interpreter: no `torchrun` on PATH is needed (a venv's python called by path)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    r2 = subprocess.run([*launch, *args, "--out", str(tmp_path / "ddp.safetensors"),
                         "train.max_steps=150"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    ddp = json.loads(r2.stdout.strip().splitlines()[-1])
    assert ddp["world_size"] == 2 and ddp["steps"] == 150
    assert ddp["accuracy"] > 0.55  # one process, 300 steps: ~0.72; chance ~0.33
    assert (tmp_path / "ddp.safetensors").exists() and (tmp_path / "ddp.metrics.json").exists()
