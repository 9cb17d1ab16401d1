"""Sessions → training batches.

Each session is decoded once through the model's own preprocessing (`to_pixels`: crop, grayscale/RGB,
resize, round) and cached as a uint8 (N, C, h, w) .npy memmap keyed by the session and the
preprocessing settings, so later epochs and later runs read pixels straight from disk.

Two ways to cut a session into training data, matching the two inference modes:
- `WindowSampler` (windowed): random windows of T frames, each from zero state.
- `LaneSampler` (stateful): B lanes walk through the concatenated sessions in consecutive chunks of
  T frames; the caller carries the recurrent state from one chunk to the next (truncated BPTT).
Both yield the same `Batch`, so the training loop has one path: a window is a chunk whose first frame
starts an episode.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..model.io import weights_digest
from ..model.preprocess import Preprocess
from ..session import Session, SessionFrames, aligned_targets, load_session, previous_pressed

log = logging.getLogger(__name__)


def _cache_key(session: Session, pre: Preprocess) -> str:
    stamp = {
        "dir": str(session.dir.resolve()), "frames": session.frames,
        "segments": [(s.name, s.stat().st_size, s.stat().st_mtime_ns) for s in session.segments],
        "size": pre.size, "grayscale": pre.grayscale, "crop": pre.crop, "version": 1,
    }
    return hashlib.sha1(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:16]


def _write_npy(path: Path, shape: tuple[int, ...], dtype: type, fill) -> np.ndarray:
    """Make the .npy file at `path` once: `fill(out)` writes into a memmap of a temporary file beside it, renamed into
    place when complete (two trainings may build the same cache at once: each has its own temporary file). Returns the
    file as a read-only memmap."""
    if path.exists():
        return np.load(path, mmap_mode="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp.npy")
    os.close(fd)
    tmp = Path(name)
    try:  # the temporary file goes whatever happens: renamed into place, or removed
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        fill(out)
        out.flush()
        del out
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r")


def cached_pixels(session: Session, pre: Preprocess, cache_dir: str | Path, progress: bool = True) -> np.ndarray:
    """The session's frames after `pre.to_pixels`, uint8 (N, C, h, w), decoding only on the first call."""
    path = Path(cache_dir) / f"{session.dir.name}-{_cache_key(session, pre)}.npy"

    def fill(out: np.ndarray) -> None:
        i, batch = 0, []
        bar = tqdm(total=session.frames, desc=f"decode {session.dir.name}", unit="f", disable=not progress, leave=False)

        def flush() -> None:
            nonlocal i, batch
            if batch:
                with torch.inference_mode():
                    px = pre.to_pixels(torch.from_numpy(np.stack(batch)))
                out[i : i + len(batch)] = px.to(torch.uint8).numpy()
                i += len(batch)
                bar.update(len(batch))
                batch = []

        frames = SessionFrames(session)
        try:
            for image in frames:
                batch.append(image)
                if len(batch) == 256:
                    flush()
            flush()
        finally:
            frames.close()
            bar.close()
        if i != session.frames:
            raise UserError(f"{session.dir}: decoded {i} frames but labels.csv has {session.frames}")

    return _write_npy(path, (session.frames, pre.channels, *pre.size), np.uint8, fill)


@torch.inference_mode()
def encode_pixels(model: torch.nn.Module, pixels: np.ndarray, batch: int = 256) -> torch.Tensor:
    """uint8 (N, C, h, w) → features (N, D), on the model's device."""
    device = model.head.weight.device
    feats = [model.encode(model.preproc.normalize(torch.from_numpy(np.array(pixels[i : i + batch])).to(device)))
             for i in range(0, len(pixels), batch)]
    return torch.cat(feats)


def cached_features(data: Data, model: torch.nn.Module, cache_dir: str | Path, progress: bool = True) -> Data:
    """`data` with each frame's pixels replaced by its features (N, D) float32 from the model's encoder (frozen), each
    frame encoded once: cached on disk, keyed by the session's pixels (session, preprocessing, label delay, stride),
    the normalization and the encoder's weights, so that a change to any of them encodes again."""
    cfg, digest = model.cfg, weights_digest(model.encoder)
    feats = []
    for px, key, name in zip(data.pixels, data.keys, data.names):
        stamp = {"pixels": key, "mean": cfg.mean, "std": cfg.std, "encoder": cfg.encoder, "weights": digest, "version": 1}
        path = Path(cache_dir) / "features" / f"{Path(name).name}-{hashlib.sha1(json.dumps(stamp).encode()).hexdigest()[:16]}.npy"

        def fill(out: np.ndarray, px: np.ndarray = px, name: str = name) -> None:
            bar = tqdm(total=len(px), desc=f"encode {Path(name).name}", unit="f", disable=not progress, leave=False)
            for i in range(0, len(px), 256):
                out[i : i + 256] = encode_pixels(model, px[i : i + 256]).float().cpu().numpy()
                bar.update(min(256, len(px) - i))
            bar.close()

        feats.append(_write_npy(path, (len(px), model.feature_dim), np.float32, fill))
    return replace(data, pixels=feats)


