"""TickEngine: K streams, one new frame each → probabilities and class ids, in one call per tick.

It owns preallocated buffers (the uint8 frames, the recurrent state, the cached features, the outputs)
and runs preprocess → encode (the CNN, once per frame) → temporal step → softmax/argmax on them.
Both ways of deciding live here:

- `stateful`: the LSTM stepped one frame per tick from the carried state, O(1). Equal to the offline
  `model(clip)` over everything since the last reset.
- `windowed`: the LSTM from zero state over the last N cached features of the stream (no frame is
  encoded twice), equal to `model(last N frames)[:, -1]`. Before N frames have arrived it runs over
  the n < N there are. A reset empties the stream's window.

Where the hardware allows, the work runs on fast kernels (`model/fast.py`): a CUDA graph of the whole
tick on a GPU, prepacked oneDNN weights on the CPU. `engine.path` says which ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from ..errors import UserError
from ..model.fast import BF16_FLAGS, cast_copy, cpu_bf16_native, cpu_info, cuda_graph, packed_cell, packed_encoder
from ..model.stream_model import State, StreamModel

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
MODES = ("stateful", "windowed")


class FeatureRing:
    """The last N encoded frames of each of K streams, (K, N, D), preallocated."""

    def __init__(self, streams: int, size: int, dim: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        self.buf = torch.zeros(streams, size, dim, device=device, dtype=dtype)
        self.size = size
        self.count = np.zeros(streams, np.int64)  # frames held per stream, at most N
        self._next = np.zeros(streams, np.int64)  # slot the stream's next frame goes to

    def push(self, feats: torch.Tensor) -> None:
        """One (K, D) feature per stream."""
        self.buf[np.arange(len(self.count)), self._next] = feats
        self._next = (self._next + 1) % self.size
        self.count = np.minimum(self.count + 1, self.size)

    def clear(self, stream: int) -> None:
        self.count[stream] = self._next[stream] = 0

    def ordered(self, stream: int) -> torch.Tensor:
        """(n, D) with n = min(count, N), oldest first."""
        n, nxt, buf = int(self.count[stream]), int(self._next[stream]), self.buf[stream]
        return buf[:n] if n < self.size else torch.cat([buf[nxt:], buf[:nxt]])


class TickEngine:
    """K streams, one call per tick: `probs, classes = engine(frames, first)`; one stream's n frames: `engine.chunk(…)`.

    frames: (K, H, W, 3) BGR uint8 (numpy or tensor); first: (K,) bools, the streams whose state is
    reset before this frame; prev: (K,) the class each stream pressed on its previous tick (-1: none), read by a model
    with `model.prev_action` (`prev_action`; a model without it ignores them). Returns numpy (K, classes) float32
    probabilities and (K,) class ids.
    `engine.features` holds the (K, D) encoded frames of the last call (on the engine's device), `engine.logits`
    its (K, classes) float32 logits and, when stateful, `engine.state` the recurrent state after it.
    """

    chunked = True
    measured_ms: dict[str, float] = {}  # noqa: RUF012 - read only: no backend choice was measured
    counters: dict[str, int] = {}  # noqa: RUF012 - read only: nothing to count

    def __init__(self, model: StreamModel, streams: int = 1, dtype: str = "float32", graph: bool | None = None,
                 fast_cpu: bool = True, mode: str = "stateful", window: int = 16) -> None:
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        if mode not in MODES:
            raise UserError(f"predict mode must be stateful or windowed, got '{mode}'")
        if window < 1:
            raise UserError(f"predict window must be at least 1, got {window}")
        if mode == "windowed" and model.cfg.prev_action:
            raise UserError("a model that sees its previous action (model.prev_action) decides statefully: "
                            "set predict.mode=stateful (or auto)")
        self.prev_action = model.cfg.prev_action
        self.chunked = not self.prev_action
        self.model = model.eval()
        self.device = model.head.weight.device
        self.streams, self.mode, self.window = streams, mode, window
        self.dtype = DTYPES[dtype]
        if self.device.type == "cpu" and self.dtype == torch.float16:
            raise UserError("dtype float16 needs a CUDA device; on the CPU the engine runs float32 or bfloat16")
        if self.device.type == "cpu" and self.dtype == torch.bfloat16 and not cpu_bf16_native():
            log.warning("this CPU (%s) has no bfloat16 instructions (%s): bfloat16 runs emulated, slower than float32",
                        cpu_info()[0], ", ".join(BF16_FLAGS))
        self.use_graph = self.device.type == "cuda" if graph is None else graph
        if self.use_graph and self.device.type != "cuda":
            raise UserError("CUDA graphs need a CUDA device")
        self.fast_cpu = fast_cpu and self.device.type == "cpu" and self.dtype == torch.float32  # the packed kernels are float32
        self._net = model if self.dtype == torch.float32 else cast_copy(model, self.dtype)
        self._shape: tuple[int, int] | None = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self.path: dict[str, str] = {}

    # --- buffers, built for the first frame size seen ----------------------------------------------
    def _build(self, h: int, w: int) -> None:
        k, dev, m = self.streams, self.device, self.model
        crop = m.preproc.crop
        if crop is not None and (crop[0] + crop[2] > w or crop[1] + crop[3] > h):
            raise UserError(f"frames of {w}x{h} are too small for the model's crop (x, y, w, h) = {list(crop)}")
        if self._shape not in (None, (h, w)):
            log.warning("frame size changed from %dx%d to %dx%d; the engine rebuilds its buffers and resizes as before",
                        self._shape[1], self._shape[0], w, h)
        pin = dev.type == "cuda"
        self._shape = (h, w)
        self.host_frames = torch.zeros((k, h, w, 3), dtype=torch.uint8, pin_memory=pin)
        self.host_first = torch.zeros(k, dtype=torch.bool, pin_memory=pin)
        self.host_prev = torch.full((k,), -1, dtype=torch.long, pin_memory=pin)
        self.frames = self.host_frames if dev.type == "cpu" else torch.zeros_like(self.host_frames, device=dev)
        self.first = self.host_first if dev.type == "cpu" else torch.zeros_like(self.host_first, device=dev)
        self.prev = self.host_prev if dev.type == "cpu" else self.host_prev.to(dev)
        self.state = tuple(s.to(self.dtype) for s in m.init_state(k, dev))
        self.features = torch.zeros((k, m.feature_dim), device=dev, dtype=self.dtype)
        self.ring = FeatureRing(k, self.window, m.feature_dim, dev, self.dtype) if self.mode == "windowed" else None
        self.x = torch.zeros((k, m.preproc.channels, *m.preproc.size), device=dev, dtype=self.dtype)
        self.logits = torch.zeros((k, len(m.classes)), device=dev)
        self.probs = torch.zeros((k, len(m.classes)), device=dev)
        self.classes = torch.zeros(k, dtype=torch.long, device=dev)
        c, (sh, sw) = m.preproc.channels, m.preproc.size
        self._encode = self._net.encode
        self._step = self._module_step
        encoder, cell = "module", "module"
        if self.fast_cpu:
            packed = packed_encoder(self._net.encoder, (k, c, sh, sw))
            self._encode, encoder = (packed, "oneDNN prepacked") if packed else (self._encode, "module")
            packed_step = packed_cell(self._net, k) if self.mode == "stateful" else None
            self._step, cell = (self._cpu_step(packed_step), "prepacked") if packed_step else (self._step, "module")
        device = f"{dev.type} {str(self.dtype).removeprefix('torch.')}"
        if dev.type == "cpu" and self.dtype == torch.bfloat16:
            device += " (native)" if cpu_bf16_native() else " (emulated: no bfloat16 instructions)"
        temporal = f"{self.mode} ({cell} cell)" if self.mode == "stateful" else f"windowed over {self.window}"
        self.path = {"device": device, "encoder": encoder,
                     "temporal": temporal + (", reads the previous action" if self.prev_action else ""),
                     "graph": "CUDA graph" if self.use_graph else "none"}
        if self.use_graph:
            self._graph = cuda_graph(self._compute)
            self.reset()

    def prepare(self, height: int, width: int) -> None:
        """Allocate the buffers (and capture the graph) for frames of this size; done by the first call otherwise."""
        self._build(height, width)

    def _module_step(self, x: torch.Tensor, state: State, first: torch.Tensor) -> tuple[torch.Tensor, State]:
        return self._net.step_inputs(x, self._net.reset_state(state, first))

    def _cpu_step(self, cell: Callable) -> Callable:
        """The packed cell, updating the engine's state in place; `first` is read on the host (no mask arithmetic)."""
        def step(x: torch.Tensor, state: State, first: torch.Tensor) -> tuple[torch.Tensor, State]:
            if first.any():
                for s in state:
                    s[:, first] = 0.0
            return cell(x, state)

        return step

    def _compute(self) -> None:
        """Preprocess → encode (→ step, when stateful), every output written in place (graph-safe)."""
        self.x.copy_(self._net.preproc(self.frames))
        self._model_tick()

    def _model_tick(self) -> None:
        """Encode (→ step → probabilities and class ids, when stateful), from the preprocessed frames in `self.x`."""
        feats = self._encode(self.x)
        self.features.copy_(feats)
        if self.mode != "stateful":
            return
        x = self._net.rnn_input(feats, self.prev, self.first)  # the features alone for a model without prev_action
        logits, state = self._step(x, self.state, self.first)
        for old, new in zip(self.state, state):
            if new is not old:
                old.copy_(new)
        self._outputs(logits)

    def _outputs(self, logits: torch.Tensor) -> None:
        self.logits.copy_(logits)
        torch.softmax(self.logits, -1, out=self.probs)
        torch.argmax(logits, -1, out=self.classes)

    def _windowed(self, first: np.ndarray) -> None:
        """After encoding: push each stream's feature and run the LSTM over its window, from zero state."""
        ring = self.ring
        for i in np.flatnonzero(first):
            ring.clear(int(i))
        ring.push(self.features)
        if (ring.count == ring.count[0]).all():  # the usual case: one batched call
            windows = torch.stack([ring.ordered(i) for i in range(self.streams)])
            logits = self._net.window(windows)
        else:
            logits = torch.cat([self._net.window(ring.ordered(i)[None]) for i in range(self.streams)])
        self._outputs(logits)

    def model_tick_fn(self) -> Callable[[], None]:
        """One tick of model work only, on `self.x` (for benchmarks): a graph replay on CUDA, else the call itself."""
        assert self._shape is not None, "prepare() first"
        return cuda_graph(self._model_tick).replay if self.use_graph else self._model_tick

    def refresh(self) -> None:
        """Rebuild the fast kernels from the model's weights as they are now (after training steps); states are kept."""
        if self._shape is None:
            return
        kept = [s.clone() for s in self.state]
        self._build(*self._shape)
        with torch.inference_mode():
            for s, k in zip(self.state, kept):
                s.copy_(k)

    # --- per tick ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero every stream's recurrent state and empty every window."""
        if self._shape is None:
            return
        with torch.inference_mode():  # the buffers may have been made inside inference mode
            for s in self.state:
                s.zero_()
        if self.ring is not None:
            for i in range(self.streams):
                self.ring.clear(i)

    def submit(self, frames: np.ndarray | torch.Tensor, first: np.ndarray | list[bool] | None = None,
               prev: np.ndarray | list[int] | None = None) -> None:
        """Start a tick: copy the frames in, then run (or replay) it. On CUDA a stateful tick returns before the GPU is done."""
        t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if t.dim() == 3:
            t = t[None]
        if t.dtype != torch.uint8 or t.shape[0] != self.streams or t.shape[-1] != 3:
            raise ValueError(f"expected ({self.streams}, H, W, 3) BGR uint8 frames, got {tuple(t.shape)} {t.dtype}")
        if self._shape != tuple(t.shape[1:3]):
            self._build(t.shape[1], t.shape[2])
        first_np = np.zeros(self.streams, bool) if first is None else np.asarray(first, bool)
        self.host_frames.copy_(t)
        self.host_first.copy_(torch.from_numpy(first_np))
        if self.prev_action:
            self.host_prev.copy_(torch.as_tensor(-1 if prev is None else np.asarray(prev, np.int64)))
        with torch.inference_mode():
            if self.device.type == "cuda":
                self.frames.copy_(self.host_frames, non_blocking=True)
                self.first.copy_(self.host_first, non_blocking=True)
                self.prev.copy_(self.host_prev, non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._compute()
            if self.mode == "windowed":
                self._windowed(first_np)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Wait for the tick submitted last: (K, classes) probabilities and (K,) class ids, as numpy."""
        return self.probs.cpu().numpy().copy(), self.classes.cpu().numpy().copy()  # the buffers are reused next tick

    def __call__(self, frames: np.ndarray | torch.Tensor, first: np.ndarray | list[bool] | None = None,
                 prev: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.submit(frames, first, prev)
        return self.result()

    # --- many frames of one stream at once (recorded video in lockstep) -------------------------------
    def chunk(self, frames: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The next n frames of a one-stream engine in one call: (n, H, W, 3) BGR uint8 and (n,) resets → (n, classes)
        probabilities and (n,) class ids, the same as n calls of one frame (to float rounding).

        The CNN encodes all n frames as one batch; the LSTM then runs over them as a sequence (stateful, cut only at
        resets) or over each frame's window of cached features (windowed). The engine's state and feature window end
        where n one-frame calls would leave them, so chunks and single ticks mix freely.
        """
        if self.streams != 1:
            raise ValueError("chunk() is for a one-stream engine")
        if self.prev_action:  # each frame reads the class pressed after the one before: one tick at a time
            raise ValueError("chunk() needs decisions that do not feed back: this model reads its previous action")
        n, first = len(frames), np.asarray(first, bool)
        t = torch.from_numpy(np.ascontiguousarray(frames))
        if self._shape != tuple(t.shape[1:3]):
            self._build(t.shape[1], t.shape[2])
        with torch.inference_mode():
            x = self._net.preproc(t.to(self.device)).to(self.dtype)  # (n, C, h, w)
            feats = self._chunk_encoder(n)(x)  # (n, D)
            if self.mode == "stateful":
                logits, state = self._net.temporal(feats[None], self.state, torch.from_numpy(first).to(self.device)[None])
                logits = logits[0]
                for old, new in zip(self.state, state):
                    old.copy_(new)
            else:
                logits = self._chunk_windows(feats, first)
            self.features.copy_(feats[-1:])
            self._outputs(logits[-1:].float())
            probs = torch.softmax(logits.float(), -1)
            return probs.cpu().numpy(), probs.argmax(-1).cpu().numpy()

    def _chunk_encoder(self, n: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The encoder for batches of n frames: oneDNN-prepacked for that shape where the one-frame tick is, else the module."""
        if not self.fast_cpu:
            return self._net.encode
        cache = self.__dict__.setdefault("_chunk_encoders", {})
        if n not in cache:
            c, (sh, sw) = self.model.preproc.channels, self.model.preproc.size
            cache[n] = packed_encoder(self._net.encoder, (n, c, sh, sw)) or self._net.encode
        return cache[n]

    def _chunk_windows(self, feats: torch.Tensor, first: np.ndarray) -> torch.Tensor:
        """Windowed logits (n, classes) for n new features: each frame's window is the last `window` features of its
        episode, older ones from the feature ring; windows of equal length run as one batch."""
        ring, n = self.ring, len(feats)
        if first[0]:
            ring.clear(0)
        history = ring.ordered(0)  # (m, D) before this chunk
        seq = torch.cat([history, feats])
        start = np.zeros(n, np.int64)
        episode = 0
        for i in range(n):  # the first frame of each frame's episode, in `seq`
            if first[i]:
                episode = len(history) + i
            start[i] = max(episode, len(history) + i + 1 - self.window)
        ends = np.arange(len(history) + 1, len(history) + n + 1)
        lengths = ends - start
        logits = torch.empty((n, len(self.model.classes)), device=self.device, dtype=feats.dtype)
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            windows = torch.stack([seq[start[i] : ends[i]] for i in rows])
            logits[torch.from_numpy(rows)] = self._net.window(windows)
        last = int(np.flatnonzero(first)[-1]) if first.any() else -1
        if last >= 0:
            ring.clear(0)
        for f in feats[max(last, 0):][-self.window :]:
            ring.push(f[None])
        return logits

    def get_state(self) -> list[np.ndarray]:
        """The recurrent state (stateful engines) as numpy (L, K, H) arrays, h then c, to hand to another engine."""
        return [s.float().cpu().numpy().copy() for s in self.state]

    def set_state(self, state: list[np.ndarray]) -> None:
        with torch.inference_mode():
            for s, v in zip(self.state, state):
                s.copy_(torch.from_numpy(v))
