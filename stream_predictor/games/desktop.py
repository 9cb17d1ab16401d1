"""`play --via desktop`: the agent plays a game the way it plays any desktop game, through pixels and keys.

The game runs in its own process, in a window at its native rate (`host`), and never waits for the
agent. The agent captures that window (`window:TITLE`), decides and holds keys through XTest (the
`keys` sink). The score comes from the host's own log. Without a display (or with `private=True`) a
private Xvfb is started for the run.

Both sides log what happened, on the same monotonic clock: the host each step's time, action and a
checksum of the frame it drew; the agent each decision's capture time and the checksum of the frame it
saw. `timing_report` matches the two: which step each decision saw, how many steps were seen twice or
never, and when each change of action reached the game.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import Config, KeysConfig
from ..errors import SourceError, UserError
from ..keymaps import GAME_KEYS
from ..model import StreamModel
from ..runtime.backends import model_agent
from ..runtime.predictor import Predictor
from ..runtime.tick import Sink, Tick
from ..sinks.keys import KeySink
from ..sources import parse_spec
from ..sources.ale import ATARI_FPS, AleGame
from ..sources.screen import Screen
from .play import mean_and_sem
from .registry import actions_for


@contextlib.contextmanager
def x_display(private: bool = False, size: str = "640x480x24") -> Iterator[str]:
    """The display to play on: $DISPLAY, or a private Xvfb started for the run (always, with `private`). Its name is
    handed to the screen source, the keys and the game window; this process's environment is left as it is."""
    if not private and os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        raise UserError("no display to play on: DISPLAY is not set and Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()  # Xvfb picks a free display itself and writes its number here (-displayfd)
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", size, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,))
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            n = pipe.readline().strip()  # empty if Xvfb exits first
        if not n:
            raise UserError("Xvfb did not start")
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(5)


def class_keys(game: str, classes: list[str]) -> list[str]:
    """`keys.map` entries that press, for each class, the host's key for that class's action (`stay:` presses none)."""
    meanings = _meanings(game)
    key_of = {meaning: key for key, meaning in GAME_KEYS.get(game, {}).items()}
    entries = []
    for c, action in zip(classes, actions_for(game, classes)):
        meaning = meanings[action]
        if meaning != "NOOP" and meaning not in key_of:
            raise UserError(f"the host window has no key for {game}'s action {meaning} (class '{c}')")
        entries.append(f"{c}:{key_of.get(meaning, '')}")
    return entries


def _meanings(game: str) -> list[str]:
    source = AleGame(game)
    try:
        return source.action_meanings
    finally:
        source.close()


class FrameProbe(Sink):
    """Keeps, per decision, the frame's checksum, capture and decision times and the class; ends the run with the host."""

    needs_frames = True

    def __init__(self, host: subprocess.Popen) -> None:
        self.host, self.rows = host, []

    def __call__(self, tick: Tick) -> None:
        if self.host.poll() is not None:
            self.finished = True
            return
        if tick.image is not None and not tick.stale:
            self.rows.append((tick.seq, tick.t_capture, tick.t_decision, zlib.crc32(np.ascontiguousarray(tick.image)),
                              tick.class_id))


def _wait_for_window(title: str, host: subprocess.Popen, fps: float, display: str, timeout: float = 60.0) -> Screen:
    deadline = time.monotonic() + timeout
    while True:
        if host.poll() is not None:
            raise UserError(f"the game window exited before it was seen: {host.stderr.read()[-500:] if host.stderr else ''}")
        try:
            return Screen(fps=fps, window=f"^{title}$", sync=True, display=display)
        except SourceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def play_desktop(model: StreamModel, cfg: Config, game: str, episodes: int, seed: int, private: bool = False,
                 log_dir: str | None = None) -> dict:
    """Play `episodes` episodes of the host window's game through screen capture and keys; scores from the host's log.
    The window is grabbed in step with the game's frames (`window:` with `sync`)."""
    spec = parse_spec(game)
    if spec.kind != "ale" or set(spec.options) - {"max_episode_steps"}:
        raise UserError(f"play --via desktop needs a game such as ale:Pong (options: max_episode_steps), not '{game}'")
    name, episode_steps = spec.target, int(spec.options.get("max_episode_steps", cfg.source.max_episode_steps))
    agent = model_agent(model, cfg.predict)
    keys = KeysConfig(preset="none", map=class_keys(name, agent.classes), backend=cfg.keys.backend, pause_key="")
    out = Path(log_dir or tempfile.mkdtemp(prefix="sp-desktop-"))
    out.mkdir(parents=True, exist_ok=True)
    title = f"stream-predictor {name} {seed} {os.getpid()}"
    with x_display(private) as display:
        host = subprocess.Popen([sys.executable, "-m", "stream_predictor", "host", "--game", name, "--seed", str(seed),
                                 "--title", title, "--episodes", str(episodes),
                                 "--episode-steps", str(episode_steps), "--log", str(out / "host.jsonl")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "DISPLAY": display})
        try:
            screen = _wait_for_window(title, host, ATARI_FPS / 4, display)  # at the game's native rate (frameskip 4)
            probe = FrameProbe(host)
            sinks: list[Sink] = [KeySink(agent.classes, keys, display=display), probe]
            with Predictor.from_config(agent, cfg, screen, sinks) as predictor:
                summary = predictor.run()
            stdout, stderr = host.communicate(timeout=30)
        finally:
            if host.poll() is None:
                host.terminate()
                host.wait(10)
    if host.returncode:
        raise UserError(f"the game window failed (exit {host.returncode}): {stderr.strip()[-500:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    steps = [json.loads(line) for line in (out / "host.jsonl").read_text().splitlines()]
    (out / "agent.json").write_text(json.dumps(probe.rows))
    scores = result["episode_returns"][:episodes]
    mean, sem = mean_and_sem(scores)
    action_of = actions_for(name, agent.classes)
    return {"game": game, "mode": "desktop", "via": "desktop", "capture": "sync",
            "display": display, "seed": seed, "episodes": len(scores),
            "scores": scores, "mean_score": mean, "sem": sem, "agent": summary["agent"], "predict_mode": summary["mode"],
            "ticks": summary["ticks"], "latency_ms_p50": summary["latency_ms_p50"],
            "latency_ms_p99": summary["latency_ms_p99"], "skipped": summary["skipped"], "fps": summary["fps"],
            "key_latency_ms_p50": summary.get("key_latency_ms_p50"), "keys_backend": summary.get("keys_backend"),
            "timing": timing_report(steps, probe.rows, action_of),
            **({"engine": summary["engine"]} if "engine" in summary else {}), "logs": str(out)}


def timing_report(steps: list[dict], rows: list[tuple], action_of: list[int], horizon: int = 8) -> dict:
    """Match the agent's decisions to the host's steps (by frame checksum and time) and measure the timing faults.

    - `decisions`: those captured while the game ran; `matched`: those whose frame was found among the steps.
    - `seen_twice` / `never_seen`: fractions of the steps between the first and last decision matched.
    - `changes`: decisions whose action differs from the one the game played on the step they saw; for those,
      `on_time` (the game played it on the next step), `late_1`, `late_2plus`, `superseded` (never played).
    - `decision_to_step_ms`: from a change's decision to the start of the step that played it.
    - `capture_phase_ms`: from the start of the step seen to the capture.
    """
    by_crc: dict[int, list[int]] = {}
    for i, s in enumerate(steps):
        by_crc.setdefault(s["crc"], []).append(i)
    t = np.array([s["t"] for s in steps])
    period = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    rows = [r for r in rows if len(t) and t[0] <= r[1] <= t[-1] + period]  # while the game ran
    seen = np.zeros(len(steps), int)
    matched, phase, to_step, late = 0, [], [], {"on_time": 0, "late_1": 0, "late_2plus": 0, "superseded": 0}
    for _, t_capture, t_decision, crc, class_id in rows:
        candidates = [i for i in by_crc.get(crc, []) if t[i] <= t_capture + 0.002]
        if not candidates:
            continue
        i = max(candidates)
        matched += 1
        seen[i] += 1
        phase.append((t_capture - t[i]) * 1000)
        want = action_of[class_id]
        if steps[i]["action"] == want:
            continue
        later = [j for j in range(i + 1, min(len(steps), i + 2 + horizon)) if steps[j]["action"] == want]
        if not later:
            late["superseded"] += 1
            continue
        j = later[0]
        late["on_time" if j == i + 1 else "late_1" if j == i + 2 else "late_2plus"] += 1
        to_step.append((t[j] - t_decision) * 1000)
    span = np.flatnonzero(seen)
    inside = seen[span[0] : span[-1] + 1] if len(span) else seen[:0]
    changes = sum(late.values())

    def pct(values: list[float]) -> dict:
        return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (10, 50, 90)} if values else {}

    return {"decisions": len(rows), "matched": matched, "steps": int(len(inside)),
            "seen_twice": round(float(np.mean(inside >= 2)), 4) if len(inside) else None,
            "never_seen": round(float(np.mean(inside == 0)), 4) if len(inside) else None,
            "changes": changes, **{k: round(v / changes, 4) if changes else None for k, v in late.items()},
            "capture_phase_ms": pct(phase), "decision_to_step_ms": pct(to_step)}
