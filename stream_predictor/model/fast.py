"""Fast kernels for one tick: prepacked oneDNN encoders and LSTM cells on the CPU, CUDA graphs, half-precision copies.

Each fast piece checks itself against the module it replaces when it is built. One that disagrees (or cannot
run here) is not used, and a warning says so: the engine (`runtime/engine.py`) then runs the module and
reports which path it took.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .stream_model import State, StreamModel

log = logging.getLogger(__name__)

PARITY_TOL = 1e-4  # a fast piece that differs more than this (relative to the output's scale) from the module is not used


def _cpu_fast_ops() -> bool:
    """oneDNN is built in and this torch exposes its fused convolution."""
    try:
        torch.ops.mkldnn._convolution_pointwise  # noqa: B018 - resolving the op is the check
    except (AttributeError, RuntimeError):
        return False
    return torch.backends.mkldnn.is_available()


@functools.cache  # the CPU does not change while the process runs: /proc/cpuinfo is read once
def cpu_info() -> tuple[str, frozenset[str]]:
    """This CPU's model name and instruction-set flags, as /proc/cpuinfo gives them (elsewhere: the platform's name, no flags)."""
    import platform

    name, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    name = value.strip()
                elif key.strip() == "flags":
                    flags = frozenset(value.split())
                if flags and name:
                    break
    except OSError:
        pass
    return name, flags


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # instructions that multiply bfloat16 natively


def cpu_bf16_native() -> bool:
    return any(f in cpu_info()[1] for f in BF16_FLAGS)


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

    return _checked("encoder", run, encoder, torch.randn(in_shape))


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


def _checked(name: str, fast: Callable, reference: Callable, *example: torch.Tensor) -> Callable | None:
    """`fast` if it runs and matches `reference` on `example` within PARITY_TOL; else None, with a warning saying why.

    The tolerance scales with the output's largest magnitude (at least 1): float32 rounding does, and trained
    encoders can give features in the hundreds on a random input.
    """
    try:
        with torch.inference_mode():
            want = reference(*example)
            got = fast(*_clone(example))  # a fast piece may update its inputs in place
        diff = (_flat(got) - _flat(want)).abs().max().item() / max(1.0, _flat(want).abs().max().item())
    except (RuntimeError, TypeError, AttributeError) as e:
        log.warning("fast %s not used: it fails here (%s: %s)", name, type(e).__name__, str(e).splitlines()[0])
        return None
    if diff > PARITY_TOL:
        log.warning("fast %s not used: it differs from the module by %.2g relative to the output's scale (tolerance %.0e)",
                    name, diff, PARITY_TOL)
        return None
    return fast


def _clone(value):
    return tuple(_clone(v) for v in value) if isinstance(value, tuple) else value.clone()


def _flat(value: torch.Tensor | tuple) -> torch.Tensor:
    return torch.cat([_flat(v) for v in value]) if isinstance(value, tuple) else value.flatten()


def packed_cell(model: StreamModel, streams: int = 2) -> Callable[[torch.Tensor, State], tuple[torch.Tensor, State]] | None:
    """A CPU LSTM step (inputs, state) → (logits, state) with one prepacked matrix for the gates of [x, h]; x is what
    the LSTM reads (`StreamModel.rnn_input`: the features, and the previous action where the model takes it).

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
    sig, h_rows = 3 * hidden, torch.arange(rnn.input_size, rnn.input_size + hidden)

    def run(x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step; the new (h, c) are written into `state` in place and returned with the logits."""
        h_all, c_all = state
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

    example = (torch.randn(streams, rnn.input_size).relu_(), tuple(torch.randn_like(s) for s in model.init_state(streams, "cpu")))
    return _checked("LSTM cell", run, model.step_inputs, *example)


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
