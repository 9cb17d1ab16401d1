"""`model.prev_action`: the class pressed on the previous tick goes into the LSTM beside the frame's features. Held to
the same parity as the frames alone, through every path that decides: the model's offline forward and its stepping,
the engine's kernels, the Predictor's real threads (it tells the model what it pressed, after smoothing), the exported
graph in onnxruntime, recorded sessions (what was pressed, beside the label) and training from them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from stream_predictor import load_config
from stream_predictor.config import ModelConfig
from stream_predictor.errors import UserError
from stream_predictor.model import StreamModel, build_model, load_model, save_model
from stream_predictor.model.export import export_onnx
from stream_predictor.model.stream_model import inputs_widened, with_prev_action
from stream_predictor.runtime.engine import TickEngine
from stream_predictor.runtime.onnx_engine import OnnxEngine
from stream_predictor.runtime.predictor import Predictor
from stream_predictor.session import load_session, previous_pressed
from stream_predictor.tools.bench import _pong_clip
from stream_predictor.tools.triton import explicit_config_text, implicit_config_text

from conftest import ROOT, decode_all, prev_action_model

PONG = ROOT / "weights" / "pong.safetensors"


def small(seed: int = 0) -> StreamModel:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(input_size=[48, 48], hidden=16, feature_dim=32, prev_action=True))
    with torch.no_grad():
        model.rnn.weight_ih_l0[:, -3:] *= 20  # the action's columns matter as much as the frame's
    model.trained = {"mode": "stateful"}
    return model


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A real encoded clip of Pong (the agent's own game), 150 frames."""
    return _pong_clip(tmp_path_factory.mktemp("clip") / "pong.avi", 150)


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_stepping_with_the_previous_action_equals_the_offline_forward():
    model, t = small(), 40
    clip = torch.randn(2, t, 1, 48, 48)
    first = torch.zeros(2, t, dtype=torch.bool)
    first[:, 0] = first[1, 17] = True
    prev = torch.randint(-1, 3, (2, t))
    with torch.inference_mode():
        offline = model(clip, first=first, prev=prev)
        state, online = model.init_state(2), []
        for i in range(t):
            logits, state = model.step(clip[:, i], state, first[:, i], prev[:, i])
            online.append(logits)
        assert (offline - torch.stack(online, 1)).abs().max() <= 1e-5
        assert (model(clip, first=first, prev=(prev + 1) % 3) - offline).abs().max() > 1e-2  # what was pressed counts
        # an episode's first frame has no previous action, whatever is passed
        assert torch.equal(model(clip, first=first, prev=torch.where(first, 2, prev)), offline)
        assert torch.equal(model(clip, first=first, prev=torch.where(first, -1, prev)), offline)
    assert model.rnn.input_size == model.feature_dim + 3


@pytest.mark.parametrize("fast", [True, False], ids=["prepacked", "module"])
def test_the_engine_reads_the_previous_action_on_each_kernel(fast):
    model, t = small(1), 30
    frames = np.random.default_rng(0).integers(0, 255, (t, 2, 60, 80, 3), np.uint8)
    first = np.zeros((t, 2), bool)
    first[0] = first[11, 0] = True
    prev = np.random.default_rng(1).integers(-1, 3, (t, 2))
    engine = TickEngine(model, 2, fast_cpu=fast)
    got = np.stack([engine(frames[i], first[i], prev[i])[0] for i in range(t)], 1)
    with torch.inference_mode():
        pixels = torch.stack([model.preprocess(frames[:, k]) for k in range(2)])
        want = torch.softmax(model(pixels, first=torch.from_numpy(first.T), prev=torch.from_numpy(prev.T)), -1).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    kernel = "prepacked" if fast and torch.backends.mkldnn.is_available() else "module"
    assert engine.path["temporal"] == f"stateful ({kernel} cell), reads the previous action"
    assert not engine.chunked
    with pytest.raises(UserError, match="decides statefully"):
        TickEngine(model, 1, mode="windowed")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_cuda_graph_reads_the_previous_action_as_the_cpu_does():
    """The prev buffer is copied in before each replay of the captured tick."""
    model, t = small(3), 20
    frames = np.random.default_rng(2).integers(0, 255, (t, 2, 60, 80, 3), np.uint8)
    first = np.zeros((t, 2), bool)
    first[0] = True
    prev = np.random.default_rng(3).integers(-1, 3, (t, 2))
    cpu = TickEngine(model, 2)
    want = [cpu(frames[i], first[i], prev[i])[0] for i in range(t)]
    gpu = TickEngine(small(3).to("cuda"), 2, graph=True)
    got = [gpu(frames[i], first[i], prev[i])[0] for i in range(t)]
    np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-4)


