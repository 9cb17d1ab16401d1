"""`predict.backend=auto`: torch's engine decides from the first frame while the model's graph is exported beside it; once
the graph is there, the two take turns on the stream's real ticks (the recurrent state handed from one to the other) and
the one with the lower median time per tick runs on.

Nothing stalls: the export runs in a child process (its own interpreter, so neither the GIL nor the exporter's output on
stdout touches the stream), and only after `predict.auto_after` ticks, so short runs never pay for it. The measurement
is made on the CPU the stream runs on, under its load: no rule about CPU families to go wrong elsewhere. The engine's
`path` says which ran and why, and the choice is logged with the times it was made on.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import PredictConfig
from .engine import TickEngine
from .onnx_engine import OnnxEngine, graph_cache_path

if TYPE_CHECKING:
    from ..model.stream_model import StreamModel

log = logging.getLogger(__name__)

TURNS = 40  # real ticks timed in all, taken in turn by the two engines


class AutoEngine:
    """A TickEngine's call (`probs, classes = engine(frames, first)`, K streams) that moves to the exported graph in
    onnxruntime when that is faster here. `chunk()` (recorded video in lockstep) always runs on torch, which encodes a
    chunk as one batch."""

    chunked = True

    def __init__(self, model: StreamModel, cfg: PredictConfig, streams: int, mode: str, window: int) -> None:
        self.torch = TickEngine(model, streams, cfg.dtype, False, cfg.fast_cpu, mode, window)
        self.model, self.cfg, self.streams, self.mode, self.window = model, cfg, streams, mode, window
        self.graph: OnnxEngine | None = None
        self.chosen: str | None = None  # "torch" or "onnxruntime" once measured
        self.measured_ms: dict[str, float] = {}
        self.reason = "measuring"  # why the current engine runs
        self._ticks = 0
        self._times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
        self._export: subprocess.Popen | None = None
        self._export_dir: tempfile.TemporaryDirectory | None = None
        self._graph_path: Path | None = None
        self._current = "torch"  # the engine that holds the streams' state now

    @property
    def path(self) -> dict[str, str]:
        engine = self.graph if self._current == "onnxruntime" and self.graph is not None else self.torch
        return {**engine.path, "backend": f"auto: {self._current} ({self.reason})"}

    def reset(self) -> None:
        self.torch.reset()
        if self.graph is not None:
            self.graph.reset()

    def prepare(self, height: int, width: int) -> None:
        self.torch.prepare(height, width)

    # --- the engines' turns ---------------------------------------------------------------------
    def _use(self, name: str) -> TickEngine | OnnxEngine:
        """The engine `name`, holding the streams' state (handed over from the other one if it held it)."""
        if name != self._current:
            src, dst = (self.torch, self.graph) if name == "onnxruntime" else (self.graph, self.torch)
            dst.set_state(src.get_state())
            self._current = name
        return self.graph if name == "onnxruntime" else self.torch

    def __call__(self, frames: np.ndarray, first: np.ndarray | list[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.chosen is not None:
            return self._use(self.chosen)(frames, first)
        self._ticks += 1
        if self.graph is None:
            self._follow_export(np.asarray(frames).shape[-3:-1])
        if self.graph is None:
            return self._use("torch")(frames, first)
        name = ("torch", "onnxruntime")[self._ticks % 2]
        engine = self._use(name)
        t0 = time.perf_counter()
        out = engine(frames, first)
        self._times[name].append((time.perf_counter() - t0) * 1e3)
        if min(len(t) for t in self._times.values()) >= TURNS // 2:
            self._choose()
        return out

    def chunk(self, frames: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._use("torch").chunk(frames, first)

    def _choose(self) -> None:
        self.measured_ms = {name: round(statistics.median(t), 3) for name, t in self._times.items()}
        self.chosen = min(self.measured_ms, key=self.measured_ms.get)
        self.reason = "faster here: " + ", ".join(f"{k} {v} ms" for k, v in self.measured_ms.items())
        log.warning("predict.backend=auto: %s runs the model (median ms per tick on this CPU, measured on %d real ticks: %s)",
                    self.chosen, TURNS, ", ".join(f"{k} {v}" for k, v in self.measured_ms.items()))

    # --- the export, in a child process ---------------------------------------------------------
    def _follow_export(self, size: tuple[int, int]) -> None:
        """Start the export once `auto_after` ticks have run; load the graph once it is written."""
        if self._export is None and self._graph_path is None:
            if self._ticks <= self.cfg.auto_after:
                return
            self._graph_path = graph_cache_path(self.model, self.cfg, size)
            if not self._graph_path.exists():
                self._export_dir = tempfile.TemporaryDirectory(prefix="sp-export-")
                self._export = start_export(self.model, self._graph_path, size, Path(self._export_dir.name))
                self.reason = "exporting the graph"
                return
        if self._export is not None:
            if self._export.poll() is None:
                return
            log_lines = (Path(self._export_dir.name) / "export.log").read_text(errors="replace").strip().splitlines()
            ok = self._export.returncode == 0 and self._graph_path.exists()
            self._export_dir.cleanup()
            self._export, self._export_dir = None, None
            if not ok:
                self.chosen, self.reason = "torch", f"the export failed: {(log_lines or ['no message'])[-1][:200]}"
                log.warning("predict.backend=auto: torch runs the model (%s)", self.reason)
                return
        self.graph = OnnxEngine(self._graph_path, self.streams, self.cfg.threads)
        self.reason = "measuring against onnxruntime"


def start_export(model: StreamModel, out: Path, size: tuple[int, int], workdir: Path) -> subprocess.Popen:
    """Export `model`'s tick graph for frames of `size` to `out` in a child process (the weights and its log in
    `workdir`); the caller polls it."""
    from ..model.io import save_model

    weights = save_model(model, workdir / "model.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("predict.backend=auto: exporting the graph for %dx%d frames in the background: %s", size[1], size[0], out)
    with open(workdir / "export.log", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "stream_predictor.model.export", str(weights), str(out), str(size[0]),
                                 str(size[1])], stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
