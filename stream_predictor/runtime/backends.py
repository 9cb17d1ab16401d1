"""Which engine runs a model on the CPU: torch's (`ModelAgent`, `TickEngine`) or its exported graph in onnxruntime
(`ExportedAgent`, `OnnxEngine`), as `predict.backend` says."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..config import PredictConfig
from .agent import ModelAgent, SmoothedAgent, resolve_mode
from .onnx_engine import ExportedAgent

if TYPE_CHECKING:
    from ..model.stream_model import StreamModel

log = logging.getLogger(__name__)


def resolve_backend(model: StreamModel, cfg: PredictConfig, mode: str) -> str:
    """"torch" or "onnxruntime", as `cfg.backend` says. Under `auto` a model onnxruntime cannot take (windowed, on a GPU,
    onnxruntime or the exporter not installed) stays on torch with a warning saying why; `onnxruntime` refuses it."""
    if cfg.backend == "torch":
        return "torch"
    import importlib.util

    reasons = [why for bad, why in (
        (mode != "stateful", f"the model decides {mode}"),
        (model.head.weight.device.type != "cpu", "the model is on a GPU"),
        (any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")),
         "onnxruntime, onnx and onnxscript are not all installed (pip install -e '.[export]')")) if bad]
    if reasons and cfg.backend == "onnxruntime":
        from ..errors import UserError

        raise UserError(f"predict.backend=onnxruntime cannot run this model: {'; '.join(reasons)}")
    if reasons:
        log.warning("predict.backend=auto: torch runs the model (%s)", "; ".join(reasons))
        return "torch"
    return "onnxruntime"


def model_agent(model: StreamModel, cfg: PredictConfig, mode: str | None = None, window: int | None = None) -> SmoothedAgent:
    """The agent for a model on the backend `cfg.backend` resolves to: torch's engine, or the model's exported graph in
    onnxruntime."""
    if mode is None or window is None:
        mode, window = resolve_mode(model, cfg)
    backend = resolve_backend(model, cfg, mode)
    if cfg.backend == "onnxruntime":
        return ExportedAgent(model, cfg)
    on_torch = ModelAgent(model, mode, window, cfg.ema, cfg.hysteresis, cfg.dtype, cfg.graph, cfg.fast_cpu)
    if backend == "torch":
        return on_torch
    return MeasuredAgent(cfg, {"torch": on_torch, "onnxruntime": ExportedAgent(model, cfg)})  # auto, both available


class MeasuredAgent(SmoothedAgent):
    """`predict.backend=auto`: at the first frame, each candidate (torch's engine, the exported graph in onnxruntime)
    decides it `ticks` times, interleaved after a warm-up; the one with the lower median time per tick decides the
    run. No rule about CPUs to go wrong on another family: it measures on the CPU it runs on, and says so."""

    kind = "stateful"

    def __init__(self, cfg: PredictConfig, candidates: dict[str, SmoothedAgent], ticks: int = 25) -> None:
        self.candidates, self.ticks = candidates, ticks
        self.classes = next(iter(candidates.values())).classes
        self.ema_alpha, self.margin = cfg.ema, cfg.hysteresis
        self.chosen: SmoothedAgent | None = None
        self.measured_ms: dict[str, float] = {}
        self.engine = _Measuring()

    def _probs(self, image, first: bool):
        if self.chosen is None:
            self._choose(image)
        return self.chosen._probs(image, first)

    def _choose(self, image) -> None:
        import statistics
        import time

        times: dict[str, list[float]] = {name: [] for name in self.candidates}
        for agent in self.candidates.values():
            agent._probs(image, True)  # builds it (the graph is exported once, and cached)
        for _ in range(self.ticks):
            for name, agent in self.candidates.items():
                t0 = time.perf_counter()
                agent._probs(image, True)
                times[name].append((time.perf_counter() - t0) * 1e3)
        self.measured_ms = {name: round(statistics.median(t), 3) for name, t in times.items()}
        name = min(self.measured_ms, key=self.measured_ms.get)
        self.chosen = self.candidates[name]
        self.chosen.engine.reset()
        self.engine = self.chosen.engine
        log.warning("predict.backend=auto: %s runs the model (median ms per tick on this CPU, measured at the first "
                    "frame: %s)", name, ", ".join(f"{k} {v}" for k, v in self.measured_ms.items()))

    def describe(self) -> dict:
        return {**super().describe(), "backend_ms": self.measured_ms}

    def inference(self):
        return self.candidates["torch"].inference()


class _Measuring:
    """The engine before the first frame, which decides which backend runs."""

    path = {"backend": "auto (measured at the first frame)"}

    def reset(self) -> None:
        pass
