import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_predictor.errors import ReadError, SourceError, UserError
from stream_predictor.runtime.capture import CaptureThread
from stream_predictor.sources import open_source, parse_spec
from stream_predictor.sources.base import Frame, Source

from conftest import decode_all, write_video


def drain(cap: CaptureThread, delay: float = 0.0, timeout: float = 5.0) -> list:
    out, last = [], -1
    while (f := cap.ring.wait_newer(last, timeout)) is not None:
        out.append((f.seq, f.image.copy(), f.skipped))
        last = f.seq
        if delay:
            time.sleep(delay)
    return out


@pytest.mark.parametrize("spec, kind, target, options", [
    ("0", "camera", "0", {}),
    ("2", "camera", "2", {}),
    ("rtsp://127.0.0.1:8554/cam", "stream", "rtsp://127.0.0.1:8554/cam", {}),
    ("http://localhost/video.mjpg", "stream", "http://localhost/video.mjpg", {}),
    ("screen", "screen", "", {}),
    ("screen:10,20,300,200", "screen", "10,20,300,200", {}),
    ("screen:0,0,800,600?monitor=1&fps=30", "screen", "0,0,800,600", {"monitor": 1, "fps": 30}),
    ("ale:Pong?seed=3&sticky=0.0", "ale", "Pong", {"seed": 3, "sticky": 0.0}),
    ("synthetic:bounce?fps=60&frames=10", "synthetic", "bounce", {"fps": 60, "frames": 10}),
])
def test_parse_spec(spec, kind, target, options):
    s = parse_spec(spec)
    assert (s.kind, s.target, s.options) == (kind, target, options)


def test_parse_spec_paths(tmp_path, video):
    assert parse_spec(str(video)).kind == "video"
    assert parse_spec(str(tmp_path)).kind == "images"


@pytest.mark.parametrize("spec, words", [
    ("nope/clip.mp4", "source not found"),
    ("foo:bar", "unknown source scheme 'foo:'"),
    ("ale:Pong?speed=3", "unknown option 'speed'"),
    ("synthetic:bounce?fps", "not key=value"),
    ("", "empty source spec"),
])
def test_bad_specs(spec, words):
    with pytest.raises(SourceError, match=words):
        open_source(spec)


def test_bad_video_files(tmp_path, video):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="empty"):
        open_source(str(empty))
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(str(noise))


def test_lockstep_video_is_byte_identical_to_plain_cv2(video):
    expected = decode_all(video)
    source = open_source(str(video))
    assert source.fps == pytest.approx(30.0) and source.frame_count == len(expected)
    with CaptureThread(source, ring_size=4, replay="lockstep") as cap:
        got = drain(cap, delay=0.001)  # a consumer slower than decoding loses nothing in lockstep
    assert [s for s, _, _ in got] == list(range(len(expected)))
    assert sum(k for _, _, k in got) == 0
    for (_, image, _), ref in zip(got, expected):
        np.testing.assert_array_equal(image, ref)
    assert cap.stats.captured == len(expected)


def test_realtime_video_drops_frames_behind_a_slow_consumer(tmp_path):
    path = write_video(tmp_path / "fast.avi", frames=60, fps=100.0)
    with CaptureThread(open_source(str(path)), ring_size=4, replay="realtime") as cap:
        t0 = time.monotonic()
        got = drain(cap, delay=0.04)  # 25 fps consumer on a 100 fps file
        elapsed = time.monotonic() - t0
    skipped = sum(k for _, _, k in got)
    assert skipped > 20
    assert len(got) + skipped == 60
    assert cap.stats.skipped == skipped and cap.stats.captured == 60
    assert got[-1][0] == 59
    assert elapsed > 0.45  # paced at the file's rate (0.6 s), not decoded as fast as possible


def test_close_while_a_consumer_waits_returns_promptly():
    cap = CaptureThread(open_source("synthetic:bounce?fps=0.5"), ring_size=4, replay="realtime").start()
    first = cap.ring.wait_newer(-1, 5)
    assert first is not None and first.seq == 0
    done = {}

    def consumer():
        done["frame"] = cap.ring.wait_newer(first.seq, timeout=60)

    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    cap.close()
    t.join(30)
    assert not t.is_alive() and done["frame"] is None
    assert time.monotonic() - t0 < 30  # woken by the close, not by its 60 s timeout
    assert not cap.alive
    cap.close()  # idempotent


def test_end_of_stream_wakes_consumer_through_capture_thread():
    with CaptureThread(open_source("synthetic:bounce?frames=5&fps=0"), ring_size=8) as cap:
        got = drain(cap, timeout=30)
        t0 = time.monotonic()
        assert cap.ring.wait_newer(4, timeout=60) is None
        assert time.monotonic() - t0 < 30  # the end of the stream woke it, not its 60 s timeout
    assert [s for s, _, _ in got] == [0, 1, 2, 3, 4]


