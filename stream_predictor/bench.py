"""Benchmarks, measured side by side in one run; every figure is the median of repeats.

- per_tick: incremental (encode the new frame once + one LSTM step) against the usual eager
  recompute (all N window frames through the CNN as one (B·T) batch, then the LSTM).
- capture: CaptureThread lockstep throughput against a plain cv2 read loop on the same file.
- latency: the Predictor's capture → decision latency on a live synthetic source.
- sources: frames per second of the ALE source and of screen capture (when a display exists).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

from .capture import CaptureThread
from .config import ModelConfig
from .model import StreamModel, build_model
from .predictor import Predictor
from .sources import open_source
from .sources.synthetic import Synthetic


def _median_time(fn: Callable[[], None], calls: int, repeats: int) -> float:
    """Median over `repeats` of the mean seconds per call of `fn`."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def per_tick(model: StreamModel, windows: tuple[int, ...] = (8, 16, 32), repeats: int = 5, device: str = "cpu") -> list[dict]:
    """One row per window size N: step_ms, recompute_ms and their ratio."""
    model = model.to(device).eval()
    c, (h, w) = model.preproc.channels, model.preproc.size
    rows = []
    with torch.inference_mode():
        frame = torch.randn(1, c, h, w, device=device)
        state = model.init_state(1, device)

        def step() -> None:
            nonlocal state
            logits, state = model.step(frame, state)
            logits.argmax(-1).item()

        step_s = _median_time(step, 50, repeats)
        for n in windows:
            clip = torch.randn(1, n, c, h, w, device=device)

            def recompute(clip: torch.Tensor = clip) -> None:
                b, t = clip.shape[:2]
                feats = model.encoder(clip.reshape(b * t, *clip.shape[2:])).reshape(b, t, -1)
                out, _ = model.rnn(feats)
                model.head(out[:, -1]).argmax(-1).item()

            rec_s = _median_time(recompute, max(3, 200 // n), repeats)
            rows.append({"encoder": model.cfg.encoder, "device": device, "dtype": "float32", "N": n,
                         "step_ms": round(step_s * 1e3, 4), "recompute_ms": round(rec_s * 1e3, 4),
                         "speedup": round(rec_s / step_s, 2)})
    return rows


def capture_ratio(frames: int = 300, size: tuple[int, int] = (640, 480), repeats: int = 5) -> dict:
    """Lockstep CaptureThread (with a consumer draining the ring) against a plain cv2 read loop, interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
        synth = Synthetic("bounce", width=size[0], height=size[1])
        for i in range(frames):
            writer.write(synth.render(i))
        writer.release()

        def plain() -> int:
            cap, n = cv2.VideoCapture(str(path)), 0
            while cap.read()[0]:
                n += 1
            cap.release()
            return n

        def ours() -> int:
            with CaptureThread(open_source(str(path)), ring_size=8, replay="lockstep") as cap:
                return sum(1 for _ in cap.frames())

        plain_fps, our_fps = [], []
        for _ in range(repeats):
            for fn, out in ((plain, plain_fps), (ours, our_fps)):
                t0 = time.perf_counter()
                n = fn()
                out.append(n / (time.perf_counter() - t0))
    p, o = statistics.median(plain_fps), statistics.median(our_fps)
    return {"video": f"{size[0]}x{size[1]} MJPG, {frames} frames", "cv2_fps": round(p, 1), "lockstep_fps": round(o, 1),
            "ratio": round(o / p, 3)}


def source_fps(spec: str, seconds: float = 2.0) -> dict:
    """Frames per second a source delivers through the capture thread to a consumer that keeps up."""
    n, shape = 0, None
    with CaptureThread(open_source(spec), ring_size=8, replay="lockstep") as cap:
        t0 = time.perf_counter()
        for frame in cap.frames(seconds):
            n, shape = n + 1, tuple(frame.image.shape)
        elapsed = time.perf_counter() - t0
    return {"source": spec, "fps": round(n / elapsed, 1), "frames": n, "shape": shape}


def latency(model: StreamModel, fps: float, frames: int, mode: str = "stateful") -> dict:
    """The Predictor on a live synthetic source (realtime replay: drops frames rather than queueing them)."""
    spec = f"synthetic:bounce?fps={fps}&frames={frames}&width=320&height=240"
    with Predictor(model, spec, mode=mode, replay="realtime", ring_size=8) as p:
        p.run()
    s = p.summary()
    return {"source_fps": fps or "max", "mode": mode, "frames": s["frames"], "skipped": s["skipped"],
            "latency_ms_p50": s["latency_ms_p50"], "latency_ms_p99": s["latency_ms_p99"], "fps": s["fps"]}


def parity(encoder: str, steps: int, size: int = 64, seed: int = 0) -> dict:
    """Max |stepped − offline| logits over `steps` frames with a reset half-way, random weights, fp32."""
    torch.manual_seed(seed)
    gray = encoder in ("nature_cnn", "alexnet")
    model = build_model(ModelConfig(encoder=encoder, input_size=[size, size], grayscale=gray, hidden=256,
                                    mean=[0.5] * (1 if gray else 3), std=[0.5] * (1 if gray else 3)))
    clip = torch.randn(1, steps, 1 if gray else 3, size, size)
    first = torch.zeros(1, steps, dtype=torch.bool)
    first[0, steps // 2] = True
    with torch.inference_mode():
        offline = model(clip, first=first)
        state, online = model.init_state(1), []
        for t in range(steps):
            logits, state = model.step(clip[:, t], state, first[:, t])
            online.append(logits)
        diff = (offline - torch.stack(online, 1)).abs().max().item()
        agree = (offline.argmax(-1) == torch.stack(online, 1).argmax(-1)).float().mean().item()
    return {"encoder": encoder, "input": f"{size}x{size}", "frames": steps, "max_abs_diff": diff, "class_agreement": agree}


def default_bench_model(encoder: str = "nature_cnn") -> StreamModel:
    size = [84, 84] if encoder in ("nature_cnn", "alexnet") else [224, 224]
    gray = encoder in ("nature_cnn", "alexnet")
    return build_model(ModelConfig(encoder=encoder, input_size=size, grayscale=gray, hidden=256,
                                   mean=[0.5] if gray else [0.485, 0.456, 0.406], std=[0.5] if gray else [0.229, 0.224, 0.225]))
