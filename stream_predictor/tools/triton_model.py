"""The python backend's model.py for a repository written by `export --format triton` (copied there as model.py).

It runs inside the Triton server's own Python, where only numpy, onnxruntime and Triton's `triton_python_backend_utils`
are importable (not this package). The requests that Triton's dynamic batcher hands over in one `execute` call, each
carrying its streams' frames, resets and state (batch first), go through the exported tick graph as one batch.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        graph = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(config.get("parameters", {}).get("threads", {}).get("string_value", "1"))
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests: list) -> list:
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs} for r in requests]
        sizes = [len(f["frames"]) for f in feeds]
        batch = {name: np.concatenate([f[name] for f in feeds]) for name in self.inputs}
        results = self.session.run(self.outputs, batch)
        cuts = np.cumsum(sizes)[:-1]
        parts = [np.split(r, cuts) for r in results]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(name, part[i]) for name, part in zip(self.outputs, parts)])
                for i in range(len(requests))]
