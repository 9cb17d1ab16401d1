"""The per-tick fast path (TickEngine, prepacked CPU pieces, CUDA graph) against the plain modules, and batched streams."""

import json

import numpy as np
import pytest
import torch

from stream_predictor import MultiPredictor, UserError
from stream_predictor.config import ModelConfig
from stream_predictor.model import build_model
from stream_predictor.model.fast import _sparse_linear, packed_cell, packed_encoder
from stream_predictor.runtime.engine import TickEngine

from conftest import decode_all
from test_predictor import model_for_video, offline

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="oneDNN is not in this torch build")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def nature(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(ModelConfig(encoder="nature_cnn", input_size=[84, 84], grayscale=True, hidden=64, mean=[0.5], std=[0.5], **kw))


@needs_onednn
@pytest.mark.parametrize("streams", [1, 3])  # one stream: the fc layer is the sparse product over non-zero inputs
def test_packed_encoder_equals_the_module_and_declines_what_it_cannot_pack(streams):
    model = nature()
    enc = packed_encoder(model.encoder, (streams, 1, 84, 84))
    assert enc is not None
    x = torch.randn(streams, 1, 84, 84) * 2
    with torch.inference_mode():
        torch.testing.assert_close(enc(x), model.encoder(x), atol=1e-5, rtol=1e-5)
    resnet = build_model(ModelConfig(encoder="resnet18", input_size=[64, 64]))
    assert packed_encoder(resnet.encoder, (1, 3, 64, 64)) is None  # batch norm, pooling, residuals: the module runs


def test_sparse_linear_equals_the_dense_product_at_any_sparsity():
    w, b = torch.randn(40, 300), torch.randn(40)
    for zeros in (0.0, 0.5, 0.97, 1.0):
        x = torch.randn(1, 300).relu_() * (torch.rand(1, 300) >= zeros)
        torch.testing.assert_close(_sparse_linear(x, w.t().contiguous(), b), torch.nn.functional.linear(x, w, b), atol=1e-5, rtol=1e-5)
    assert torch.equal(_sparse_linear(torch.zeros(1, 300), w.t().contiguous(), None), torch.zeros(1, 40))


@needs_onednn
@pytest.mark.parametrize("layers,streams", [(1, 2), (2, 2), (1, 1), (2, 1)])  # one stream: sparse first-layer gates
def test_packed_cell_follows_the_lstm_over_many_steps(layers, streams):
    model = nature(1, layers=layers)
    cell = packed_cell(model, streams)
    assert cell is not None
    feats = torch.randn(300, streams, model.feature_dim).relu_()  # features come out of a ReLU
    ref = fast = model.init_state(streams)
    with torch.inference_mode():
        for t in range(300):
            want, ref = model.step_features(feats[t], ref)
            got, fast = cell(feats[t], fast)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    assert packed_cell(nature(temporal="gru")) is None


@pytest.mark.parametrize("fast_cpu", [True, False])
def test_engine_matches_the_offline_model_on_a_real_video_with_a_reset(video, fast_cpu):
    frames = decode_all(video)
    model = model_for_video(0, frames)
    expected_a = offline(model, frames[:25])
    expected_b = offline(model, frames[25:])  # a new episode starts at frame 25
    engine = TickEngine(model, fast_cpu=fast_cpu)
    engine.prepare(*frames.shape[1:3])

    def pointers() -> list[int]:
        return [b.data_ptr() for b in (engine.frames, engine.first, engine.x, engine.features, engine.probs, engine.classes,
                                       *engine.state)]

    before = pointers()
    probs, classes = zip(*(engine(frames[t], [t == 25]) for t in range(len(frames))))
    probs, classes = np.concatenate(probs), np.concatenate(classes)
    # what a CUDA graph relies on: every tick reads and writes the same buffers (fast_cpu=False is the GPU's code path)
    assert pointers() == before
    expected = torch.cat([expected_a, expected_b]).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert classes.tolist() == expected.argmax(-1).tolist()
    assert len(set(classes.tolist())) > 1


@pytest.mark.parametrize("native", [False, True])
def test_bfloat16_engine_on_the_cpu_keeps_the_classes_and_says_how_it_ran(video, native, monkeypatch, caplog):
    """`dtype=bfloat16` on the CPU: `cast_copy` + float32 preprocessing through the module path; the path names the dtype
    and whether the CPU multiplies bfloat16 natively, and a CPU without those instructions gets a warning."""
    import stream_predictor.runtime.engine as engine_module

    monkeypatch.setattr(engine_module, "cpu_bf16_native", lambda: native)
    frames = decode_all(video)
    model = model_for_video(0, frames)
    with caplog.at_level("WARNING"):
        engine = TickEngine(model, dtype="bfloat16")
    assert ("no bfloat16 instructions" in caplog.text) is not native
    got = torch.from_numpy(np.stack([engine(frames[t : t + 1], [t == 0])[0][0] for t in range(len(frames))]))
    assert engine._net.encoder[0][0].weight.dtype == torch.bfloat16 and model.encoder[0][0].weight.dtype == torch.float32
    assert engine.path["device"] == "cpu bfloat16 " + ("(native)" if native else "(emulated: no bfloat16 instructions)")
    assert engine.path["encoder"] == "module"  # the prepacked kernels are float32
    want = offline(model, frames)
    diff = (got - want).abs()
    assert 0 < diff.max() < 0.1 and diff.mean() < 0.03, (diff.max(), diff.mean())  # bfloat16 keeps 8 bits of mantissa
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agree >= 0.8, agree  # this model's classes are often close calls


def test_batched_streams_are_independent_of_each_other(video):
    frames = decode_all(video)[:30]
    model = model_for_video(2, frames)
    rng = np.random.default_rng(0)
    others = rng.integers(0, 256, (2, 30, *frames.shape[1:]), dtype=np.uint8)
    clips = [frames, others[0], others[1]]
    engine = TickEngine(model, streams=3)
    got = [engine(np.stack([c[t] for c in clips]), [False, t == 10, False])[0] for t in range(30)]
    got = np.stack(got, 1)  # (3, T, K)
    np.testing.assert_allclose(got[0], offline(model, frames).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[1, 10:], offline(model, others[0][10:]).numpy(), atol=1e-5)
    np.testing.assert_allclose(got[2], offline(model, others[1]).numpy(), atol=1e-5)


def test_refresh_takes_new_weights_keeps_the_state_and_reports_no_size_change(video, caplog):
    frames = decode_all(video)[:12]
    model = model_for_video(2, frames)
    engine = TickEngine(model)
    for t in range(6):
        engine(frames[t : t + 1], [t == 0])
    kept = [s.clone() for s in engine.state]
    with torch.no_grad():
        model.head.bias.add_(1.0)  # a training step, in effect
    with caplog.at_level("WARNING"):
        engine.refresh()
    assert "frame size changed" not in caplog.text
    for s, k in zip(engine.state, kept):
        torch.testing.assert_close(s, k)
    got = np.stack([engine(frames[t : t + 1], [t == 0])[0][0] for t in range(6, 12)])
    want = offline(model, frames).numpy()[6:]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_engine_rejects_what_the_cpu_cannot_do_and_bad_frames():
    model = nature()
    with pytest.raises(UserError, match="float16 needs a CUDA device"):
        TickEngine(model, dtype="float16")
    with pytest.raises(UserError, match="CUDA graphs"):
        TickEngine(model, graph=True)
    with pytest.raises(UserError, match="dtype"):
        TickEngine(model, dtype="int8")
    with pytest.raises(ValueError, match="uint8"):
        TickEngine(model, streams=2)(np.zeros((1, 84, 84, 3), np.uint8))


def test_multi_predictor_runs_k_real_sources_through_one_engine(video):
    frames = decode_all(video)
    model = model_for_video(0, frames)
    expected = offline(model, frames).argmax(-1).tolist()
    with MultiPredictor(model, [str(video), str(video), str(video)]) as mp:
        rounds = list(mp)
    assert mp.engine.streams == 3 and len(rounds) == len(frames)
    for i in range(3):
        assert [r[i].seq for r in rounds] == list(range(len(frames)))
        assert [r[i].class_id for r in rounds] == expected


def test_multi_predictor_streams_of_different_length(video):
    model = nature()
    with MultiPredictor(model, ["synthetic:bounce?frames=10&width=84&height=84", "synthetic:bounce?frames=25&width=84&height=84"]) as mp:
        rounds = list(mp)
    assert len(rounds) == 25
    assert sum(r[0] is not None for r in rounds) == 10 and all(r[1] is not None for r in rounds)


@needs_cuda
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-4), ("float16", 2e-2), ("bfloat16", 5e-2)])
def test_cuda_graph_replay_matches_the_cpu(video, dtype, tol):
    frames = decode_all(video)
    model = model_for_video(0, frames)
    on_cpu = TickEngine(model)
    cpu = [on_cpu(f, [t == 0])[0] for t, f in enumerate(frames)]
    gpu = TickEngine(model.to("cuda"), dtype=dtype, graph=True)
    got = [gpu(f, [t == 0])[0] for t, f in enumerate(frames)]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(cpu), atol=tol)
    if dtype == "float32":
        assert [int(g.argmax()) for g in got] == [int(c.argmax()) for c in cpu]


