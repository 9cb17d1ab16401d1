"""Behaviour cloning: train the CNN+LSTM on recorded sessions. Runs as is under `torchrun --nproc_per_node=K`.

The loop: sample a batch (windows, or the next chunk of every lane) → augment → encode all B·T
frames in one CNN batch → LSTM → loss on every step → AdamW step with clipping and a cosine
schedule. Each epoch: validate on held-out sessions exactly as the Predictor would decide,
checkpoint (model + optimizer, safetensors), keep the best. Rank 0 alone logs and writes files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from .config import Config
from .data import Data, LaneSampler, WindowSampler, load_data, split_sessions
from .errors import UserError
from .metrics import confusion, plot_confusion, plot_curves, scores
from .model import StreamModel, build_model, load_model, save_model
from .model.preprocess import Preprocess
from .offline import offline_logits

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
def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator, mirror: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Light augmentation of uint8-valued (B, T, C, h, w) pixels, the same for every frame of a window:
    brightness/contrast jitter, a shift of up to 4 pixels, and a horizontal mirror only when `mirror`
    (K,) says what each class becomes in the mirrored picture."""
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
    return x, y


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
def evaluate_offline(model: StreamModel, data: Data, mode: str, window: int) -> dict:
    """Per-frame accuracy on whole sessions, deciding as the Predictor would in `mode`."""
    model.eval()
    k = len(data.classes)
    cm = np.zeros((k, k), np.int64)
    loss, n = 0.0, 0
    for px, y, first in zip(data.pixels, data.targets, data.firsts):
        logits = offline_logits(model, px, mode, window, first).float().cpu()
        loss += F.cross_entropy(logits, torch.from_numpy(y), reduction="sum").item()
        n += len(y)
        cm += confusion(y, logits.argmax(-1).numpy(), k)
    out = scores(cm, data.classes)
    out["loss"] = loss / max(n, 1)
    return out


