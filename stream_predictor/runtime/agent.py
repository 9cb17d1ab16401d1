"""Agents: the one place where a frame becomes a decision.

An Agent is shown the frames of one stream in order and decides a class for each. `ModelAgent` is the
trained model through the TickEngine (stateful or windowed, as the weights were trained, with the
configured smoothing); a game's scripted expert is another Agent (`games/`). The Predictor, `play`,
`record --policy` (DAgger) and `eval` all decide through an Agent, so a policy collects data exactly
as it plays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import PredictConfig
from ..model.stream_model import StreamModel
from .engine import TickEngine
from .smoothing import ema, hysteresis


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


def resolve_mode(model: StreamModel, cfg: PredictConfig) -> tuple[str, int]:
    """The decision mode and window length: as configured, or (`auto`, 0) as the weights were trained."""
    mode = model.trained.get("mode", "stateful") if cfg.mode == "auto" else cfg.mode
    return mode, cfg.window or int(model.trained.get("seq_len", 16))


class ModelAgent(Agent):
    """The model through a one-stream TickEngine, then EMA and hysteresis smoothing."""

    def __init__(self, model: StreamModel, mode: str = "stateful", window: int = 16, smooth_ema: float = 0.0,
                 margin: float = 0.0, dtype: str = "float32", graph: bool = True, fast_cpu: bool = True) -> None:
        self.model, self.classes, self.kind = model, list(model.classes), mode
        self.ema_alpha, self.margin = smooth_ema, margin
        on_cuda = model.head.weight.device.type == "cuda"
        self.engine = TickEngine(model, 1, dtype, graph if on_cuda else False, fast_cpu, mode, window)
        self._probs: np.ndarray | None = None
        self._class: int | None = None

    @classmethod
    def from_config(cls, model: StreamModel, cfg: PredictConfig) -> ModelAgent:
        mode, window = resolve_mode(model, cfg)
        return cls(model, mode, window, cfg.ema, cfg.hysteresis, cfg.dtype, cfg.graph, cfg.fast_cpu)

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        probs = self.engine(image[None], [first])[0][0]
        if first:
            self._probs = self._class = None
        probs = ema(self._probs, probs, self.ema_alpha)
        self._probs = probs
        self._class = hysteresis(self._class, probs, self.margin)
        return Decision(self._class, probs)

    def reset(self) -> None:
        self.engine.reset()
        self._probs = self._class = None

    def describe(self) -> dict:
        return {"agent": "model", "mode": self.kind, "window": self.engine.window if self.kind == "windowed" else None,
                "engine": ", ".join(f"{k}: {v}" for k, v in self.engine.path.items())}
