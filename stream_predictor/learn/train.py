"""Behaviour cloning: train the CNN+LSTM on recorded sessions. Runs as is under `torchrun --nproc_per_node=K`.

`train()` reads top to bottom: `setup` (processes, data, model, sampler, optimizer), then per epoch
`train_one_epoch` (sample a batch → augment → encode all B·T frames in one CNN batch → LSTM → loss on
every weighted frame → AdamW step with clipping and a cosine schedule) and `end_epoch` (validate on
held-out sessions exactly as the Predictor would decide, keep the best, checkpoint model + optimizer
as safetensors), then `finish` (weights, metrics, plots). Rank 0 alone logs and writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from ..config import Config, TrainConfig
from ..errors import UserError
from ..files import atomic_path, remove_leftovers
from ..model import StreamModel, build_model, load_model, save_model
from ..model.encoders import pretrained_config
from ..model.preprocess import Preprocess
from ..model.stream_model import inputs_widened
from ..runtime.threads import torch_threads
from .board import log_png, log_scalars, open_board
from .data import Data, LaneSampler, WindowSampler, cached_features, load_data, split_sessions
from .metrics import confusion, plot_confusion, plot_curves, scores
from .offline import features_logits, offline_logits

log = logging.getLogger(__name__)


# --- distributed set-up --------------------------------------------------------------------------
def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world) from torchrun's environment; (0, 1) when run plainly."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("train.device is cuda but no CUDA device is available")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device(name)


# --- pieces of one step ------------------------------------------------------------------------------
def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, mirror: torch.Tensor | None,
            prev: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Light augmentation of uint8-valued (B, T, C, h, w) pixels, the same for every frame of a window:
    brightness/contrast jitter, a shift of up to 4 pixels, and a horizontal mirror only when `mirror`
    (K,) says what each class becomes in the mirrored picture (the targets `y` and the classes pressed before, `prev`,
    -1 for none, mirrored with it)."""
    b = x.shape[0]
    x = x.float()
    contrast = 1 + (torch.rand(b, 1, 1, 1, 1, generator=gen) - 0.5) * 0.3
    brightness = (torch.rand(b, 1, 1, 1, 1, generator=gen) - 0.5) * 30
    x = ((x - 128) * contrast.to(x.device) + 128 + brightness.to(x.device)).clamp_(0, 255)
    shifts = torch.randint(-4, 5, (b, 2), generator=gen).tolist()
    x = torch.stack([torch.roll(x[i], tuple(shifts[i]), dims=(-2, -1)) for i in range(b)])
    if mirror is not None:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip.view(b, 1, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip.view(b, 1), mirror.to(y.device)[y], y)
        if prev is not None:
            prev = torch.where(flip.view(b, 1) & (prev >= 0), mirror.to(prev.device)[prev.clamp(min=0)], prev)
    return x, y, prev


def class_weights(counts: np.ndarray, mode: str) -> torch.Tensor | None:
    if mode == "none":
        return None
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max(1, (counts > 0).sum()), 0.0)
    return torch.tensor(w, dtype=torch.float32)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


# --- validation --------------------------------------------------------------------------------------
def evaluate_offline(model: StreamModel, data: Data, mode: str, window: int, features: bool = False) -> dict:
    """Per-frame accuracy on whole sessions, deciding as the Predictor would in `mode` (from cached features when
    `features`: `data` then holds them in place of pixels)."""
    model.eval()
    k = len(data.classes)
    cm = np.zeros((k, k), np.int64)
    loss, n = 0.0, 0
    decide = features_logits if features else offline_logits
    for px, y, first, prev in zip(data.pixels, data.targets, data.firsts, data.prevs):
        logits = decide(model, px, mode, window, first, prev=prev).float().cpu()
        loss += F.cross_entropy(logits, torch.from_numpy(y), reduction="sum").item()
        n += len(y)
        cm += confusion(y, logits.argmax(-1).numpy(), k)
    out = scores(cm, data.classes)
    out["loss"] = loss / max(n, 1)
    return out


