"""Live control on a desktop, for real under Xvfb: screen in, keys out; plus the other sinks.

The end-to-end test runs the game host window (ALE Pong drawn by Tk, keys read from X), an agent that
captures that window with mss and presses keys through XTest (pynput), and checks in the game's own
log that the keys arrived and moved the paddle the way they say.
"""

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_predictor import Predictor, UserError
from stream_predictor.config import Config, KeysConfig, load_config
from stream_predictor.errors import ConfigError
from stream_predictor.games.window import action_for
from stream_predictor.model import save_model
from stream_predictor.session import load_session
from stream_predictor.sinks import open_sink, open_sinks
from stream_predictor.sinks.keys import KeySink, _DryRun, key_map
from stream_predictor.sources import open_source

from conftest import decode_all, prev_action_model, sigint_default
from test_predictor import model_for_video

ROOT = Path(__file__).resolve().parent.parent
PONG_KEYS = ["keys.preset=none", 'keys.map=[up:up, "stay:", down:down]']


class FakeTick:
    def __init__(self, cls: str, seq: int = 0, stale: bool = False) -> None:
        self.class_name, self.seq, self.stale, self.t_capture = cls, seq, stale, time.monotonic()


def dry_sink(classes=("left", "straight", "right"), **kw) -> tuple[KeySink, io.StringIO]:
    out = io.StringIO()
    return KeySink(list(classes), KeysConfig(pause_key="", **kw), backend=_DryRun(out)), out


def test_keys_are_held_by_difference_and_released_on_close():
    sink, out = dry_sink(["W", "S", "A", "D", "WA", "WD", "SA", "SD", "none"], preset="wasd9")
    for cls in ["W", "W", "WA", "A", "none", "SD"]:
        sink(FakeTick(cls))
    sink.close()
    sink(FakeTick("W"))  # after close: nothing
    assert out.getvalue().split("\n")[:-1] == [
        "press w",
        "press a",  # W → WA: only a is new
        "release w",  # WA → A
        "release a",  # A → none
        "press d", "press s",  # none → SD
        "release d", "release s",  # close
    ]
    assert sink.summary()["presses"] == 4 and sink.summary()["releases"] == 4


def test_pause_releases_everything_and_presses_nothing_until_resumed():
    sink, out = dry_sink()
    sink(FakeTick("left"))
    sink.toggle_pause()
    sink(FakeTick("right"))
    sink.toggle_pause()
    sink(FakeTick("right"))
    sink.close()
    assert out.getvalue().split() == ["press", "left", "release", "left", "press", "right", "release", "right"]


def test_key_maps_from_config_and_their_errors():
    cfg = load_config(None, PONG_KEYS)
    assert key_map(["up", "stay", "down"], cfg.keys) == {"up": ("up",), "stay": (), "down": ("down",)}
    assert key_map(["WA"], KeysConfig(preset="none", map=["WA:w+a"]))["WA"] == ("w", "a")
    with pytest.raises(ConfigError, match="no keys for the model's class"):
        key_map(["up", "jump"], cfg.keys)
    with pytest.raises(ConfigError, match="class:key"):
        key_map(["up"], KeysConfig(map=["up"]))


def test_keys_are_released_when_a_sink_raises_mid_run(video):
    model = model_for_video(0, decode_all(video))  # its class changes from frame to frame
    sink, out = dry_sink(model.classes)

    def boom(tick):
        if tick.seq == 5:
            raise RuntimeError("sink failed")

    with pytest.raises(RuntimeError, match="sink failed"):
        with Predictor(model, str(video), sinks=[sink, boom]) as p:
            p.run()
    lines = out.getvalue().split("\n")[:-1]
    pressed = sum(line.startswith("press") for line in lines)
    assert pressed >= 1 and pressed == sum(line.startswith("release") for line in lines)  # everything pressed was released


