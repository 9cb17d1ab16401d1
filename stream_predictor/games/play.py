"""The closed loop: a game source → capture thread → ring → Predictor (an Agent decides) → ActionSink back into the game.

The trained model and the RAM expert play through the same threads and the same sink. In `fast` mode
the game waits for each decision (deterministic for a seed); in `realtime` it runs at its native rate
and the agent keeps up or skips frames.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Sequence

from ..config import Config
from ..errors import UserError
from ..model import StreamModel
from ..runtime.agent import Agent
from ..runtime.backends import model_agent
from ..runtime.predictor import Predictor
from ..runtime.tick import CallbackSink, Sink, Tick
from ..sinks import open_sinks
from ..sinks.session import SessionSink
from ..sinks.video import VideoSink
from ..sources import open_source, parse_spec
from ..sources.ale import AleGame
from .agents import ActionSink, ExpertAgent


def open_game(spec: str, cfg: Config, seed: int, mode: str) -> AleGame:
    if parse_spec(spec).kind != "ale":
        raise UserError(f"play needs a game source such as ale:Pong, not '{spec}'")
    if mode not in ("fast", "realtime"):
        raise UserError(f"play mode must be fast or realtime, got '{mode}'")
    game = open_source(spec, cfg.source, {"seed": seed, "sync": mode == "fast"})
    assert isinstance(game, AleGame)
    return game


def mean_and_sem(scores: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (None where undefined)."""
    if not scores:
        return None, None
    sem = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else None
    return sum(scores) / len(scores), sem


def play(player: StreamModel | Agent | str, cfg: Config, spec: str, episodes: int, seed: int, mode: str = "fast",
         print_every: int = 0, record: str | None = None, sink_specs: Sequence[str] = (), video: str | None = None) -> dict:
    """Play `episodes` episodes from `seed` with a model (deciding as `predict.*` says) or "expert" (the RAM expert).

    `sink_specs` add sinks (`web`, `jsonl:PATH`, …); `video` writes the annotated game to that file.
    """
    game = open_game(spec, cfg, seed, mode)
    sinks: list[Sink] = []
    try:
        agent: Agent = (ExpertAgent(game, cfg.expert) if isinstance(player, str) else player if isinstance(player, Agent)
                        else model_agent(player, cfg.predict))
        sinks.append(ActionSink(game, agent.classes, episodes))
        sinks += open_sinks(sink_specs, agent.classes, cfg)
        if video:
            sinks.append(VideoSink(video, agent.classes, game.fps))  # at the game's own pace
    except BaseException:
        for sink in sinks:
            sink.close()
        game.close()
        raise
    sinks.append(GameProgress(game, episodes))
    if print_every:
        sinks.append(CallbackSink(lambda t: print(
            f"tick seq={t.seq} class={t.class_name} p={max(t.probs):.2f} latency={t.latency_ms:.2f}ms "
            f"episode={len(game.episode_returns) + 1} score={game.episode_return:+.0f}", file=sys.stderr)
            if t.seq % print_every == 0 else None))
    if record:
        sinks.append(SessionSink(record, agent.classes, game.fps, spec, cfg.record.segment_frames, cfg.record.codec,
                                 keep=lambda: len(game.episode_returns) < episodes))
    replay = "lockstep" if mode == "fast" else "realtime"
    with Predictor.from_config(agent, cfg, game, sinks, replay=replay) as predictor:
        summary = predictor.run()
    scores = list(game.episode_returns[:episodes])
    mean, sem = mean_and_sem(scores)
    return {"game": spec, "mode": mode, "seed": seed, "episodes": len(scores), "scores": scores, "mean_score": mean,
            "sem": sem, "agent": summary["agent"], "predict_mode": summary["mode"], "ticks": summary["ticks"],
            "latency_ms_p50": summary["latency_ms_p50"], "latency_ms_p99": summary["latency_ms_p99"],
            "skipped": summary["skipped"], "model_ms_p50": summary["model_ms_p50"], "fps": summary["fps"],
            **({"engine": summary["engine"]} if "engine" in summary else {}), **({"video": video} if video else {}),
            **({"web": summary["web"]} if "web" in summary else {})}


class GameProgress(Sink):
    """A progress bar over the games (on stderr): games done, the running mean score."""

    def __init__(self, game: AleGame, episodes: int) -> None:
        from tqdm import tqdm

        self.game, self.done = game, 0
        self.bar = tqdm(total=episodes, desc="play", unit="game", file=sys.stderr, dynamic_ncols=True,
                        disable=episodes < 2)

    def __call__(self, tick: Tick) -> None:
        scores = self.game.episode_returns[: self.bar.total]
        if len(scores) > self.done:
            self.bar.update(len(scores) - self.done)
            self.done = len(scores)
            self.bar.set_postfix_str(f"last {scores[-1]:+.0f}, mean {sum(scores) / len(scores):+.2f}")

    def close(self) -> None:
        self.bar.close()


def play_expert(cfg: Config, spec: str, episodes: int, seed: int, mode: str = "fast") -> dict:
    """The RAM expert's own score, for comparison: it reads the game's memory, not pixels."""
    return play("expert", cfg, spec, episodes, seed, mode)
