"""`tune`: reinforcement-learning fine-tuning of a cloned policy in the game, from the game's reward alone.

PPO (clipped objective, GAE, entropy bonus) on the CNN+LSTM, plus a KL penalty toward the frozen starting
policy whose weight halves every `tune.kl_half_life` frames (VPT's recipe): the first updates, from a value
function that knows nothing yet, cannot wreck the cloned play. For the first `tune.value_warmup` frames
only the value head learns.

Reads top to bottom: `open_games` (K games, each a source waiting for its action, with the sink that presses
it) → the rollouts, made by the runtime's decision loop (`runtime/rollout.py`: a MultiPredictor over the K
games, one batched engine call per tick, each game's episode start resetting its own state; its sampling agent
keeps the inputs, classes, log-probabilities, values and the state at the rollout's start) → `recompute` (the
same log-probabilities and values from the stored inputs, by truncated BPTT from that state) → `update` (PPO
epochs over whole sequences) → `tune` (the loop, checkpoints, snapshots, curves). A rollout is complete one
tick after its last step (the reward arrives with the next frame); the update runs there, and that tick,
decided before the update, starts the next rollout. The policy head is the model's classifier, so `play`,
`predict` and the keys sink use tuned weights unchanged; the value head rides in the same file as `aux.value.*`.

With `tune.encoder: frozen` (the default) the CNN runs once per frame, in the rollout, and the update
reuses the features the engine cached; with `train` the update encodes the stored pixels again.
Runs as is under `torchrun --nproc_per_node=N`: each process steps its own games, DDP all-reduces.
"""

from __future__ import annotations

import copy
import json
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..config import Config, Trained, TuneConfig
from ..errors import UserError
from ..games.agents import ActionSink
from ..games.registry import actions_for
from ..model import StreamModel, load_aux, load_model, save_model
from ..model.stream_model import State, with_prev_action
from ..runtime.rollout import Rollout, Rollouts, SamplingAgent
from ..runtime.threads import torch_threads
from ..sources import open_source, parse_spec
from ..sources.ale import AleGame
from .board import log_scalars, open_board
from .metrics import _plt
from .ppo import clipped_policy_loss, entropy, gae, kl_divergence, kl_weight
from .train import _device, _init_distributed, beside, load_checkpoint, save_checkpoint


class ActorCritic(nn.Module):
    """The policy (a StreamModel: its head is the classifier that `play` uses) and a value head on the LSTM's output."""

    def __init__(self, model: StreamModel) -> None:
        super().__init__()
        self.model = model
        self.value = nn.Linear(model.cfg.hidden, 1)

    def forward(self, inputs: torch.Tensor, state: State, first: torch.Tensor, encode: bool,
                detach_value: bool = False, prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, T, D) features, or (K, T, C, h, w) pixels when `encode` → logits (K, T, classes) and values (K, T);
        `prev` (K, T): the classes played on the ticks before (model.prev_action)."""
        feats = self.model.encode_clip(inputs) if encode else inputs
        out, _ = self.model.recurrent(feats, state, first, prev)
        return self.model.head(out), self.value(out.detach() if detach_value else out).squeeze(-1)


def open_games(specs: list[str], cfg: Config, classes: list[str], seeds: list[int]) -> tuple[list[AleGame], list[list]]:
    """K games, each waiting for its action (lockstep), seeded apart, and each game's sink pressing the decided class.

    `specs` are taken in turn, so one run can mix the plain game with one whose timing is faulty
    (`ale:Pong?delay=0-1&repeat=0.05`, see sources/ale.py).
    """
    parsed = [parse_spec(s) for s in specs]
    for spec, p in zip(specs, parsed):
        if p.kind != "ale":
            raise UserError(f"tune needs a game source such as ale:Pong, not '{spec}'")
    if len({p.target for p in parsed}) > 1:
        raise UserError(f"tune plays one game, got {sorted({p.target for p in parsed})}")
    actions_for(parsed[0].target, classes)  # every class has an action in the game, or one line says which has not
    games: list[AleGame] = []
    try:
        for i, seed in enumerate(seeds):
            g = open_source(specs[i % len(specs)], cfg.source, {"seed": seed, "sync": True})
            assert isinstance(g, AleGame)
            games.append(g)
    except BaseException:
        for g in games:
            g.close()
        raise
    return games, [[ActionSink(g, classes)] for g in games]


def finished_returns(games: list[AleGame]) -> list[tuple[int, float]]:
    """(game index, return) of the episodes finished since the last call."""
    out = []
    for i, g in enumerate(games):
        done = list(g.episode_returns)
        out += [(i, r) for r in done]
        del g.episode_returns[: len(done)]  # the capture thread may append meanwhile
    return out


def recompute(net: nn.Module, ro: Rollout, games: slice | torch.Tensor, encode: bool,
              detach_value: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, log-probabilities of the played classes and values for some games' whole sequences, by BPTT from state0."""
    state = tuple(s[:, games] for s in ro.state0)
    logits, values = net(ro.inputs[games], state, ro.first[games], encode, detach_value, ro.prev[games])
    logp = F.log_softmax(logits, -1).gather(-1, ro.actions[games, :, None]).squeeze(-1)
    return logits, logp, values