def test_a_start_without_it_is_widened_to_decide_exactly_as_before(tmp_path):
    """`with_prev_action` (what `train.init` and `tune.prev_action` do to weights without it): zero weights for the
    action, the same decisions whatever was pressed; `tune.prev_action=true` starts from such a model."""
    start = load_model(PONG)
    model = with_prev_action(start)
    assert model.cfg.prev_action and with_prev_action(model) is model and model.trained == start.trained
    clip = torch.randn(1, 20, 1, 84, 84)
    with torch.inference_mode():
        want = start(clip)
        for p in (-1, 0, 2):
            assert torch.equal(model(clip, prev=torch.full((1, 20), p)), want)
    state = inputs_widened(model.state_dict(), start.state_dict())  # and back: the action's columns dropped
    assert torch.equal(state["rnn.weight_ih_l0"], start.rnn.weight_ih_l0)
    from stream_predictor.learn.tune import setup

    cfg = load_config("pong", ["tune.envs=2", "tune.minibatches=2", "tune.rollout=16", "tune.threads=1", f"tune.init={PONG}",
                               "tune.prev_action=true"])
    t, rollouts = setup(cfg, ["ale:Pong"], tmp_path / "t.safetensors", resume=False)
    try:
        ro = rollouts.next(16)
    finally:
        rollouts.close()
    assert t.ac.model.cfg.prev_action and t.ref.cfg.prev_action and (ro.prev[:, 1:] >= 0).all()


def test_the_predictor_tells_the_model_what_it_pressed(video):
    """Real threads over a real encoded video, with hysteresis: the class pressed is not always the most probable one,
    and the model reads the pressed one. The offline forward given the ticks' classes gives the ticks' probabilities."""
    model = prev_action_model(scale=3.0)
    cfg = load_config(overrides=["predict.backend=torch", "predict.hysteresis=0.3"])
    with torch.inference_mode(), Predictor.from_config(model, cfg, str(video)) as p:
        ticks = list(p)
        summary = p.summary()
    probs = np.array([t.probs for t in ticks])
    pressed = np.array([t.class_id for t in ticks])
    assert (pressed != probs.argmax(1)).any() and len(set(pressed)) > 1
    prev = torch.from_numpy(np.concatenate([[-1], pressed[:-1]]))[None]
    with torch.inference_mode():
        want = torch.softmax(model(model.preprocess(decode_all(video))[None], prev=prev), -1)[0].numpy()
        argmax_fed = torch.softmax(model(model.preprocess(decode_all(video))[None],
                                         prev=torch.from_numpy(np.concatenate([[-1], probs.argmax(1)[:-1]]))[None]), -1)
    np.testing.assert_allclose(probs, want, atol=1e-5)
    assert np.abs(argmax_fed[0].numpy() - want).max() > 1e-3  # fed the argmax instead, it would have decided otherwise
    assert "reads the previous action" in summary["engine"]


def test_the_exported_graph_reads_it_too(tmp_path, video):
    """The graph takes `prev` after `first`; onnxruntime as the backend decides as torch does over a real video, fed back
    the same way; Triton's configs declare the input."""
    model = prev_action_model(scale=3.0)
    out, diff = export_onnx(model, tmp_path / "p.onnx", (210, 160))
    engine = OnnxEngine(out)
    assert diff < 1e-3 and engine.prev_action
    assert [i.name for i in engine.session.get_inputs()] == ["frames", "first", "prev", "h", "c"]
    results = {}
    for backend in ("torch", "onnxruntime"):
        cfg = load_config(overrides=[f"predict.backend={backend}", f"predict.onnx_cache={tmp_path}"])
        with torch.inference_mode(), Predictor.from_config(model, cfg, str(video)) as p:
            results[backend] = (np.array([t.probs for t in p]), p.summary()["engine"])
    np.testing.assert_allclose(results["onnxruntime"][0], results["torch"][0], atol=1e-4)
    assert "onnxruntime" in results["onnxruntime"][1] and "reads the previous action" in results["onnxruntime"][1]
    for text in (explicit_config_text(model, "m", (210, 160)), implicit_config_text(model, "m", (210, 160))):
        assert 'name: "prev" data_type: TYPE_INT64 dims: [ 1 ]' in text
    assert "prev" not in explicit_config_text(load_model(PONG), "m", (210, 160))


