"""The closed loop: a game source → capture thread → ring → Predictor → an action sink back into the game.

Nothing here calls the model directly: decisions come from the Predictor's ticks, as they would
from a screen. In `fast` mode the game waits for each decision (deterministic for a seed); in
`realtime` it runs at its native rate and the agent keeps up or skips frames.
"""

from __future__ import annotations

import sys

from .config import Config
from .errors import UserError
from .model import StreamModel
from .predictor import Predictor, Tick
from .record import source_actions
from .sinks import CallbackSink
from .sources import open_source, parse_spec


class ActionSink:
    """Presses the game's action for each tick's class; stops the Predictor after `episodes` episodes."""

    def __init__(self, source, classes: list[str], episodes: int) -> None:
        actions = source_actions(source)
        missing = [c for c in classes if c not in actions]
        if missing:
            raise UserError(f"the model's classes {classes} have no action in {source.name} ({missing}); known: {list(actions)}")
        self.source, self.episodes = source, episodes
        self.action_of = [actions[c] for c in classes]
        self.predictor: Predictor | None = None

    def __call__(self, tick: Tick) -> None:
        if len(self.source.episode_returns) >= self.episodes:
            self.predictor.stop()
            return
        self.source.act(self.action_of[tick.class_id])

    def close(self) -> None:
        pass


class SessionSink:
    """Records what the agent saw and decided: frames + its own classes as labels (lossless by default).

    Replaying the session through `eval` with the same weights must then give the same decisions."""

    def __init__(self, out, classes: list[str], fps: float, source: str, cfg: Config, keep=lambda: True) -> None:
        from .session import SessionWriter

        self.keep = keep  # false for the tick that finds the last episode over
        self.writer = SessionWriter(out, classes, fps, source, cfg.record.segment_frames, cfg.record.codec,
                                    extra={"labeller": "agent"})

    def __call__(self, tick: Tick) -> None:
        if not tick.stale and self.keep():
            self.writer.add(tick.image, tick.class_name, tick.first)

    def close(self) -> None:
        self.writer.close()


def play(model: StreamModel, cfg: Config, spec: str, episodes: int, seed: int, mode: str, print_every: int = 0,
         record: str | None = None) -> dict:
    if parse_spec(spec).kind != "ale":
        raise UserError(f"play needs a game source such as ale:Pong, not '{spec}'")
    sep = "&" if "?" in spec else "?"
    source = open_source(f"{spec}{sep}seed={seed}&sync={'true' if mode == 'fast' else 'false'}", cfg.source)
    sink = ActionSink(source, model.classes, episodes)
    sinks = [sink]
    if print_every:
        sinks.append(CallbackSink(lambda t: print(
            f"tick seq={t.seq} class={t.class_name} p={max(t.probs):.2f} latency={t.latency_ms:.2f}ms "
            f"episode={len(source.episode_returns) + 1} score={source.episode_return:+.0f}", file=sys.stderr)
            if t.seq % print_every == 0 else None))
    if record:
        sinks.append(SessionSink(record, model.classes, source.fps, spec, cfg, keep=lambda: len(source.episode_returns) < episodes))
    cfg.replay = "lockstep" if mode == "fast" else "realtime"
    predictor = Predictor.from_config(model, cfg, source, sinks, keep_frames=bool(record))
    sink.predictor = predictor
    with predictor:
        predictor.run()
    summary = predictor.summary()
    scores = list(source.episode_returns[:episodes])
    return {"game": spec, "mode": mode, "seed": seed, "episodes": len(scores), "scores": scores,
            "mean_score": sum(scores) / len(scores) if scores else None, "predict_mode": predictor.mode,
            "ticks": summary["ticks"], "latency_ms_p50": summary["latency_ms_p50"], "latency_ms_p99": summary["latency_ms_p99"],
            "skipped": summary["skipped"], "model_ms_p50": summary["model_ms_p50"],
            "fps": summary["fps"]}


def play_expert(cfg: Config, spec: str, episodes: int, seed: int) -> dict:
    """The RAM expert's own score, for comparison: it reads the game's memory, not pixels."""
    from . import games  # noqa: F401 - registers the experts
    from .labellers import EXPERTS

    sep = "&" if "?" in spec else "?"
    source = open_source(f"{spec}{sep}seed={seed}", cfg.source)
    game = source.name.removeprefix("ale:")
    if game not in EXPERTS:
        raise UserError(f"no expert for {source.name}")
    _, actions, policy = EXPERTS[game]
    memory: dict = {}
    try:
        while len(source.episode_returns) < episodes:
            frame = source.read()
            if frame.first:
                memory.clear()
            source.act(actions[policy(source.ram(), memory)])
    finally:
        source.close()
    scores = source.episode_returns[:episodes]
    return {"game": spec, "agent": "expert", "seed": seed, "episodes": len(scores), "scores": scores,
            "mean_score": sum(scores) / len(scores)}
