"""`predict.backend=auto`: torch's engine decides from the first frame while the model's graph is exported beside it; once
the graph is there, the two take turns on the stream's real ticks (the recurrent state handed from one to the other) and
the one with the lower median time per tick runs on.

Nothing stalls: the export runs in a child process (its own interpreter, so neither the GIL nor the exporter's output on
stdout touches the stream), and only after `predict.auto_after` ticks, so short runs never pay for it. The measurement
is made on the CPU the stream runs on, under its load: no rule about CPU families to go wrong elsewhere. The engine's
`path` says which ran and why, and the choice is logged with the times it was made on.

On a CPU that multiplies bfloat16 natively (AVX512-BF16 or AMX; `predict.auto_bfloat16=native`), torch in bfloat16 is a
third contender. It may win only if it also agrees with float32: the last `AGREE_FRAMES` frames of the first stream are
replayed through fresh float32 and bfloat16 engines, and bfloat16 is kept out below `AGREE_MIN` class agreement.
"""

from __future__ import annotations

import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import PredictConfig
from ..model.fast import BF16_FLAGS, cpu_bf16_native
from .engine import TickEngine
from .onnx_engine import OnnxEngine, graph_cache_path

if TYPE_CHECKING:
    from ..model.stream_model import StreamModel

log = logging.getLogger(__name__)

TURNS = 20  # real ticks timed per contender, taken in turn
AGREE_FRAMES = 200  # frames replayed through float32 and bfloat16 to measure their class agreement
AGREE_MIN = 0.995  # bfloat16 runs only at this class agreement with float32 or above
BF16 = "torch bfloat16"