def test_a_dagger_recording_keeps_what_the_model_pressed_beside_the_experts_label(tmp_path):
    """`record --policy`: the model plays, the expert labels. pressed.csv holds the model's classes: over the recorded
    (lossless) frames its offline decisions are exactly them; the labels are the expert's."""
    out = tmp_path / "dagger"
    r = run("record", "--config", "pong", "--source", "ale:Pong?seed=3", "--policy", str(ROOT / "weights" / "pong_bc.safetensors"),
            "--frames", "300", "--out", str(out))
    assert r.returncode == 0, r.stderr
    session = load_session(out)
    policy = load_model(ROOT / "weights" / "pong_bc.safetensors")
    with torch.inference_mode():
        frames = np.concatenate([decode_all(s) for s in session.segments])[: session.frames]
        decided = policy(policy.preprocess(frames)[None])[0].argmax(-1).numpy()
    assert np.array_equal(decided, session.pressed) and not np.array_equal(session.pressed, session.labels)
    prev = previous_pressed(session, session.frames)
    assert prev[0] == -1 and np.array_equal(prev[1:], session.pressed[:-1])
    (out / "pressed.csv").unlink()  # a session without it (imported, older): the labels were pressed
    assert np.array_equal(load_session(out).pressed, session.labels)


def test_previous_pressed_with_a_stride_and_episode_starts():
    session = type("S", (), {"pressed": np.arange(10) % 3, "episode_starts": [0, 4]})()
    assert previous_pressed(session, 10).tolist() == [-1, 0, 1, 2, -1, 1, 2, 0, 1, 2]
    assert previous_pressed(session, 10, stride=3).tolist() == [-1, 2, -1, 2]  # frames 0 3 6 9; 6 is 4's kept frame