def beside(out: Path, suffix: str) -> Path:
    """A file or folder next to the weights file `out`: runs/w.safetensors → runs/w.run, runs/w.tb, …"""
    return out.with_suffix("").with_name(out.stem + suffix)


# --- checkpoints (safetensors, no pickle) -----------------------------------------------------------
def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, meta: dict, prefix: str = "model.",
                    meta_key: str = "checkpoint") -> None:
    """Module weights (under `prefix`), the optimizer's state and `meta` (JSON) in one safetensors file, written atomically."""
    tensors = {f"{prefix}{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for key, value in st.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    with atomic_path(path) as tmp:  # killed or out of disk mid-write: the previous checkpoint stays whole
        save_file(tensors, str(tmp), metadata={meta_key: json.dumps(meta)})


def load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, prefix: str = "model.",
                    meta_key: str = "checkpoint") -> dict:
    """What `save_checkpoint` wrote: the weights and the optimizer state restored in place; returns `meta`."""
    for stale in remove_leftovers(path):  # a run killed while writing its next checkpoint
        log.warning("removed %s, a checkpoint left half-written; resuming from the last complete one", stale)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()[meta_key])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"cannot resume from {path}: {e}") from None
    model.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


# --- set-up ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """One training run: what the epochs share."""

    cfg: Config
    out: Path
    device: torch.device
    rank: int
    world: int
    train_dirs: list[str]
    val_dirs: list[str]
    train_data: Data
    val_data: Data | None
    model: StreamModel
    net: torch.nn.Module  # the model, or its DDP wrapper
    opt: torch.optim.Optimizer
    sampler: WindowSampler | LaneSampler
    total_steps: int
    class_weights: torch.Tensor | None
    mirror: torch.Tensor | None
    gen: torch.Generator
    step: int = 0
    start_epoch: int = 0
    best: float = -1.0
    best_state: dict | None = None
    history: list[dict] = field(default_factory=list)
    frames_seen: int = 0
    board: Any = None  # a TensorBoard writer (rank 0, when installed)
    frozen: bool = False  # the encoder is frozen now (train.freeze_encoder, until train.unfreeze_after epochs)
    features: tuple[Data, Data | None, WindowSampler | LaneSampler] | None = None  # cached features: train, val, sampler
    pixel_sampler: WindowSampler | LaneSampler | None = None
    encode_seconds: float = 0.0  # time spent encoding frames into the feature cache
    state_norm: tuple[torch.Tensor, torch.Tensor] | None = None  # train.state_weight: the targets' mean and std

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def run_dir(self) -> Path:
        return beside(self.out, ".run")

    @property
    def on_features(self) -> bool:
        """Batches and validation come from the feature cache."""
        return self.frozen and self.features is not None

    @property
    def done(self) -> bool:
        return bool(self.cfg.train.max_steps) and self.step >= self.cfg.train.max_steps


def mirror_table(pairs: list[str], classes: list[str]) -> torch.Tensor | None:
    """`train.mirror` pairs (a:b) → what each class becomes in a horizontally flipped picture."""
    if not pairs:
        return None
    table = torch.arange(len(classes))
    for pair in pairs:
        a, _, b = pair.partition(":")
        if a not in classes or b not in classes:
            raise UserError(f"train.mirror pair '{pair}' must name two classes of {classes}")
        table[classes.index(a)], table[classes.index(b)] = classes.index(b), classes.index(a)
    return table


def setup(cfg: Config, data_dirs: list[str], out: str | Path, val_dirs: list[str] | None, progress: bool) -> Run:
    """Devices and processes, data through the model's own preprocessing, the model, the sampler and the optimizer."""
    tc = cfg.train
    device = _device(tc.device)
    rank, world = _init_distributed(device)
    torch.manual_seed(tc.seed)
    if val_dirs is None:
        train_dirs, val_dirs = split_sessions([str(d) for d in data_dirs], tc.val_fraction, tc.seed)
    else:
        train_dirs, val_dirs = [str(d) for d in data_dirs], [str(d) for d in val_dirs]
    resolved = pretrained_config(cfg.model)  # a pretrained encoder brings its preprocessing
    pre = Preprocess(resolved.input_size, resolved.grayscale, resolved.crop, resolved.mean, resolved.std)
    show = progress and rank == 0
    train_data = load_data(train_dirs, pre, tc.cache_dir, tc.label_delay, tc.stride, show)
    val_data = load_data(val_dirs, pre, tc.cache_dir, tc.label_delay, tc.stride, show) if val_dirs else None
    if val_data is not None and val_data.classes != train_data.classes:
        raise UserError(f"validation sessions have classes {val_data.classes}, training sessions {train_data.classes}")

    model_cfg = replace(resolved, classes=list(train_data.classes))  # the classes come from the sessions
    model = (StreamModel(model_cfg) if tc.init else build_model(model_cfg)).to(device)  # init: no pretrained download
    if model_cfg.prev_action and tc.mode == "windowed":
        raise UserError("model.prev_action needs train.mode=stateful: a model that reads its previous action decides "
                        "one tick at a time")
    if tc.init:
        start = load_model(tc.init)
        if replace(start.cfg, prev_action=model_cfg.prev_action) != model_cfg:
            raise UserError(f"train.init {tc.init} has model config {start.cfg}, which differs from {model_cfg}")
        model.load_state_dict(inputs_widened(start.state_dict(), model.state_dict()))
    model.trained = {"mode": tc.mode, "seq_len": tc.seq_len, "label_delay": tc.label_delay, "stride": tc.stride}
    sizes = set(train_data.sizes)
    if len(sizes) == 1 and None not in next(iter(sizes)):
        model.trained["source_size"] = list(next(iter(sizes)))  # (h, w) of the frames it learnt from: `export`'s default

    norm = add_state_head(model, train_data, device) if tc.state_weight > 0 else None
    sampler = make_sampler(train_data, tc, rank, world)
    total_steps = len(sampler) * tc.epochs
    weights = class_weights(train_data.class_counts(), tc.balance)
    # The encoder in a group of its own: while frozen it has no gradients (AdamW leaves it alone); unfrozen, it learns
    # at lr × encoder_lr_scale.
    encoder = list(model.encoder.parameters())
    ids = {id(p) for p in encoder}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr_scale": 1.0},
              {"params": encoder, "lr_scale": tc.encoder_lr_scale if tc.freeze_encoder else 1.0}]
    run = Run(cfg, Path(out), device, rank, world, train_dirs, val_dirs, train_data, val_data, model, model,
              torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay), sampler,
              min(total_steps, tc.max_steps) if tc.max_steps else total_steps,
              weights.to(device) if weights is not None else None, mirror_table(tc.mirror, train_data.classes),
              torch.Generator().manual_seed(tc.seed + rank), pixel_sampler=sampler, state_norm=norm)
    if tc.freeze_encoder and tc.feature_cache:
        t0 = time.monotonic()
        train_f = cached_features(train_data, model, tc.cache_dir, show)
        val_f = cached_features(val_data, model, tc.cache_dir, show) if val_data is not None else None
        run.encode_seconds = time.monotonic() - t0
        run.features = (train_f, val_f, make_sampler(train_f, tc, rank, world))  # the same windows as from pixels
        if tc.augment and show:
            log.info("train.augment does not apply to cached features: no augmentation while the encoder is frozen")
    set_frozen(run, tc.freeze_encoder)
    return run


def add_state_head(model: StreamModel, data: Data, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`train.state_weight`: a linear head from the LSTM's output to the sessions' state targets (the game's state and its
    change, `state_targets`), attached to the model for training only (`save_model` leaves it out). Returns the targets'
    mean and standard deviation over the training frames, which the loss standardises them by."""
    missing = [name for name, s in zip(data.names, data.states) if s.shape[1] == 0]
    if missing or len({s.shape[1] for s in data.states}) != 1:
        raise UserError(f"train.state_weight needs the game's state recorded beside every session's frames (state.csv, "
                        f"written by `record` on a game with a state, e.g. ale:Pong); {len(missing)} of "
                        f"{len(data.names)} sessions have none, e.g. {(missing or data.names)[0]}")
    values = np.concatenate(data.states)
    mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
    model.state_head = torch.nn.Linear(model.cfg.hidden, values.shape[1]).to(device)
    return torch.from_numpy(mean).float().to(device), torch.from_numpy(np.maximum(std, 1e-3)).float().to(device)


def state_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Mean squared error of the standardised state targets, over the frames that count (`weight`) and the values known."""
    target = (target - norm[0]) / norm[1]
    known = torch.isfinite(target) & (weight[..., None] > 0)
    err = (pred.float() - torch.nan_to_num(target)).pow(2) * known
    return err.sum() / known.sum().clamp(min=1)


def make_sampler(data: Data, tc: TrainConfig, rank: int, world: int) -> WindowSampler | LaneSampler:
    """The sampler `train.mode` calls for, over `data` (pixels, or cached features: seeded alike, the same windows)."""
    if tc.mode == "windowed":
        return WindowSampler(data, tc.seq_len, tc.batch_size, tc.windows_per_epoch, tc.seed, rank, world)
    return LaneSampler(data, tc.seq_len, tc.batch_size, tc.burn_in, tc.seed, rank, world)


def set_frozen(run: Run, frozen: bool) -> None:
    """Freeze or unfreeze the encoder: its gradients, the batches (cached features or pixels), the DDP wrapper."""
    run.frozen = frozen
    run.model.encoder.requires_grad_(not frozen)
    run.sampler = run.features[2] if run.on_features else run.pixel_sampler
    # DDP takes the parameters that need gradients when it is made: made again when that changes
    run.net = torch.nn.parallel.DistributedDataParallel(run.model) if run.world > 1 else run.model


def resume_from_checkpoint(run: Run) -> None:
    """Continue from the run's last checkpoint, if there is one."""
    ckpt = run.run_dir / "checkpoint.safetensors"
    if not ckpt.exists():
        return
    meta = load_checkpoint(ckpt, run.model, run.opt)
    run.start_epoch, run.step, run.best, run.history = meta["epoch"] + 1, meta["step"], meta["best"], meta["history"]
    run.best_state = {k: v.clone() for k, v in run.model.state_dict().items()}
    if run.is_main:
        print(f"resumed from {ckpt} at epoch {run.start_epoch}, step {run.step}")


# --- one epoch ------------------------------------------------------------------------------------------
def train_one_epoch(run: Run, epoch: int, progress: bool) -> dict:
    """One pass of the sampler: augment → encode all B·T frames as one CNN batch → LSTM → loss → AdamW step."""
    tc, model, device = run.cfg.train, run.model, run.device
    model.train()
    if run.frozen:
        model.encoder.eval()  # frozen means frozen: batch-norm statistics too
    use_amp = tc.amp and device.type == "cuda"
    t0, frames, loss_sum, correct, count, state_sum, steps = time.monotonic(), 0, 0.0, 0.0, 0.0, 0.0, 0
    state = None  # carried across batches: lanes go on where they stopped; windows reset at their first frame
    bar = tqdm(run.sampler.batches(epoch), total=len(run.sampler), desc=f"epoch {epoch + 1}/{tc.epochs}",
               disable=not (progress and run.is_main), unit="step")
    for batch in bar:
        if run.done:
            break
        batch = batch.to(device)
        x, y, w, prev = batch.pixels, batch.targets, batch.weight, batch.prev
        b, t = y.shape
        if run.on_features:
            clip = x  # (B, T, D) cached features
        else:
            if tc.augment:
                x, y, prev = augment(x, y, run.gen, run.mirror, prev)
            clip = model.preproc.normalize(x.reshape(b * t, *x.shape[2:])).reshape(b, t, *x.shape[2:])
        for group in run.opt.param_groups:
            group["lr"] = lr_at(run.step, run.total_steps, tc.warmup_steps, tc.lr) * group["lr_scale"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = run.net(clip, state, batch.first, return_state=True, features=run.on_features, prev=prev,
                          with_state_head=run.state_norm is not None)
        logits, state = out[:2]
        state = tuple(s.detach() for s in state)  # truncated BPTT: carry the state, not the graph
        per_frame = F.cross_entropy(logits.float().reshape(b * t, -1), y.reshape(-1), weight=run.class_weights,
                                    reduction="none")
        loss = class_loss = (per_frame * w.reshape(-1)).sum() / w.sum().clamp(min=1)
        if run.state_norm is not None:
            aux = state_loss(out[2], batch.state, w, run.state_norm)
            loss = class_loss + tc.state_weight * aux
            state_sum += float(aux)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        run.opt.step()
        run.step += 1
        frames += b * t
        steps += 1
        loss_sum += class_loss.item() * float(w.sum())
        correct += float(((logits.argmax(-1) == y).float() * w).sum())
        count += float(w.sum())
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / max(count, 1):.3f}")
        if run.step % 10 == 0:
            log_scalars(run.board, {"loss": loss.item(), "lr": run.opt.param_groups[0]["lr"]}, run.step, "step/")
    bar.close()
    elapsed = time.monotonic() - t0
    run.frames_seen += frames * run.world
    return {"epoch": epoch + 1, "step": run.step, "train_loss": loss_sum / max(count, 1),
            "train_accuracy": correct / max(count, 1), "frames_per_s": frames * run.world / max(elapsed, 1e-9),
            "lr": run.opt.param_groups[0]["lr"],
            **({"state_loss": state_sum / max(steps, 1)} if run.state_norm is not None else {})}


@torch.no_grad()
def precise_batch_norm(run: Run, epoch: int) -> None:
    """Recompute the encoder's batch-norm statistics over `train.precise_bn` training frames with the weights as they
    are now. The running averages trail weights that change quickly (torchvision's MobileNetV3 averages with momentum
    0.01), and a network judged or run in eval mode with them can be far worse than in training (measured: pose
    task, 0.24 against 0.83 once recomputed)."""
    norms = [m for m in run.model.encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    count = run.cfg.train.precise_bn
    if run.frozen or not norms or not count:
        return
    data = run.train_data
    rng = np.random.default_rng((run.cfg.train.seed, epoch))
    sessions = rng.choice(len(data.pixels), size=count, p=[len(t) / data.frames for t in data.targets])
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over every batch below
    was_training = run.model.encoder.training
    run.model.encoder.train()
    for start in range(0, count, 64):
        if len(sessions[start : start + 64]) < 2:
            break  # batch norm in training mode needs two frames
        frames = [np.asarray(data.pixels[s][rng.integers(len(data.pixels[s]))]) for s in sessions[start : start + 64]]
        run.model.encode(run.model.preproc.normalize(torch.from_numpy(np.stack(frames)).to(run.device)))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    run.model.encoder.train(was_training)


def evaluate_run(run: Run, validation: bool) -> dict:
    """`evaluate_offline` on the validation (or training) sessions, from the feature cache while the encoder is frozen
    (its weights, and so the cached features, are those of every epoch so far)."""
    if run.on_features:
        data = run.features[1] if validation else run.features[0]
    else:
        data = run.val_data if validation else run.train_data
    return evaluate_offline(run.model, data, run.cfg.train.mode, run.cfg.train.seq_len, features=run.on_features)


def end_epoch(run: Run, epoch: int, record: dict) -> None:
    """Validate (or take the training accuracy), keep the best weights, checkpoint, print one line. Rank 0 only."""
    if run.val_data is not None:
        v = evaluate_run(run, validation=True)
        record.update(val_loss=v["loss"], val_accuracy=v["accuracy"], val_macro_f1=v["macro_f1"])
        metric = v["accuracy"]
    else:
        metric = record["train_accuracy"]
    run.history.append(record)
    log_scalars(run.board, record, run.step, "epoch/")
    if metric >= run.best:
        run.best, run.best_state = metric, {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    run.run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run.run_dir / "checkpoint.safetensors", run.model, run.opt,
                    {"epoch": epoch, "step": run.step, "best": run.best, "history": run.history})
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))