@dataclass
class Batch:
    """B sequences of T frames, as both samplers yield them."""

    pixels: torch.Tensor  # (B, T, C, h, w) uint8 values
    targets: torch.Tensor  # (B, T) int64 class indices
    first: torch.Tensor  # (B, T) bool: the recurrent state restarts at this frame
    weight: torch.Tensor  # (B, T) float: how much each frame's loss counts (0: burn-in or padding)
    prev: torch.Tensor  # (B, T) int64: the class pressed before the frame (-1: none), read with model.prev_action
    state: torch.Tensor  # (B, T, S) float32: the game's state targets (`state_targets`; nan: none), S = 0 without

    def to(self, device: torch.device) -> Batch:
        return Batch(self.pixels.to(device, non_blocking=True), self.targets.to(device), self.first.to(device),
                     self.weight.to(device), self.prev.to(device), self.state.to(device))


@dataclass
class Data:
    """Sessions with their cached pixels and per-frame targets (labels shifted by the label delay, strided)."""

    pixels: list[np.ndarray]  # each (N_i, C, h, w) uint8, possibly a strided view
    targets: list[np.ndarray]  # each (N_i,) int64
    firsts: list[np.ndarray]  # each (N_i,) bool: an episode starts at this frame (always the first)
    prevs: list[np.ndarray]  # each (N_i,) int64: the class pressed just before the frame (-1 at episode starts)
    states: list[np.ndarray]  # each (N_i, S) float32 state targets (`state_targets`; S = 0 for a session without state.csv)
    names: list[str]
    classes: list[str]
    sizes: list[tuple[int | None, int | None]] = field(default_factory=list)  # each session's (h, w), from meta.yaml
    keys: list[str] = field(default_factory=list)  # what each session's pixels are (session, preprocessing, delay, stride)

    @property
    def frames(self) -> int:
        return sum(len(t) for t in self.targets)

    def class_counts(self) -> np.ndarray:
        return np.bincount(np.concatenate(self.targets), minlength=len(self.classes))


def load_data(dirs: list[str | Path], pre: Preprocess, cache_dir: str | Path, label_delay: int = 0, stride: int = 1,
              progress: bool = True) -> Data:
    """Load sessions; frame i is paired with the label of frame i + label_delay; every stride-th frame is kept."""
    sessions = [load_session(d) for d in dirs]
    classes = sessions[0].classes if sessions else []
    for s in sessions[1:]:
        if s.classes != classes:
            raise UserError(f"sessions disagree on classes: {sessions[0].dir} has {classes}, {s.dir} has {s.classes}")
    pixels, targets, firsts, prevs, states, keys = [], [], [], [], [], []
    for s in sessions:
        n, y, first = aligned_targets(s, label_delay, stride)
        pixels.append(cached_pixels(s, pre, cache_dir, progress)[:n:stride])
        targets.append(y)
        firsts.append(first)
        prevs.append(previous_pressed(s, n, stride))
        states.append(state_targets(s, n, stride, first))
        keys.append(f"{_cache_key(s, pre)}:{n}:{stride}")
    return Data(pixels, targets, firsts, prevs, states, [str(s.dir) for s in sessions], classes,
                [(s.meta.get("height"), s.meta.get("width")) for s in sessions], keys)


def state_targets(session: Session, n: int, stride: int, firsts: np.ndarray) -> np.ndarray:
    """(ceil(n / stride), 2S) for each kept frame: the session's recorded game state (state.csv, S columns) and its change
    since the kept frame before (nan at an episode's first frame, and wherever a value is nan: e.g. no ball in play);
    (…, 0) for a session without state.csv."""
    if session.state is None:
        return np.zeros((len(firsts), 0), np.float32)
    values = session.state[:n:stride]
    change = np.full_like(values, np.nan)
    change[1:] = values[1:] - values[:-1]
    change[firsts] = np.nan
    return np.concatenate([values, change], 1)