def test_train_with_it_from_a_start_without_it(tmp_path):
    """Sessions → a model that reads its previous action, started from weights without it (widened); `play` uses it.
    Windowed training is refused in one line."""
    r = run("record", "--source", "synthetic:bounce?width=64&height=48&seed=1", "--frames", "400", "--out", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    base = ["model.input_size=[48,64]", "model.hidden=16", "model.feature_dim=32", f"train.cache_dir={tmp_path / 'cache'}",
            "train.seq_len=16", "train.batch_size=4", "train.threads=1", "train.mode=stateful"]
    r = run("train", "--data", str(tmp_path / "s"), "--out", str(tmp_path / "a.safetensors"), *base, "train.max_steps=5")
    assert r.returncode == 0, r.stderr
    r = run("train", "--data", str(tmp_path / "s"), "--out", str(tmp_path / "b.safetensors"), *base, "train.max_steps=5",
            "model.prev_action=true", f"train.init={tmp_path / 'a.safetensors'}", "--json")
    assert r.returncode == 0, r.stderr
    model = load_model(tmp_path / "b.safetensors")
    assert model.cfg.prev_action and model.rnn.weight_ih_l0[:, -3:].abs().sum() > 0  # it learnt weights for the action
    r = run("eval", "--weights", str(tmp_path / "b.safetensors"), "--data", str(tmp_path / "s"), "--json",
            f"train.cache_dir={tmp_path / 'cache'}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["stream_offline_agreement"] == 1.0  # fed what the stream pressed
    r = run("predict", "--weights", str(tmp_path / "b.safetensors"), "--source", "synthetic:bounce?width=64&height=48",
            "--max-frames", "30", "--out", str(tmp_path / "ticks.jsonl"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["frames"] == 30
    r = run("train", "--data", str(tmp_path / "s"), "--out", str(tmp_path / "c.safetensors"), *base, "train.max_steps=5",
            "model.prev_action=true", "train.mode=windowed")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "train.mode=stateful" in r.stderr


def test_weights_save_and_load_with_it(tmp_path):
    model = small(2)
    save_model(model, tmp_path / "p.safetensors")
    back = load_model(tmp_path / "p.safetensors")
    assert back.cfg.prev_action and torch.equal(back.rnn.weight_ih_l0, model.rnn.weight_ih_l0)


# --- the game's state beside the frames: privileged targets for training (train.state_weight) -----------------------
def test_a_game_recording_keeps_the_ram_state_of_each_frame(tmp_path):
    """state.csv says where the ball is on the frame it sits beside: the ball's pixels are at the RAM position plus one
    fixed offset on every frame where both show a ball (the game waits for the decision, the state is read before)."""
    out = tmp_path / "expert"
    r = run("record", "--config", "pong", "--source", "ale:Pong?seed=3", "--frames", "400", "--out", str(out))
    assert r.returncode == 0, r.stderr
    session = load_session(out)
    assert session.state_names == ["ball_x", "ball_y", "player_y", "enemy_y"] and session.state.shape == (400, 4)
    frames = np.concatenate([decode_all(s) for s in session.segments])
    offsets = []
    for image, (bx, *_) in zip(frames, session.state):
        ys, xs = np.nonzero((image[34:194] == 236).all(-1))  # the ball's colour, inside the walls
        if len(xs) and np.isfinite(bx):
            offsets.append(xs.min() - bx)
    assert len(offsets) > 300 and len(set(offsets)) == 1
    assert np.isnan(session.state[:, 0]).any()  # no ball in play between points: nan, not a position


def test_training_with_the_state_head_learns_it_and_leaves_it_out_of_the_weights(tmp_path):
    for seed in (3, 4):
        r = run("record", "--config", "pong", "--source", f"ale:Pong?seed={seed}", "--frames", "600", "--out",
                str(tmp_path / f"s{seed}"))
        assert r.returncode == 0, r.stderr
    common = ["--config", "pong", "--data", str(tmp_path / "s3"), str(tmp_path / "s4"), f"train.cache_dir={tmp_path / 'c'}",
              f"train.init={PONG}", "train.freeze_encoder=true", "train.threads=1", "train.lr=1e-3", "--json"]
    r = run("train", *common, "--out", str(tmp_path / "w.safetensors"), "train.state_weight=1", "train.epochs=12")
    assert r.returncode == 0, r.stderr
    losses = [h["state_loss"] for h in json.loads((tmp_path / "w.metrics.json").read_text())["history"]]
    assert len(losses) == 12 and losses[-1] < 0.7 * losses[0], losses
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        assert not any("state_head" in k for k in f.keys())
    with safe_open(str(tmp_path / "w.run" / "checkpoint.safetensors"), "pt") as f:
        assert "model.state_head.weight" in f.keys()  # a resumed run goes on with its head
    assert load_model(tmp_path / "w.safetensors").cfg == load_model(PONG).cfg
    r = run("record", "--source", "synthetic:bounce?width=64&height=48", "--frames", "100", "--out", str(tmp_path / "syn"))
    r = run("train", "--data", str(tmp_path / "syn"), "--out", str(tmp_path / "x.safetensors"), "train.state_weight=1",
            "train.max_steps=1", f"train.cache_dir={tmp_path / 'c'}")
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "state.csv" in r.stderr


def test_state_targets_are_the_state_and_its_change_within_an_episode():
    from stream_predictor.learn.data import state_targets

    session = type("S", (), {"state": np.array([[1, 5], [2, 5], [np.nan, 6], [4, 8], [5, 8]], np.float32)})()
    firsts = np.array([True, False, False, True, False])
    got = state_targets(session, 5, 1, firsts)
    want = [[1, 5, np.nan, np.nan], [2, 5, 1, 0], [np.nan, 6, np.nan, 1], [4, 8, np.nan, np.nan], [5, 8, 1, 0]]
    np.testing.assert_array_equal(got, np.array(want, np.float32))