@dataclass
class Tuner:
    """One fine-tuning run: what the updates share."""

    cfg: Config
    tc: TuneConfig
    out: Path
    rank: int
    world: int
    ac: ActorCritic
    net: nn.Module  # ac, or its DDP wrapper
    ref: StreamModel  # the frozen starting policy
    opt: torch.optim.Optimizer
    gen: torch.Generator
    memory: bool = True  # False for a model trained on single frames (T=1): it decides from each frame alone
    frames: int = 0  # over all processes
    updates: int = 0
    history: list[dict] = field(default_factory=list)  # one record per update
    episodes: list[tuple] = field(default_factory=list)  # (frames when it ended, return, game index)
    source_size: tuple[int, int] | None = None  # (h, w) of the games' frames, recorded with the weights

    @property
    def run_dir(self) -> Path:
        return beside(self.out, ".run")

    @property
    def frames_per_update(self) -> int:
        return self.tc.envs * self.tc.rollout * self.world

    @property
    def total_updates(self) -> int:
        return max(1, self.tc.frames // self.frames_per_update)


def update(t: Tuner, ro: Rollout) -> dict:
    """PPO epochs over the rollout: each minibatch is whole sequences of some games, from their stored start states."""
    tc, encode = t.tc, t.tc.encoder == "train"
    warm = t.frames < tc.value_warmup
    adv, ret = gae(ro.rewards.T, ro.values.T, ro.dones.T, ro.last_value, tc.gamma, tc.gae_lambda)
    adv, ret = adv.T.contiguous(), ret.T.contiguous()
    with torch.no_grad():
        ref_logits = t.ref(ro.inputs, ro.state0, ro.first, prev=ro.prev) if encode else \
            t.ref.temporal(ro.inputs, ro.state0, ro.first, ro.prev)[0]
    klw = kl_weight(tc.kl_coef, tc.kl_half_life, t.frames)
    for group in t.opt.param_groups:
        group["lr"] = tc.lr * max(0.0, 1.0 - t.updates / t.total_updates)
    k = ro.actions.shape[0]
    stats: dict[str, list[float]] = {n: [] for n in ("policy_loss", "value_loss", "entropy", "kl_start", "approx_kl", "clip_frac")}
    for _ in range(tc.epochs):
        for games in torch.randperm(k, generator=t.gen).chunk(tc.minibatches):
            logits, logp, values = recompute(t.net, ro, games, encode, detach_value=warm)
            a = adv[games]
            a = (a - a.mean()) / (a.std() + 1e-8)
            pg = clipped_policy_loss(logp, ro.logp[games], a, tc.clip)
            v_loss = 0.5 * (values - ret[games]).pow(2).mean()
            ent = entropy(logits).mean()
            kl = kl_divergence(logits, ref_logits[games]).mean()
            loss = tc.vf_coef * v_loss if warm else pg + tc.vf_coef * v_loss - tc.ent_coef * ent + klw * kl
            t.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(t.ac.parameters(), tc.max_grad_norm)
            t.opt.step()
            with torch.no_grad():
                ratio = (logp - ro.logp[games]).exp()
                for name, v in (("policy_loss", pg), ("value_loss", v_loss), ("entropy", ent), ("kl_start", kl),
                                ("approx_kl", ((ratio - 1) - ratio.log()).mean()),
                                ("clip_frac", ((ratio - 1).abs() > tc.clip).float().mean())):
                    stats[name].append(float(v))
    var = float(ret.var())
    explained = 1 - float((ret - ro.values).var()) / var if var > 0 else float("nan")
    return {**{n: float(np.mean(v)) for n, v in stats.items()}, "kl_weight": klw, "value_only": warm,
            "explained_variance": explained, "lr": t.opt.param_groups[0]["lr"]}


# --- checkpoints (safetensors, no pickle) and snapshots ----------------------------------------------------
CKPT = {"prefix": "ac.", "meta_key": "tune_checkpoint"}


def save_tuner(t: Tuner) -> None:
    meta = {"frames": t.frames, "updates": t.updates, "history": t.history, "episodes": t.episodes, "init": t.tc.init,
            "world": t.world, "envs": t.tc.envs}
    save_checkpoint(t.run_dir / "checkpoint.safetensors", t.ac, t.opt, meta, **CKPT)


def load_tuner(t: Tuner) -> bool:
    path = t.run_dir / "checkpoint.safetensors"
    if not path.exists():
        return False
    meta = load_checkpoint(path, t.ac, t.opt, **CKPT)
    if (meta["world"], meta["envs"]) != (t.world, t.tc.envs):
        raise UserError(f"{path} was written by {meta['world']} process(es) × {meta['envs']} games; resume with the same")
    t.frames, t.updates, t.history = meta["frames"], meta["updates"], meta["history"]
    t.episodes = [tuple(e) for e in meta["episodes"]]
    return True


def save_policy(t: Tuner, path: Path) -> Path:
    """Playable weights: the policy as a StreamModel file, the value head beside it as `aux.value.*`."""
    model = t.ac.model
    model.trained = {**model.trained, "tuned": {"init": t.tc.init, "frames": t.frames}}
    if t.source_size:
        model.trained["source_size"] = list(t.source_size)
    return save_model(model, path, extra={"tune": json.dumps({"frames": t.frames, "config": asdict(t.tc)})},
                      aux={f"value.{k}": v for k, v in t.ac.value.state_dict().items()})


def plot_returns(t: Tuner, path: Path) -> Path:
    """Return of each finished episode against frames, with the mean of the last 20; KL to the start and entropy."""
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    if t.episodes:
        x, y = np.array([e[:2] for e in t.episodes]).T
        a.plot(x, y, ".", alpha=0.35, label="episode")
        a.plot(x, [np.mean(y[max(0, i - 19): i + 1]) for i in range(len(y))], label="mean of last 20")
        a.legend()
    a.set_xlabel("frames")
    a.set_ylabel("return")
    if t.history:
        x = [h["frames"] for h in t.history]
        b.plot(x, [h["kl_start"] for h in t.history], label="KL to start")
        b.plot(x, [h["entropy"] for h in t.history], label="entropy")
        b.set_xlabel("frames")
        b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the run ---------------------------------------------------------------------------------------------
def check(tc: TuneConfig) -> None:
    if not tc.init:
        raise UserError("tune needs a starting policy: --init WEIGHTS (a cloned agent, e.g. weights/pong_bc.safetensors)")
    for name in ("envs", "rollout", "epochs", "minibatches", "frames"):
        if getattr(tc, name) < 1:
            raise UserError(f"tune.{name} must be at least 1, got {getattr(tc, name)}")
    if tc.minibatches > tc.envs:
        raise UserError(f"tune.minibatches ({tc.minibatches}) cannot exceed tune.envs ({tc.envs}): a minibatch is whole games")
    if tc.rollout < 2:
        raise UserError("tune.rollout must be at least 2 steps")
    if not 0 < tc.gamma <= 1 or not 0 <= tc.gae_lambda <= 1 or tc.clip <= 0 or tc.lr <= 0:
        raise UserError("tune needs 0 < gamma <= 1, 0 <= gae_lambda <= 1, clip > 0 and lr > 0")


def setup(cfg: Config, specs: list[str], out: str | Path, resume: bool) -> tuple[Tuner, Rollouts]:
    """Processes, the policy and its frozen copy, the value head, the optimizer, and the games played through the
    decision loop by a sampling agent."""
    tc = cfg.tune
    check(tc)
    rank, world = _init_distributed(_device("cpu"))
    torch.manual_seed(tc.seed + rank)
    model = load_model(tc.init)
    if tc.prev_action:
        model = with_prev_action(model)
    trained = Trained.of(model.trained)
    memory = trained.mode == "stateful"
    if trained.over_windows:
        raise UserError(f"{tc.init} decides over windows of {trained.seq_len} frames; tune steps the LSTM "
                        "one frame at a time, so it takes models trained statefully, or on single frames (seq_len 1)")
    ref = copy.deepcopy(model).requires_grad_(False)
    ac = ActorCritic(model)
    aux = load_aux(tc.init)
    if {"value.weight", "value.bias"} <= set(aux):  # a tuned file: go on with its value head
        ac.value.load_state_dict({"weight": aux["value.weight"], "bias": aux["value.bias"]})
    if tc.encoder == "frozen":
        model.encoder.requires_grad_(False)
    params = [p for p in ac.parameters() if p.requires_grad]
    net = nn.parallel.DistributedDataParallel(ac, find_unused_parameters=True) if world > 1 else ac
    t = Tuner(cfg, tc, Path(out), rank, world, ac, net, ref, torch.optim.Adam(params, lr=tc.lr, eps=1e-5),
              torch.Generator().manual_seed(tc.seed + rank), memory)
    resumed = resume and load_tuner(t)
    # each game has its own seeds (episode e of game g: seed + 10,000·g + e); after a resume they move on
    seeds = [tc.seed + 10_000 * (rank * tc.envs + i) + t.updates for i in range(tc.envs)]
    games, sinks = open_games(specs, cfg, model.classes, seeds)
    agent = SamplingAgent(model.eval(), ac.value, cfg, tc.envs, t.gen, memory, tc.encoder == "train")
    rollouts = Rollouts(agent, games, sinks, cfg, tc.threads)
    if resumed and rank == 0:
        print(f"resumed from {t.run_dir / 'checkpoint.safetensors'} at {t.frames:,} frames (update {t.updates}); "
              "the games start again on fresh seeds")
    return t, rollouts


def replicas_identical(t: Tuner) -> bool:
    """Whether every process ends with the same weights (each stepped its own games: only all-reduced gradients do that)."""
    if t.world == 1:
        return True
    flat = torch.cat([p.detach().flatten() for p in t.ac.parameters()])
    copies = [torch.zeros_like(flat) for _ in range(t.world)]
    dist.all_gather(copies, flat)
    return all(torch.equal(copies[0], c) for c in copies[1:])


def one_update(t: Tuner, rollouts: Rollouts, recent: deque, board) -> dict:
    """One rollout in the games and one PPO update from it; the update's record (also kept in `t.history`)."""
    a = time.monotonic()
    ro = rollouts.next(t.tc.rollout)
    b = time.monotonic()
    t.ac.train()
    record = update(t, ro)
    t.ac.model.eval()
    rollouts.agent.refresh()  # the fast kernels take the new weights
    t.source_size = rollouts.agent.source_size
    c = time.monotonic()
    t.updates += 1
    t.frames += t.frames_per_update
    for game, r in finished_returns(rollouts.games):
        t.episodes.append((t.frames, r, game))
        recent.append(r)
        log_scalars(board, {"episode_return": r}, t.frames, "tune/")
    record.update(frames=t.frames, update=t.updates, return_20=float(np.mean(recent)) if recent else None,
                  rollout_s=round(b - a, 3), update_s=round(c - b, 3))
    t.history.append(record)
    log_scalars(board, record, t.frames, "tune/")
    return record


def tune(cfg: Config, specs: list[str], out: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune `tune.init` in the games `specs` (taken in turn) for `tune.frames` frames.

    Weights go to `out`, snapshots and checkpoints beside it.

    Returns (on rank 0) the summary: frames, wall time, frames/s of the rollouts, of the updates and overall. Torch runs
    on `tune.threads` threads meanwhile.
    """
    with torch_threads(cfg.tune.threads):
        return _tune(cfg, specs, out, resume, progress)


def _tune(cfg: Config, specs: list[str], out: str | Path, resume: bool, progress: bool) -> dict:
    t, rollouts = setup(cfg, specs, out, resume)
    tc, main = t.tc, t.rank == 0
    recent = deque((e[1] for e in t.episodes[-20:]), maxlen=20)
    bar = tqdm(total=t.total_updates * t.frames_per_update, initial=t.frames, unit="frame", unit_scale=True,
               disable=not (progress and main), desc="tune")
    t0, rollout_s, update_s, frames_here = time.monotonic(), 0.0, 0.0, 0
    next_save = (t.frames // tc.save_every + 1) * tc.save_every
    board = open_board(tc.tensorboard, t.out) if main else None
    try:
        while t.updates < t.total_updates:
            record = one_update(t, rollouts, recent, board)
            c = time.monotonic()
            rollout_s, update_s = rollout_s + record["rollout_s"], update_s + record["update_s"]
            frames_here += t.frames_per_update
            bar.update(t.frames_per_update)
            bar.set_postfix_str(f"{frames_here / (c - t0):.0f} frame/s, return(20) "
                                f"{'-' if not recent else f'{np.mean(recent):+.1f}'}, KL {record['kl_start']:.3f}"
                                f"{' (value only)' if record['value_only'] else ''}")
            if main and (t.frames >= next_save or t.updates == t.total_updates):
                save_tuner(t)
                save_policy(t, t.run_dir / f"frames_{t.frames:09d}.safetensors")
                plot_returns(t, beside(t.out, ".curve.png"))
                next_save = (t.frames // tc.save_every + 1) * tc.save_every
    finally:
        bar.close()
        rollouts.close()
        if board is not None:
            board.close()
    seconds = time.monotonic() - t0
    identical = replicas_identical(t)
    summary = {}
    if main:
        save_policy(t, t.out)
        summary = {"out": str(t.out), "frames": t.frames, "emulator_frames": t.frames * cfg.source.frameskip,
                   "updates": t.updates, "episodes": len(t.episodes), "return_20": float(np.mean(recent)) if recent else None,
                   "seconds": round(seconds, 1), "frames_per_s": round(frames_here / max(seconds, 1e-9), 1),
                   "rollout_frames_per_s": round(frames_here / t.world / max(rollout_s, 1e-9), 1),
                   "update_frames_per_s": round(frames_here / t.world / max(update_s, 1e-9), 1),
                   "games": specs, "world_size": t.world, "replicas_identical": identical, "envs": tc.envs,
                   "memory": t.memory, "encoder": tc.encoder, "engine": rollouts.agent.engine.path}
        beside(t.out, ".tune.json").write_text(json.dumps({**summary, "history": t.history,
                                                          "episodes": t.episodes, "config": asdict(tc)}))
    if t.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
