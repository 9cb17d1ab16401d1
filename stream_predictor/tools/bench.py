"""Benchmarks, measured side by side in one run; every figure is the median of repeats.

- per_tick: incremental (encode the new frame once + one LSTM step) against the usual eager
  recompute (all N window frames through the CNN as one (B·T) batch, then the LSTM).
- threads: the one-frame step with 1 and 2 torch threads, other cores idle or busy.
- streams: K streams batched through one engine call per tick.
- train: training throughput.
- capture: CaptureThread lockstep throughput against a plain cv2 read loop on the same file.
- latency: the Predictor's capture → decision latency on a live synthetic source.
- sources: frames per second of the ALE source and of screen capture (when a display exists).
- web: decision latency without the web sink, with it, and with 5 viewers of which one never reads.
- replay: a recorded clip in lockstep: decoding alone, one frame per tick, and in chunks of several sizes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from ..config import ModelConfig
from ..model import StreamModel, build_model
from ..model.fast import BF16_FLAGS, cpu_bf16_native, cpu_info
from ..runtime.capture import CaptureThread
from ..runtime.engine import TickEngine
from ..runtime.predictor import Predictor
from ..runtime.threads import torch_threads
from ..sources import open_source
from ..sources.synthetic import Synthetic


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


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def per_tick(model: StreamModel, windows: tuple[int, ...] = (8, 16, 32), repeats: int = 5, device: str = "cpu",
             dtype: str = "float32") -> list[dict]:
    """One row per window size N: the fast step (TickEngine: prepacked on CPU, a CUDA graph on GPU), the eager
    module step, and the usual eager recompute over the N-frame window, all from preprocessed frames to the
    class id on the host."""
    model = model.to(device).eval()
    c, (h, w) = model.preproc.channels, model.preproc.size
    engine = TickEngine(model, 1, dtype)
    engine.prepare(h, w)
    net = engine._net  # the model in the engine's dtype
    rows = []
    with torch.inference_mode():
        engine.x.normal_()
        tick = engine.model_tick_fn()

        def step() -> None:
            tick()
            engine.classes[0].item()

        frame = engine.x.clone()
        state = net.init_state(1, device)
        state = tuple(t.to(engine.dtype) for t in state)

        def eager_step() -> None:
            logits, _ = net.step(frame, state)
            logits.argmax(-1).item()

        calls = 200 if device == "cuda" else 50
        step_s = _median_time(step, calls, repeats)
        eager_s = _median_time(eager_step, calls, repeats)
        for n in windows:
            clip = torch.randn(1, n, c, h, w, device=device, dtype=engine.dtype)

            def recompute(clip: torch.Tensor = clip) -> None:
                # The usual TimeDistributed answer: (B·T) frames through the CNN, then the LSTM, every tick.
                b, t = clip.shape[:2]
                feats = net.encoder(clip.reshape(b * t, *clip.shape[2:])).reshape(b, t, -1)
                out, _ = net.rnn(feats)
                net.head(out[:, -1]).argmax(-1).item()

            rec_s = _median_time(recompute, max(3, (calls * 4) // n), repeats)
            rows.append({"encoder": model.cfg.encoder, "device": device, "dtype": dtype, "N": n,
                         "step_ms": round(step_s * 1e3, 4), "eager_step_ms": round(eager_s * 1e3, 4),
                         "recompute_ms": round(rec_s * 1e3, 4), "speedup": round(rec_s / step_s, 2),
                         "path": f"encoder {engine.path['encoder']}, {engine.path['temporal']}, graph {engine.path['graph']}"})
    return rows


def threads(model: StreamModel, repeats: int = 5) -> list[dict]:
    """The fast CPU step with 1 and 2 torch threads, with the other cores idle and with every other core busy."""
    import subprocess
    import sys

    (h, w), rows = model.preproc.size, []
    engine = TickEngine(model.to("cpu"), 1)
    engine.prepare(h, w)
    tick = engine.model_tick_fn()
    spin = [sys.executable, "-c", "while True: pass"]
    for busy in (False, True):
        hogs = [subprocess.Popen(spin) for _ in range((os.cpu_count() or 2) - 1)] if busy else []
        try:
            time.sleep(0.2 if busy else 0.0)
            for n in (1, 2):
                with torch_threads(n), torch.inference_mode():
                    ms = _median_time(tick, 30, repeats) * 1e3
                rows.append({"torch_threads": n, "other_cores": "busy" if busy else "idle", "step_ms": round(ms, 4)})
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    return rows


def streams(encoder: str, ks: tuple[int, ...], device: str, dtype: str, repeats: int = 5) -> list[dict]:
    """K streams through one TickEngine call per tick (uint8 frames at the model's input size, upload included)."""
    model = default_bench_model(encoder).to(device)
    (h, w), rows = model.preproc.size, []
    for k in ks:
        engine = TickEngine(model, k, dtype)
        frames = torch.randint(0, 256, (k, h, w, 3), dtype=torch.uint8)
        ms = _median_time(lambda e=engine, f=frames: e(f), 100 if device == "cuda" else 10, repeats) * 1e3
        rows.append({"encoder": encoder, "device": device, "dtype": dtype, "streams": k, "tick_ms": round(ms, 4),
                     "frames_per_s": round(k / ms * 1e3, 1)})
    return rows


def train_fps(encoder: str = "nature_cnn", batch: int = 16, seq_len: int = 32, steps: int = 5, repeats: int = 3,
              device: str = "cpu") -> dict:
    """Training throughput: forward + backward + AdamW step on (batch, seq_len) clips, in frames per second."""
    model = default_bench_model(encoder).to(device).train()
    c, (h, w) = model.preproc.channels, model.preproc.size
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    clip = torch.randn(batch, seq_len, c, h, w, device=device)
    labels = torch.randint(0, len(model.classes), (batch, seq_len), device=device)

    def one() -> None:
        loss = torch.nn.functional.cross_entropy(model(clip).flatten(0, 1), labels.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)

    s = _median_time(one, steps, repeats)
    return {"encoder": encoder, "device": device, "batch": f"{batch}x{seq_len}", "frames_per_s": round(batch * seq_len / s, 1)}


def machine() -> dict:
    """What the figures were measured on."""
    cpu, flags = cpu_info()
    info = {"cpu": cpu, "cpus": os.cpu_count(), "torch": torch.__version__,
            "isa": " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", *BF16_FLAGS) if f in flags)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


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


def web_cost(model: StreamModel, fps: float = 60.0, frames: int = 900, repeats: int = 3) -> list[dict]:
    """Decision latency on a live synthetic source without the web sink, with it and no viewer, and with 5 viewers of which
    one never reads (2 read the SSE ticks, 2 the MJPEG frames); the settings interleaved, medians over `repeats`."""
    import socket
    import threading
    import urllib.request

    from ..sinks.web import WebSink

    def viewers(url: str) -> list[socket.socket]:
        stalled = socket.create_connection(url.removeprefix("http://").rstrip("/").split(":"))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # never read

        def read(path: str) -> None:
            try:
                with urllib.request.urlopen(url + path, timeout=30) as r:
                    while r.read(65536):
                        pass
            except OSError:
                pass

        for path in ("ticks", "ticks", "stream.mjpg", "stream.mjpg"):
            threading.Thread(target=read, args=(path,), daemon=True).start()
        return [stalled]

    spec = f"synthetic:bounce?fps={fps}&frames={frames}&width=320&height=240"
    runs: dict[str, list[dict]] = {"no web sink": [], "web sink, no viewer": [], "web sink, 5 viewers (1 never reads)": []}
    for _ in range(repeats):
        for name in runs:
            sinks, held = [], []
            if name != "no web sink":
                sink = WebSink(model.classes, port=0)
                sinks.append(sink)
                if "5 viewers" in name:
                    held = viewers(sink.url)
                    time.sleep(0.3)  # the viewers connect
            with Predictor(model, spec, replay="realtime", ring_size=8, sinks=sinks) as p:
                p.run()
            for s in held:
                s.close()
            runs[name].append(p.summary())
    base = statistics.median(s["latency_ms_p50"] for s in runs["no web sink"])
    base99 = statistics.median(s["latency_ms_p99"] for s in runs["no web sink"])
    rows = []
    for name, summaries in runs.items():
        p50 = statistics.median(s["latency_ms_p50"] for s in summaries)
        p99 = statistics.median(s["latency_ms_p99"] for s in summaries)
        rows.append({"setting": name, "latency_ms_p50": p50, "latency_ms_p99": p99, "p50_ratio": round(p50 / base, 2),
                     "p99_ratio": round(p99 / base99, 2), "skipped": statistics.median(s["skipped"] for s in summaries),
                     "sent": statistics.median(s.get("web", {}).get("sent", 0) for s in summaries)})
    return rows


def backends(weights: str | Path, frames: int = 300, repeats: int = 5, window: int = 16) -> list[dict]:
    """The same network on the same real game frames, uint8 frame → probabilities, one stream, by contender: our engine
    (fast path), the eager module, the exported graph in onnxruntime, and the eager recompute over the last `window`
    frames. Interleaved repeats; the median ms per tick of each, and its ratio to ours."""
    from ..model import load_model

    model = load_model(weights).eval()
    images = _pong_frames(frames)
    engine = TickEngine(model, 1)
    state = [model.init_state(1)]
    clip: list[torch.Tensor] = []

    def ours(image) -> None:
        engine(image[None], [False])

    def eager(image) -> None:
        logits, state[0] = model.step(model.preprocess(image)[None], state[0])
        torch.softmax(logits, -1)

    def recompute(image) -> None:
        clip.append(model.preprocess(image))
        del clip[:-window]
        torch.softmax(model(torch.stack(clip)[None])[:, -1], -1)

    ours(images[0])  # builds the engine, which then says which path it took
    bf16 = TickEngine(model, 1, dtype="bfloat16")
    bf16(images[0][None], [False])
    contenders: dict[str, tuple[Callable, str]] = {
        "ours: TickEngine": (ours, _path(engine.path)),
        "ours, bfloat16": (lambda image: bf16(image[None], [False]), _path(bf16.path)),
        "eager module (preprocess, encode, step)": (eager, "torch modules"),
        f"recompute over the last {window} frames": (recompute, "torch modules"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, engine_fn, path in _onnx_engines(model, Path(tmp), images[0].shape[:2]):
            contenders[name] = (engine_fn and (lambda image, e=engine_fn: e(image[None], [False])), path)
        times = _interleaved({name: fn for name, (fn, _) in contenders.items()}, images, repeats)
    base = statistics.median(times["ours: TickEngine"])
    return [{"contender": name, "ms_per_tick": round(statistics.median(times[name]), 3) if times[name] else None,
             "vs_ours": round(statistics.median(times[name]) / base, 2) if times[name] else None, "path": path}
            for name, (_, path) in contenders.items()]


def _path(path: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in path.items())


def _onnx_engines(model: StreamModel, tmp: Path, size: tuple[int, int]) -> list[tuple[str, Callable | None, str]]:
    """The model exported to ONNX, float32 and with int8 fully connected layers, each in an onnxruntime engine of one
    stream: (name, engine, path); one row (name, None, "") saying why when onnxruntime or the exporter is missing."""
    try:
        from ..model.export import export_onnx
        from ..runtime.onnx_engine import OnnxEngine

        rows = []
        for name, int8 in (("onnxruntime, the exported graph", False), ("onnxruntime, int8 fully connected", True)):
            graph, _ = export_onnx(model, tmp / f"step_{int8}.onnx", size, int8=int8)
            engine = OnnxEngine(graph, 1, torch.get_num_threads())
            rows.append((name, engine, engine.path["backend"]))
        return rows
    except ImportError as e:
        return [(f"onnxruntime (not run: {e.name} is not installed)", None, "")]


def precision(weights: str | Path, frames: int = 1000) -> list[dict]:
    """Lower precisions against float32 on one real game: the float32 model (torch modules) plays Pong (seed 5) for `frames` steps; the
    bfloat16 engine and the exported graphs (float32, int8) see the same frames, resets included. Class agreement with
    float32 torch and the largest log-probability difference."""
    from ..games.pong import PONG_ACTIONS
    from ..model import load_model

    model = load_model(weights).eval()
    reference = TickEngine(model, 1, fast_cpu=False)  # the float32 model itself
    src = open_source("ale:Pong?seed=5", _bench_source_config())
    clip, firsts, want = [], [], []
    try:
        for _ in range(frames):
            frame = src.read()
            clip.append(frame.image.copy())
            firsts.append(bool(frame.first))
            probs, cls = reference(clip[-1][None], [firsts[-1]])
            want.append(np.log(probs[0]))
            src.act(PONG_ACTIONS[model.classes[int(cls[0])]])
    finally:
        src.close()
    bf16 = TickEngine(model, 1, dtype="bfloat16")
    contenders: list[tuple[str, Callable | None, str]] = [("ours, bfloat16", bf16, "")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        contenders += _onnx_engines(model, Path(tmp), clip[0].shape[:2])
        for name, engine, _ in contenders:
            if engine is None:
                rows.append({"precision": name, "class_agreement": None, "max_abs_dlogp": None, "path": ""})
                continue
            got = [np.log(engine(image[None], [first])[0][0]) for image, first in zip(clip, firsts)]
            agree = float(np.mean([g.argmax() == w.argmax() for g, w in zip(got, want)]))
            worst = float(max(np.abs(g - w).max() for g, w in zip(got, want)))
            rows.append({"precision": name, "class_agreement": round(agree, 4), "max_abs_dlogp": float(f"{worst:.3g}"),
                         "path": _path(engine.path)})
    return rows


def preprocess(weights: str | Path, frames: int = 300, repeats: int = 5) -> list[dict]:
    """One frame's preprocessing (the model's crop, luma, antialiased resize, rounding, normalisation) on real Pong
    frames, one thread: ours in torch; the same module exported to ONNX in onnxruntime; and, for reference, cv2's
    cvtColor + INTER_AREA resize (a different filter, so not what the model was trained on). Interleaved repeats."""
    from ..model import load_model

    model = load_model(weights).eval()
    pre, (h, w) = model.preproc, model.preproc.size
    images = _pong_frames(frames)
    x, y, cw, ch = pre.crop or (0, 0, images[0].shape[1], images[0].shape[0])
    contenders: dict[str, Callable | None] = {
        "ours (torch)": lambda image: pre(torch.from_numpy(image)[None]),
        "cv2 cvtColor + INTER_AREA (another filter; reference)":
            lambda image: cv2.resize(cv2.cvtColor(image[y : y + ch, x : x + cw], cv2.COLOR_BGR2GRAY), (w, h),
                                     interpolation=cv2.INTER_AREA),
    }
    try:
        import onnxruntime as ort

        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(pre, (torch.from_numpy(images[0])[None],), input_names=["frames"], dynamo=True,
                                        verbose=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        session = ort.InferenceSession(program.model_proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        contenders["the same, exported, in onnxruntime"] = lambda image: session.run(None, {"frames": image[None]})
    except ImportError as e:
        contenders[f"onnxruntime (not run: {e.name} is not installed)"] = None
    times = _interleaved(contenders, images, repeats)
    return [{"contender": name, "ms_per_frame": round(statistics.median(t), 4) if t else None} for name, t in times.items()]


def _interleaved(contenders: dict[str, Callable | None], images: list, repeats: int) -> dict[str, list[float]]:
    """Each contender over all `images`, in turn, `repeats` times: ms per image of each pass (None: not run)."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.inference_mode():
        for _ in range(repeats):
            for name, fn in contenders.items():
                if fn is None:
                    continue
                t0 = time.perf_counter()
                for image in images:
                    fn(image)
                times[name].append((time.perf_counter() - t0) / len(images) * 1000)
    return times


def _pong_frames(frames: int) -> list:
    """Real game frames for the measurements: `frames` of Pong, seed 5."""
    src = open_source("ale:Pong?seed=5", _bench_source_config())
    try:
        return [src.read().image.copy() for _ in range(frames)]
    finally:
        src.close()


def _bench_source_config():
    from ..config import SourceConfig

    return SourceConfig()


def replay(weights: str | Path, frames: int = 3000, chunks: tuple[int, ...] = (8, 16, 32, 64), repeats: int = 3,
           threads: int = 1) -> list[dict]:
    """A recorded Pong clip (`frames` real game frames, written as MJPG) in lockstep: decoding alone (the capture thread,
    as `capture` does), `predict` one frame per tick, and `predict` in chunks of each size, all on torch with `threads`
    threads, interleaved `repeats` times; the median frames/s of each and its ratio to decoding; then bfloat16 one frame
    per tick and in the largest chunks, with their class agreement with float32 one frame per tick. With PyAV installed,
    PyAV's decoding of the same file beside OpenCV's."""
    from ..config import Config
    from ..model import load_model
    from ..runtime.backends import model_agent

    model = load_model(weights).eval() if str(weights).endswith(".safetensors") else default_bench_model(str(weights))
    name = Path(weights).name if str(weights).endswith(".safetensors") else f"{weights} (random weights)"
    with tempfile.TemporaryDirectory() as tmp:
        clip = _pong_clip(Path(tmp) / "pong.avi", frames)

        def decode() -> int:
            with CaptureThread(open_source(str(clip)), ring_size=32, replay="lockstep") as cap:
                return sum(1 for _ in cap.frames())

        classes: dict[str, list[int]] = {}

        def predict(key: str, chunk: int, dtype: str = "float32") -> tuple[str, Callable[[], int]]:
            cfg = Config()
            cfg.predict.backend, cfg.predict.chunk, cfg.predict.threads = "torch", chunk, threads
            cfg.predict.dtype = dtype

            def run() -> int:
                with Predictor(model_agent(model, cfg.predict), str(clip), config=cfg, threads=threads) as p:
                    classes[key] = [t.class_id for t in p]
                return len(classes[key])

            return key, run

        bf16 = f"bfloat16 ({'native' if cpu_bf16_native() else 'emulated: no bfloat16 instructions'})"
        runs = [("predict, one frame per tick", 0, "float32"), *((f"predict, chunks of {c}", c, "float32") for c in chunks),
                (f"predict, one frame per tick, {bf16}", 0, "bfloat16"),
                (f"predict, chunks of {max(chunks)}, {bf16}", max(chunks), "bfloat16")]
        contenders = {"decode only (capture thread, OpenCV)": decode, **dict(predict(*r) for r in runs)}
        if importlib.util.find_spec("av") is not None:
            contenders["decode only (PyAV, one thread)"] = lambda: _pyav_decode(clip)
        fps: dict[str, list[float]] = {k: [] for k in contenders}
        for _ in range(repeats):
            for key, fn in contenders.items():
                t0 = time.perf_counter()
                n = fn()
                fps[key].append(n / (time.perf_counter() - t0))
                assert n == frames, f"{key}: {n} of {frames} frames"
    reference = classes["predict, one frame per tick"]
    agree = {k: round(float(np.mean(np.equal(v, reference))), 4) for k, v in classes.items()}
    base = statistics.median(fps["decode only (capture thread, OpenCV)"])
    return [{"weights": name, "path": key, "frames": frames, "fps": round(statistics.median(v), 1),
             "vs_decode": round(statistics.median(v) / base, 3),
             **({"classes_agree": agree[key]} if key in agree else {})} for key, v in fps.items()]


def _pong_clip(path: Path, frames: int) -> Path:
    """`frames` of real Pong (seed 5) written as an MJPG .avi at 30 fps."""
    src = open_source("ale:Pong?seed=5", _bench_source_config())
    writer = None
    try:
        for _ in range(frames):
            image = src.read().image
            if writer is None:
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, image.shape[1::-1])
            writer.write(image)
    finally:
        src.close()
        if writer is not None:
            writer.release()
    return path


def _pyav_decode(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        return sum(1 for frame in container.decode(stream) if frame.to_ndarray(format="bgr24") is not None)
