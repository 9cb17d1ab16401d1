"""Triton Inference Server model repositories for the agent (`export --format triton`): many streams across machines.

    model_repository/NAME/config.pbtxt
    model_repository/NAME/1/model.onnx      the tick graph with the batch first (model/export.py, `triton=True`)
    model_repository/NAME/1/model.py        the python backend's runner of that graph (tools/triton_model.py)

Two kinds of model:

- `state="explicit"` (the default, what `serve` runs): the client keeps each stream's LSTM state and sends it with every
  frame (`frames`, `first`, `h`, `c` in; `probs`, `h_out`, `c_out` out), so any server replica can serve any tick and
  a restarted server loses nothing. Triton's dynamic batcher puts concurrent requests into one graph call. Runs on the
  python backend (`model.py` runs the graph in onnxruntime; the backend in the `nvidia-pytriton` wheel) or on the
  onnxruntime backend (`platform: onnxruntime_onnx`, NVIDIA's containers).
- `state="implicit"`: the server keeps the state per correlation id, with the sequence batcher's implicit state (`h`,
  `c` zeroed at a sequence's START, fed back from `h_out`, `c_out`); the client sends a frame per request with its
  sequence id. Only the onnxruntime, TensorRT and PyTorch backends implement implicit state, so it is refused with the
  python backend.

The config's `parameters` carry the class names, the frame size and how the model was trained, for clients.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import UserError
from ..files import write_text_atomic
from ..model.export import export_onnx, state_names
from ..model.stream_model import StreamModel

BACKENDS = ("python", "onnxruntime")
STATES = ("explicit", "implicit")


def _header(model: StreamModel, name: str, size: tuple[int, int], backend: str, max_batch_size: int) -> str:
    runner = 'backend: "python"' if backend == "python" else 'platform: "onnxruntime_onnx"'
    params = {"classes": json.dumps(model.classes), "frame_size": json.dumps(list(size)),
              "trained": json.dumps(model.trained), "threads": "1"}
    lines = ",\n".join(f'  {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}' for k, v in params.items())
    return f"""# Written by `stream-predictor export --format triton`: classes {model.classes}, frames {size[1]}x{size[0]} BGR.
name: "{name}"
{runner}
max_batch_size: {max_batch_size}
parameters [
{lines}
]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


def explicit_config_text(model: StreamModel, name: str, size: tuple[int, int], backend: str = "python",
                         max_batch_size: int = 64, queue_delay_us: int = 500) -> str:
    """The model with its state in its inputs and outputs, batched by Triton's dynamic batcher."""
    layers, hidden = model.cfg.layers, model.cfg.hidden
    inputs, outputs = state_names(model)
    state_in = _prev_input(model) + "".join(f',\n  {{ name: "{i}" data_type: TYPE_FP32 dims: [ {layers}, {hidden} ] }}'
                                            for i in inputs)
    state_out = "".join(f',\n  {{ name: "{o}" data_type: TYPE_FP32 dims: [ {layers}, {hidden} ] }}' for o in outputs)
    return _header(model, name, size, backend, max_batch_size) + f"""input [
  {{ name: "frames" data_type: TYPE_UINT8 dims: [ {size[0]}, {size[1]}, 3 ] }},
  {{ name: "first" data_type: TYPE_BOOL dims: [ 1 ] }}{state_in}
]
output [
  {{ name: "probs" data_type: TYPE_FP32 dims: [ {len(model.classes)} ] }}{state_out}
]
dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}
"""


def _prev_input(model: StreamModel) -> str:
    """The `prev` input (the class pressed on the previous tick, -1: none) of a model with `model.prev_action`."""
    return ',\n  { name: "prev" data_type: TYPE_INT64 dims: [ 1 ] }' if model.cfg.prev_action else ""


def implicit_config_text(model: StreamModel, name: str, size: tuple[int, int], max_batch_size: int = 64,
                         idle_s: float = 60.0, candidates: int = 1024, queue_delay_us: int = 500) -> str:
    """The model whose state the server keeps per sequence (the onnxruntime backend's implicit state)."""
    layers, hidden = model.cfg.layers, model.cfg.hidden
    inputs, outputs = state_names(model)
    states = ",\n".join(f"""    {{
      input_name: "{i}"
      output_name: "{o}"
      data_type: TYPE_FP32
      dims: [ {layers}, {hidden} ]
      initial_state: {{
        data_type: TYPE_FP32 dims: [ {layers}, {hidden} ] zero_data: true name: "zero"
      }}
    }}""" for i, o in zip(inputs, outputs))
    return _header(model, name, size, "onnxruntime", max_batch_size) + f"""input [
  {{ name: "frames" data_type: TYPE_UINT8 dims: [ {size[0]}, {size[1]}, 3 ] }}{_prev_input(model)}
]
output [
  {{ name: "probs" data_type: TYPE_FP32 dims: [ {len(model.classes)} ] }}
]
sequence_batching {{
  max_sequence_idle_microseconds: {int(idle_s * 1e6)}
  oldest {{
    max_candidate_sequences: {candidates} preferred_batch_size: [ {max_batch_size} ]
    max_queue_delay_microseconds: {queue_delay_us}
  }}
  control_input [
    {{ name: "first" control [ {{ kind: CONTROL_SEQUENCE_START bool_false_true: [ false, true ] }} ] }},
    {{ name: "corrid" control [ {{ kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 }} ] }}
  ]
  state [
{states}
  ]
}}
"""


def write_repository(model: StreamModel, repo: str | Path, name: str, size: tuple[int, int], max_batch_size: int = 64,
                     backend: str = "python", state: str = "explicit") -> tuple[list[Path], float | None]:
    """The model's directory in `repo` (created): its files, and the graph's measured parity."""
    if backend not in BACKENDS or state not in STATES:
        raise UserError(f"a Triton model runs on a backend of {BACKENDS} with state {STATES}, not {backend}/{state}")
    if state == "implicit" and backend == "python":
        raise UserError("Triton's python backend does not implement implicit state (the sequence batcher's `state`): "
                        "use state explicit there, or the onnxruntime backend")
    d = Path(repo) / name
    graph, diff = export_onnx(model, d / "1" / "model.onnx", size, triton=True, corrid=state == "implicit")
    files = [d / "config.pbtxt", graph]
    if state == "implicit":
        text = implicit_config_text(model, name, size, max_batch_size)
    else:
        text = explicit_config_text(model, name, size, backend, max_batch_size)
    write_text_atomic(d / "config.pbtxt", text)
    if backend == "python":
        files.append(d / "1" / "model.py")
        write_text_atomic(files[-1], resources.files("stream_predictor.tools").joinpath("triton_model.py").read_text())
    return files, diff
