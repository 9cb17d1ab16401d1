"""RL fine-tuning: the PPO formulas on hand-worked cases, rollouts made by the decision loop against the update's
recomputation, rewards through the loop, a real run in Pong end to end (weights `play` loads, resume, curve), errors, and DDP."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_predictor.config import load_config
from stream_predictor.errors import UserError
from stream_predictor.learn.ppo import clipped_policy_loss, entropy, gae, kl_divergence, kl_weight
from stream_predictor.learn.tune import finished_returns, open_games, recompute, setup, update
from stream_predictor.model import load_aux, load_model, save_model
from stream_predictor.runtime import MultiPredictor
from stream_predictor.runtime.agent import Agent, Decision

from conftest import board_tags, prev_action_model

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = str(ROOT / "weights" / "pong_bc.safetensors")  # the cloned agent, as tune starts from it


# --- the formulas, worked by hand -------------------------------------------------------------------------
def test_gae_matches_a_hand_worked_case():
    # one game, 3 steps, the episode ends with step 1: gamma 0.9, lambda 0.8, V after the rollout 0.3
    # t=2: delta = 2 + 0.9*0.3 - 0.1 = 2.17                 A = 2.17
    # t=1: delta = 0 - 0.2 (episode over: no bootstrap)    A = -0.2
    # t=0: delta = 1 + 0.9*0.2 - 0.5 = 0.68                 A = 0.68 + 0.9*0.8*(-0.2) = 0.536
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.5], [0.2], [0.1]])
    dones = torch.tensor([[0.0], [1.0], [0.0]])
    adv, ret = gae(rewards, values, dones, torch.tensor([0.3]), 0.9, 0.8)
    assert torch.allclose(adv[:, 0], torch.tensor([0.536, -0.2, 2.17]))
    assert torch.allclose(ret[:, 0], torch.tensor([1.036, 0.0, 2.27]))
    # lambda 1, gamma 1, no ends: the advantage is the sum of rewards to go + the last value - V
    adv, _ = gae(torch.ones(4, 2), torch.zeros(4, 2), torch.zeros(4, 2), torch.tensor([1.0, 0.0]), 1.0, 1.0)
    assert adv[:, 0].tolist() == [5.0, 4.0, 3.0, 2.0] and adv[:, 1].tolist() == [4.0, 3.0, 2.0, 1.0]


def test_clipped_policy_loss_takes_the_pessimistic_side():
    # ratio 1.5 with A=+2 (clip 0.2): min(3.0, 1.2*2 = 2.4) = 2.4;  ratio 0.5 with A=-1: min(-0.5, 0.8*-1) = -0.8
    logp = torch.log(torch.tensor([1.5, 0.5]))
    loss = clipped_policy_loss(logp, torch.zeros(2), torch.tensor([2.0, -1.0]), 0.2)
    assert loss.item() == pytest.approx(-(2.4 - 0.8) / 2)
    # inside the clip range the objective is plain ratio * A
    loss = clipped_policy_loss(torch.log(torch.tensor([1.1])), torch.zeros(1), torch.tensor([3.0]), 0.2)
    assert loss.item() == pytest.approx(-3.3)


def test_kl_entropy_and_the_decaying_weight():
    p, q = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.25, 0.75]]))
    assert kl_divergence(p, q).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert kl_divergence(q, q).item() == pytest.approx(0.0, abs=1e-7)
    assert entropy(torch.zeros(1, 3)).item() == pytest.approx(math.log(3))
    assert kl_weight(0.5, 1000, 0) == 0.5 and kl_weight(0.5, 1000, 2000) == pytest.approx(0.125)


# --- rollouts through the decision loop, recomputed by the update ---------------------------------------------------
def _tuner(tmp_path: Path, *overrides: str):
    cfg = load_config("pong", ["tune.envs=2", "tune.rollout=48", "tune.minibatches=2", "tune.threads=1",
                               "source.max_episode_steps=30", f"tune.init={WEIGHTS}", *overrides])
    return setup(cfg, ["ale:Pong"], tmp_path / "t.safetensors", resume=False)


@pytest.mark.parametrize("encoder", ["frozen", "train"])
def test_recomputed_log_probs_and_values_equal_the_rollout(tmp_path, encoder):
    """Before any gradient step, the update's BPTT from the stored start state gives what the engine's stepping gave."""
    t, rollouts = _tuner(tmp_path, f"tune.encoder={encoder}")
    try:
        before = rollouts.next(48)  # a second rollout starts from a carried state
        ro = rollouts.next(48)
    finally:
        rollouts.close()
    assert ro.first[:, 1:].any()  # 30-step episodes: each game restarts inside the rollout, its state reset there
    assert ro.state0[0].abs().sum() > 0  # and the rollout began mid-episode, from a carried state
    # the tick after a rollout completes it (its values are the frames-after values) and is the next one's first step
    assert torch.equal(before.last_value, ro.values[:, 0])
    with torch.no_grad():
        _, logp, values = recompute(t.ac, ro, slice(None), encoder == "train")
    assert (logp - ro.logp).abs().max() <= 1e-5
    assert (values - ro.values).abs().max() <= 1e-5
    assert rollouts.agent.engine.path["encoder"] == "oneDNN prepacked" or not torch.backends.mkldnn.is_available()
    # a step ends its episode where the next frame starts one (30-step episodes: each game ends at least once)
    assert (ro.dones[:, :-1] == ro.first[:, 1:]).all() and (ro.dones.sum(1) >= 1).all()


def test_a_model_that_reads_its_previous_action_is_told_the_class_it_sampled(tmp_path):
    """With `model.prev_action`, each step reads the class sampled on the step before (none after a reset), and the
    update's recomputation reads the same: log-probabilities and values equal the rollout's."""
    save_model(prev_action_model(ROOT / "weights" / "pong_bc.safetensors", scale=3.0), tmp_path / "p.safetensors")
    t, rollouts = _tuner(tmp_path, f"tune.init={tmp_path / 'p.safetensors'}")
    try:
        before, ro = rollouts.next(48), rollouts.next(48)
    finally:
        rollouts.close()
    assert torch.equal(ro.prev[:, 0], torch.where(ro.first[:, 0], -1, before.actions[:, -1]))
    assert torch.equal(ro.prev[:, 1:], torch.where(ro.first[:, 1:], -1, ro.actions[:, :-1]))
    with torch.no_grad():
        _, logp, values = recompute(t.ac, ro, slice(None), False)
        _, blind, _ = recompute(t.ac, replace(ro, prev=torch.full_like(ro.prev, -1)), slice(None), False)
    assert (logp - ro.logp).abs().max() <= 1e-5 and (values - ro.values).abs().max() <= 1e-5
    assert (blind - ro.logp).abs().max() > 1e-3  # without the actions it would have decided otherwise


def test_a_model_without_memory_decides_from_each_frame_alone(tmp_path):
    """Weights trained on single frames (T=1) are tuned as such: every frame resets the state, in the rollout and the update."""
    model = load_model(WEIGHTS)
    model.trained = {"mode": "windowed", "seq_len": 1}
    save_model(model, tmp_path / "t1.safetensors")
    t, rollouts = _tuner(tmp_path, f"tune.init={tmp_path / 't1.safetensors'}")
    try:
        ro = rollouts.next(48)
    finally:
        rollouts.close()
    assert not t.memory and ro.first.all() and not ro.dones.all()  # reset at every frame; episodes end as they do
    with torch.no_grad():
        logits, logp, values = recompute(t.ac, ro, slice(None), False)
        alone = t.ac.model.head(t.ac.model.recurrent(ro.inputs.flatten(0, 1)[:, None])[0][:, 0]).view(logits.shape)
    assert (logp - ro.logp).abs().max() <= 1e-5 and (values - ro.values).abs().max() <= 1e-5
    assert torch.allclose(logits, alone, atol=1e-5)
    model.trained = {"mode": "windowed", "seq_len": 16}
    save_model(model, tmp_path / "w16.safetensors")
    with pytest.raises(UserError, match="windows of 16 frames"):
        _tuner(tmp_path, f"tune.init={tmp_path / 'w16.safetensors'}")


class Stay(Agent):
    """Presses `stay` on every frame: the opponent scores."""

    classes = ["up", "stay", "down"]

    def decide_batch(self, images, first, active):
        return [Decision(1, np.array([0.0, 1.0, 0.0], np.float32)) if a else None for a in active]

    def decide(self, image, first):
        return self.decide_batch(image[None], [first], [True])[0]


def test_ticks_carry_each_games_rewards_and_episode_ends(tmp_path):
    """Through the real loop (capture threads, rings, action sinks): each tick's reward is the score change its frame
    brought, and each finished episode's return is the sum of its ticks' rewards."""
    cfg = load_config("pong", ["source.max_episode_steps=400"])
    games, sinks = open_games(["ale:Pong", "ale:Pong?delay=1"], cfg, Stay.classes, [5, 6])
    rewards, starts = [], []
    with MultiPredictor(Stay(), games, config=cfg, sinks=sinks, replay="lockstep") as mp:
        for ticks in mp:
            rewards.append([t.reward for t in ticks])
            starts.append([t.first for t in ticks])
            if len(rewards) == 801:
                break
    finished = finished_returns(games)
    rewards, starts = np.array(rewards), np.array(starts)
    assert games[0].delay == (0, 0) and games[1].delay == (1, 1)  # the specs taken in turn
    assert (rewards <= 0).all() and rewards.sum() < 0  # only the opponent scores
    assert starts[1:].sum(0).tolist() == [2, 2]  # 400-step episodes end twice in 800 steps
    # an episode's return is the sum of the rewards up to the first frame of the next (which brings its last step's)
    e0 = int(np.flatnonzero(starts[1:, 0])[0]) + 1
    assert sorted(g for g, _ in finished) == [0, 0, 1, 1]
    assert rewards[1: e0 + 1, 0].sum() == [r for g, r in finished if g == 0][0]
    assert finished_returns(games) == []  # each finished episode is reported once


def test_an_update_moves_the_policy_toward_rewarded_actions(tmp_path):
    """Rewards that favour one class, after the value warm-up: one update raises that class's probability."""
    t, rollouts = _tuner(tmp_path, "tune.value_warmup=0", "tune.kl_coef=0", "tune.lr=1e-3")
    try:
        ro = rollouts.next(48)
    finally:
        rollouts.close()
    ro.rewards = (ro.actions == 0).float()  # class 0 (up) is rewarded wherever it was played
    with torch.no_grad():
        before = recompute(t.ac, ro, slice(None), False)[0].softmax(-1)[..., 0].mean()
    t.ac.train()
    stats = update(t, ro)
    with torch.no_grad():
        after = recompute(t.ac, ro, slice(None), False)[0].softmax(-1)[..., 0].mean()
    assert after > before + 0.01 and not stats["value_only"]