def test_bench_json_reports_each_part_in_the_documented_shape():
    from test_cli import cli

    r = cli("bench", "--json", "--encoders", "nature_cnn", "--windows", "4,8", "--repeats", "1",
            "--only", "per_tick,threads,streams,train", timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cpus"] >= 1 and out["cpu"]
    rows = out["per_tick"]
    assert [(row["encoder"], row["device"], row["dtype"], row["N"]) for row in rows] == [("nature_cnn", "cpu", "float32", 4),
                                                                                       ("nature_cnn", "cpu", "float32", 8)]
    for row in rows:
        assert set(row) >= {"encoder", "device", "dtype", "N", "step_ms", "recompute_ms", "speedup"}
        assert row["step_ms"] > 0 and row["speedup"] == pytest.approx(row["recompute_ms"] / row["step_ms"], rel=0.02)
    assert {(t["torch_threads"], t["other_cores"]) for t in out["threads"]} == {(1, "idle"), (2, "idle"), (1, "busy"), (2, "busy")}
    assert [(s["dtype"], s["streams"]) for s in out["streams"]] == [(d, k) for d in ("float32", "bfloat16") for k in (1, 8, 32)]
    assert all(s["frames_per_s"] > 0 for s in out["streams"])
    assert out["train"][0]["frames_per_s"] > 0


def test_bench_rejects_an_unknown_part():
    from test_cli import cli

    r = cli("bench", "--only", "per_tick,warp")
    assert r.returncode == 2 and "warp" in r.stderr and "Traceback" not in r.stderr
