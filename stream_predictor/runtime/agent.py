"""Agents: the one place where a frame becomes a decision.

An Agent is shown the frames of one stream in order and decides a class for each. `ModelAgent` is a network through
an engine (torch's TickEngine, the exported graph in onnxruntime, or `auto`'s choice of the two), stateful or windowed,
with the configured smoothing; a game's scripted expert is another Agent (`games/`). The Predictor, `play`,
`record --policy` (DAgger) and `eval` all decide through an Agent, so a policy collects data exactly as it plays.
`backends.model_agent` builds a model's agent from `cfg.predict`, for every caller.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..config import PredictConfig
from .smoothing import ema, hysteresis

if TYPE_CHECKING:  # the model's modules import torch; an exported graph's agent (onnx_engine.py) runs without it
    from ..model.stream_model import StreamModel


@dataclass
class Decision:
    class_id: int
    probs: np.ndarray  # (K,) float32
    label: str | None = None  # a second agent's class for the same frame (LabelledAgent: DAgger's expert label)


class Agent:
    """Decides one class per frame. A subclass implements `decide` (checked when the subclass is defined) and sets
    `classes`, the decisions' names in order.

    - `kind`: a short name for summaries (stateful, windowed, expert).
    - `model`: the network that decides, if any (its preprocessing shows what it sees), else None.
    - `chunked`: `decide_chunk` decides many frames in one call, faster than one by one (recorded video in lockstep).
    """

    classes: list[str]
    kind: str = "agent"
    model: StreamModel | None = None
    chunked: bool = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.decide is Agent.decide:
            raise TypeError(f"{cls.__name__} is an Agent without a decide(image, first) method")

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        """The decision on this BGR uint8 (H, W, 3) frame; `first` starts a new episode (memory is cleared)."""
        raise NotImplementedError

    def decide_chunk(self, images: np.ndarray, first: np.ndarray) -> list[Decision]:
        """The decisions on n consecutive frames (n, H, W, 3) with their resets (n,): the same as n `decide` calls."""
        return [self.decide(image, bool(f)) for image, f in zip(images, first)]

    def decide_batch(self, images: np.ndarray, first: list[bool], active: list[bool]) -> list[Decision | None]:
        """The decisions on the newest frames of K streams (K, H, W, 3) in one call; a stream that is not `active` has
        no new frame: its memory is left as it was and its decision is None. One stream here; a ModelAgent takes K."""
        if len(images) != 1:
            raise ValueError(f"{type(self).__name__} decides one stream, not {len(images)}")
        return [self.decide(images[0], bool(first[0])) if active[0] else None]

    def reset(self) -> None:
        """Forget everything seen so far, as at the start of a stream."""

    def describe(self) -> dict:
        """How decisions are computed (for summaries)."""
        return {"agent": self.kind}

    def status(self) -> dict:
        """What a live view shows of the agent as it runs (none by default)."""
        return {}

    def inference(self):
        """A context the inference thread decides in (e.g. torch's inference mode); none by default."""
        return contextlib.nullcontext()


class Engine(Protocol):
    """What a ModelAgent runs: K streams' probabilities per call (TickEngine, OnnxEngine, AutoEngine, ExportedEngine)."""

    path: dict[str, str]
    chunked: bool  # has `chunk(frames, first)`: n frames of one stream in one call
    prev_action: bool  # the model reads the class pressed on the stream's previous tick (`prev`)
    measured_ms: dict[str, float]  # backend=auto: the median ms per tick it chose on (else empty)
    counters: dict[str, int]  # events worth a count in the summary (backend=triton: server_reconnects, server_errors)

    def __call__(self, frames: np.ndarray, first: np.ndarray | list[bool] | None = None,
                 prev: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def reset(self) -> None: ...


class LabelledAgent(Agent):
    """`player` decides; `labeller`, another agent, decides on the same frame first (seeing the world as it is at that
    frame), and its class becomes the decision's `label`: DAgger, where a model plays and the expert labels what it
    sees. Both decide here, inside the runtime's loop."""

    def __init__(self, player: Agent, labeller: Agent) -> None:
        self.player, self.labeller = player, labeller
        self.classes, self.kind, self.model = player.classes, player.kind, player.model

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        label = self.labeller.decide(image, first)
        decision = self.player.decide(image, first)
        return Decision(decision.class_id, decision.probs, self.labeller.classes[label.class_id])

    def reset(self) -> None:
        self.player.reset()
        self.labeller.reset()

    def describe(self) -> dict:
        return {**self.player.describe(), "labeller": self.labeller.describe()}

    def status(self) -> dict:
        return self.player.status()

    def inference(self):
        return self.player.inference()


def resolve_mode(model: StreamModel, cfg: PredictConfig) -> tuple[str, int]:
    """The decision mode and window length: as configured, or (`auto`, 0) as the weights were trained."""
    mode = model.trained.get("mode", "stateful") if cfg.mode == "auto" else cfg.mode
    return mode, cfg.window or int(model.trained.get("seq_len", 16))


class ModelAgent(Agent):
    """A network deciding for K streams (1 by default) through `engine`, then EMA and hysteresis smoothing per stream
    (reset with its episode).

    `every_frame_first`: a model of single frames (trained on windows of one) decides from each frame alone, its state
    reset at every frame. `model` is the torch model when there is one (None for a graph file alone). A model that reads
    its previous action (the engine's `prev_action`) is told the class this agent decided on the stream's last tick,
    after smoothing: what was pressed.
    """

    def __init__(self, engine: Engine, classes: list[str], kind: str = "stateful", window: int = 16,
                 smooth_ema: float = 0.0, margin: float = 0.0, model: StreamModel | None = None,
                 every_frame_first: bool = False, streams: int = 1) -> None:
        self.engine, self.classes, self.kind, self.window, self.model = engine, list(classes), kind, window, model
        self.ema_alpha, self.margin, self.every_frame_first = smooth_ema, margin, every_frame_first
        self.chunked = engine.chunked
        self.prev_action = engine.prev_action
        self.streams = streams
        self._smoothed: list[np.ndarray | None] = [None] * streams
        self._class: list[int | None] = [None] * streams

    @classmethod
    def torch(cls, model: StreamModel, mode: str = "stateful", window: int = 16, cfg: PredictConfig | None = None,
              streams: int = 1) -> ModelAgent:
        """On torch's TickEngine, with the smoothing, dtype and kernels of `cfg` (defaults without)."""
        from .engine import TickEngine

        cfg = cfg or PredictConfig()
        on_cuda = model.head.weight.device.type == "cuda"
        engine = TickEngine(model, streams, cfg.dtype, cfg.graph if on_cuda else False, cfg.fast_cpu, mode, window)
        return cls(engine, model.classes, mode, window, cfg.ema, cfg.hysteresis, model, streams=streams)

    def decide(self, image: np.ndarray, first: bool) -> Decision:
        return self.decide_batch(image[None], [first], [True])[0]

    def decide_batch(self, images: np.ndarray, first: list[bool], active: list[bool]) -> list[Decision | None]:
        resets = [f or self.every_frame_first for f in first]
        args = (images, resets, [-1 if c is None else c for c in self._class]) if self.prev_action else (images, resets)
        if all(active):
            probs = self.engine(*args)[0]
        else:  # streams without a new frame keep their state: it is put back after the call
            kept = self.engine.get_state()
            probs = self.engine(*args)[0]
            new, idle = self.engine.get_state(), ~np.asarray(active)
            for k, n in zip(kept, new):
                n[:, idle] = k[:, idle]
            self.engine.set_state(new)
        return [self._smooth(i, probs[i], first[i]) if active[i] else None for i in range(len(images))]

    def decide_chunk(self, images: np.ndarray, first: np.ndarray) -> list[Decision]:
        if not self.chunked:
            return super().decide_chunk(images, first)
        resets = np.asarray(first, bool) | self.every_frame_first
        probs = self.engine.chunk(images, resets)[0]
        return [self._smooth(0, p, bool(f)) for p, f in zip(probs, first)]

    def _smooth(self, i: int, probs: np.ndarray, first: bool) -> Decision:
        if first:
            self._smoothed[i] = self._class[i] = None
        probs = ema(self._smoothed[i], probs, self.ema_alpha)
        self._smoothed[i] = probs
        self._class[i] = hysteresis(self._class[i], probs, self.margin)
        return Decision(self._class[i], probs)

    def reset(self) -> None:
        self.engine.reset()
        self._smoothed, self._class = [None] * self.streams, [None] * self.streams

    def describe(self) -> dict:
        out = {"agent": "model", "mode": self.kind, "window": self.window if self.kind == "windowed" else None,
               "engine": ", ".join(f"{k}: {v}" for k, v in self.engine.path.items())}
        if self.engine.measured_ms:
            out["backend_ms"] = self.engine.measured_ms
        return {**out, **self.engine.counters}

    def status(self) -> dict:
        """What a live view shows of the agent as it runs (the engine's counters)."""
        return dict(self.engine.counters)

    def inference(self):
        """The inference thread's context: torch's inference mode where torch runs the model."""
        if self.model is None:
            return contextlib.nullcontext()
        import torch

        return torch.inference_mode()
