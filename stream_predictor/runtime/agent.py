"""Agents: the one place where a frame becomes a decision.

An Agent is shown the frames of one stream in order and decides a class for each. `ModelAgent` is the
trained model through the TickEngine (stateful or windowed, as the weights were trained, with the
configured smoothing); a game's scripted expert is another Agent (`games/`). The Predictor, `play`,
`record --policy` (DAgger) and `eval` all decide through an Agent, so a policy collects data exactly
as it plays.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..config import PredictConfig
from .smoothing import ema, hysteresis

if TYPE_CHECKING:  # the model's modules import torch; an exported graph's agent (onnx_engine.py) runs without it
    from ..model.stream_model import StreamModel


@dataclass
class Decision:
    class_id: int
    probs: np.ndarray  # (K,) float32


class Agent:
    """Decides one class per frame. Subclasses implement `decide`; `classes` names the decisions in order."""

    classes: list[str]
    kind: str = "agent"  # a short name for summaries: stateful, windowed, expert
    model: StreamModel | None = None  # the network that decides, if any (its preprocessing shows what it sees)

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        """The decision on this BGR uint8 (H, W, 3) frame; `first` starts a new episode (memory is cleared)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget everything seen so far, as at the start of a stream."""

    def describe(self) -> dict:
        """How decisions are computed (for summaries)."""
        return {"agent": self.kind}

    def inference(self):
        """A context the inference thread decides in (e.g. torch's inference mode); none by default."""
        return contextlib.nullcontext()


def resolve_mode(model: StreamModel, cfg: PredictConfig) -> tuple[str, int]:
    """The decision mode and window length: as configured, or (`auto`, 0) as the weights were trained."""
    mode = model.trained.get("mode", "stateful") if cfg.mode == "auto" else cfg.mode
    return mode, cfg.window or int(model.trained.get("seq_len", 16))


class SmoothedAgent(Agent):
    """An agent whose network gives probabilities (`_probs`), then EMA and hysteresis smoothing, reset with the episode."""

    ema_alpha: float = 0.0
    margin: float = 0.0
    _smoothed: np.ndarray | None = None
    _class: int | None = None

    def _probs(self, image: np.ndarray, first: bool) -> np.ndarray:
        raise NotImplementedError

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        probs = self._probs(image, first)
        if first:
            self._smoothed = self._class = None
        probs = ema(self._smoothed, probs, self.ema_alpha)
        self._smoothed = probs
        self._class = hysteresis(self._class, probs, self.margin)
        return Decision(self._class, probs)

    def reset(self) -> None:
        self.engine.reset()
        self._smoothed = self._class = None

    def describe(self) -> dict:
        return {"agent": "model", "mode": self.kind, "window": self.engine.window if self.kind == "windowed" else None,
                "engine": ", ".join(f"{k}: {v}" for k, v in self.engine.path.items())}


class ModelAgent(SmoothedAgent):
    """The model through a one-stream TickEngine, then EMA and hysteresis smoothing."""

    def __init__(self, model: StreamModel, mode: str = "stateful", window: int = 16, smooth_ema: float = 0.0,
                 margin: float = 0.0, dtype: str = "float32", graph: bool = True, fast_cpu: bool = True) -> None:
        from .engine import TickEngine

        self.model, self.classes, self.kind = model, list(model.classes), mode
        self.ema_alpha, self.margin = smooth_ema, margin
        on_cuda = model.head.weight.device.type == "cuda"
        self.engine = TickEngine(model, 1, dtype, graph if on_cuda else False, fast_cpu, mode, window)

    @classmethod
    def from_config(cls, model: StreamModel, cfg: PredictConfig) -> ModelAgent:
        """On torch's engine whatever `cfg.backend` says; `backends.model_agent` follows it."""
        mode, window = resolve_mode(model, cfg)
        return cls(model, mode, window, cfg.ema, cfg.hysteresis, cfg.dtype, cfg.graph, cfg.fast_cpu)

    def _probs(self, image: np.ndarray, first: bool) -> np.ndarray:
        return self.engine(image[None], [first])[0][0]

    def inference(self):
        """The inference thread's context: torch's inference mode."""
        import torch

        return torch.inference_mode()
