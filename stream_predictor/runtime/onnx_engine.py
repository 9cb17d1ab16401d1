"""An exported tick graph (`export`, model/export.py) run by onnxruntime: the same decisions without torch.

`OnnxEngine` has the TickEngine's call, `probs, classes = engine(frames, first)` for K streams, for stateful graphs; the
state lives here as numpy arrays and goes in and out of the graph every tick; `graph_agent` puts a ModelAgent (the
Predictor's Agent, with its smoothing) on top of it. Nothing here imports torch: `predict --weights step.onnx` runs on a
machine with onnxruntime, OpenCV and numpy alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Trained
from ..errors import UserError
from ..onnx_format import decode_meta
from .agent import ModelAgent

log = logging.getLogger(__name__)


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running an exported graph needs onnxruntime: pip install onnxruntime "
                        "(or the package's extra: pip install -e '.[onnxruntime]')") from None
    return onnxruntime


class OnnxEngine:
    """K streams, one `session.run` per tick. frames: (K, H, W, 3) BGR uint8 of the size the graph was exported for."""

    chunked = False  # the graph is one tick
    measured_ms: dict[str, float] = {}  # noqa: RUF012 - read only
    counters: dict[str, int] = {}  # noqa: RUF012 - read only: nothing to count

    def __init__(self, path: str | Path, streams: int = 1, threads: int = 1) -> None:
        ort = _ort()
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no such graph file: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(threads, 1)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own error types: a file that is not a graph
            raise UserError(f"{path} is not an ONNX graph onnxruntime can load ({str(e).splitlines()[0][:200]})") from None
        self.meta = decode_meta(self.session.get_modelmeta().custom_metadata_map, path)
        spec = self.meta["state"]
        if spec["batch_first"]:
            raise UserError(f"{path} is the graph of a Triton model repository (batch-first state); export it with "
                            "--format onnx to run it here")
        self.streams, self.classes = streams, list(self.meta["classes"])
        self.size = tuple(self.meta["frame_size"])  # (h, w)
        self.names = list(spec["names"])
        self.prev_action = "prev" in {i.name for i in self.session.get_inputs()}  # the model reads its previous action
        self.state = [np.zeros((spec["layers"], streams, spec["hidden"]), np.float32) for _ in self.names]
        self.mode = "stateful"
        self.path = {"device": "cpu float32", "backend": f"onnxruntime {ort.__version__} ({path.name})",
                     "temporal": "stateful (graph)" + (", reads the previous action" if self.prev_action else "")}

    def reset(self) -> None:
        for s in self.state:
            s[:] = 0.0

    def get_state(self) -> list[np.ndarray]:
        """The recurrent state as (L, K, H) float32 arrays, h then c (TickEngine's `set_state` takes it)."""
        return [s.copy() for s in self.state]

    def set_state(self, state: list[np.ndarray]) -> None:
        self.state = [np.array(s, np.float32) for s in state]

    def __call__(self, frames: np.ndarray, first: np.ndarray | list[bool] | None = None,
                 prev: np.ndarray | list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        frames = np.ascontiguousarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[0] != self.streams or frames.shape[-1] != 3:
            raise ValueError(f"expected ({self.streams}, H, W, 3) BGR uint8 frames, got {frames.shape} {frames.dtype}")
        if frames.shape[1:3] != self.size:
            raise UserError(f"the graph was exported for {self.size[1]}x{self.size[0]} frames and the source gives "
                            f"{frames.shape[2]}x{frames.shape[1]}; export it again with --frame-size "
                            f"{frames.shape[2]}x{frames.shape[1]}")
        first = np.zeros(self.streams, bool) if first is None else np.asarray(first, bool)
        feeds = {"frames": frames, "first": first, **dict(zip(self.names, self.state))}
        if self.prev_action:
            feeds["prev"] = np.full(self.streams, -1, np.int64) if prev is None else np.asarray(prev, np.int64)
        probs, *state = self.session.run(None, feeds)
        self.state = state
        return probs, probs.argmax(-1)


def graph_agent(path: str | Path, cfg) -> ModelAgent:
    """An exported graph file deciding for one stream, with the smoothing and threads of the `predict` config section;
    a model trained on single frames decides from each frame alone (its state reset every tick)."""
    engine = OnnxEngine(path, 1, cfg.threads)
    single = Trained.of(engine.meta.get("trained", {})).single_frame
    return ModelAgent(engine, engine.classes, "stateful", 16, cfg.ema, cfg.hysteresis, every_frame_first=single)


def graph_cache_path(model, cfg, size: tuple[int, int]) -> Path:
    """Where the model's graph for frames of `size` (h, w) is kept in `cfg.onnx_cache`: named by a digest of the weights,
    the config and the size."""
    from ..config import to_dict
    from ..model.io import weights_digest

    return Path(cfg.onnx_cache) / f"{weights_digest(model, to_dict(model.cfg), list(size))}-{size[1]}x{size[0]}.onnx"


def exported_graph(model, cfg, size: tuple[int, int]) -> Path:
    """The model's graph for frames of `size` (h, w): from `cfg.onnx_cache`, or exported there now (once)."""
    from ..model.export import export_onnx

    path = graph_cache_path(model, cfg, size)
    if not path.exists():
        log.warning("exporting the model to ONNX for onnxruntime, once for %dx%d frames: %s", size[1], size[0], path)
        export_onnx(model, path, size)
    return path


class ExportedEngine:
    """A torch model run as its exported graph (`predict.backend=onnxruntime`): exported for the first frame's size
    (once; kept in `onnx_cache`), then an OnnxEngine's work."""

    chunked = False
    measured_ms: dict[str, float] = {}  # noqa: RUF012 - read only
    counters: dict[str, int] = {}  # noqa: RUF012 - read only: nothing to count

    def __init__(self, model, cfg, streams: int = 1) -> None:
        self.model, self.cfg, self.streams = model, cfg, streams
        self.prev_action = model.cfg.prev_action
        self.graph: OnnxEngine | None = None

    @property
    def path(self) -> dict[str, str]:
        return self.graph.path if self.graph is not None else {"backend": "onnxruntime (exported at the first frame)"}

    def reset(self) -> None:
        if self.graph is not None:
            self.graph.reset()

    def get_state(self) -> list[np.ndarray]:
        return self.graph.get_state() if self.graph is not None else []

    def set_state(self, state: list[np.ndarray]) -> None:
        if self.graph is not None:
            self.graph.set_state(state)

    def __call__(self, frames: np.ndarray, first=None, prev=None) -> tuple[np.ndarray, np.ndarray]:
        size = np.asarray(frames).shape[-3:-1]
        if self.graph is None or self.graph.size != size:
            self.graph = OnnxEngine(exported_graph(self.model, self.cfg, size), self.streams, self.cfg.threads)
        return self.graph(frames, first, prev)