def episodes(first: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each episode, given a (N,) bool array of episode starts."""
    starts = [*np.flatnonzero(first).tolist(), len(first)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [(a, b) for a, b in zip(starts[:-1], starts[1:]) if b > a]


def split_sessions(dirs: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Hold out whole sessions for validation (never frames of a training session)."""
    if len(dirs) < 2 or val_fraction <= 0:
        return list(dirs), []
    order = np.random.default_rng(seed).permutation(len(dirs))
    n_val = min(len(dirs) - 1, max(1, round(len(dirs) * val_fraction)))
    return [dirs[i] for i in sorted(order[n_val:])], [dirs[i] for i in sorted(order[:n_val])]


def _same_width(states: list[np.ndarray], join=np.concatenate) -> np.ndarray:
    """Sessions' state targets joined (lanes) or stacked (windows: `join=np.stack`): all of one width, or none (width 0)
    when some session has none (training asks for them only where every session has them)."""
    if len({s.shape[-1] for s in states}) > 1:
        states = [s[..., :0] for s in states]
    return join(states).astype(np.float32)


class WindowSampler:
    """Windows of T frames, each inside one session, as (B, T, C, h, w) uint8 and (B, T) targets.

    Each epoch draws a fresh permutation of all window starts (seeded by the epoch) and gives rank r
    of `world` every world-th of them: a distributed sampler, so ranks never share a window.
    """

    def __init__(self, data: Data, seq_len: int, batch_size: int, per_epoch: int = 0, seed: int = 0, rank: int = 0,
                 world: int = 1) -> None:
        self.data, self.T, self.B = data, seq_len, batch_size
        # Windows never cross an episode start (the Predictor clears its window there).
        self.starts = np.array([(i, s) for i, f in enumerate(data.firsts) for a, b in episodes(f)
                                for s in range(a, max(a + 1, b - seq_len + 1))])
        if len(self.starts) == 0:
            raise UserError("no training windows: sessions are shorter than train.seq_len")
        self.per_epoch = per_epoch or max(batch_size * world, data.frames // seq_len)
        self.seed, self.rank, self.world = seed, rank, world

    def __len__(self) -> int:
        return max(1, self.per_epoch // (self.B * self.world))

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        rng = np.random.default_rng(self.seed + epoch)
        n = len(self) * self.B * self.world
        picks = rng.choice(len(self.starts), size=n, replace=len(self.starts) < n)
        mine = picks[self.rank :: self.world]
        for b in range(len(self)):
            xs, ys, ps, ss = [], [], [], []
            for i, s in self.starts[mine[b * self.B : (b + 1) * self.B]]:
                xs.append(np.asarray(self.data.pixels[i][s : s + self.T]))
                ys.append(self.data.targets[i][s : s + self.T])
                ps.append(self.data.prevs[i][s : s + self.T])
                ss.append(self.data.states[i][s : s + self.T])
            y = torch.from_numpy(np.stack(ys))
            first = torch.zeros(y.shape, dtype=torch.bool)
            first[:, 0] = True  # every window starts from zero state
            yield Batch(torch.from_numpy(np.stack(xs)), y, first, torch.ones(y.shape), torch.from_numpy(np.stack(ps)),
                        torch.from_numpy(_same_width(ss, np.stack)))


class LaneSampler:
    """B lanes over the concatenated sessions, each walking consecutive chunks of T frames.

    `batches()` yields Batches whose `first` marks episode and session starts (the state resets there) and
    whose `weight` is 0 on the burn-in frames of a lane that starts mid-episode (its state is not yet warm)
    and on padding past the end. The caller carries the state from one batch to the next.
    """

    def __init__(self, data: Data, seq_len: int, lanes: int, burn_in: int, seed: int = 0, rank: int = 0, world: int = 1) -> None:
        if seq_len < 1 or lanes < 1:
            raise UserError("train.seq_len and train.batch_size must be at least 1")
        self.data, self.T, self.burn_in = data, seq_len, burn_in
        self.pixels = data.pixels
        lengths = [len(t) for t in data.targets]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        total = int(self.offsets[-1])
        self.first = np.concatenate(data.firsts)
        self.first[self.offsets[:-1]] = True
        self.targets = np.concatenate(data.targets)
        self.prevs = np.concatenate(data.prevs)
        self.states = _same_width(data.states)
        n_lanes = lanes * world
        self.lane_len = max(seq_len, total // n_lanes)
        starts = np.arange(n_lanes) * self.lane_len
        self.starts = starts[rank::world][:lanes]
        self.seed = seed

    def __len__(self) -> int:
        return -(-self.lane_len // self.T)

    def _frames(self, idx: np.ndarray) -> np.ndarray:
        sess = np.searchsorted(self.offsets, idx, side="right") - 1
        return np.stack([np.asarray(self.pixels[s][i - self.offsets[s]]) for s, i in zip(sess, idx)])

    def batches(self, epoch: int = 0) -> Iterator[Batch]:
        total = len(self.targets)
        # Shift the lane boundaries each epoch so that burn-in frames are not always the same ones.
        shift = int(np.random.default_rng(self.seed + epoch).integers(0, self.lane_len))
        lane0 = (self.starts + shift) % total
        for c in range(0, self.lane_len, self.T):
            idx = (self.starts[:, None] + shift + c + np.arange(self.T)[None]) % total  # (B, T)
            valid = (c + np.arange(self.T))[None].repeat(len(self.starts), 0) < self.lane_len
            first = self.first[idx].copy()
            first[:, 0] |= c == 0  # a lane's first chunk starts from zero state
            since_start = c + np.arange(self.T)[None]
            # Frames count once the state is trustworthy: the lane began at a session start, or it has
            # run `burn_in` frames, or a session started inside the lane since.
            warm = self.first[lane0][:, None] | (since_start >= self.burn_in) | np.maximum.accumulate(self.first[idx], axis=1)
            weight = valid & warm
            pixels = self._frames(idx.reshape(-1)).reshape(*idx.shape, *self.pixels[0].shape[1:])
            yield Batch(torch.from_numpy(pixels), torch.from_numpy(self.targets[idx]), torch.from_numpy(first),
                        torch.from_numpy(weight.astype(np.float32)), torch.from_numpy(self.prevs[idx]),
                        torch.from_numpy(self.states[idx]))
