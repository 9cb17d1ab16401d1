"""What the training defaults cost: one setting changed at a time, on two memory tasks, scored on held-out sessions.

Tasks (recorded once into data/ablation/, MJPG like a webcam's):
- dot5: `synthetic:dot` 96x96, five classes (the dot's direction since the previous frame), 40 training sessions
  of 600 frames (seeds 0-39) and 10 test sessions (seeds 100-109).
- bounce3: `synthetic:bounce` 64x48, three classes, 10 training sessions of 600 frames and 5 test sessions.
Each run trains for the same budget (train.max_steps, 16 windows of 16 frames a step) and is scored with `eval` on
the test sessions, through the Predictor. Runs already scored are skipped, so the script resumes.

    python docs/recipes/defaults_ablation.py [--steps 1500] [--tasks dot5,bounce3] [--runs NAME,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "runs" / "ablation"
DATA = ROOT / "data" / "ablation"
TASKS = {
    "dot5": dict(spec="synthetic:dot?width=96&height=96", train=range(40), test=range(100, 110),
                 model=["model.input_size=[96,96]"]),
    "bounce3": dict(spec="synthetic:bounce?width=64&height=48", train=range(10), test=range(100, 105),
                    model=["model.input_size=[48,64]"]),
}
RUNS = {  # name -> overrides on top of the defaults
    "defaults": [],
    "lr=1e-3": ["train.lr=1e-3"],
    "augment=false": ["train.augment=false"],
    "balance=none": ["train.balance=none"],
    "val_fraction=0": ["train.val_fraction=0"],
    "warmup_steps=0": ["train.warmup_steps=0"],
    "lr=1e-3 augment=false val_fraction=0": ["train.lr=1e-3", "train.augment=false", "train.val_fraction=0"],
    "all four": ["train.lr=1e-3", "train.augment=false", "train.val_fraction=0", "train.balance=none"],
    "lr=1e-3 warmup_steps=0": ["train.lr=1e-3", "train.warmup_steps=0"],
    "plain Adam loop": None,  # the reference: plain_loop() below, not `train`
}


def cli(*args: str) -> str:
    r = subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        sys.exit(f"failed: run.py {' '.join(args)}\n{r.stderr[-2000:]}")
    return r.stdout


def record(task: str) -> tuple[list[str], list[str]]:
    t = TASKS[task]
    dirs = {}
    for split in ("train", "test"):
        dirs[split] = []
        for seed in t[split]:
            out = DATA / task / f"{split}{seed}"
            if not (out / "meta.yaml").exists():
                cli("record", "--source", f"{t['spec']}&seed={seed}", "--out", str(out), "--frames", "600", "record.codec=MJPG")
            dirs[split].append(str(out))
    return dirs["train"], dirs["test"]


def plain_loop(task: str, steps: int, train: list[str], weights: Path, common: list[str]) -> float:
    """The simplest thing that could work: Adam at a fixed 1e-3, unweighted cross-entropy, random windows, no extras."""
    import time

    import torch
    import torch.nn.functional as F

    from stream_predictor.config import load_config
    from stream_predictor.learn.data import WindowSampler, load_data
    from stream_predictor.model import build_model, save_model

    cfg = load_config(None, common)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = build_model(cfg.model)
    data = load_data(train, model.preproc, cfg.train.cache_dir)
    model = build_model(replace(cfg.model, classes=data.classes))
    model.trained = {"mode": cfg.train.mode, "seq_len": cfg.train.seq_len, "label_delay": 0, "stride": 1}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = WindowSampler(data, cfg.train.seq_len, cfg.train.batch_size, seed=0)
    t0, step, epoch = time.monotonic(), 0, 0
    while step < steps:
        for batch in sampler.batches(epoch):
            b, t = batch.targets.shape
            x = model.preproc.normalize(batch.pixels.reshape(b * t, *batch.pixels.shape[2:])).reshape(b, t, *batch.pixels.shape[2:])
            loss = F.cross_entropy(model(x).reshape(b * t, -1), batch.targets.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
        epoch += 1
    save_model(model, weights)
    return time.monotonic() - t0


def run(task: str, name: str, overrides: list[str] | None, steps: int, train: list[str], test: list[str]) -> dict:
    slug = name.replace(" ", "_").replace("=", "").replace(",", "")
    weights, score = OUT / task / f"{slug}.safetensors", OUT / task / f"{slug}.eval.json"
    if not score.exists():
        common = [*TASKS[task]["model"], f"train.cache_dir={OUT / 'cache'}", "train.threads=2"]
        if overrides is None:
            weights.parent.mkdir(parents=True, exist_ok=True)
            seconds = plain_loop(task, steps, train, weights, common)
        else:
            cli("train", "--data", *train, "--out", str(weights), f"train.max_steps={steps}", "train.epochs=1000", *common,
                *overrides)
            seconds = json.loads(weights.with_suffix("").with_name(f"{slug}.metrics.json").read_text())["seconds"]
        result = json.loads(cli("eval", "--weights", str(weights), "--data", *test, "--json", *common).splitlines()[-1])
        score.parent.mkdir(parents=True, exist_ok=True)
        score.write_text(json.dumps({"accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
                                     "seconds": seconds, "overrides": overrides}))
    return json.loads(score.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--runs", default=",".join(RUNS))
    args = p.parse_args()
    tasks, names = args.tasks.split(","), args.runs.split(",")
    rows = {}
    for task in tasks:
        train, test = record(task)
        for name in names:
            rows.setdefault(name, {})[task] = run(task, name, RUNS[name], args.steps, train, test)
            print(f"{task:8s} {name:40s} accuracy {rows[name][task]['accuracy']:.3f}", file=sys.stderr, flush=True)
    print(f"| overrides ({args.steps} steps) | " + " | ".join(tasks) + " |")
    print("| --- |" + " --- |" * len(tasks))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{rows[name][t]['accuracy']:.3f}" for t in tasks) + " |")


if __name__ == "__main__":
    main()