class AutoEngine:
    """A TickEngine's call (`probs, classes = engine(frames, first)`, K streams) that moves to the exported graph in
    onnxruntime when that is faster here. `chunk()` (recorded video in lockstep) always runs on torch, which encodes a
    chunk as one batch."""

    chunked = True

    def __init__(self, model: StreamModel, cfg: PredictConfig, streams: int, mode: str, window: int) -> None:
        self.torch = TickEngine(model, streams, cfg.dtype, False, cfg.fast_cpu, mode, window)
        self.prev_action = self.torch.prev_action
        self.chunked = self.torch.chunked
        self.model, self.cfg, self.streams, self.mode, self.window = model, cfg, streams, mode, window
        self.graph: OnnxEngine | None = None
        self.chosen: str | None = None  # the contender that runs on, once measured
        self.measured_ms: dict[str, float] = {}
        self.counters: dict[str, int] = {}
        self.bf16_agreement: float | None = None  # class agreement of bfloat16 with float32, when it was a contender
        self.reason = "measuring"  # why the current engine runs
        self._ticks = 0
        self._engines: dict[str, TickEngine | OnnxEngine] = {"torch": self.torch}
        self.bf16_note = self._bf16_contender()
        self._times: dict[str, list[float]] = {}
        self._sample: deque = deque(maxlen=AGREE_FRAMES)  # (frame, first, prev) of stream 0, for the bfloat16 agreement
        self._export: subprocess.Popen | None = None
        self._export_dir: tempfile.TemporaryDirectory | None = None
        self._graph_path: Path | None = None
        self._current = "torch"  # the engine that holds the streams' state now

    def _bf16_contender(self) -> str:
        """Add torch in bfloat16 as a contender where `predict.auto_bfloat16` asks for it; say why (or why not)."""
        if self.cfg.dtype != "float32" or self.cfg.device != "cpu":
            return f"bfloat16 not tried: predict.dtype={self.cfg.dtype} on {self.cfg.device}"
        if self.mode != "stateful":
            return "bfloat16 not tried: the model decides windowed"
        native = cpu_bf16_native()
        if self.cfg.auto_bfloat16 == "never" or (self.cfg.auto_bfloat16 == "native" and not native):
            why = "predict.auto_bfloat16=never" if self.cfg.auto_bfloat16 == "never" else \
                f"this CPU has no native bfloat16 ({' or '.join(BF16_FLAGS)})"
            return f"bfloat16 not tried: {why}"
        self._engines[BF16] = TickEngine(self.model, self.streams, "bfloat16", False, False, self.mode, self.window)
        return "bfloat16 tried: " + ("native on this CPU" if native else "emulated (predict.auto_bfloat16=always)")

    @property
    def path(self) -> dict[str, str]:
        return {**self._engines[self._current].path, "backend": f"auto: {self._current} ({self.reason}; {self.bf16_note})"}

    def reset(self) -> None:
        for engine in self._engines.values():
            engine.reset()

    def get_state(self) -> list[np.ndarray]:
        """The streams' recurrent state, from the engine that holds it now."""
        return self._engines[self._current].get_state()

    def set_state(self, state: list[np.ndarray]) -> None:
        self._engines[self._current].set_state(state)

    def prepare(self, height: int, width: int) -> None:
        self.torch.prepare(height, width)

    # --- the engines' turns ---------------------------------------------------------------------
    def _use(self, name: str) -> TickEngine | OnnxEngine:
        """The engine `name`, holding the streams' state (handed over from the one that held it)."""
        if name != self._current:
            engine = self._engines[name]
            if isinstance(engine, TickEngine) and engine._shape is None:
                engine.prepare(*self.torch._shape)
            engine.set_state(self._engines[self._current].get_state())
            self._current = name
        return self._engines[name]

    def __call__(self, frames: np.ndarray, first: np.ndarray | list[bool] | None = None,
                 prev: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if self.chosen is not None:
            return self._use(self.chosen)(frames, first, prev)
        self._ticks += 1
        if BF16 in self._engines:
            frames = np.asarray(frames)
            self._sample.append((frames.reshape(-1, *frames.shape[-3:])[0].copy(), bool(first is not None and first[0]),
                                 -1 if prev is None else int(prev[0])))
        if self.graph is None:
            self._follow_export(np.asarray(frames).shape[-3:-1])
        if not self._times:
            return self._use("torch")(frames, first, prev)
        names = list(self._engines)
        name = names[self._ticks % len(names)]
        t0 = time.perf_counter()
        out = self._use(name)(frames, first, prev)
        self._times[name].append((time.perf_counter() - t0) * 1e3)
        if min(len(t) for t in self._times.values()) >= TURNS:
            self._choose()
        return out

    def chunk(self, frames: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._use("torch").chunk(frames, first)

    def _choose(self) -> None:
        self.measured_ms = {name: round(statistics.median(t), 3) for name, t in self._times.items()}
        allowed = dict(self.measured_ms)
        if BF16 in allowed:
            self.bf16_agreement = self._agreement()
            self.bf16_note = f"bfloat16 agrees {100 * self.bf16_agreement:.1f}% with float32 on {len(self._sample)} frames"
            if self.bf16_agreement < AGREE_MIN:
                del allowed[BF16]
                self.bf16_note += f", below {100 * AGREE_MIN:.1f}%: not used"
        self.chosen = min(allowed, key=allowed.get)
        self.reason = "faster here: " + ", ".join(f"{k} {v} ms" for k, v in self.measured_ms.items())
        log.warning("predict.backend=auto: %s runs the model (median ms per tick on this CPU, measured on %d real ticks "
                    "each: %s; %s)", self.chosen, TURNS, ", ".join(f"{k} {v}" for k, v in self.measured_ms.items()),
                    self.bf16_note)

    def _agreement(self) -> float:
        """Class agreement of bfloat16 with float32 over the sampled frames, each from a fresh state."""
        classes = []
        for dtype in ("float32", "bfloat16"):
            engine = TickEngine(self.model, 1, dtype, False, False, self.mode, self.window)
            classes.append([int(engine(frame[None], [first], [prev])[1][0]) for frame, first, prev in self._sample])
        return float(np.mean(np.equal(*classes))) if self._sample else 0.0

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
        self.graph = self._engines["onnxruntime"] = OnnxEngine(self._graph_path, self.streams, self.cfg.threads)
        self._times = {name: [] for name in self._engines}
        self.reason = "measuring: " + ", ".join(self._engines)


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
