"""The whole tick as one ONNX graph, so that any runtime can run the agent (onnxruntime, OpenVINO, Triton, a phone).

Inputs: `frames` uint8 (K, H, W, 3) BGR, `first` bool (K,) (that stream's state is zeroed before the step), and the
recurrent state `h`, `c` (layers, K, hidden) for an LSTM, `h` alone for a GRU; a model with `model.prev_action` also
takes `prev` int64 (K,), the class each stream pressed on its previous tick (-1: none), after `first`. Outputs:
`probs` float32 (K, classes), then `h_out` (and `c_out`). Preprocessing (crop, grayscale, antialiased resize, rounding,
normalisation) is inside the graph; K is dynamic; H and W are fixed at export. The graph's metadata holds the class
names, the preprocessing, the model config, how it was trained and the frame size (`read_meta`).

For Triton's sequence batcher (`triton=True`), the batch goes first everywhere: `first` (K, 1) (a START control input),
`prev` (K, 1), the state (K, layers, hidden) (implicit state), and an unused `corrid` (K, 1) uint64 (the CORRID control input).

Exporting uses torch's ONNX exporter (torch.export + onnxscript); the result passes the ONNX checker and, where
onnxruntime is installed, is checked against the torch model before it is written.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import Trained, to_dict
from ..errors import UserError
from ..files import atomic_path
from ..onnx_format import FORMAT, decode_meta
from .stream_model import StreamModel

log = logging.getLogger(__name__)

OPSET = 18  # Resize with antialias


class TickGraph(nn.Module):
    """One tick of a stateful StreamModel: uint8 frames + first + state → probabilities + state."""

    def __init__(self, model: StreamModel, triton: bool = False) -> None:
        super().__init__()
        self.model, self.triton, self.lstm = model, triton, model.cfg.temporal == "lstm"

    def forward(self, frames: torch.Tensor, first: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        prev, state = (inputs[0], inputs[1:]) if self.model.cfg.prev_action else (None, inputs)
        if self.triton:  # batch-first state and (K, 1) START and prev
            first, state = first[:, 0], tuple(s.transpose(0, 1) for s in state)
            prev = prev[:, 0] if prev is not None else None
        logits, new = self.model.step(self.model.preproc(frames), state, first, prev)
        if self.triton:
            new = tuple(s.transpose(0, 1) for s in new)
        return (torch.softmax(logits, -1), *new)


def state_names(model: StreamModel) -> tuple[list[str], list[str]]:
    names = ["h", "c"] if model.cfg.temporal == "lstm" else ["h"]
    return names, [f"{n}_out" for n in names]


def input_names(model: StreamModel) -> list[str]:
    """The graph's inputs in order: frames, first, prev (a model with `prev_action`), then the state."""
    return ["frames", "first", *(["prev"] if model.cfg.prev_action else []), *state_names(model)[0]]


def check_exportable(model: StreamModel) -> None:
    trained = Trained.of(model.trained)
    if trained.over_windows:
        raise UserError(f"this model was trained on windows of {trained.seq_len} frames and decides over the last "
                        "N frames from zero state; an exported graph steps the LSTM one frame at a time, which this "
                        "model was not trained for. Train it statefully (train.mode=stateful) to export it")


def frame_size_of(model: StreamModel, given: str | None) -> tuple[int, int]:
    """(h, w) from `--frame-size HxW`, else the source size recorded with the weights."""
    if given:
        try:
            w, h = (int(v) for v in given.lower().split("x"))
        except ValueError:
            raise UserError(f"--frame-size must be WxH, e.g. 160x210, got '{given}'") from None
        if not (8 <= w <= 16384 and 8 <= h <= 16384):
            raise UserError(f"--frame-size must be between 8x8 and 16384x16384, got '{given}'")
        return h, w
    size = model.trained.get("source_size")
    if not size:
        raise UserError("the weights do not record the frame size of their source; give it with --frame-size WxH "
                        "(e.g. 160x210 for an Atari game)")
    return int(size[0]), int(size[1])


