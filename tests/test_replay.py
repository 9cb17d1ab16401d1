"""Recorded video in lockstep, decided in chunks: the same ticks as one frame at a time and as the offline forward."""

import numpy as np
import pytest
import torch

from stream_predictor import Predictor, load_config
from stream_predictor.config import ModelConfig
from stream_predictor.model import build_model
from stream_predictor.runtime.tick import Sink
from stream_predictor.sources.base import Frame, Source

from conftest import decode_all, write_video

STARTS = {0, 23, 50}  # episode starts: resets inside chunks and on a chunk's first frame (chunk 10: frame 50)


class Clip(Source):
    """Decoded frames of a real video, with episode starts where given."""

    def __init__(self, frames: np.ndarray, starts: set[int]) -> None:
        super().__init__()
        self.frames, self.starts, self.name = frames, starts, "clip"

    def read(self, out=None) -> Frame | None:
        if self._seq >= len(self.frames):
            return None
        return self._frame(self.frames[self._seq], first=self._seq in self.starts)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> np.ndarray:
    return decode_all(write_video(tmp_path_factory.mktemp("replay") / "clip.avi", frames=67, size=(64, 48)))


def tiny(encoder: str, frames: np.ndarray, seed: int = 0):
    """Random weights at a tiny size, the head centred on the clip's hidden states: decisions change from frame to frame."""
    torch.manual_seed(seed)
    size = {"nature_cnn": [48, 48], "alexnet": [64, 64]}.get(encoder, [32, 32])
    model = build_model(ModelConfig(encoder=encoder, input_size=size, hidden=24, feature_dim=32, grayscale=encoder == "nature_cnn"))
    with torch.inference_mode():
        out = model.rnn(model.encode_clip(model.preprocess(frames)[None]))[0][0]  # (T, H)
    with torch.no_grad():
        spread = out.std(0) + 1e-6  # logits of about ±3 on the clip's standardized hidden states
        model.head.weight.copy_(torch.randn(3, out.shape[1]) * 3 / out.shape[1] ** 0.5 / spread)
        model.head.bias.copy_(-model.head.weight @ out.mean(0))
    return model


def expected_probs(model, frames: np.ndarray, mode: str, window: int) -> np.ndarray:
    """The offline forward: over the whole clip with its resets (stateful), or over each frame's window (windowed)."""
    first = torch.tensor([i in STARTS for i in range(len(frames))])
    with torch.inference_mode():
        x = model.preprocess(frames)
        if mode == "stateful":
            return torch.softmax(model(x[None], first=first[None])[0], -1).numpy()
        out, start = [], 0
        for t in range(len(frames)):
            start = t if t in STARTS else start
            out.append(torch.softmax(model(x[None, max(start, t + 1 - window) : t + 1])[0, -1], -1))
        return torch.stack(out).numpy()


def run(model, frames, mode: str, *overrides: str, sinks=()) -> tuple[list, dict]:
    cfg = load_config(overrides=["predict.backend=torch", f"predict.mode={mode}", "predict.window=8", *overrides])
    with Predictor.from_config(model, cfg, Clip(frames, STARTS), sinks=sinks) as p:
        ticks = list(p)
    return ticks, p.summary()


@pytest.mark.parametrize("encoder", ["nature_cnn", "resnet18", "mobilenet_v3_small", "efficientnet_b0", "alexnet"])
@pytest.mark.parametrize("mode", ["stateful", "windowed"])
def test_chunked_replay_equals_the_offline_forward_and_one_frame_ticks(frames, encoder, mode):
    model = tiny(encoder, frames)
    want = expected_probs(model, frames, mode, 8)
    chunked, summary = run(model, frames, mode, "predict.chunk=10")
    single, single_summary = run(model, frames, mode, "predict.chunk=0")
    assert summary["replay"] == "chunked (10 frames per CNN call)"
    assert single_summary["replay"].startswith("one frame per tick")
    assert [t.seq for t in chunked] == list(range(len(frames)))  # one tick per frame, in order: 67 = 6 chunks + 7
    assert [t.first for t in chunked] == [i in STARTS for i in range(len(frames))]
    got = np.array([t.probs for t in chunked])
    assert np.abs(got - want).max() <= 1e-5
    top2 = np.sort(want, -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4  # random weights at tiny sizes can tie two classes to within float rounding
    assert clear.mean() > 0.9
    ids = np.array([[t.class_id for t in chunked], want.argmax(-1), [t.class_id for t in single]])
    assert (ids[:, clear] == ids[1, clear]).all()
    assert len({t.class_id for t in chunked}) > 1
    np.testing.assert_allclose(got, [t.probs for t in single], atol=1e-4)  # both near the offline forward; their gap adds up
    assert summary["frames"] == len(frames) and summary["model_ms_p50"] > 0


class Presses(Sink):
    acts = True

    def __call__(self, tick) -> None:
        pass


def test_chunks_only_where_they_cannot_change_a_decision(frames, tmp_path):
    model = tiny("nature_cnn", frames)
    video = write_video(tmp_path / "v.avi", frames=40, size=(64, 48))
    with Predictor.from_config(model, load_config(overrides=["predict.backend=torch"]), str(video)) as p:
        assert p.chunk == 32 and len(list(p)) == 40  # the default, on a file in lockstep
    assert p.summary()["replay"] == "chunked (32 frames per CNN call)"
    why = {
        ("predict.chunk=0",): "predict.chunk is off",
        ("replay=realtime",): "replay=realtime",
        ("predict.tick_hz=30",): "fixed-rate ticks",
    }
    for overrides, reason in why.items():
        cfg = load_config(overrides=["predict.backend=torch", *overrides])
        p = Predictor.from_config(model, cfg, str(video), replay=cfg.replay)
        assert p.chunk == 1 and reason in p.replay_path, (overrides, p.replay_path)
        p.close()
    ticks, summary = run(model, frames, "stateful", sinks=[Presses()])
    assert summary["replay"] == "one frame per tick (a sink acts on the world)" and len(ticks) == len(frames)


def test_a_game_that_waits_for_each_decision_is_never_chunked(frames):
    from stream_predictor.sources.ale import AleGame

    model = tiny("nature_cnn", frames)
    game = AleGame("Pong", seed=1, sync=True)
    p = Predictor.from_config(model, load_config(overrides=["predict.backend=torch"]), game)
    assert p.chunk == 1 and "the source waits for each decision" in p.replay_path
    p.close()


def test_bench_replay_times_decoding_ticks_and_chunks_side_by_side_with_bfloat16_agreement():
    """`bench --only replay` on a real Pong clip: every contender saw every frame, the ratios are to decoding, and the
    chunked and bfloat16 runs say how often they agree with float32 one frame per tick."""
    from pathlib import Path

    from stream_predictor.tools import bench

    weights = Path(__file__).resolve().parents[1] / "weights" / "pong.safetensors"
    rows = {r["path"]: r for r in bench.replay(weights, frames=48, chunks=(8,), repeats=1)}
    assert rows["decode only (capture thread, OpenCV)"]["vs_decode"] == 1.0
    assert rows["predict, one frame per tick"]["classes_agree"] == 1.0
    assert rows["predict, chunks of 8"]["classes_agree"] == 1.0, "chunked replay decides as single ticks do"
    bf16 = [r for k, r in rows.items() if "bfloat16" in k]
    assert len(bf16) == 2 and all(0.9 <= r["classes_agree"] <= 1.0 for r in bf16)
    assert all(r["fps"] > 0 and r["frames"] == 48 for r in rows.values())