def test_value_warmup_leaves_the_policy_as_cloned(tmp_path):
    t, rollouts = _tuner(tmp_path, "tune.value_warmup=1000000")
    try:
        ro = rollouts.next(48)
    finally:
        rollouts.close()
    policy = {k: v.clone() for k, v in t.ac.model.state_dict().items()}
    value = t.ac.value.weight.clone()
    t.ac.train()
    assert update(t, ro)["value_only"]
    assert all(torch.equal(policy[k], v) for k, v in t.ac.model.state_dict().items())
    assert not torch.equal(value, t.ac.value.weight)


# --- the command, end to end ------------------------------------------------------------------------------------
def tune_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", "tune", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


SMALL = ["--config", "pong", "--init", WEIGHTS, "--envs", "2", "tune.rollout=32", "tune.minibatches=2", "tune.threads=1",
         "tune.value_warmup=64", "tune.save_every=128", "source.max_episode_steps=40", "--json"]


def test_tune_runs_resumes_and_writes_weights_play_can_use(tmp_path):
    out = tmp_path / "rl.safetensors"
    r = tune_cli(*SMALL, "--frames", "128", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    first = json.loads(r.stdout.strip().splitlines()[-1])
    assert first["frames"] == 128 and first["updates"] == 2 and first["episodes"] >= 1
    assert first["rollout_frames_per_s"] > 0 and first["update_frames_per_s"] > 0
    run_dir = tmp_path / "rl.run"
    assert (run_dir / "checkpoint.safetensors").exists() and (run_dir / "frames_000000128.safetensors").exists()
    assert (tmp_path / "rl.curve.png").stat().st_size > 5000 and (tmp_path / "rl.tune.json").exists()
    tags = board_tags(tmp_path / "rl.tb")["scalars"]
    assert {"tune/episode_return", "tune/kl_start", "tune/entropy", "tune/value_loss", "tune/approx_kl"} <= set(tags)

    r = tune_cli(*SMALL, "--frames", "256", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in r.stdout and "at 128 frames" in r.stdout
    second = json.loads(r.stdout.strip().splitlines()[-1])
    assert second["frames"] == 256 and second["updates"] == 4
    log = json.loads((tmp_path / "rl.tune.json").read_text())
    assert [h["frames"] for h in log["history"]] == [64, 128, 192, 256]  # the history goes on where it stopped

    # the tuned file is a normal weights file (the value head rides along) that play uses unchanged
    model = load_model(out)
    assert model.classes == ["up", "stay", "down"] and model.trained["mode"] == "stateful"
    assert set(load_aux(out)) == {"value.weight", "value.bias"}
    p = subprocess.run([sys.executable, "run.py", "play", "--weights", str(out), "--json", "source.max_episode_steps=200"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["ticks"] >= 200


@pytest.mark.parametrize("args, message", [
    (["--envs", "2", "--frames", "64"], "tune needs a starting policy"),
    (["--init", WEIGHTS, "--envs", "2", "tune.minibatches=4"], "cannot exceed tune.envs"),
    (["--init", WEIGHTS, "--game", "synthetic:dot"], "tune needs a game source"),
    (["--init", WEIGHTS, "--game", "ale:Pong", "ale:Breakout"], "tune plays one game"),
    (["--init", "nope.safetensors"], "no such weights file"),
])
def test_bad_settings_are_one_line_errors(tmp_path, args, message):
    r = tune_cli(*args, "--out", str(tmp_path / "x.safetensors"), timeout=120)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_ddp_with_two_cpu_processes(tmp_path):
    """torchrun: two learners, each stepping its own games; all-reduced gradients keep their weights identical."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    r = subprocess.run([*launch, "run.py", "tune", *SMALL, "--frames", "256", "--out", str(tmp_path / "ddp.safetensors")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert s["world_size"] == 2 and s["replicas_identical"] is True
    assert s["frames"] == 256 and s["updates"] == 2  # 2 processes × 2 games × 32 steps per update
    assert (tmp_path / "ddp.safetensors").exists()
