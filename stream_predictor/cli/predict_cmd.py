"""`predict --source SRC [--weights W] [--out ticks.jsonl]`: ticks as JSON lines, plus a summary."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..config import Config
from ..files import check_writable
from ..runtime.predictor import Predictor
from ..runtime.tick import Tick
from ..sinks import CallbackSink, open_sinks, output_file
from ..sources import open_source

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="source spec (default: source.spec)")
    p.add_argument("--weights", help="a .safetensors weights file, or a graph from `export` (.onnx: runs in onnxruntime, "
                                     "without torch); without it, random weights from config")
    p.add_argument("--out", help="write ticks here as JSON lines ('-': stdout; the default when no --sink is given)")
    p.add_argument("--sink", action="append", default=[], metavar="SPEC",
                   help="more places for the ticks (repeatable): jsonl:PATH, csv:PATH, udp:PORT, tcp:PORT, video:PATH, "
                        "preview, keys (presses keys; see keys.* config, keys.dry_run=true prints them), web or web:PORT (a live page)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many captured frames (0: the whole stream)")
    p.add_argument("--json", action="store_true", help="last stdout line is the summary as JSON")


def model_from_args(weights: str | None, cfg: Config):
    """The model in a weights file, the agent of an exported graph, or (with a warning) random weights from the config's
    model section."""
    from ..runtime.backends import load_decider

    if weights:
        return load_decider(weights, cfg.predict)
    from ..model import build_model

    print("warning: no --weights given: the model has random weights (decisions are meaningless)", file=sys.stderr)
    return build_model(cfg.model).to(cfg.predict.device)


def tick_line(tick: Tick) -> str:
    return (f"tick seq={tick.seq} class={tick.class_name} p={max(tick.probs):.2f} "
            f"latency={tick.latency_ms:.1f}ms skipped={tick.skipped}{' stale' if tick.stale else ''}")


def run(args: argparse.Namespace, cfg: Config) -> int:
    specs = ([args.out] if args.out else []) + args.sink
    specs = specs or ["-"]
    for spec in specs:  # before the source opens: a camera or a game is not started for nothing
        if (path := output_file(spec)) is not None:
            check_writable(path)
    to_stdout = any(s in ("-", "jsonl", "jsonl:-") for s in specs)
    # The source and the weights first: a bad one must fail before any sink has created (or truncated) an output file.
    source = open_source(args.source or cfg.source.spec, cfg.source)
    try:
        model = model_from_args(args.weights, cfg)
        sinks = open_sinks(specs, model.classes, cfg)
    except BaseException:
        source.close()
        raise
    if cfg.predict.print_every:
        every = cfg.predict.print_every
        sinks.append(CallbackSink(lambda t: print(tick_line(t), file=sys.stderr) if t.seq % every == 0 else None))
    with Predictor.from_config(model, cfg, source, sinks, args.max_frames) as predictor:
        predictor.run()
    summary = predictor.summary()
    out = sys.stderr if to_stdout and not args.json else sys.stdout
    if args.json:
        print(json.dumps(summary), file=out)
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()), file=out)
    return 0