def test_sigterm_stops_predict_and_releases_keys(tmp_path):
    """A never-ending source, a key sink printing its presses (dry run), SIGTERM: clean exit, every key released."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "predict", "--source", "synthetic:bounce?fps=100",
                             "--sink", "keys", "--sink", f"jsonl:{tmp_path / 'ticks.jsonl'}", "keys.dry_run=true",
                             "keys.map=[left:a, straight:s, right:d]",
                             "model.hidden=16", "model.feature_dim=16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while (not (tmp_path / "ticks.jsonl").exists() or (tmp_path / "ticks.jsonl").stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)  # a process that ignored the signal raises here
    assert proc.returncode == 130, err
    held = set()
    for line in out.splitlines():
        action, _, key = line.partition(" ")
        if action == "press":
            held.add(key)
        elif action == "release":
            held.discard(key)
    assert "press" in out and held == set()
    ticks = (tmp_path / "ticks.jsonl").read_text().splitlines()
    assert ticks and json.loads(ticks[-1])["seq"] >= 0  # flushed to a whole last line


def test_udp_and_tcp_sinks_send_every_tick_on_localhost(video):
    model = model_for_video(0)
    cfg = Config()
    assert cfg.sink.host == "127.0.0.1"
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    udp, tcp = open_sinks([f"udp:{listener.getsockname()[1]}", "tcp:0"], model.classes, cfg)
    assert tcp.server.getsockname()[0] == "127.0.0.1"
    client = socket.create_connection(("127.0.0.1", tcp.port), timeout=5)
    deadline = time.monotonic() + 5
    while not tcp.clients and time.monotonic() < deadline:
        time.sleep(0.01)
    with Predictor(model, str(video), sinks=[udp, tcp], max_frames=20) as p:
        ticks = list(p)
    datagrams = [json.loads(listener.recv(65536)) for _ in range(20)]
    assert [d["seq"] for d in datagrams] == [t.seq for t in ticks]
    received = b""
    while received.count(b"\n") < 20:
        chunk = client.recv(65536)
        assert chunk, "the TCP sink closed early"
        received += chunk
    lines = [json.loads(line) for line in received.decode().splitlines()]
    assert [line["class"] for line in lines] == [t.class_name for t in ticks]
    client.close()
    listener.close()


def test_csv_and_annotated_video_sinks(tmp_path, video):
    model = model_for_video(0)
    cfg = Config()
    sinks = open_sinks([str(tmp_path / "t.csv"), f"video:{tmp_path / 'a.avi'}"], model.classes, cfg)
    with Predictor(model, str(video), sinks=sinks, keep_frames=True, max_frames=30) as p:
        ticks = list(p)
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows[0].startswith("seq,t_capture") and rows[0].endswith(",".join(f"p_{c}" for c in model.classes))
    assert len(rows) == 31 and rows[5].split(",")[5] == ticks[4].class_name
    cap = cv2.VideoCapture(str(tmp_path / "a.avi"))
    n, first = 0, None
    while (ok := cap.read())[0]:
        first = ok[1] if first is None else first
        n += 1
    assert n == 30
    assert first.shape[1] > ticks[0].image.shape[1]  # the frame plus the panel of bars
    panel = first[:, ticks[0].image.shape[1]:]
    assert (panel[:, :, 1] > 150).any()  # the winning class's green bar


def test_bad_sink_specs_are_one_line_errors():
    cfg = Config()
    for spec, words in [("udp:notaport", "PORT"), ("carrier-pigeon:1", "unknown sink"), ("tcp://example.org", "PORT")]:
        with pytest.raises(UserError, match=words):
            open_sink(spec, ["a", "b"], cfg)


def test_preview_needs_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(UserError, match="display"):
        open_sink("preview", ["a", "b"], Config())


def test_camera_absent_is_a_clear_error():
    for spec in ["57", "/dev/video57"]:
        with pytest.raises(UserError, match="no camera at index 57"):
            open_source(spec)
    with pytest.raises(UserError, match="fourcc"):
        open_source("57?fourcc=MJPEGX")


def test_action_for_held_keys():
    pong = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    keys = {"up": "RIGHT", "down": "LEFT", "space": "FIRE"}
    assert action_for(set(), pong, keys) == 0
    assert action_for({"up"}, pong, keys) == 2
    assert action_for({"down"}, pong, keys) == 3
    assert action_for({"up", "space"}, pong, keys) == 4


# --- under Xvfb -----------------------------------------------------------------------------------------


def _wait_for_window(title: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(["xdotool", "search", "--onlyvisible", "--name", title], capture_output=True).stdout.strip():
            return
        time.sleep(0.1)
    pytest.fail(f"window '{title}' did not appear")


def _keys_down() -> int:
    from Xlib import display

    d = display.Display()
    try:
        return sum(bin(b).count("1") for b in d.query_keymap())
    finally:
        d.close()


def test_agent_watches_the_game_window_and_its_keys_move_the_paddle(xvfb, tmp_path):
    pytest.importorskip("ale_py")
    log = tmp_path / "host.jsonl"
    title = "sp-e2e Pong"
    host = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "host", "--title", title, "--fps", "30", "--seed", "3",
                             "--log", str(log)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _wait_for_window(title)
        t0 = time.monotonic()
        agent = subprocess.run([sys.executable, str(ROOT / "run.py"), "predict", "--config", "pong",
                                "--weights", str(ROOT / "weights" / "pong.safetensors"), "--source", f"window:{title}?fps=30",
                                "--sink", "keys", "--max-frames", "240", "--json", "keys.backend=pynput", *PONG_KEYS],
                               capture_output=True, text=True, cwd=ROOT, timeout=120)
        t1 = time.monotonic()
        assert agent.returncode == 0, agent.stderr
        summary = json.loads(agent.stdout.strip().splitlines()[-1])
        assert summary["source"] == f"window:{title}" and summary["captured"] == 240
        assert summary["frames"] >= 200 and summary["frames"] + summary["skipped"] == 240  # a live source: newest frame wins
        assert summary["presses"] >= 4 and summary["presses"] == summary["releases"]  # everything released at the end
        assert summary["key_latency_ms_p99"] > 0
    finally:
        host.terminate()
        host.wait(10)
    steps = [json.loads(line) for line in log.read_text().splitlines()]
    during = [s for s in steps if t0 <= s["t"] <= t1]
    moves = {"up": [], "down": []}
    for a, b in zip(during, during[1:]):
        for key in moves:
            if a["keys"] == [key]:
                moves[key].append(b["paddle"] - a["paddle"])
    # The game received both keys from the agent, and the paddle went the way each key says (y grows downwards).
    assert len(moves["up"]) >= 5 and len(moves["down"]) >= 5, {k: len(v) for k, v in moves.items()}
    assert np.mean(moves["up"]) < 0 < np.mean(moves["down"])
    assert _keys_down() == 0  # no stuck key on the X server


def test_window_source_finds_the_window_by_title(xvfb):
    pytest.importorskip("ale_py")
    title = "sp-find Pong"
    host = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "host", "--title", title, "--steps", "2000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        _wait_for_window(title)
        src = open_source(f"window:{title}")
        frame = src.read()
        src.close()
        assert frame.image.shape == (210, 160, 3)  # the ALE frame, 1:1
        assert frame.image.std() > 10  # a game, not a blank screen
        with pytest.raises(UserError, match="no visible window"):
            open_source("window:no such window anywhere")
    finally:
        host.terminate()
        host.wait(10)


def test_screen_fps_cap_paces_without_spinning(xvfb):
    from stream_predictor.runtime.capture import CaptureThread

    with CaptureThread(open_source("screen:0,0,320,240?fps=20"), ring_size=4, replay="realtime") as cap:
        cpu0, t0 = time.process_time(), time.monotonic()
        n = sum(1 for _ in cap.frames(2.0))
        cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    assert 34 <= n <= 42, n  # 20 fps for 2 s
    assert cpu < 0.5 * wall  # sleeping between grabs, not spinning


def test_record_from_the_screen_with_keyboard_labels(xvfb, tmp_path):
    """xdotool holds Left, then Right, while `record` captures the screen: the labels follow the keys."""
    out = tmp_path / "session"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "record", "--source", "screen:0,0,160,120?fps=30",
                             "--labeller", "keyboard", "--out", str(out), "keys.pause_key=f12",
                             "record.segment_frames=15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=sigint_default)
    try:
        deadline = time.monotonic() + 30
        while not (out / "labels.csv").exists() or len((out / "labels.csv").read_text().splitlines()) < 10:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "slow"
            time.sleep(0.1)
        for key in ["Left", "Right"]:
            time.sleep(0.7)
            subprocess.run(["xdotool", "keydown", key], check=True)
            time.sleep(1.0)
            subprocess.run(["xdotool", "keyup", key], check=True)
        time.sleep(0.7)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    session = load_session(out)
    labels = [session.classes[i] for i in session.labels]
    runs = []  # run-length encoding, runs of 1-2 frames (a key changing mid-frame) dropped
    for label in labels:
        if runs and runs[-1][0] == label:
            runs[-1][1] += 1
        else:
            runs.append([label, 1])
    runs = [r for r in runs if r[1] >= 3]
    assert [r[0] for r in runs] == ["straight", "left", "straight", "right", "straight"], runs
    for name, n in runs[1:4:2]:
        assert 20 <= n <= 40, (name, n)  # one second at 30 fps
    assert os.path.exists(out / "meta.yaml")


def test_pause_hotkey_and_sigterm_with_real_key_presses(xvfb, tmp_path):
    """pynput presses real keys; F9 pauses them (everything released); SIGTERM ends the run with no key left down."""
    ticks = tmp_path / "ticks.jsonl"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), "predict", "--source", "synthetic:bounce?fps=60",
                             "--sink", "keys", "--sink", f"jsonl:{ticks}", "keys.backend=pynput",
                             "keys.map=[left:a, straight:s, right:d]", "model.hidden=16", "model.feature_dim=16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while (not ticks.exists() or ticks.stat().st_size == 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        assert _keys_down() >= 1  # the agent holds its class's key
        subprocess.run(["xdotool", "key", "F9"], check=True)
        deadline = time.monotonic() + 5
        while _keys_down() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _keys_down() == 0  # paused: everything released, nothing pressed
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "keys paused" in err
    assert _keys_down() == 0


def test_monitor_choice_under_xvfb(xvfb):
    whole = open_source("screen?monitor=0")
    assert (whole.box["width"], whole.box["height"]) == (1024, 768)  # all monitors as one virtual screen
    whole.close()
    with pytest.raises(UserError, match="monitor 5 does not exist"):
        open_source("screen?monitor=5")
    with pytest.raises(UserError, match="outside monitor"):
        open_source("screen:1000,700,100,100")


def test_preview_window_shows_annotated_frames_under_xvfb(xvfb, video):
    model = model_for_video(0, decode_all(video))
    preview = open_sink("preview", model.classes, Config())
    seen = []

    def window_is_there(tick):
        if tick.seq == 10:
            seen.append(subprocess.run(["xdotool", "search", "--name", "^stream-predictor$"], capture_output=True).stdout.strip())

    with Predictor(model, str(video), sinks=[preview, window_is_there], keep_frames=True, max_frames=20) as p:
        p.run()
    assert preview.shown == 20 and seen and seen[0]  # an X window titled like the preview existed while it ran


def test_timing_report_matches_decisions_to_steps():
    from stream_predictor.games.desktop import timing_report

    # Steps 0..5 every 66 ms, each with its own frame; the game plays action 0 until step 3, then 2.
    steps = [{"t": 0.066 * i, "crc": 100 + i, "action": 0 if i < 3 else 2} for i in range(6)]
    rows = [  # (seq, t_capture, t_decision, crc, class_id); classes [stay, up] -> actions [0, 2]
        (0, 0.010, 0.012, 100, 0),  # step 0, no change
        (1, 0.080, 0.082, 101, 1),  # step 1 asks for up: played from step 3, one step late
        (2, 0.085, 0.090, 101, 1),  # step 1 seen twice
        (3, 0.210, 0.215, 103, 0),  # step 2 never seen; step 3 asks for stay: never played
        (4, 0.280, 0.281, 104, 1),  # no change
        (5, 0.300, 0.301, 999, 1),  # a frame the game never drew: not matched
    ]
    r = timing_report(steps, rows, action_of=[0, 2])
    assert r["decisions"] == 6 and r["matched"] == 5 and r["steps"] == 5
    assert r["seen_twice"] == pytest.approx(1 / 5) and r["never_seen"] == pytest.approx(1 / 5)
    assert r["changes"] == 3 and r["late_1"] == pytest.approx(2 / 3, abs=1e-3) and r["superseded"] == pytest.approx(1 / 3, abs=1e-3)
    assert r["on_time"] == 0 and r["decision_to_step_ms"]["p50"] == pytest.approx((116 + 108) / 2, abs=0.1)


def test_synced_screen_grabs_each_new_frame_once(monkeypatch):
    """`sync=1` polls for a change: a picture that changes every period is grabbed once per change, never twice."""
    import threading

    from stream_predictor.sources.screen import Screen

    period, t0 = 0.05, time.monotonic()
    screen = Screen.__new__(Screen)
    screen.sync, screen.period, screen.poll_s = True, period, 0.002
    screen._last, screen._last_change, screen._seq = None, None, 0
    screen._stop = threading.Event()
    monkeypatch.setattr(screen, "_grab", lambda: np.full((2, 2, 3), int((time.monotonic() - t0) / period), np.uint8))
    seen = [int(screen.read().image[0, 0, 0]) for _ in range(20)]
    assert all(b > a for a, b in zip(seen, seen[1:])), seen  # each grab is a newer picture than the last


@pytest.mark.parametrize("prev_action", [False, True], ids=["frames", "frames+previous action"])
def test_play_via_desktop_scores_from_the_game_log(xvfb, tmp_path, prev_action):
    """The whole desktop path under a private Xvfb: the game window at its own rate, capture, keys, the host's score.
    A model that reads its previous action is told the key it pressed."""
    pytest.importorskip("ale_py")
    weights = []
    if prev_action:
        save_model(prev_action_model(scale=0.5), tmp_path / "prev.safetensors")
        weights = ["--weights", str(tmp_path / "prev.safetensors")]
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), "play", "--via", "desktop", "--private-display",
                        "--source", "ale:Pong?max_episode_steps=120", "--episodes", "1", "--seed", "7", "--logs",
                        str(tmp_path), "--json", "keys.backend=pynput", *weights], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    steps = [json.loads(line) for line in (tmp_path / "host.jsonl").read_text().splitlines()]
    assert len(steps) >= 120 and len(result["scores"]) == 1
    last = [s["score"] for s in steps if s["episode"] == 0][-1]
    assert abs(result["scores"][0] - last) <= 1  # the game's own score (its last step may add a point)
    timing = result["timing"]
    assert timing["decisions"] >= 60 and timing["matched"] >= 0.9 * timing["decisions"]  # frames drawn 1:1 are found
    assert 0 <= timing["seen_twice"] <= 1 and 0 <= timing["never_seen"] <= 1
    assert any(s["action"] != 0 for s in steps)  # the agent's keys reached the game
    assert result["keys_backend"] == f"xtest on {result['display']}"  # pynput presses on $DISPLAY only: XTest there
    assert ("reads the previous action" in result["engine"]) == prev_action
    bad = subprocess.run([sys.executable, str(ROOT / "run.py"), "play", "--via", "desktop", "--expert"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_a_private_display_is_named_not_put_in_the_environment():
    """`x_display(private=True)` starts an Xvfb and hands its name on: the screen source captures it, the keys go to it
    through XTest (pynput reaches $DISPLAY only), and this process's environment is never written."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    from Xlib import XK
    from Xlib import display as xdisplay

    from stream_predictor.games.desktop import x_display
    from stream_predictor.sources.screen import Screen

    before = dict(os.environ)
    with x_display(private=True, size="320x200x24") as display:
        assert dict(os.environ) == before and display != os.environ.get("DISPLAY")
        screen = Screen(display=display)
        try:
            assert screen.read().image.shape == (200, 320, 3)
        finally:
            screen.close()
        sink = KeySink(["a", "b"], KeysConfig(preset="none", map=["a:z", "b:"], pause_key=""), display=display)
        probe = xdisplay.Display(display)
        code = probe.keysym_to_keycode(XK.string_to_keysym("z"))
        down = lambda: bool(probe.query_keymap()[code // 8] & (1 << (code % 8)))  # noqa: E731
        try:
            assert sink.summary()["keys_backend"] == f"xtest on {display}"
            sink(_tick("a"))
            assert down()  # the X server holds z pressed
            sink(_tick("b"))
            assert not down()
        finally:
            sink.close()
            probe.close()
    assert dict(os.environ) == before


def _tick(cls: str):
    from stream_predictor.runtime.tick import Tick

    return Tick(0, time.monotonic(), time.monotonic(), 0.0, "ab".index(cls), cls, [0.5, 0.5], 0)
