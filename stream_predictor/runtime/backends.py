"""Which engine runs a model, as `predict.backend` says, and the one factory of a model's agent (every caller uses it).

- `torch`: torch's TickEngine (oneDNN-prepacked kernels on the CPU, a CUDA graph on a GPU).
- `onnxruntime`: the model's exported graph (`ExportedEngine`), or an error saying why this model cannot be.
- `auto` (the default): `AutoEngine`, torch first, then whichever of torch and the graph is faster on this CPU,
  measured on the stream's own ticks; torch alone (with a warning saying why) where the graph cannot run the model.
- `triton`: a Triton Inference Server runs the model's graph (`TritonEngine`); the state stays with the client.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PredictConfig
from ..errors import UserError
from .agent import Engine, ModelAgent, resolve_mode

if TYPE_CHECKING:
    from ..model.stream_model import StreamModel

log = logging.getLogger(__name__)


def graph_refusals(model: StreamModel, mode: str) -> list[str]:
    """Why the model's exported graph cannot decide for it here (empty: it can)."""
    return [why for bad, why in (
        (mode != "stateful", f"the model decides {mode}"),
        (model.head.weight.device.type != "cpu", "the model is on a GPU"),
        (any(importlib.util.find_spec(m) is None for m in ("onnxruntime", "onnx", "onnxscript")),
         "onnxruntime, onnx and onnxscript are not all installed")) if bad]


def resolve_backend(model: StreamModel, cfg: PredictConfig, mode: str) -> str:
    """"torch", "onnxruntime" or "auto", as `cfg.backend` says and the model allows: `onnxruntime` refuses a model its
    graph cannot run; `auto` becomes torch for it, with a warning saying why."""
    if cfg.backend == "torch":
        return "torch"
    if cfg.backend == "triton":
        if mode != "stateful":
            raise UserError(f"predict.backend=triton runs stateful models (its graph steps the state), not {mode} ones")
        return "triton"
    reasons = graph_refusals(model, mode)
    if reasons and cfg.backend == "onnxruntime":
        raise UserError(f"predict.backend=onnxruntime cannot run this model: {'; '.join(reasons)}")
    if reasons:
        log.warning("predict.backend=auto: torch runs the model (%s)", "; ".join(reasons))
        return "torch"
    return cfg.backend


def load_decider(weights: str | Path, cfg: PredictConfig) -> StreamModel | ModelAgent:
    """What a weights file decides with: an exported graph (`.onnx`) as its agent in onnxruntime (no torch needed), else
    the model of a `.safetensors` file on `cfg.device`."""
    if str(weights).lower().endswith(".onnx"):
        from .onnx_engine import graph_agent

        return graph_agent(weights, cfg)
    from ..model.io import load_model

    return load_model(weights, cfg.device)


def model_engine(model: StreamModel, cfg: PredictConfig, streams: int = 1, mode: str | None = None,
                 window: int | None = None) -> Engine:
    """The engine for K streams of a model, on the backend `cfg.backend` resolves to."""
    if mode is None or window is None:
        mode, window = resolve_mode(model, cfg)
    backend = resolve_backend(model, cfg, mode)
    if backend == "triton":
        from .triton_engine import TritonEngine

        return TritonEngine(cfg, streams, model.classes)
    if backend == "onnxruntime":
        from .onnx_engine import ExportedEngine

        return ExportedEngine(model, cfg, streams)
    if backend == "auto":
        from .auto import AutoEngine

        return AutoEngine(model, cfg, streams, mode, window)
    from .engine import TickEngine

    on_cuda = model.head.weight.device.type == "cuda"
    return TickEngine(model, streams, cfg.dtype, cfg.graph if on_cuda else False, cfg.fast_cpu, mode, window)


def model_agent(model: StreamModel, cfg: PredictConfig, mode: str | None = None, window: int | None = None,
                streams: int = 1) -> ModelAgent:
    """A model's agent for K streams (one engine call decides all): its engine as `cfg.backend` says, its smoothing
    as `cfg` says."""
    if mode is None or window is None:
        mode, window = resolve_mode(model, cfg)
    return ModelAgent(model_engine(model.eval(), cfg, streams, mode, window), model.classes, mode, window, cfg.ema,
                      cfg.hysteresis, model, streams=streams)
