import json
import threading

import numpy as np
import pytest
import torch

from stream_predictor import MultiPredictor, Predictor, load_config
from stream_predictor.config import ModelConfig
from stream_predictor.model import build_model, save_model
from stream_predictor.runtime.engine import FeatureRing
from stream_predictor.runtime.smoothing import ema, hysteresis
from stream_predictor.sinks import CallbackSink, JsonlSink

from conftest import decode_all
from test_cli import cli


def model_for_video(seed: int = 0, frames: np.ndarray | None = None):
    """Random weights, with the head centred on the clip's hidden states so that the class varies from frame to frame."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(hidden=32, feature_dim=64))
    if frames is not None:
        with torch.inference_mode():
            out, _ = model.rnn(model.encode_clip(model.preprocess(frames)[None]))
        with torch.no_grad():
            model.head.weight.mul_(200)
            model.head.bias.copy_(-model.head.weight @ out[0].mean(0))
    return model


def offline(model, frames: np.ndarray) -> torch.Tensor:
    """model(clip) on every decoded frame: (T, K) probabilities."""
    with torch.inference_mode():
        return torch.softmax(model(model.preprocess(frames)[None])[0], -1)


def test_lockstep_ticks_match_offline_forward_and_repeat_exactly(video):
    frames = decode_all(video)
    model = model_for_video(0, frames)
    expected = offline(model, frames)
    runs = []
    for _ in range(2):
        with Predictor(model, str(video), mode="stateful", replay="lockstep", ring_size=4) as p:
            runs.append(list(p))
    ticks = runs[0]
    assert [t.seq for t in ticks] == list(range(len(frames)))  # one tick per frame, no gaps
    assert all(t.skipped == 0 and not t.stale for t in ticks)
    assert [t.class_id for t in ticks] == expected.argmax(-1).tolist()
    assert len(set(t.class_id for t in ticks)) > 1
    np.testing.assert_allclose([t.probs for t in ticks], expected.numpy(), atol=1e-5)
    assert [(t.seq, t.class_id, t.probs) for t in runs[0]] == [(t.seq, t.class_id, t.probs) for t in runs[1]]


def test_windowed_mode_and_its_warm_up(video):
    model, n = model_for_video(1), 8
    frames = decode_all(video)[:20]
    with Predictor(model, str(video), mode="windowed", window=n, max_frames=20) as p:
        ticks = list(p)
    assert [t.seq for t in ticks] == list(range(20))
    with torch.inference_mode():
        x = model.preprocess(frames)
        for t in ticks:
            lo = max(0, t.seq + 1 - n)  # warm-up: fewer than n frames so far, the window holds what there is
            ref = torch.softmax(model(x[None, lo : t.seq + 1])[0, -1], -1)
            np.testing.assert_allclose(t.probs, ref.numpy(), atol=1e-5)


def test_predict_cli_on_a_real_video(video, tmp_path):
    model = model_for_video(2, decode_all(video))
    weights = save_model(model, tmp_path / "w.safetensors")
    out = tmp_path / "ticks.jsonl"
    r = cli("predict", "--source", str(video), "--weights", str(weights), "--out", str(out), "--json", "replay=lockstep")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 60 and summary["skipped"] == 0
    assert summary["latency_ms_p99"] >= summary["latency_ms_p50"] > 0
    ticks = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(ticks[0]) == {"seq", "t_capture", "t_decision", "latency_ms", "class_id", "class", "probs", "skipped", "stale"}
    assert [t["seq"] for t in ticks] == list(range(60))
    assert [t["class_id"] for t in ticks] == offline(model, decode_all(video)).argmax(-1).tolist()
    assert all(t["class"] == model.classes[t["class_id"]] for t in ticks)


def test_random_weights_warn(video):
    r = cli("predict", "--source", f"{video}", "--max-frames", "3")
    assert r.returncode == 0 and "random weights" in r.stderr
    assert len([line for line in r.stdout.splitlines() if line.startswith("{")]) == 3


def test_fixed_rate_ticks_repeat_the_last_decision_when_stale():
    model = build_model(ModelConfig(hidden=16, feature_dim=32))
    with Predictor(model, "synthetic:bounce?fps=4&frames=4", replay="realtime", tick_hz=40) as p:
        ticks = list(p)
    fresh = [t for t in ticks if not t.stale]
    stale = [t for t in ticks if t.stale]
    assert [t.seq for t in fresh] == [0, 1, 2, 3]
    assert len(stale) > 10  # ~10 ticks per frame at 40 Hz over a 4 fps source
    for t in stale:
        prev = max((f for f in fresh if f.t_decision < t.t_decision), key=lambda f: f.t_decision)
        assert (t.seq, t.class_id, t.probs, t.skipped) == (prev.seq, prev.class_id, prev.probs, 0)
    assert p.summary()["stale"] == len(stale)


def test_live_source_skips_and_accounts_for_every_frame():
    model = build_model(ModelConfig(encoder="alexnet", input_size=[96, 96], hidden=256))  # slower than the source
    with Predictor(model, "synthetic:bounce?fps=0&frames=400", replay="realtime", ring_size=4) as p:
        ticks = list(p)
    s = p.summary()
    assert s["skipped"] > 0
    assert s["frames"] + s["skipped"] == s["captured"] == 400
    assert sum(t.skipped for t in ticks) == s["skipped"]
    assert ticks[-1].seq == 399


def test_sinks_and_background_thread(tmp_path, video):
    model = model_for_video()
    got = []
    out = tmp_path / "t.jsonl"
    p = Predictor(model, str(video), sinks=[CallbackSink(got.append), JsonlSink(out)]).start()
    assert p.join(timeout=60)
    p.close()
    assert [t.seq for t in got] == list(range(60))
    assert threading.current_thread() is threading.main_thread()
    lines = out.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(60))


def test_a_failing_sink_stops_the_threads_and_surfaces(video):
    model = model_for_video()

    def boom(tick):
        if tick.seq == 5:
            raise RuntimeError("sink failed")

    p = Predictor(model, str(video), sinks=[CallbackSink(boom)])
    with pytest.raises(RuntimeError, match="sink failed"):
        with p:
            p.run()
    assert not p.capture.alive


def test_episode_starts_reset_the_state():
    model = build_model(ModelConfig(hidden=16, feature_dim=32))
    with Predictor(model, "ale:Pong?max_episode_steps=30", max_frames=95) as p:
        ticks = list(p)
    assert [t.seq for t in ticks if t.first] == [0, 30, 60, 90]  # 30 steps an episode; a terminal frame is replaced by the next reset
    assert p.summary()["resets"] == 4


def test_feature_ring_order_per_stream():
    ring = FeatureRing(streams=2, size=3, dim=2)
    for i in range(5):
        ring.push(torch.tensor([[float(i)] * 2, [10.0 + i] * 2]))
    assert ring.ordered(0)[:, 0].tolist() == [2.0, 3.0, 4.0]
    assert ring.ordered(1)[:, 0].tolist() == [12.0, 13.0, 14.0]
    ring.clear(0)
    ring.push(torch.tensor([[9.0, 9.0], [15.0, 15.0]]))
    assert ring.ordered(0).tolist() == [[9.0, 9.0]]  # a cleared stream starts again; the other keeps its window
    assert ring.ordered(1)[:, 0].tolist() == [13.0, 14.0, 15.0]


def test_smoothing_is_pure():
    p1, p2 = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1])
    np.testing.assert_allclose(ema(p1, p2, 0.75), [0.625, 0.275, 0.1])
    np.testing.assert_allclose(ema(None, p2, 0.75), p2)
    assert hysteresis(0, np.array([0.45, 0.55, 0.0]), 0.2) == 0  # not enough margin: keep
    assert hysteresis(0, np.array([0.2, 0.8, 0.0]), 0.2) == 1
    assert hysteresis(None, np.array([0.45, 0.55, 0.0]), 0.2) == 1
    assert p1.tolist() == [0.8, 0.1, 0.1]  # inputs untouched


def test_multipredictor_streams_are_lone_predictors_with_their_own_sinks_and_figures(tmp_path):
    """Three real encoded videos of different lengths through one MultiPredictor (one engine call per tick, real
    capture threads): each stream's ticks carry the same fields and decisions as the same source through a lone
    Predictor, each stream's own sinks get its ticks (a JSONL file each), and each stream has its own figures."""
    from conftest import write_video

    videos = [write_video(tmp_path / f"v{i}.avi", frames=20 + 15 * i, size=(96, 72)) for i in range(3)]
    model = model_for_video(4)
    cfg = load_config(overrides=["predict.ema=0.3", "predict.hysteresis=0.05", "predict.backend=torch"])
    got = [[] for _ in videos]
    sinks = [[CallbackSink(got[i].append), JsonlSink(tmp_path / f"s{i}.jsonl")] for i in range(3)]
    with MultiPredictor(model, [str(v) for v in videos], config=cfg, sinks=sinks) as mp:
        rounds = list(mp)
        summary = mp.summary()
    assert len(rounds) == 50 and [sum(r[i] is not None for r in rounds) for i in range(3)] == [20, 35, 50]
    for i, video in enumerate(videos):
        with Predictor(model, str(video), config=cfg) as p:
            alone = list(p)
        assert [t.seq for t in got[i]] == [t.seq for t in alone] == list(range(20 + 15 * i))
        assert [t.class_id for t in got[i]] == [t.class_id for t in alone]
        np.testing.assert_allclose([t.probs for t in got[i]], [t.probs for t in alone], atol=1e-5)
        assert set(got[i][0].to_json()) == set(alone[0].to_json())
        lines = (tmp_path / f"s{i}.jsonl").read_text().splitlines()
        assert [json.loads(line)["seq"] for line in lines] == list(range(20 + 15 * i))
        s = summary["streams"][i]
        assert (s["frames"], s["ticks"], s["resets"], s["skipped"]) == (20 + 15 * i, 20 + 15 * i, 1, 0)
        assert s["latency_ms_p99"] >= s["latency_ms_p50"] > 0 and s["source"] == str(video)


def test_multipredictor_at_a_fixed_rate_repeats_a_silent_stream_and_keeps_its_state(tmp_path):
    """With tick_hz, a stream with no new frame says its last decision again (stale) while the others go on; its
    recurrent state is not advanced by the frames the others brought."""
    model = model_for_video(5)
    cfg = load_config(overrides=["predict.backend=torch", "predict.tick_hz=50", "replay=realtime"])
    specs = ["synthetic:bounce?fps=50&frames=60&width=84&height=84", "synthetic:bounce?fps=10&frames=12&width=84&height=84"]
    with MultiPredictor(model, specs, config=cfg) as mp:
        rounds = list(mp)
        summary = mp.summary()
    slow = [r[1] for r in rounds if r[1] is not None]
    assert summary["streams"][1]["stale"] > 0 and any(t.stale for t in slow)
    fresh = [t for t in slow if not t.stale]
    with Predictor(model, specs[1], config=load_config(overrides=["predict.backend=torch"])) as p:
        alone = {t.seq: t.probs for t in p}
    for t in fresh:  # the same decision on each frame as alone: the others' ticks did not move its memory
        np.testing.assert_allclose(t.probs, alone[t.seq], atol=1e-5)
