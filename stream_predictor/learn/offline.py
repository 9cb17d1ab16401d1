"""What the Predictor would decide on every frame of a clip, computed offline in batches.

`stateful`: the LSTM over the whole clip from zero state. `windowed`: for frame i, the LSTM from
zero state over frames max(0, i-N+1)..i (the Predictor's warm-up included). Every frame is encoded
once. Used by validation during training and by `eval`, which checks it against the real Predictor.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import StreamModel
from .data import encode_pixels, episodes


@torch.inference_mode()
def offline_logits(model: StreamModel, pixels: np.ndarray, mode: str, window: int, first: np.ndarray | None = None,
                   batch: int = 256, prev: np.ndarray | None = None) -> torch.Tensor:
    """(N, K) logits for every frame of one session; `first` (N,) marks episode starts, where the Predictor resets;
    `prev` (N,): the class pressed before each frame (a model with `model.prev_action`; none without)."""
    return features_logits(model, encode_pixels(model, pixels, batch), mode, window, first, batch, prev)


@torch.inference_mode()
def features_logits(model: StreamModel, feats: torch.Tensor | np.ndarray, mode: str, window: int,
                    first: np.ndarray | None = None, batch: int = 256, prev: np.ndarray | None = None) -> torch.Tensor:
    """`offline_logits` from the frames' features (N, D), e.g. cached ones of a frozen encoder."""
    device = model.head.weight.device
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(np.array(feats)).to(device)
    prev_t = torch.from_numpy(np.asarray(prev, np.int64)).to(device) if prev is not None else None
    spans = episodes(first) if first is not None else [(0, len(feats))]
    return torch.cat([_decide(model, feats[a:b], mode, window, batch, prev_t[a:b] if prev_t is not None else None)
                      for a, b in spans])


def _decide(model: StreamModel, feats: torch.Tensor, mode: str, window: int, batch: int,
            prev: torch.Tensor | None = None) -> torch.Tensor:
    """One episode's (n, D) features → (n, K) logits, from zero state."""
    if mode == "stateful":
        return model.temporal(feats[None], prev=prev[None] if prev is not None else None)[0][0]
    n = len(feats)
    out = [model.window(feats[None, : i + 1]) for i in range(min(window - 1, n))]  # warm-up: fewer than N frames
    if n >= window:
        wins = feats.unfold(0, window, 1).permute(0, 2, 1)  # (n - N + 1, N, D)
        out += [model.window(wins[i : i + batch]) for i in range(0, len(wins), batch)]
    return torch.cat(out)