def example_inputs(model: StreamModel, size: tuple[int, int], streams: int, triton: bool = False,
                   seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Frames like a game's (flat blocks of colour: pixel noise drives a trained CNN to extreme logits), a reset, a state.

    No colour has a luma of exactly k + 0.5: there a flat region rounds either way, as the runtimes' resize sums its
    weights to 1 ± 1 ulp (real frames are held to 1e-4 by the tests).
    """
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 255, (streams, 3, 7, 5), generator=g)
    half = (coarse[:, 0] * 114 + coarse[:, 1] * 587 + coarse[:, 2] * 299) % 1000 == 500
    coarse[:, 0] += half.long()
    frames = torch.nn.functional.interpolate(coarse.float(), size=size, mode="nearest").to(torch.uint8).permute(0, 2, 3, 1)
    frames = frames.contiguous()
    first = torch.zeros(streams, dtype=torch.bool)
    first[0] = True
    state = tuple(torch.randn(s.shape, generator=g) * 0.5 for s in model.init_state(streams))
    prev = (torch.arange(streams) % (len(model.classes) + 1) - 1,) if model.cfg.prev_action else ()  # -1 (none) and each class
    if triton:
        return frames, first[:, None], *(p[:, None] for p in prev), *(s.transpose(0, 1).contiguous() for s in state)
    return frames, first, *prev, *state


def export_onnx(model: StreamModel, out: str | Path, size: tuple[int, int], triton: bool = False,
                int8: bool = False, corrid: bool = True) -> tuple[Path, float | None]:
    """Write the tick graph for frames of `size` (h, w) to `out`; returns the path and the largest log-probability
    difference to the torch model that `verify` measured (None without onnxruntime).

    `triton`: batch first everywhere; with `corrid`, also the unused CORRID input of Triton's sequence batcher (a model
    whose state the client keeps has none).

    `int8`: the weights of the fully connected layers (the fc after the convolutions is 6.4 of nature_cnn's 10 MB, and
    streams from memory every tick) are stored as int8 and multiplied as such (onnxruntime's dynamic quantisation);
    such a graph must be judged on real frames (docs/serving.md) rather than held to float32 precision."""
    import onnx

    check_exportable(model)
    model = model.eval()
    graph = TickGraph(model, triton).eval()
    inputs_, outputs_ = state_names(model)
    names = input_names(model)
    k = torch.export.Dim("K", min=1, max=65536)
    state_dim = {0: k} if triton else {1: k}
    shapes = {"frames": {0: k}, "first": {0: k}, "inputs": tuple({0: k} if n == "prev" else state_dim for n in names[2:])}
    example = example_inputs(model, size, 2, triton)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each stage on stdout
        program = torch.onnx.export(graph, example, input_names=names, output_names=["probs", *outputs_],
                                    dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, verbose=False)
    proto = program.model_proto
    if triton and corrid:
        proto.graph.input.append(onnx.helper.make_tensor_value_info("corrid", onnx.TensorProto.UINT64, ["K", 1]))
    meta = {"format": FORMAT, "classes": json.dumps(model.classes), "frame_size": json.dumps(list(size)),
            "precision": json.dumps("int8 weights (fully connected layers)" if int8 else "float32"),
            "model_config": json.dumps(to_dict(model.cfg)), "trained": json.dumps(model.trained),
            "state": json.dumps({"names": inputs_, "layers": model.cfg.layers, "hidden": model.cfg.hidden,
                                 "batch_first": triton})}
    set_meta(proto, meta)
    onnx.checker.check_model(proto, full_check=True)
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        if int8:
            quantize(tmp, meta)
        # A float32 graph that disagrees with the model is never put in place. An int8 one is only run here (on made-up
        # frames its answers move far): judge it on real frames, as docs/serving.md does (classes, then scores).
        diff = verify(model, tmp, size, triton, tol=float("inf") if int8 else 1e-3)
    return out, diff


def quantize(path: Path, meta: dict) -> None:
    """The Gemm/MatMul weights of the graph at `path` to int8, in place (onnxruntime.quantization), keeping the metadata."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = path.with_name(path.name + ".int8")
    try:
        quantize_dynamic(str(path), str(q), weight_type=QuantType.QInt8, op_types_to_quantize=["Gemm", "MatMul"])
        proto = onnx.load(str(q))
        set_meta(proto, meta)
        onnx.save(proto, str(path))
    finally:
        q.unlink(missing_ok=True)


def set_meta(proto, meta: dict[str, str]) -> None:
    """The graph's metadata, exactly `meta` (an exporter or quantiser may have written its own)."""
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)


def verify(model: StreamModel, path: Path, size: tuple[int, int], triton: bool = False, steps: int = 8,
           tol: float = 1e-3) -> float | None:
    """Run the written graph in onnxruntime against the torch model for a few steps with resets; the largest
    difference in log-probability (floored at 1e-4: below that float32 rounding alone moves a log far). Raises if it
    exceeds `tol`; None when onnxruntime is not installed. A mistake in the graph shows as far more than `tol`; the last
    bits differ because the runtimes resize in another order, which can move a pixel across a rounding boundary. The
    tests hold 1,000 real Pong frames to 1e-4, unfloored."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: %s was not checked against the torch model", path)
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph = TickGraph(model, triton).eval()
    frames, first, *inputs = example_inputs(model, size, 3, triton, seed=1)
    prev, state = (inputs[:1], inputs[1:]) if model.cfg.prev_action else ((), inputs)
    ours = [s.numpy() for s in state]
    worst = 0.0
    names, _ = state_names(model)
    for step in range(steps):
        first_now = first if step % 3 == 0 else torch.zeros_like(first)
        prev = tuple(torch.roll(p, step) for p in prev)
        feed = {"frames": frames.numpy(), "first": first_now.numpy(), **dict(zip(["prev"], [p.numpy() for p in prev])),
                **dict(zip(names, ours))}
        if "corrid" in {i.name for i in session.get_inputs()}:
            feed["corrid"] = np.arange(len(frames), dtype=np.uint64)[:, None]
        probs, *ours = session.run(None, feed)
        with torch.no_grad():
            want, *state = graph(frames, first_now, *prev, *state)
        worst = max(worst, float(np.abs(np.log(np.maximum(probs, 1e-4)) - np.log(np.maximum(want.numpy(), 1e-4))).max()))
        frames = torch.roll(frames, 7, dims=2)
    if worst > tol:
        raise UserError(f"the exported graph differs from the torch model by {worst:.2g} in log-probability "
                        f"(tolerance {tol:g}); not written")
    return worst


def read_meta(path: str | Path) -> dict:
    """The metadata `export_onnx` wrote, decoded."""
    import onnx

    return decode_meta({p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}, path)


if __name__ == "__main__":  # python -m stream_predictor.model.export WEIGHTS OUT H W: what backend=auto runs in the background
    import sys

    from .io import load_model

    export_onnx(load_model(sys.argv[1]), sys.argv[2], (int(sys.argv[3]), int(sys.argv[4])))