class FlakySource(Source):
    """A live source whose reads fail in bursts, like a camera losing its USB link."""

    live = True
    name = "flaky"

    def __init__(self, fail_at: set[int]) -> None:
        super().__init__()
        self.calls, self.fail_at, self.reopened = 0, fail_at, 0

    def read(self, out: np.ndarray | None = None) -> Frame | None:
        self.calls += 1
        if self.calls in self.fail_at:
            raise ReadError("device unplugged")
        if self._seq >= 20:
            return None
        return self._frame(np.full((4, 4, 3), self._seq, np.uint8))

    def reopen(self) -> None:
        self.reopened += 1


def test_failing_reads_reconnect_with_backoff_and_feed_no_fake_frames():
    source = FlakySource({3, 4, 10})
    with CaptureThread(source, ring_size=64, reconnect_backoff_s=0.01) as cap:
        got = [(f.seq, int(f.image[0, 0, 0]), f.skipped) for f in cap.frames()]
    assert all(seq == value for seq, value, _ in got)  # each frame is the one read: no black or repeated frames
    assert [seq for seq, _, _ in got] == sorted({seq for seq, _, _ in got}) and got[-1][0] == 19
    assert len(got) + sum(skipped for _, _, skipped in got) == 20 == cap.stats.captured
    assert cap.stats.reconnects == 3 and source.reopened == 3
    assert sum("read failed" in e for _, e in cap.events) == 3


def test_giving_up_after_too_many_failures_surfaces_an_error():
    source = FlakySource(set(range(1, 100)))
    with CaptureThread(source, ring_size=4, reconnect_max=2, reconnect_backoff_s=0.01) as cap:
        assert cap.ring.wait_newer(-1, 5) is None
        assert isinstance(cap.ring.error, UserError) and "gave up" in str(cap.ring.error)


def test_image_folder_sorted_and_unreadable_skipped(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img_{i:03d}.png"), np.full((10, 12, 3), i * 50, np.uint8))
    (tmp_path / "img_001b.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path))
    frames = []
    while (f := source.read()) is not None:
        frames.append(f)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 50, 100]
    assert [f.seq for f in frames] == [0, 1, 2]
    assert [p.name for p in source.unreadable] == ["img_001b.png"]


def test_synthetic_is_deterministic_and_seeded():
    a, b, c = (open_source(f"synthetic:bounce?seed={s}&frames=50") for s in (1, 1, 2))
    fa = [a.read().image for _ in range(50)]
    fb = [b.read().image for _ in range(50)]
    fc = [c.read().image for _ in range(50)]
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    assert not all(np.array_equal(x, y) for x, y in zip(fa, fc))
    assert a.read() is None
    assert {a.label_of(i) for i in range(1, 400)} == {"left", "straight", "right"}


def test_ale_pong_yields_frames_and_obeys_actions():
    def run(action: int) -> tuple[np.ndarray, int]:
        src = open_source("ale:Pong?seed=0&sticky=0.0")
        frames = [src.read()]
        for _ in range(60):
            src.act(action)
            frames.append(src.read())
        y = int(src.ram()[51])
        src.close()
        return np.stack([f.image for f in frames]), y

    noop, y_noop = run(0)
    up, y_up = run(2)  # RIGHT moves the paddle up
    down, y_down = run(3)
    assert noop.shape == (61, 210, 160, 3) and noop.dtype == np.uint8
    assert not np.array_equal(noop[-1], noop[0])  # the game runs
    np.testing.assert_array_equal(noop[0], up[0])  # same seed, same start
    assert y_up < y_noop < y_down  # the paddle went where it was told
    assert not np.array_equal(up[-1], down[-1])


def test_ale_sync_mode_waits_for_an_action():
    src = open_source("ale:Pong?sync=true")
    src.read()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("f", src.read()))
    t.start()
    t.join(0.3)
    assert t.is_alive()  # blocked: no decision yet
    src.act(0)
    t.join(2)
    assert result["f"].seq == 1
    src.close()


def test_ale_unknown_game():
    with pytest.raises(SourceError, match="unknown game"):
        open_source("ale:NoSuchGame")


def test_screen_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(SourceError, match="DISPLAY"):
        open_source("screen")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")
    with pytest.raises(SourceError, match="Wayland"):
        open_source("screen")


