"""The web sink: a real browser (Debian's chromium, driven by selenium) on a live run, and viewers that stall or vanish."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_predictor.config import Config
from stream_predictor.runtime.tick import Tick
from stream_predictor.sinks import open_sink
from stream_predictor.sinks.web import WebSink

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("CI installs chromium and chromium-driver; they are missing")
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait_for(predicate, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_the_page_in_a_real_browser(tmp_path):
    """A live run on a synthetic source: the counter runs, the picture changes, the bars show the JSONL ticks' values."""
    from selenium.webdriver.common.by import By

    port, ticks = free_port(), tmp_path / "ticks.jsonl"
    run = subprocess.Popen([sys.executable, "run.py", "predict", "--source", "synthetic:bounce?fps=30&frames=2400", "--out",
                            str(ticks), "--sink", f"web:{port}", "replay=realtime", "model.crop=[20,10,120,100]"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    driver = None
    try:
        wait_for(lambda: _answers(port), 60)
        driver = browser()
        driver.get(f"http://127.0.0.1:{port}/")
        seq = lambda: driver.execute_script("return Number(document.getElementById('seq').dataset.seq || -1)")  # noqa: E731
        first = wait_for(lambda: seq() >= 0 and seq())
        wait_for(lambda: seq() > first + 10)  # the frame counter runs

        image = driver.find_element(By.ID, "frame")
        wait_for(lambda: driver.execute_script("return arguments[0].naturalWidth", image) > 0)
        shots = []
        for _ in range(2):
            shots.append(cv2.imdecode(np.frombuffer(image.screenshot_as_png, np.uint8), cv2.IMREAD_COLOR))
            time.sleep(0.7)
        assert shots[0].std() > 5 and shots[0].shape == shots[1].shape  # a picture, not a blank box
        assert np.abs(shots[0].astype(int) - shots[1]).max() > 50  # the ball moved: the picture is live
        # the source frame and the model's view side by side: the picture is wider than the 160x120 frame doubled
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 320

        shown = driver.execute_script("""
            const els = [...document.querySelectorAll('[id^=prob-]')];
            return els.map(e => [Number(e.dataset.seq), Number(e.dataset.p)]);""")
        assert len(shown) == 3 and len({s for s, _ in shown}) == 1
        driver.save_screenshot(str(tmp_path / "page.png"))
    finally:
        if driver is not None:
            driver.quit()
        run.terminate()
        run.communicate(timeout=30)
    logged = {t["seq"]: t["probs"] for t in map(json.loads, ticks.read_text().splitlines())}
    seq_shown = shown[0][0]
    assert [p for _, p in shown] == pytest.approx(logged[seq_shown], abs=1e-6)  # what the page shows is what was decided


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _tick(seq: int, image: np.ndarray) -> Tick:
    return Tick(seq, time.monotonic(), time.monotonic(), 1.0, seq % 3, "abc"[seq % 3], [0.2, 0.3, 0.5], 0, False, seq == 0, image)


def test_stalled_and_vanishing_viewers_never_hold_the_ticks():
    """One viewer never reads and one leaves mid-stream; the tick thread goes on, the others still get the newest frames."""
    sink = open_sink("web:0", ["a", "b", "c"], Config())
    assert isinstance(sink, WebSink) and sink.url.startswith("http://127.0.0.1:")
    port = int(sink.url.rsplit(":", 1)[1].strip("/"))
    sink.attach(lambda img: img[::2, ::2], dict)
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads a byte
    leaving = socket.create_connection(("127.0.0.1", port))
    leaving.sendall(b"GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n")
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (240, 320, 3), np.uint8) for _ in range(8)]  # noisy frames: big JPEGs fill buffers fast
    done = threading.Event()

    def ticks() -> None:
        for i in range(3000):
            sink(_tick(i, frames[i % 8]))
            time.sleep(0.001)
            if i == 300:
                leaving.close()  # a viewer vanishes mid-stream
        done.set()

    feeder = threading.Thread(target=ticks)
    feeder.start()
    with urllib.request.urlopen(sink.url + "stream.mjpg", timeout=10) as r:  # a third viewer reads along
        got = r.read(200_000)
    feeder.join(60)
    assert done.is_set()  # every tick went through while a viewer stalled and another vanished
    assert got.count(b"Content-Type: image/jpeg") >= 2
    status = json.loads(urllib.request.urlopen(sink.url + "status.json", timeout=5).read())
    assert status["tick"]["seq"] == 2999 and status["counters"]["ticks"] == 3000
    assert status["counters"]["dropped"] > 0  # viewers skipped to the newest tick
    sink.close()
    stalled.close()
    summary = sink.summary()["web"]
    assert summary["viewers_max"] >= 2 and summary["sent"] > 0


def test_a_busy_port_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "run.py", "predict", "--source", "synthetic:bounce?frames=5", "--sink", f"web:{port}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot listen on 127.0.0.1" in r.stderr and len(r.stderr.strip().splitlines()) <= 2, r.stderr
