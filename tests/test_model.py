import json
import pickle
from dataclasses import asdict

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from stream_predictor.config import ModelConfig
from stream_predictor.errors import ConfigError, UserError
from stream_predictor.model import ENCODERS, build_model, load_model, save_model

# (encoder, input size, channels grayscale?, frames stepped). Big encoders get tiny frames and shorter clips.
CASES = [
    ("nature_cnn", [84, 84], True, 1000),
    ("alexnet", [64, 64], True, 1000),
    ("resnet18", [32, 32], False, 120),
    ("mobilenet_v3_small", [32, 32], False, 120),
    ("efficientnet_b0", [32, 32], False, 80),
]


def tiny(encoder="nature_cnn", size=(84, 84), gray=True, hidden=32, temporal="lstm", **kw) -> ModelConfig:
    return ModelConfig(encoder=encoder, input_size=list(size), grayscale=gray, mean=[0.5] if gray else [0.5, 0.5, 0.5],
                       std=[0.5] if gray else [0.25, 0.25, 0.25], hidden=hidden, temporal=temporal, feature_dim=64, **kw)


def test_every_registered_encoder_is_tested():
    assert {c[0] for c in CASES} == set(ENCODERS)


@pytest.mark.parametrize("encoder, size, gray, steps", CASES, ids=[c[0] for c in CASES])
def test_stepping_matches_offline_forward_with_a_reset(encoder, size, gray, steps):
    torch.manual_seed(0)
    model = build_model(tiny(encoder, size, gray))
    c = 1 if gray else 3
    clip = torch.randn(1, steps, c, *size)
    first = torch.zeros(1, steps, dtype=torch.bool)
    first[0, steps // 2] = True
    with torch.inference_mode():
        offline = model(clip, first=first)  # (1, T, K)
        state, online = model.init_state(1), []
        for t in range(steps):
            logits, state = model.step(clip[:, t], state, first[:, t])
            online.append(logits)
        online = torch.stack(online, 1)
    assert offline.shape == (1, steps, 3)
    assert torch.isfinite(offline).all()
    assert (offline - online).abs().max().item() <= 1e-5
    # The reset really happened: without it, the second half differs.
    with torch.inference_mode():
        no_reset = model(clip)
    assert (no_reset[:, steps // 2 + 1] - offline[:, steps // 2 + 1]).abs().max() > 1e-6


@pytest.mark.parametrize("temporal", ["lstm", "gru"])
def test_stepping_two_layer_lstm_and_gru(temporal):
    torch.manual_seed(4)
    model = build_model(tiny(temporal=temporal, layers=2, dropout=0.3))
    clip = torch.randn(2, 200, 1, 84, 84)
    first = torch.zeros(2, 200, dtype=torch.bool)
    first[0, 70] = first[1, 150] = True
    with torch.inference_mode():
        offline = model(clip, first=first)
        state, online = model.init_state(2), []
        for t in range(200):
            logits, state = model.step(clip[:, t], state, first[:, t])
            online.append(logits)
    assert (offline - torch.stack(online, 1)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("temporal", ["lstm", "gru"])
def test_window_equals_forward_over_the_last_n_frames(temporal):
    torch.manual_seed(1)
    model = build_model(tiny(temporal=temporal, layers=2))
    clip = torch.randn(1, 40, 1, 84, 84)
    with torch.inference_mode():
        feats = model.encode_clip(clip)  # (1, 40, D), each frame encoded once
        for end in (5, 16, 40):
            n = min(end, 16)
            expected = model(clip[:, end - n : end])[:, -1]
            got = model.window(feats[:, end - n : end])
            assert (got - expected).abs().max().item() <= 1e-5


def test_streams_in_a_batch_are_independent():
    torch.manual_seed(2)
    model = build_model(tiny())
    a = torch.randn(2, 30, 1, 84, 84)
    b = a.clone()
    b[1] = torch.randn(30, 1, 84, 84)  # only stream 1 changes
    first = torch.zeros(2, 30, dtype=torch.bool)
    first[1, 10] = True  # and only stream 1 resets
    with torch.inference_mode():
        out_a, out_b = model(a, first=first), model(b, first=first)
        sa, sb, step_a, step_b = model.init_state(2), model.init_state(2), [], []
        for t in range(30):
            la, sa = model.step(a[:, t], sa, first[:, t])
            lb, sb = model.step(b[:, t], sb, first[:, t])
            step_a.append(la)
            step_b.append(lb)
        single = model(a[:1])
    assert torch.allclose(out_a[0], out_b[0], atol=1e-6, rtol=0)
    assert torch.allclose(torch.stack(step_a, 1)[0], torch.stack(step_b, 1)[0], atol=1e-6, rtol=0)
    assert torch.allclose(out_a[0], single[0], atol=1e-5, rtol=0)  # stream 0 never saw stream 1's reset
    assert not torch.allclose(out_a[1], out_b[1])


def test_preprocess_bgr_to_gray_crop_and_rgb():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    gray = build_model(tiny(size=(60, 80)))
    x = gray.preprocess(frame)  # no resize: exactly luma, normalised
    assert x.shape == (1, 60, 80)
    ref = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    assert np.abs((x[0].numpy() * 0.5 + 0.5) - ref).max() < 1.0 / 255 + 1e-6
    rgb = build_model(tiny("resnet18", (20, 30), gray=False, crop=[10, 5, 30, 20]))
    y = rgb.preprocess(frame[None])
    assert y.shape == (1, 3, 20, 30)
    crop = frame[5:25, 10:40, ::-1].astype(np.float32) / 255.0  # RGB
    np.testing.assert_allclose(y[0].permute(1, 2, 0).numpy() * 0.25 + 0.5, crop, atol=1e-6)
    resized = build_model(tiny()).preprocess(frame)
    assert resized.shape == (1, 84, 84) and torch.isfinite(resized).all()


def test_save_and_load_roundtrip(tmp_path):
    torch.manual_seed(3)
    model = build_model(tiny(classes=["up", "stay", "down"], crop=[0, 10, 160, 180]))
    path = save_model(model, tmp_path / "m.safetensors", extra={"note": "test"})
    loaded = load_model(path)
    assert loaded.classes == ["up", "stay", "down"] and loaded.cfg == model.cfg
    clip = torch.randn(1, 5, 1, 84, 84)
    with torch.inference_mode():
        assert torch.equal(model(clip), loaded(clip))
    assert path.read_bytes()[:8] != pickle.dumps(0)[:8]


def test_load_errors(tmp_path):
    model = build_model(tiny(hidden=32))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    good = save_model(model, tmp_path / "good.safetensors")
    meta_other = build_model(tiny(hidden=48))
    wrong_shape = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong_shape), metadata={"format": "stream_predictor/1", "model_config": json.dumps(asdict(meta_other.cfg))})
    with pytest.raises(UserError, match="shape mismatch"):
        load_model(wrong_shape)
    missing = tmp_path / "missing.safetensors"
    partial = {k: v for k, v in state.items() if not k.startswith("head.")}
    save_file(partial, str(missing), metadata={"format": "stream_predictor/1", "model_config": json.dumps(asdict(model.cfg))})
    with pytest.raises(UserError, match="missing 2"):
        load_model(missing)
    foreign = tmp_path / "foreign.safetensors"
    save_file(state, str(foreign))
    with pytest.raises(UserError, match="not stream_predictor weights"):
        load_model(foreign)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UserError):
        load_model(truncated)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled


def test_pickle_checkpoint_is_refused_without_executing(tmp_path):
    marker = tmp_path / "executed"
    for name in ("evil.pt", "evil.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps(Payload(marker)))
        with pytest.raises(UserError, match="not a safetensors"):
            load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("key, value, words", [
    ("encoder", "vgg99", "unknown encoder"),
    ("input_size", [84], "input_size"),
    ("crop", [1, 2], "crop"),
    ("classes", ["a"], "classes"),
])
def test_bad_model_config(key, value, words):
    cfg = tiny()
    setattr(cfg, key, value)
    with pytest.raises(ConfigError, match=words):
        build_model(cfg)


def test_input_too_small_for_encoder():
    with pytest.raises(ConfigError, match="too small"):
        build_model(tiny(size=(16, 16)))


@pytest.mark.parametrize("temporal,layers", [("lstm", 1), ("lstm", 2), ("gru", 1)])
def test_a_reset_before_every_frame_runs_as_one_batch_and_equals_the_cut_sequence(temporal, layers):
    """Every frame first (a model of single frames in `tune`): one call over B·T length-1 sequences, the same outputs and
    final state as cutting the sequence before every frame."""
    torch.manual_seed(0)
    model = build_model(tiny(temporal=temporal, layers=layers)).eval()
    feats = torch.randn(3, 7, model.feature_dim)
    state = tuple(torch.randn_like(s) for s in model.init_state(3))
    first = torch.ones(3, 7, dtype=torch.bool)
    with torch.no_grad():
        out, last = model.recurrent(feats, state, first)
        outs, st = [], state
        for t in range(7):  # the long way: a reset, then one step
            o, st = model._rnn(feats[:, t : t + 1], model.reset_state(st, first[:, t]))
            outs.append(o)
    torch.testing.assert_close(out, torch.cat(outs, 1), rtol=0, atol=1e-6)
    for a, b in zip(last, st):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
