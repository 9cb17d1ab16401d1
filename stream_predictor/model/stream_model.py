"""StreamModel: a CNN that encodes each frame once, then an LSTM (or GRU) across frames, then a linear head.

The recurrent state is explicit: `step(x, state) -> (logits, state)`. The offline `forward` over a
clip and stepping one frame at a time compute the same thing, and the tests hold them to it.

Shapes: B streams, T frames, D features, K classes, L recurrent layers, H hidden units.
A state is a tuple of (L, B, H) tensors: (h, c) for an LSTM, (h,) for a GRU.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig
from ..errors import ConfigError, UserError
from .encoders import build_encoder, load_pretrained, pretrained_config
from .preprocess import Preprocess, as_uint8_tensor

State = tuple[torch.Tensor, ...]
log = logging.getLogger(__name__)


MAX_PARAMETERS = 200_000_000  # a sanity cap, checked before anything is allocated (resnet50 has 25M; ours 3M)


def parameter_count(cfg: ModelConfig) -> int:
    """The parameters a config makes, counted on torch's meta device: nothing is allocated."""
    with torch.device("meta"):
        return sum(p.numel() for p in StreamModel(cfg).parameters())


class StreamModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg = pretrained_config(cfg)  # pretrained encoders bring their own preprocessing (their weights: `build_model`)
        if len(cfg.input_size) != 2 or min(cfg.input_size) < 8:
            raise ConfigError(f"config key 'model.input_size' must be [h, w] of at least 8 pixels, got {cfg.input_size}")
        if len(cfg.crop) not in (0, 4):
            raise ConfigError(f"config key 'model.crop' must be [] or [x, y, w, h], got {cfg.crop}")
        if len(cfg.classes) < 2 or len(set(cfg.classes)) != len(cfg.classes):
            raise ConfigError(f"config key 'model.classes' needs at least two distinct names, got {cfg.classes}")
        if torch.get_default_device().type != "meta" and (n := parameter_count(cfg)) > MAX_PARAMETERS:
            raise ConfigError(f"this model config would have {n:,} parameters, more than the {MAX_PARAMETERS:,} allowed "
                              f"(model.hidden={cfg.hidden}, layers={cfg.layers}, feature_dim={cfg.feature_dim}, "
                              f"input_size={cfg.input_size}, encoder={cfg.encoder})")
        self.cfg = cfg
        self.classes = list(cfg.classes)
        self.preproc = Preprocess(cfg.input_size, cfg.grayscale, cfg.crop, cfg.mean, cfg.std)
        if len(cfg.mean) not in (1, self.preproc.channels) or len(cfg.std) not in (1, self.preproc.channels):
            raise ConfigError(f"config keys 'model.mean'/'model.std' need 1 or {self.preproc.channels} values")
        self.encoder, self.feature_dim = build_encoder(cfg.encoder, self.preproc.channels, self.preproc.size, cfg.feature_dim)
        rnn = nn.LSTM if cfg.temporal == "lstm" else nn.GRU
        inputs = self.feature_dim + (len(self.classes) if cfg.prev_action else 0)  # + the previous action, one-hot
        self.rnn = rnn(inputs, cfg.hidden, cfg.layers, batch_first=True, dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.head = nn.Linear(cfg.hidden, len(self.classes))
        self.trained: dict = {}  # how the weights were trained (mode, seq_len, label_delay, …), from the weights file

    # --- frames → features -------------------------------------------------------------------
    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """BGR uint8 (H, W, 3) → float (C, h, w); (T, H, W, 3) → (T, C, h, w). On the model's device."""
        single = frames.ndim == 3
        x = as_uint8_tensor(frames).to(self.head.weight.device, non_blocking=True)
        x = self.preproc(x)
        return x[0] if single else x

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, D)."""
        return self.encoder(frames)

    def encode_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, T, C, h, w) → (B, T, D): all B·T frames through the CNN as one batch."""
        b, t = clip.shape[:2]
        return self.encode(clip.flatten(0, 1)).view(b, t, -1)

    # --- features → logits -------------------------------------------------------------------
    def rnn_input(self, feats: torch.Tensor, prev: torch.Tensor | None = None, first: torch.Tensor | None = None) -> torch.Tensor:
        """What the LSTM reads per frame: the features (..., D), and with `model.prev_action` the one-hot class pressed
        before the frame beside them (..., D + K). `prev` (...) holds class ids, -1 (or None for all) for none; a frame
        that starts an episode (`first`) has none."""
        if not self.cfg.prev_action:
            return feats
        if prev is None:
            prev = torch.full(feats.shape[:-1], -1, dtype=torch.long, device=feats.device)
        if first is not None:
            prev = torch.where(first.bool(), -1, prev)
        onehot = (prev.unsqueeze(-1) == torch.arange(len(self.classes), device=feats.device)).to(feats.dtype)
        return torch.cat([feats, onehot], -1)

    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None) -> State:
        device = device if device is not None else self.head.weight.device
        shape = (self.cfg.layers, batch_size, self.cfg.hidden)
        n = 2 if self.cfg.temporal == "lstm" else 1
        return tuple(torch.zeros(shape, device=device) for _ in range(n))

    @staticmethod
    def reset_state(state: State, first: torch.Tensor) -> State:
        """Zero the state of the streams where `first` (B,) is true; the others are untouched (× 1.0 is exact)."""
        keep = (~first.bool()).to(state[0].dtype).view(1, -1, 1)
        return tuple(s * keep for s in state)

    def _rnn(self, feats: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if self.cfg.temporal == "lstm":
            out, (h, c) = self.rnn(feats, state)
            return out, (h, c)
        out, h = self.rnn(feats, state[0])
        return out, (h,)

    def recurrent(self, feats: torch.Tensor, state: State | None = None, first: torch.Tensor | None = None,
                  prev: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """(B, T, D) → the top layer's hidden output (B, T, H) and the state after the last frame.

        `first` (B, T) marks frames that start a new episode: the state of that stream is zeroed
        just before them. The sequence is cut only where some stream resets. `prev` (B, T): the class
        pressed before each frame (`rnn_input`), for a model with `prev_action`.
        """
        feats = self.rnn_input(feats, prev, first)
        b, t = feats.shape[:2]
        state = state if state is not None else self.init_state(b, feats.device)
        if first is None or not bool(first.any()):
            return self._rnn(feats, state)
        if t > 1 and bool(first.all()):  # every frame starts afresh (a model of single frames): all B·T in one call
            out, last = self._rnn(feats.reshape(b * t, 1, -1), self.init_state(b * t, feats.device))
            return out.view(b, t, -1), tuple(s.view(s.shape[0], b, t, -1)[:, :, -1].contiguous() for s in last)
        cuts = sorted({0, t, *torch.nonzero(first.any(0)).flatten().tolist()})
        outs = []
        for t0, t1 in zip(cuts[:-1], cuts[1:]):
            state = self.reset_state(state, first[:, t0])
            out, state = self._rnn(feats[:, t0:t1], state)
            outs.append(out)
        return torch.cat(outs, 1), state

    def temporal(self, feats: torch.Tensor, state: State | None = None, first: torch.Tensor | None = None,
                 prev: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """(B, T, D) → logits (B, T, K) and the state after the last frame (`first`, `prev` as in `recurrent`)."""
        out, state = self.recurrent(feats, state, first, prev)
        return self.head(out), state

    def forward(self, clip: torch.Tensor, state: State | None = None, first: torch.Tensor | None = None,
                return_state: bool = False, features: bool = False, prev: torch.Tensor | None = None,
                with_state_head: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Offline: (B, T, C, h, w) → logits (B, T, K), from zero state unless one is given.

        `return_state=True` also returns the state after the last frame (truncated BPTT in training);
        `features=True` takes the frames' features (B, T, D) instead (a frozen encoder's, cached);
        `prev` (B, T): the classes pressed before the frames, for a model with `prev_action` (none without);
        `with_state_head=True` returns (logits, state, the training-only `state_head` on the LSTM's output).
        """
        out, state = self.recurrent(clip if features else self.encode_clip(clip), state, first, prev)
        logits = self.head(out)
        if with_state_head:
            return logits, state, self.state_head(out)
        return (logits, state) if return_state else logits

    def step_features(self, feats: torch.Tensor, state: State, first: torch.Tensor | None = None,
                      prev: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One cached feature per stream: (B, D) → logits (B, K) and the new state (`prev` (B,) as in `recurrent`)."""
        if first is not None:
            state = self.reset_state(state, first)
        return self.step_inputs(self.rnn_input(feats, prev, first), state)

    def step_inputs(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step of the LSTM's inputs (B, D or D + K, `rnn_input`) → logits (B, K) and the new state.

        The same equations as `self.rnn`, through the fused single-step cell kernels: a one-step
        nn.LSTM call costs about 4× more on a CPU than the arithmetic it does. Dropout between
        layers is a training-time thing and is not applied here.
        """
        rnn, new = self.rnn, []
        for layer in range(self.cfg.layers):
            w = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            if self.cfg.temporal == "lstm":
                h, c = torch.lstm_cell(x, (state[0][layer], state[1][layer]), *w)
                new.append((h, c))
            else:
                h = torch.gru_cell(x, state[0][layer], *w)
                new.append((h,))
            x = h
        return self.head(x), tuple(torch.stack(parts) for parts in zip(*new))

    def step(self, frames: torch.Tensor, state: State, first: torch.Tensor | None = None,
             prev: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """One new frame per stream: (B, C, h, w) → logits (B, K) and the new state. O(1) CNN work."""
        return self.step_features(self.encode(frames), state, first, prev)

    def window(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, N, D) cached features → logits (B, K) for the last frame, from zero state."""
        if self.cfg.prev_action:
            raise UserError("a model that sees its previous action (model.prev_action) decides statefully, not over windows")
        return self.temporal(feats)[0][:, -1]


def inputs_widened(start: dict[str, torch.Tensor], into: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`start`'s weights for a model that differs only in `model.prev_action`: the LSTM's first-layer input weights
    gain zero columns for the previous action (or lose them), so the new model decides exactly as the start did."""
    out = dict(start)
    w, want = start["rnn.weight_ih_l0"], into["rnn.weight_ih_l0"]
    if w.shape != want.shape:
        wide = torch.zeros_like(want)
        n = min(w.shape[1], want.shape[1])
        wide[:, :n] = w[:, :n]
        out["rnn.weight_ih_l0"] = wide
    return out


def with_prev_action(model: StreamModel) -> StreamModel:
    """`model` with `model.prev_action` on (itself if it has it), deciding exactly as before: the previous action's
    weights start at zero."""
    if model.cfg.prev_action:
        return model
    wide = StreamModel(replace(model.cfg, prev_action=True)).to(model.head.weight.device)
    wide.load_state_dict(inputs_widened(model.state_dict(), wide.state_dict()))
    wide.trained = dict(model.trained)
    return wide.train(model.training)


def build_model(cfg: ModelConfig) -> StreamModel:
    """A StreamModel with fresh (random) weights, in eval mode; with `model.pretrained`, the encoder's weights and the
    preprocessing come from torchvision's pretrained weights."""
    model = StreamModel(cfg)
    if cfg.pretrained:
        name = load_pretrained(model.encoder, cfg.encoder)
        pre = model.cfg
        log.info("encoder %s from %s; preprocessing from it: RGB, mean %s, std %s, %dx%d", cfg.encoder, name, pre.mean,
                 pre.std, pre.input_size[1], pre.input_size[0])
    return model.eval()
