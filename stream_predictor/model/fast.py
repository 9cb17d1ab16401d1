"""The per-tick fast path: one new frame per stream → probabilities, with as little work per tick as the hardware allows.

`TickEngine` owns preallocated buffers for K streams (the uint8 frames, the recurrent state, the
outputs) and runs preprocess → encode → step → softmax/argmax on them:

- CUDA: a pinned host buffer is uploaded asynchronously, and the whole tick (preprocessing on the
  GPU included) is captured once as a CUDA graph and replayed every tick; float16/bfloat16 optional.
- CPU: plain Conv2d/ReLU/Linear encoders (nature_cnn) run through oneDNN with weights prepacked once
  and ReLU fused into each layer; the LSTM gates come from one prepacked matrix for [x, h]. Anything
  the fast path does not cover runs the module itself. Each fast piece checks itself against the
  module when it is built and is dropped if it disagrees.

The engine holds its own copy of the recurrent state: `reset()` zeroes it, `first` zeroes it per stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .stream_model import State, StreamModel

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PARITY_TOL = 1e-4  # a fast piece that differs more than this from the module on a test input is not used


def _cpu_fast_ops() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _layers(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of nested Sequentials, in order (None for an empty Sequential)."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in (_layers(child) or [None])]
    return [module]


SPARSE_MIN_INPUTS = 1024  # a Linear this wide, fed by a ReLU, skips the weight rows of zero inputs (one stream)


def packed_encoder(encoder: nn.Module, in_shape: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A CPU function equal to `encoder` for inputs of `in_shape` (B, C, h, w), with oneDNN-prepacked weights.

    Covers encoders made only of Conv2d (groups 1), ReLU, Flatten and Linear, i.e. nature_cnn; returns
    None for anything else (the caller keeps the module). oneDNN hands back channels-last maps, so a
    Linear after Flatten takes its columns in (h, w, c) order and the flatten is a view, not a copy.
    For one stream, a wide Linear after a ReLU is a sparse product (`_sparse_linear`).
    """
    if not _cpu_fast_ops():
        return None
    layers = _layers(encoder)
    ops: list[tuple] = []
    shape = list(in_shape)
    after_relu = False
    for i, layer in enumerate(layers):
        relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
        if isinstance(layer, nn.Conv2d) and layer.groups == 1 and isinstance(layer.padding, tuple):
            w = torch.ops.mkldnn._reorder_convolution_weight(layer.weight.detach(), list(layer.padding), list(layer.stride),
                                                             list(layer.dilation), 1, shape)
            ops.append(("conv", w, layer.bias.detach() if layer.bias is not None else None, list(layer.padding),
                        list(layer.stride), list(layer.dilation), "relu" if relu else "none"))
            with torch.no_grad():
                shape = list(layer(torch.zeros(shape)).shape)
        elif isinstance(layer, nn.Linear):
            weight, bias = layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None
            if len(shape) == 4:  # flattened conv maps: reorder the columns from (c, h, w) to (h, w, c)
                weight = weight.reshape(-1, *shape[1:]).permute(0, 2, 3, 1).reshape(weight.shape[0], -1)
            sparse = after_relu and shape[0] == 1 and weight.shape[1] >= SPARSE_MIN_INPUTS
            ops.append(("linear", weight.t().contiguous() if sparse else weight.contiguous(), bias, relu, sparse))
            shape = [shape[0], weight.shape[0]]
        elif isinstance(layer, nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
            ops.append(("flatten",))
        elif not isinstance(layer, nn.ReLU):
            return None
        after_relu = isinstance(layer, nn.ReLU) or (after_relu and isinstance(layer, nn.Flatten))
    mkldnn = torch.ops.mkldnn

    def run(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            if op[0] == "conv":
                x = mkldnn._convolution_pointwise(x, op[1], op[2], op[3], op[4], op[5], 1, op[6], [], "")
            elif op[0] == "linear":
                x = _sparse_linear(x, op[1], op[2]) if op[4] else F.linear(x, op[1], op[2])
                if op[3]:
                    x = x.relu_()
            else:
                x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
        return x

    return _checked(run, encoder, torch.randn(in_shape))


_BAG_OFFSETS = torch.zeros(1, dtype=torch.long)


def _sparse_linear(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None,
                   dense: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """x (1, n) @ weight_t (n, m) + bias, reading only the weight rows where x is non-zero.

    After a ReLU about half the inputs are zero; for a layer whose weights stream from memory every tick
    (nature_cnn's 3136 x 512 = 6.4 MB) that halves the traffic. A weighted embedding bag is that product.
    `dense` = (values, rows): more inputs taken whole, with their own weight rows (the LSTM's h after x).
    """
    v = x.view(-1)
    idx = v.nonzero().view(-1)
    values = v[idx]
    if dense is not None:
        idx, values = torch.cat([idx, dense[1]]), torch.cat([values, dense[0].view(-1)])
    y = F.embedding_bag(idx, weight_t, _BAG_OFFSETS, mode="sum", per_sample_weights=values)
    return y if bias is None else y.add_(bias)


def _checked(fast: Callable, reference: Callable, *example: torch.Tensor) -> Callable | None:
    """`fast` if it runs and matches `reference` on `example` within PARITY_TOL, else None."""
    try:
        with torch.inference_mode():
            want = reference(*example)
            got = fast(*_clone(example))  # a fast piece may update its inputs in place
        return fast if (_flat(got) - _flat(want)).abs().max().item() <= PARITY_TOL else None
    except (RuntimeError, TypeError, AttributeError):
        return None


def _clone(value):
    return tuple(_clone(v) for v in value) if isinstance(value, tuple) else value.clone()


def _flat(value: torch.Tensor | tuple) -> torch.Tensor:
    return torch.cat([_flat(v) for v in value]) if isinstance(value, tuple) else value.flatten()


def packed_cell(model: StreamModel, streams: int = 2) -> Callable[[torch.Tensor, State], tuple[torch.Tensor, State]] | None:
    """A CPU LSTM step (features, state) → (logits, state) with one prepacked matrix for the gates of [x, h].

    The gates are reordered once to (i, f, o, g) so that one in-place sigmoid and one tanh cover them.
    For one stream whose features come out of a ReLU, the first layer's gates skip the zero features
    (`_sparse_linear` over the stacked [x, h] rows, h taken whole).
    """
    if model.cfg.temporal != "lstm" or not _cpu_fast_ops():
        return None
    rnn, hidden = model.rnn, model.cfg.hidden
    sparse = streams == 1 and isinstance((_layers(model.encoder) or [None])[-1], nn.ReLU)
    layers = []
    for layer in range(model.cfg.layers):
        w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}").detach() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        order = torch.cat([torch.arange(0, 2 * hidden), torch.arange(3 * hidden, 4 * hidden), torch.arange(2 * hidden, 3 * hidden)])
        w = torch.cat([w_ih, w_hh], 1)[order]
        layers.append((w.t().contiguous() if sparse and layer == 0 else w.contiguous(), (b_ih + b_hh)[order].contiguous()))
    head_w, head_b = model.head.weight.detach(), model.head.bias.detach()
    sig, h_rows = 3 * hidden, torch.arange(model.feature_dim, model.feature_dim + hidden)

    def run(feats: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step; the new (h, c) are written into `state` in place and returned with the logits."""
        h_all, c_all = state
        x = feats
        for layer, (w, b) in enumerate(layers):
            if sparse and layer == 0:
                gates = _sparse_linear(x, w, b, (h_all[0], h_rows))
            else:
                gates = torch.addmm(b, torch.cat([x, h_all[layer]], 1), w.t())
            gates[:, :sig].sigmoid_()
            gates[:, sig:].tanh_()
            i, f, o, g = gates[:, :hidden], gates[:, hidden : 2 * hidden], gates[:, 2 * hidden : sig], gates[:, sig:]
            c = c_all[layer]
            torch.addcmul(f * c, i, g, out=c)
            x = torch.mul(o, torch.tanh(c), out=h_all[layer])
        return F.linear(x, head_w, head_b), state

    example = (torch.randn(streams, model.feature_dim).relu_(), tuple(torch.randn_like(s) for s in model.init_state(streams, "cpu")))
    return _checked(run, model.step_features, *example)


class TickEngine:
    """K streams, one call per tick: `probs, classes = engine(frames, first)`.

    frames: (K, H, W, 3) BGR uint8 (numpy or tensor); first: (K,) bools, the streams whose state is
    zeroed before this frame. Returns numpy (K, classes) float32 probabilities and (K,) class ids.
    `engine.features` holds the (K, D) encoded frames of the last call (on the engine's device).
    """

    def __init__(self, model: StreamModel, streams: int = 1, dtype: str = "float32", graph: bool | None = None,
                 fast_cpu: bool = True, step: bool = True) -> None:
        if dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
        self.model = model.eval()
        self.device = model.head.weight.device
        self.streams = streams
        self.dtype = DTYPES[dtype]
        if self.device.type == "cpu" and self.dtype != torch.float32:
            raise UserError(f"dtype {dtype} needs a CUDA device; on the CPU the engine runs float32")
        self.use_graph = self.device.type == "cuda" if graph is None else graph
        if self.use_graph and self.device.type != "cuda":
            raise UserError("CUDA graphs need a CUDA device")
        self.fast_cpu = fast_cpu and self.device.type == "cpu"
        self.step = step  # False: encode only (`features`), for callers that run the temporal model themselves
        self._net = model if self.dtype == torch.float32 else cast_copy(model, self.dtype)
        self._shape: tuple[int, int] | None = None
        self._graph: torch.cuda.CUDAGraph | None = None

    # --- buffers, built for the first frame size seen ----------------------------------------------
    def _build(self, h: int, w: int) -> None:
        k, dev, m = self.streams, self.device, self.model
        pin = dev.type == "cuda"
        self._shape = (h, w)
        self.host_frames = torch.zeros((k, h, w, 3), dtype=torch.uint8, pin_memory=pin)
        self.host_first = torch.zeros(k, dtype=torch.bool, pin_memory=pin)
        self.frames = self.host_frames if dev.type == "cpu" else torch.zeros_like(self.host_frames, device=dev)
        self.first = self.host_first if dev.type == "cpu" else torch.zeros_like(self.host_first, device=dev)
        self.state = tuple(s.to(self.dtype) for s in m.init_state(k, dev))
        self.features = torch.zeros((k, m.feature_dim), device=dev, dtype=self.dtype)
        self.x = torch.zeros((k, m.preproc.channels, *m.preproc.size), device=dev, dtype=self.dtype)
        self.probs = torch.zeros((k, len(m.classes)), device=dev)
        self.classes = torch.zeros(k, dtype=torch.long, device=dev)
        c, (sh, sw) = m.preproc.channels, m.preproc.size
        self._encode = self._net.encode
        self._step = self._net.step_features
        if self.fast_cpu:
            self._encode = packed_encoder(self._net.encoder, (k, c, sh, sw)) or self._encode
            cell = packed_cell(self._net, k)
            self._step = self._cpu_step(cell) if cell else self._step
        if self.use_graph:
            self._capture()

    def prepare(self, height: int, width: int) -> None:
        """Allocate the buffers (and capture the graph) for frames of this size; done by the first call otherwise."""
        self._build(height, width)

    def _cpu_step(self, cell: Callable) -> Callable:
        """The packed cell, updating the engine's state in place; `first` is read on the host (no mask arithmetic)."""
        def step(feats: torch.Tensor, state: State, first: torch.Tensor) -> tuple[torch.Tensor, State]:
            if first.any():
                for s in state:
                    s[:, first] = 0.0
            return cell(feats, state)

        return step

    def _compute(self) -> None:
        """The whole tick on the buffers: every output is written in place (graph-safe)."""
        self.x.copy_(self._net.preproc(self.frames))
        self._model_tick()

    def _model_tick(self) -> None:
        """Encode → step → probabilities and class ids, from the preprocessed frames in `self.x`."""
        feats = self._encode(self.x)
        self.features.copy_(feats)
        if not self.step:
            return
        logits, state = self._step(feats, self.state, self.first)
        for old, new in zip(self.state, state):
            if new is not old:
                old.copy_(new)
        torch.softmax(logits.float(), -1, out=self.probs)
        torch.argmax(logits, -1, out=self.classes)

    def _capture(self) -> None:
        self._graph = cuda_graph(self._compute)
        self.reset()

    def model_tick_fn(self) -> Callable[[], None]:
        """One tick of model work only, on `self.x` (for benchmarks): a graph replay on CUDA, else the call itself."""
        assert self._shape is not None, "prepare() first"
        return cuda_graph(self._model_tick).replay if self.use_graph else self._model_tick

    # --- per tick ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Zero every stream's recurrent state."""
        with torch.inference_mode():  # the buffers may have been made inside inference mode
            for s in getattr(self, "state", ()):
                s.zero_()

    def submit(self, frames: np.ndarray | torch.Tensor, first: np.ndarray | list[bool] | None = None) -> None:
        """Start a tick: copy the frames in, then run (or replay) it. On CUDA this returns before the GPU is done."""
        t = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        if t.dim() == 3:
            t = t[None]
        if t.dtype != torch.uint8 or t.shape[0] != self.streams or t.shape[-1] != 3:
            raise ValueError(f"expected ({self.streams}, H, W, 3) BGR uint8 frames, got {tuple(t.shape)} {t.dtype}")
        if self._shape != tuple(t.shape[1:3]):
            self._build(t.shape[1], t.shape[2])
        self.host_frames.copy_(t)
        self.host_first.copy_(torch.as_tensor(np.zeros(self.streams, bool) if first is None else np.asarray(first, bool)))
        with torch.inference_mode():
            if self.device.type == "cuda":
                self.frames.copy_(self.host_frames, non_blocking=True)
                self.first.copy_(self.host_first, non_blocking=True)
            if self._graph is not None:
                self._graph.replay()
            else:
                self._compute()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Wait for the tick submitted last: (K, classes) probabilities and (K,) class ids, as numpy."""
        return self.probs.cpu().numpy().copy(), self.classes.cpu().numpy().copy()  # the buffers are reused next tick

    def __call__(self, frames: np.ndarray | torch.Tensor, first: np.ndarray | list[bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
        self.submit(frames, first)
        return self.result()


def cuda_graph(fn: Callable[[], None], warmup: int = 3) -> torch.cuda.CUDAGraph:
    """Capture `fn` (which reads and writes only preallocated CUDA tensors) as a graph; `graph.replay()` reruns it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(warmup):  # cuDNN and the allocator settle outside the capture
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        fn()
    return graph


def cast_copy(model: StreamModel, dtype: torch.dtype) -> StreamModel:
    """A copy of the model whose encoder, recurrent layer and head run in `dtype` (preprocessing stays float32)."""
    import copy

    net = copy.deepcopy(model)
    for part in (net.encoder, net.rnn, net.head):
        part.to(dtype)
    return net
