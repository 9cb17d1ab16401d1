"""A Triton Inference Server model repository for the agent: many streams across machines, one LSTM state per stream
kept by the server.

    model_repository/NAME/config.pbtxt
    model_repository/NAME/1/model.onnx      the tick graph with the batch first (model/export.py, `triton=True`)

The config uses Triton's sequence batcher with implicit state: the server keeps `h` (and `c`) per correlation id,
zeroes them at a sequence's start (`initial_state` with `zero_data`), feeds them to the graph with each request and
keeps what the graph returns as `h_out` (`c_out`). Control inputs: START → `first` (the graph zeroes that stream's
state itself too), CORRID → `corrid`. The `oldest` strategy batches requests of different sequences into one call.
A client sends one frame per request with its stream's sequence id (and `sequence_start` on the first); see
docs/serving.md.
"""

from __future__ import annotations

from pathlib import Path

from ..files import write_text_atomic
from ..model.export import export_onnx, state_names
from ..model.stream_model import StreamModel


def config_text(model: StreamModel, name: str, size: tuple[int, int], max_batch_size: int = 64,
                idle_s: float = 60.0, candidates: int = 1024, queue_delay_us: int = 500) -> str:
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
    return f"""# Written by `stream-predictor export --format triton`: classes {model.classes}, frames {size[1]}x{size[0]} BGR.
name: "{name}"
backend: "onnxruntime"
max_batch_size: {max_batch_size}
input [
  {{ name: "frames" data_type: TYPE_UINT8 dims: [ {size[0]}, {size[1]}, 3 ] }}
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
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
"""


def write_repository(model: StreamModel, repo: str | Path, name: str, size: tuple[int, int],
                     max_batch_size: int = 64) -> tuple[Path, float | None]:
    """The model's directory in `repo` (created), with the graph and its config; and the graph's measured parity."""
    d = Path(repo) / name
    _, diff = export_onnx(model, d / "1" / "model.onnx", size, triton=True)
    write_text_atomic(d / "config.pbtxt", config_text(model, name, size, max_batch_size))
    return d, diff
