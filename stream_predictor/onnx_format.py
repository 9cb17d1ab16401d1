"""What an exported tick graph (`export --format onnx`) promises, readable without torch: its format tag and metadata."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import UserError

FORMAT = "stream_predictor.onnx/1"
# Inputs and outputs by name. The state is (layers, K, hidden), or (K, layers, hidden) in a graph for Triton.
INPUTS = ("frames", "first")  # uint8 (K, H, W, 3) BGR; bool (K,) (Triton: (K, 1))
OUTPUTS = ("probs",)  # float32 (K, classes); then one `NAME_out` per state input


def decode_meta(props: dict[str, str], path: str | Path) -> dict:
    """The graph's metadata (onnxruntime's `custom_metadata_map`, or the ONNX file's metadata_props), decoded."""
    if props.get("format") != FORMAT:
        raise UserError(f"{path} is not a graph written by `export` (format {props.get('format')!r}, expected {FORMAT})")
    return {k: (v if k == "format" else json.loads(v)) for k, v in props.items()}