def finish(run: Run, seconds: float) -> dict:
    """The best weights, scored once more; weights, metrics JSON, curves and confusion matrix written. Rank 0 only."""
    tc, model = run.cfg.train, run.model
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    final = evaluate_run(run, validation=run.val_data is not None)
    metrics = {
        "train_sessions": run.train_dirs, "val_sessions": run.val_dirs, "classes": run.train_data.classes,
        "mode": tc.mode, "steps": run.step, "epochs": len(run.history), "world_size": run.world,
        "train_frames": run.train_data.frames, "seconds": round(seconds, 2),
        "frames_per_s": round(run.frames_seen / max(seconds, 1e-9), 1), "encode_seconds": round(run.encode_seconds, 2),
        "frozen_encoder": run.cfg.train.freeze_encoder,
        "best_metric": run.best, "final": final, "history": run.history, "config": asdict(tc),
    }
    save_model(model, run.out, extra={"metrics": json.dumps({"val_accuracy": final["accuracy"], "steps": run.step})})
    stem = run.out.with_suffix("")
    Path(f"{stem}.metrics.json").write_text(json.dumps(metrics, indent=1))
    if run.history:
        plot_curves(run.history, f"{stem}.curves.png")
    plot_confusion(np.array(final["confusion"]), run.train_data.classes, f"{stem}.confusion.png",
                   title=f"{'validation' if run.val_data is not None else 'training'} ({tc.mode})")
    log_png(run.board, "confusion", f"{stem}.confusion.png", run.step)
    if run.board is not None:
        run.board.close()
    return metrics