def test_screen_capture_under_xvfb_reads_back_a_pattern(xvfb):
    x, y, w, h = 100, 80, 200, 120
    helper = Path(__file__).with_name("show_pattern.py")
    proc = subprocess.Popen([sys.executable, str(helper), str(x), str(y), str(w), str(h)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "shown"
        source = open_source(f"screen:{x},{y},{w},{h}")
        deadline = time.monotonic() + 5
        with CaptureThread(source, ring_size=4) as cap:
            last = -1
            while True:  # the window may take a moment to be drawn
                f = cap.ring.wait_newer(last, 2)
                image, last = f.image.copy(), f.seq
                if image[h // 4, w // 4].tolist() == [0, 0, 255] or time.monotonic() > deadline:
                    break
        assert image.shape == (h, w, 3)
        assert image[h // 4, w // 4].tolist() == [0, 0, 255]  # red, in BGR
        assert image[h // 4, 3 * w // 4].tolist() == [0, 255, 0]  # green
        assert image[3 * h // 4, w // 4].tolist() == [255, 0, 0]  # blue
        assert image[3 * h // 4, 3 * w // 4].tolist() == [255, 255, 255]
        with pytest.raises(SourceError, match="outside"):
            open_source("screen:1000,700,100,100")
    finally:
        proc.kill()
        proc.wait()


class MjpegHandler:
    """An MJPEG-over-HTTP camera on localhost: each connection gets `per_connection` frames, then drops
    (or, with `stall_s`, hangs that long first with the connection open, sending nothing)."""

    @staticmethod
    def server(per_connection: int, stall_s: float = 0.0):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            connections = 0

            def do_GET(self):
                Handler.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(per_connection):
                    ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), 40 + i * 8, np.uint8))
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                                     + jpg.tobytes() + b"\r\n")
                    self.wfile.flush()
                    time.sleep(0.005)
                time.sleep(stall_s)

            def log_message(self, *args):
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv, Handler, f"http://127.0.0.1:{srv.server_address[1]}/cam.mjpg"


def collect(cap: CaptureThread, n: int, seconds: float, skipped: list[int] | None = None) -> list[tuple[int, int]]:
    """(seq, mean pixel value) of up to n frames the ring hands over, waiting at most `seconds` in all; each frame's
    count of skipped frames goes to `skipped` if given."""
    got, last, deadline = [], -1, time.monotonic() + seconds
    while len(got) < n and time.monotonic() < deadline:
        f = cap.ring.wait_newer(last, 0.5)
        if f is not None:
            got.append((f.seq, int(f.image.mean())))
            if skipped is not None:
                skipped.append(f.skipped)
            last = f.seq
    return got


def test_http_stream_reads_and_reconnects_after_a_drop():
    srv, handler, url = MjpegHandler.server(per_connection=20)
    try:
        source = open_source(url)
        assert source.live and parse_spec(url).kind == "stream"
        skipped: list[int] = []
        with CaptureThread(source, ring_size=64, reconnect_backoff_s=0.05) as cap:
            got = collect(cap, 50, 20, skipped)
        # seq runs on across reconnects: each frame handed over follows the last one and the frames overwritten unseen
        # in between (a live ring keeps the newest; a busy machine may let the writer lap the reader)
        seqs = [s for s, _ in got]
        assert len(seqs) == 50 and seqs == [sum(skipped[: i + 1]) + i for i in range(50)]
        assert cap.stats.reconnects >= 2 and handler.connections >= 3
        assert all(v >= 30 for _, v in got)  # only real frames: no black filler
    finally:
        srv.shutdown()


def test_stream_that_never_comes_back_gives_up_with_an_error():
    srv, _, url = MjpegHandler.server(per_connection=5)
    source = open_source(url)
    srv.shutdown()
    srv.server_close()
    with CaptureThread(source, ring_size=8, reconnect_max=2, reconnect_backoff_s=0.01) as cap:
        frames = []
        with pytest.raises(UserError, match="gave up after 2 reconnects"):
            for f in cap.frames():
                frames.append(f.seq)
    # the frames it did get came in order and nothing was invented; a busy reader may be lapped (skipped counts those)
    assert frames == sorted(set(frames)) and set(frames) <= set(range(5))
    assert not frames or frames[-1] + 1 == len(frames) + cap.ring.skipped


def test_moving_dot_labels_follow_its_pixels():
    """synthetic:dot: each label is the direction the drawn dot moved since the previous frame; five classes."""
    source = open_source("synthetic:dot?frames=300&seed=3")
    frames = [source.read() for _ in range(300)]
    assert source.read() is None and source.truth_classes == ("left", "right", "up", "down", "still")

    def centre(image):
        ys, xs = np.nonzero(image[:, :, 0] == 255)
        return xs.mean(), ys.mean()

    for prev, cur in zip(frames, frames[1:]):
        (x0, y0), (x1, y1) = centre(prev.image), centre(cur.image)
        dx, dy = x1 - x0, y1 - y0
        seen = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) and abs(dx) > 1 else \
            ("down" if dy > 0 else "up") if abs(dy) > 1 else "still"
        assert source.label_of(cur.seq) == seen, (cur.seq, dx, dy)
    assert {source.label_of(i) for i in range(300)} == set(source.truth_classes)
    again = open_source("synthetic:dot?frames=300&seed=3")
    assert np.array_equal(again.read().image, frames[0].image)  # a pure function of the seed and the frame number
