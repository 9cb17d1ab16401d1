"""`bench --only triton`: how many streams at a given frame rate one Triton server holds on this machine.

S client threads, each a stream of real Pong frames paced at `fps`, each tick one request (frame and state in,
probabilities and state out) to a real server (tools/triton_server.py, python backend); beside them, in the same run,
the same S streams deciding in process through the same exported graph in onnxruntime. Per setting: ticks, ticks that
came late (a request answered after its stream's next frame was due), and the latency from a frame's due time to its
decision, p50 and p99.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..config import PredictConfig
from ..model import load_model
from ..runtime.onnx_engine import OnnxEngine
from ..runtime.triton_engine import TritonEngine
from ..sources import open_source
from .triton import write_repository
from .triton_server import TritonServer


def _frames(n: int) -> np.ndarray:
    src = open_source("ale:Pong?seed=5")
    try:
        return np.stack([src.read().image.copy() for _ in range(n)])
    finally:
        src.close()


def _paced(engine, frames: np.ndarray, offset: int, fps: float, seconds: float, start: float) -> tuple[list[float], int]:
    """One stream: a frame due every 1/fps s from `start`; the latency of each decision from its due time, and how
    many came after the next frame was due."""
    period, latencies, late = 1.0 / fps, [], 0
    for i in range(int(seconds * fps)):
        due = start + i * period
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        engine(frames[(offset + i) % len(frames)][None], [i == 0])
        done = time.monotonic()
        latencies.append((done - due) * 1000)
        late += done > due + period
    return latencies, late


def _run(engines: list, frames: np.ndarray, fps: float, seconds: float) -> dict:
    results: list = [None] * len(engines)
    start = time.monotonic() + 0.2

    def stream(i: int) -> None:
        results[i] = _paced(engines[i], frames, 37 * i, fps, seconds, start)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(engines))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.concatenate([r[0] for r in results])
    return {"ticks": len(lat), "late": int(sum(r[1] for r in results)),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2)}


def triton_load(weights: str | Path, streams: tuple[int, ...] = (1, 4, 16), fps: float = 15.0, seconds: float = 10.0,
                repeats: int = 1) -> list[dict]:
    """For each number of streams: the server and in process, interleaved `repeats` times (the median of each figure)."""
    model, frames = load_model(weights).eval(), _frames(300)
    size = frames.shape[1:3]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files, _ = write_repository(model, Path(tmp) / "repo", "agent", size, max_batch_size=max(streams))
        with TritonServer(Path(tmp) / "repo", grpc_port=0, http_port=0) as server:
            cfg = PredictConfig(backend="triton", triton_url=server.grpc_url, triton_timeout_s=30.0)
            for s in streams:
                runs: dict[str, list[dict]] = {"triton server (python backend)": [], "in process (onnxruntime)": []}
                for _ in range(repeats):
                    runs["triton server (python backend)"].append(
                        _run([TritonEngine(cfg, 1) for _ in range(s)], frames, fps, seconds))
                    runs["in process (onnxruntime)"].append(
                        _run([OnnxEngine(_plain_graph(model, tmp, size), 1) for _ in range(s)], frames, fps, seconds))
                for path, rs in runs.items():
                    rows.append({"path": path, "streams": s, "fps_each": fps,
                                 **{k: statistics.median(r[k] for r in rs) for k in rs[0]}})
                rows[-2]["p50_vs_in_process"] = round(rows[-2]["p50_ms"] / max(rows[-1]["p50_ms"], 1e-3), 2)
    return rows


def _plain_graph(model, tmp: str, size: tuple[int, int]) -> Path:
    """The same tick graph with the state laid out for one process (not batch first), exported once."""
    from ..model.export import export_onnx

    path = Path(tmp) / "plain.onnx"
    if not path.exists():
        export_onnx(model, path, size)
    return path
