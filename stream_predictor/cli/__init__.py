"""`stream-predictor COMMAND …` (also `python run.py COMMAND …`). With no command: the default job.

Every command takes `--config FILE` and `key=value` config overrides anywhere on the line. A UserError becomes one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from importlib import import_module

from ..config import Config, load_config
from ..errors import UserError

COMMANDS = {  # name -> (module, one-line help)
    "capture": ("capture_cmd", "check a source: resolution, fps reached, frames dropped"),
    "predict": ("predict_cmd", "ticks as JSON lines, plus a summary"),
    "record": ("record_cmd", "record a session: frames + per-frame labels (keyboard, game expert, synthetic truth)"),
    "import": ("import_cmd", "turn a video and a labels CSV into a session"),
    "train": ("train_cmd", "train on sessions, with progress bar, metrics and plots"),
    "tune": ("tune_cmd", "fine-tune a cloned agent in the game with PPO, from the game's reward"),
    "eval": ("eval_cmd", "accuracy, macro-F1 and confusion matrix on sessions, through the real Predictor"),
    "play": ("play_cmd", "the agent plays a game (ale:Pong) through the real threads; scores as JSON"),
    "host": ("host_cmd", "a game in a window, played from the keyboard: a target for screen → keys agents"),
    "soak": ("soak_cmd", "a long synthetic run: memory, threads, file descriptors and frame accounting"),
    "bench": ("bench_cmd", "per-tick time incremental vs recompute, capture rate, latency"),
    "export": ("export_cmd", "the whole tick as one ONNX graph, or a Triton model repository"),
    "serve": ("serve_cmd", "a real Triton Inference Server on 127.0.0.1 serving an exported repository"),
}
DEFAULT_COMMAND = "play"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other bad input
        raise UserError(f"{self.prog}: {message}")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `command`, only that command's module is imported (and its options added): a command that
    needs no torch (`predict --weights step.onnx`) never imports it."""
    parser = _Parser(prog="stream-predictor", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", help="YAML config file, or a name in configs/")
        if command is None or name == command:
            import_module(f".{module}", __package__).add_arguments(p)
    return parser


OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, Config]:
    # Overrides may stand anywhere, even after an option that takes several values (--data A B key=value).
    overrides = [a for a in argv if OVERRIDE.match(a)]
    command = next((a for a in argv if a in COMMANDS), None)
    args, rest = _parser(command).parse_known_args([a for a in argv if not OVERRIDE.match(a)])
    if rest:
        raise UserError(f"unrecognized arguments: {' '.join(rest)} (config overrides are key=value)")
    cfg = load_config(getattr(args, "config", None), overrides)
    return args, cfg


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM takes Ctrl-C's path: threads stop, keys are released, files are finished


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.DEBUG if "-v" in argv else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if not argv or argv[0] not in (*COMMANDS, "-h", "--help", "-v", "--verbose"):
            argv = [DEFAULT_COMMAND, "--config", "default", *argv]
        args, cfg = parse(argv)
        if args.command is None:
            _parser().print_help()
            return 0
        module = import_module(f".{COMMANDS[args.command][0]}", __package__)
        return module.run(args, cfg) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout piped into something that stopped reading (e.g. head)
        return 0
