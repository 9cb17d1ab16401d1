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
    if resolve_backend(model, cfg, mode) == "onnxruntime":
        return ExportedAgent(model, cfg)
    return ModelAgent(model, mode, window, cfg.ema, cfg.hysteresis, cfg.dtype, cfg.graph, cfg.fast_cpu)
