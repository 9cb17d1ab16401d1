"""Soak: a long run as fast as it goes, watching memory, threads, file descriptors and frame accounting.

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

from ..config import ModelConfig
from ..model import build_model
from ..runtime.predictor import Predictor
from ..sinks import CallbackSink, JsonlSink


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


def soak(frames: int = 100_000, size: tuple[int, int] = (64, 48), sample_every: int = 1000, replay: str = "lockstep",
         progress=None) -> dict:
    """lockstep: every frame through the model, as fast as it goes; realtime: the source at full speed, the model skipping."""
    model = build_model(ModelConfig(encoder="nature_cnn", input_size=[size[1], size[0]], grayscale=True, hidden=64,
                                    feature_dim=128, mean=[0.5], std=[0.5]))
    samples: list[tuple[int, float]] = []
    warm = max(1, frames // 10)

    last = [-sample_every]

    def sample(tick) -> None:
        if tick.seq - last[0] >= sample_every:  # by frame number: ticks skip frames when the model falls behind
            last[0] = tick.seq
            samples.append((tick.seq, rss_mb()))
            if progress:
                progress(tick.seq)

    threads_before, fds_before = threading.active_count(), open_fds()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ticks.jsonl"
        spec = f"synthetic:bounce?fps=0&frames={frames}&width={size[0]}&height={size[1]}"
        t0 = time.monotonic()
        with Predictor(model, spec, replay=replay, ring_size=8, sinks=[JsonlSink(out, flush_every=256), CallbackSink(sample)]) as p:
            p.run()
        seconds = time.monotonic() - t0
        lines = sum(1 for _ in open(out))
    s = p.summary()
    base = [r for seq, r in samples if seq >= warm] or [samples[-1][1]]
    return {
        "frames": frames, "replay": replay, "captured": s["captured"], "processed": s["frames"], "skipped": s["skipped"],
        "unread": s["unread"],
        "accounted": s["captured"] == s["frames"] + s["skipped"], "jsonl_lines": lines,
        "rss_mb_start": round(base[0], 1), "rss_mb_end": round(base[-1], 1), "rss_mb_max": round(max(base), 1),
        "rss_growth_pct": round(100 * (base[-1] - base[0]) / base[0], 2),
        "threads_before": threads_before, "threads_after": threading.active_count(),
        "fds_before": fds_before, "fds_after": open_fds(),
        "seconds": round(seconds, 1), "fps": round(s["frames"] / seconds, 1),
        "latency_ms_p50": s["latency_ms_p50"], "latency_ms_p99": s["latency_ms_p99"],
    }
