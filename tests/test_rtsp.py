"""Against a real RTSP server: GStreamer's gst-rtsp-server, run under the system Python (Debian's bindings), serving
H.264 of a moving pattern with the wall-clock time stamped into each frame (stream_predictor/tools/rtsp_pattern.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from stream_predictor import load_config
from stream_predictor.config import ModelConfig
from stream_predictor.model import build_model
from stream_predictor.runtime.capture import CaptureThread
from stream_predictor.runtime.predictor import Predictor
from stream_predictor.sources import open_source
from stream_predictor.tools.rtsp_pattern import read_stamp

from conftest import ROOT

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = ROOT / "stream_predictor" / "tools" / "rtsp_pattern.py"


def gst_rtsp_available() -> bool:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module", autouse=True)
def needs_gst_rtsp():
    if not gst_rtsp_available():
        if os.environ.get("CI"):
            pytest.fail("gst-rtsp-server's Python bindings are missing; .ci/run installs them")
        pytest.skip("needs python3-gi and gir1.2-gst-rtsp-server-1.0 (apt-get install, see .ci/run)")


class RtspServer:
    """The pattern server as a subprocess on a free port; `kill()` and `start()` again to restart it mid-stream."""

    def __init__(self, size: str = "320x240", fps: int = 30) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/pattern"
        self.size, self.fps = size, fps
        self.proc: subprocess.Popen | None = None

    def start(self, size: str | None = None) -> RtspServer:
        self.size = size or self.size
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--size", self.size,
                                      "--fps", str(self.fps)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("rtsp://"), f"the RTSP server did not start: {line}{self.proc.stderr.read()}"
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def tiny_model():
    return build_model(ModelConfig(input_size=[48, 64], hidden=16, feature_dim=32))


def config():
    # A dead server is noticed within a second; reconnects are tried every quarter second up to a second apart.
    return load_config(overrides=["source.read_timeout_s=1.0", "source.reconnect_backoff_s=0.25",
                                  "source.reconnect_backoff_max_s=1.0", "source.reconnect_max=30"])


def test_reads_the_stream_at_its_30_fps_with_every_stamp_readable():
    with RtspServer() as server:
        source = open_source(server.url, config().source)
        with CaptureThread(source, ring_size=64) as cap:
            frames = [(f.t_capture, read_stamp(f.image)) for f in cap.frames(6.0)]
    assert source.fps == pytest.approx(30, abs=0.5)
    stamps = [s for _, s in frames]
    assert None not in stamps and stamps == sorted(stamps)
    steady = [t for t, _ in frames if t >= frames[0][0] + 1.5]  # after the backlog of the first second
    assert len(steady) > 30, f"{len(frames)} frames in 6 s, {len(steady)} after the first 1.5 s"
    rate = (len(steady) - 1) / (steady[-1] - steady[0])
    assert 27 <= rate <= 33, rate
    spacing = np.diff([s for t, s in frames if t >= steady[0]])  # the server made them 1/30 s apart
    assert np.median(spacing) == pytest.approx(1 / 30, abs=0.005)


def run_with_restart(server: RtspServer, restart_size: str | None, down_s: float = 1.5):
    """A Predictor on the stream; the server is killed after 2 s of ticks and started again `down_s` later."""
    ticks, restarted = [], []

    def restart() -> None:
        time.sleep(2.0)
        server.kill()
        time.sleep(down_s)
        server.start(restart_size)
        restarted.append(time.monotonic())

    with Predictor(tiny_model(), server.url, config=config(), keep_frames=True) as p:
        chaos = threading.Thread(target=restart)
        chaos.start()
        for tick in p:
            ticks.append((tick, read_stamp(tick.image), tick.image.shape))
            if restarted and tick.t_decision > restarted[0] + 3.0:
                break
        chaos.join()
        summary = p.summary()
    return ticks, restarted[0], summary


def test_server_killed_and_restarted_reconnects_with_no_made_up_frame_and_a_fresh_state():
    with RtspServer() as server:
        ticks, restarted, summary = run_with_restart(server, None)
    assert summary["reconnects"] >= 1
    stamps = [s for _, s, _ in ticks]
    assert None not in stamps  # every frame the model saw was a real one, from the server
    assert all(b > a for a, b in zip(stamps, stamps[1:]))  # in order, none repeated
    gaps = np.diff(stamps)
    resume = int(np.argmax(gaps)) + 1  # the first frame after the outage
    assert gaps[resume - 1] > 1.5  # the outage, in the server's own time
    assert ticks[resume][0].first  # the recurrent state restarts after the gap
    assert not any(t.first for t, _, _ in ticks[1:resume])
    recovery_s = ticks[resume][0].t_decision - restarted
    print(f"recovery: first decision {recovery_s:.2f} s after the server was back; reconnects {summary['reconnects']}")
    assert recovery_s < 20  # backoff is capped at 1 s: a lost reconnect loop would take 30 tries longer


def test_a_new_frame_size_after_a_reconnect_is_taken_in_stride():
    with RtspServer("320x240") as server:
        ticks, _, summary = run_with_restart(server, "384x288")
    shapes = [shape for _, _, shape in ticks]
    assert shapes[0] == (240, 320, 3) and shapes[-1] == (288, 384, 3)
    switch = shapes.index((288, 384, 3))
    assert set(shapes[switch:]) == {(288, 384, 3)}  # no frame of the old size after the switch
    assert ticks[switch][0].first and summary["reconnects"] >= 1
    assert None not in [s for _, s, _ in ticks]


def test_a_slow_model_gets_the_newest_frame_and_the_age_does_not_grow():
    """50 ms per tick against 30 frames/s: a buffering reader would fall further behind every second."""
    ages = []

    def slow(tick) -> None:
        ages.append((tick.t_decision, time.time() - read_stamp(tick.image)))
        threading.Event().wait(0.05)  # the slow model

    with RtspServer() as server, Predictor(tiny_model(), server.url, config=config(), keep_frames=True,
                                           sinks=[slow]) as p:
        for tick in p:
            if tick.t_decision > ages[0][0] + 10:
                break
        summary = p.summary()
    t0 = ages[0][0]
    early = [a for t, a in ages if t0 + 2 <= t < t0 + 4]
    late = [a for t, a in ages if t >= t0 + 8]
    p50 = lambda xs: float(np.percentile(xs, 50)) * 1000  # noqa: E731
    print(f"frame age at decision: 2-4 s p50 {p50(early):.0f} ms, 8-10 s p50 {p50(late):.0f} ms; skipped {summary['skipped']}")
    assert summary["skipped"] > 0.25 * summary["captured"]  # the model skipped frames instead of queueing them
    assert p50(late) < p50(early) + 50 and p50(late) < 1000  # a queue would grow to seconds over 10 s


def test_soak_on_the_rtsp_server_reports_ages_accounting_and_resources():
    with RtspServer() as server:
        r = subprocess.run([sys.executable, "run.py", "soak", "--source", server.url, "--seconds", "8", "--tick-ms", "50",
                            "--stamped", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["reconnects"] == 0, out["events"]  # a local server never drops: a reconnect here names its cause
    assert out["accounted"] and out["unstamped"] == 0
    assert out["captured"] == out["processed"] + out["skipped"] + out["unread"] and out["skipped"] > 0
    assert 0 < out["age_ms_end"]["p50"] < 1000 and out["age_ms_end"]["n"] > 50
    assert out["threads_leaked"] == [] and out["fds_after"] == out["fds_before"]