# --- checkpoints (safetensors, no pickle) -----------------------------------------------------------
def save_checkpoint(path: Path, model: StreamModel, opt: torch.optim.Optimizer, meta: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for key, value in st.items():
            tensors[f"opt.{pid}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {**meta, "param_groups": opt_state["param_groups"]}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"checkpoint": json.dumps(meta)})
    tmp.replace(path)


def load_checkpoint(path: Path, model: StreamModel, opt: torch.optim.Optimizer) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise UserError(f"cannot resume from {path}: {e}") from None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


# --- the loop ----------------------------------------------------------------------------------------
def train(cfg: Config, data_dirs: list[str], out: str | Path, val_dirs: list[str] | None = None, resume: bool = False,
          progress: bool = True) -> dict:
    """Train on `data_dirs` (held-out sessions from them, or `val_dirs`), write weights to `out`; returns metrics."""
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = _device(tc.device)
    rank, world = _init_distributed(device)
    is_main = rank == 0
    torch.manual_seed(tc.seed)
    out = Path(out)
    run_dir = out.with_suffix("")
    run_dir = run_dir.parent / f"{run_dir.name}.run"
    if val_dirs is None:
        train_dirs, val_dirs = split_sessions([str(d) for d in data_dirs], tc.val_fraction, tc.seed)
    else:
        train_dirs = [str(d) for d in data_dirs]

    # Data, through the model's own preprocessing (classes come from the sessions).
    pre = Preprocess(cfg.model.input_size, cfg.model.grayscale, cfg.model.crop, cfg.model.mean, cfg.model.std)
    show = progress and is_main
    train_data = load_data(train_dirs, pre, tc.cache_dir, tc.label_delay, tc.stride, show)
    val_data = load_data(val_dirs, pre, tc.cache_dir, tc.label_delay, tc.stride, show) if val_dirs else None
    if val_data is not None and val_data.classes != train_data.classes:
        raise UserError(f"validation sessions have classes {val_data.classes}, training sessions {train_data.classes}")
    model_cfg = replace(cfg.model, classes=list(train_data.classes))
    model = build_model(model_cfg).to(device)
    if tc.init:
        start = load_model(tc.init)
        if start.cfg != model_cfg:
            raise UserError(f"train.init {tc.init} has model config {start.cfg}, which differs from {model_cfg}")
        model.load_state_dict(start.state_dict())
    model.trained = {"mode": tc.mode, "seq_len": tc.seq_len, "label_delay": tc.label_delay, "stride": tc.stride}
    mirror = None
    if tc.mirror:
        mirror = torch.arange(len(train_data.classes))
        for pair in tc.mirror:
            a, _, b = pair.partition(":")
            if a not in train_data.classes or b not in train_data.classes:
                raise UserError(f"train.mirror pair '{pair}' must name two classes of {train_data.classes}")
            ia, ib = train_data.classes.index(a), train_data.classes.index(b)
            mirror[ia], mirror[ib] = ib, ia

    if tc.mode == "windowed":
        sampler = WindowSampler(train_data, tc.seq_len, tc.batch_size, tc.windows_per_epoch, tc.seed, rank, world)
    else:
        sampler = LaneSampler(train_data, tc.seq_len, tc.batch_size, tc.burn_in, tc.seed, rank, world)
    steps_per_epoch = len(sampler)
    total_steps = steps_per_epoch * tc.epochs
    if tc.max_steps:
        total_steps = min(total_steps, tc.max_steps)

    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    weights = class_weights(train_data.class_counts(), tc.balance)
    weights = weights.to(device) if weights is not None else None
    use_amp = tc.amp and device.type == "cuda"
    gen = torch.Generator().manual_seed(tc.seed + rank)

    history: list[dict] = []
    start_epoch, step, best, best_state = 0, 0, -1.0, None
    ckpt = run_dir / "checkpoint.safetensors"
    if resume and ckpt.exists():
        meta = load_checkpoint(ckpt, model, opt)
        start_epoch, step, best, history = meta["epoch"] + 1, meta["step"], meta["best"], meta["history"]
        best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if is_main:
            print(f"resumed from {ckpt} at epoch {start_epoch}, step {step}")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.monotonic()
    frames_seen = 0
    for epoch in range(start_epoch, tc.epochs):
        if tc.max_steps and step >= tc.max_steps:
            break
        # --- train one epoch
        model.train()
        t0, ep_frames, ep_loss, ep_correct, ep_count = time.monotonic(), 0, 0.0, 0.0, 0.0
        state = None
        batches = sampler.batches(epoch) if tc.mode == "windowed" else sampler.chunks(epoch)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not show, unit="step")
        for batch in bar:
            if tc.max_steps and step >= tc.max_steps:
                break
            if tc.mode == "windowed":
                x, y = batch
                first, w = None, torch.ones(y.shape)
            else:
                x, y, first, w = batch
                first = first.to(device)
            x, y, w = x.to(device, non_blocking=True), y.to(device), w.to(device)
            if tc.augment:
                x, y = augment(x, y, gen, mirror)
            b, t = y.shape
            clip = model.preproc.normalize(x.reshape(b * t, *x.shape[2:])).reshape(b, t, *x.shape[2:])
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, tc.warmup_steps, tc.lr)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                if tc.mode == "windowed":
                    logits = net(clip)
                else:
                    logits, state = net(clip, state, first, return_state=True)
                    state = tuple(s.detach() for s in state)  # truncated BPTT: carry the state, not the graph
            per_frame = F.cross_entropy(logits.float().reshape(b * t, -1), y.reshape(-1), weight=weights, reduction="none")
            loss = (per_frame * w.reshape(-1)).sum() / w.sum().clamp(min=1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            step += 1
            ep_frames += b * t
            ep_loss += loss.item() * float(w.sum())
            ep_correct += float(((logits.argmax(-1) == y).float() * w).sum())
            ep_count += float(w.sum())
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{ep_correct / max(ep_count, 1):.3f}")
        bar.close()
        elapsed = time.monotonic() - t0
        frames_seen += ep_frames * world
        record = {"epoch": epoch + 1, "step": step, "train_loss": ep_loss / max(ep_count, 1),
                  "train_accuracy": ep_correct / max(ep_count, 1), "frames_per_s": ep_frames * world / max(elapsed, 1e-9),
                  "lr": opt.param_groups[0]["lr"]}

        # --- validate, checkpoint, keep the best (rank 0)
        if is_main:
            if val_data is not None:
                v = evaluate_offline(model, val_data, tc.mode, tc.seq_len)
                record.update(val_loss=v["loss"], val_accuracy=v["accuracy"], val_macro_f1=v["macro_f1"])
                metric = v["accuracy"]
            else:
                metric = record["train_accuracy"]
            history.append(record)
            if metric >= best:
                best, best_state = metric, {k: v.detach().clone() for k, v in model.state_dict().items()}
            save_checkpoint(ckpt, model, opt, {"epoch": epoch, "step": step, "best": best, "history": history})
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if world > 1:
            dist.barrier()

    metrics: dict = {}
    if is_main:
        if best_state is not None:
            model.load_state_dict(best_state)
        final = evaluate_offline(model, val_data if val_data is not None else train_data, tc.mode, tc.seq_len)
        metrics = {
            "train_sessions": train_dirs, "val_sessions": val_dirs, "classes": train_data.classes,
            "mode": tc.mode, "steps": step, "epochs": len(history), "world_size": world,
            "train_frames": train_data.frames, "seconds": round(time.monotonic() - t_start, 2),
            "frames_per_s": round(frames_seen / max(time.monotonic() - t_start, 1e-9), 1),
            "best_metric": best, "final": final, "history": history, "config": asdict(cfg.train),
        }
        save_model(model, out, extra={"metrics": json.dumps({"val_accuracy": final["accuracy"], "steps": step})})
        stem = out.with_suffix("")
        Path(f"{stem}.metrics.json").write_text(json.dumps(metrics, indent=1))
        if history:
            plot_curves(history, f"{stem}.curves.png")
        plot_confusion(np.array(final["confusion"]), train_data.classes, f"{stem}.confusion.png",
                       title=f"{'validation' if val_data is not None else 'training'} ({tc.mode})")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics
