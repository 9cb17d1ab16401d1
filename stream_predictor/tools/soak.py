"""Soak: a long run, watching memory, threads, file descriptors and frame accounting.

`soak()` runs a synthetic source as fast as it goes. `soak_live()` runs a live source (an RTSP server, a camera) for a
given time, optionally with a deliberately slow model (`tick_ms`), and, on a stream that stamps its frames with the
time they were made (`tools/rtsp_pattern.py`), measures the age of each frame when the model decides on it: at the
start and at the end of the run, so that a latency that grows (frames queueing somewhere) shows.
RSS is sampled every `sample_every` ticks; the baseline is taken after a warm-up (10% of the run), so
allocator and cache start-up do not count as growth.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..config import Config, ModelConfig
from ..model import build_model
from ..runtime.predictor import Predictor
from ..sinks import CallbackSink, JsonlSink
from .rtsp_pattern import read_stamp


def threads_left(before: set[threading.Thread], grace_s: float = 5.0) -> tuple[int, list[str]]:
    """Threads alive now, and the names of those started since `before` that are still alive (leaked), after giving
    them up to `grace_s` to finish (a loaded machine can be slow to schedule a thread that was told to stop). Threads
    that were there before may end meanwhile: fewer after is not a leak."""
    deadline = time.monotonic() + grace_s
    for t in set(threading.enumerate()) - before:
        if t is not threading.current_thread():
            t.join(max(0.0, deadline - time.monotonic()))
    leaked = sorted(t.name for t in set(threading.enumerate()) - before if t.is_alive())
    return threading.active_count(), leaked


def rss_mb() -> float:
    """Current resident set size (Linux: /proc; elsewhere the peak, which can only overstate growth)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    for d in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(d):
            return len(os.listdir(d))
    return -1


def _soak_model(size: tuple[int, int]):
    return build_model(ModelConfig(encoder="nature_cnn", input_size=[size[1], size[0]], grayscale=True, hidden=64,
                                   feature_dim=128, mean=[0.5], std=[0.5]))


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    return {"p50": round(float(np.percentile(values, 50)), 1), "p99": round(float(np.percentile(values, 99)), 1), "n": len(values)}


def soak_live(spec: str, seconds: float, cfg: Config, tick_ms: float = 0.0, stamped: bool = False, window_s: float = 60.0,
              progress=None) -> dict:
    """`spec` for `seconds`; with `tick_ms`, each tick also takes that long (a slow model). With `stamped`, the age of the
    frame at each decision (ms), over the first and the last `window_s` of the run."""
    samples: list[tuple[float, float]] = []  # (run time s, RSS MB)
    ages: list[tuple[float, float]] = []  # (run time s, age ms)
    unstamped = [0]
    pause = threading.Event()
    t0 = time.monotonic()

    def watch(tick) -> None:
        now = time.monotonic() - t0
        if stamped:
            made = read_stamp(tick.image)
            if made is None:
                unstamped[0] += 1
            else:
                ages.append((now, (time.time() - made) * 1000))
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, rss_mb()))
            if progress:
                progress(now)
        if tick_ms:
            pause.wait(tick_ms / 1000)  # the slow model

    running, fds_before = set(threading.enumerate()), open_fds()
    p = Predictor.from_config(_soak_model((160, 120)), cfg, spec, sinks=[CallbackSink(watch)], keep_frames=stamped,
                              replay="realtime")
    try:
        p.start()
        done = p.join(seconds)
    finally:
        p.close()
    seconds_run = time.monotonic() - t0
    s, threads = p.summary(), threads_left(running)
    warm = [r for t, r in samples if t >= 0.1 * seconds_run] or [samples[-1][1]]
    return {
        "source": spec, "seconds": round(seconds_run, 1), "ended_early": done, "tick_ms": tick_ms,
        "captured": s["captured"], "processed": s["frames"], "skipped": s["skipped"], "unread": s["unread"],
        "accounted": s["captured"] == s["frames"] + s["skipped"] + s["unread"], "reconnects": s["reconnects"],
        "events": [f"{t - t0:.2f}s {what}" for t, what in p.capture.events],  # why each reconnect happened, when
        "resets": s["resets"], "capture_fps": round(s["captured"] / seconds_run, 2), "ticks_per_s": s["fps"],
        "age_ms_start": _percentiles([a for t, a in ages if t < window_s]),
        "age_ms_end": _percentiles([a for t, a in ages if t >= seconds_run - window_s]),
        "unstamped": unstamped[0] if stamped else None,
        "rss_mb_start": round(warm[0], 1), "rss_mb_end": round(warm[-1], 1),
        "rss_growth_pct": round(100 * (warm[-1] - warm[0]) / warm[0], 2),
        "threads_before": len(running), "threads_after": threads[0], "threads_leaked": threads[1],
        "fds_before": fds_before, "fds_after": open_fds(),
    }


def soak(frames: int = 100_000, size: tuple[int, int] = (64, 48), sample_every: int = 1000, replay: str = "lockstep",
         progress=None) -> dict:
    """lockstep: every frame through the model, as fast as it goes; realtime: the source at full speed, the model skipping."""
    model = _soak_model(size)
    samples: list[tuple[int, float]] = []
    warm = max(1, frames // 10)

    last = [-sample_every]

    def sample(tick) -> None:
        if tick.seq - last[0] >= sample_every:  # by frame number: ticks skip frames when the model falls behind
            last[0] = tick.seq
            samples.append((tick.seq, rss_mb()))
            if progress:
                progress(tick.seq)

    running, fds_before = set(threading.enumerate()), open_fds()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ticks.jsonl"
        spec = f"synthetic:bounce?fps=0&frames={frames}&width={size[0]}&height={size[1]}"
        t0 = time.monotonic()
        with Predictor(model, spec, replay=replay, ring_size=8, sinks=[JsonlSink(out, flush_every=256), CallbackSink(sample)]) as p:
            p.run()
        seconds = time.monotonic() - t0
        lines = sum(1 for _ in open(out))
    s, threads = p.summary(), threads_left(running)
    base = [r for seq, r in samples if seq >= warm] or [samples[-1][1]]
    return {
        "frames": frames, "replay": replay, "captured": s["captured"], "processed": s["frames"], "skipped": s["skipped"],
        "unread": s["unread"],
        "accounted": s["captured"] == s["frames"] + s["skipped"], "jsonl_lines": lines,
        "rss_mb_start": round(base[0], 1), "rss_mb_end": round(base[-1], 1), "rss_mb_max": round(max(base), 1),
        "rss_growth_pct": round(100 * (base[-1] - base[0]) / base[0], 2),
        "threads_before": len(running), "threads_after": threads[0], "threads_leaked": threads[1],
        "fds_before": fds_before, "fds_after": open_fds(),
        "seconds": round(seconds, 1), "fps": round(s["frames"] / seconds, 1),
        "latency_ms_p50": s["latency_ms_p50"], "latency_ms_p99": s["latency_ms_p99"],
    }