# --- the whole run --------------------------------------------------------------------------------------
def train(cfg: Config, data_dirs: list[str], out: str | Path, val_dirs: list[str] | None = None, resume: bool = False,
          progress: bool = True) -> dict:
    """Train on `data_dirs` (held-out sessions from them, or `val_dirs`), write weights to `out`; returns metrics (rank 0).
    Torch runs on `train.threads` threads meanwhile (0: its default)."""
    with torch_threads(cfg.train.threads):
        return _train(cfg, data_dirs, out, val_dirs, resume, progress)


def _train(cfg: Config, data_dirs: list[str], out: str | Path, val_dirs: list[str] | None, resume: bool,
           progress: bool) -> dict:
    t0 = time.monotonic()
    run = setup(cfg, data_dirs, out, val_dirs, progress)
    if resume:
        resume_from_checkpoint(run)
    if run.is_main:
        run.board = open_board(cfg.train.tensorboard, run.out)
    tc = cfg.train
    for epoch in range(run.start_epoch, tc.epochs):
        if run.done:
            break
        if run.frozen and tc.unfreeze_after and epoch >= tc.unfreeze_after:
            set_frozen(run, False)
            if run.is_main:
                print(f"epoch {epoch + 1}: the encoder trains from here, at lr × {tc.encoder_lr_scale:g}")
        record = train_one_epoch(run, epoch, progress)
        precise_batch_norm(run, epoch)
        if run.is_main:
            end_epoch(run, epoch, record)
        if run.world > 1:
            dist.barrier()
    metrics = finish(run, time.monotonic() - t0) if run.is_main else {}
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics
