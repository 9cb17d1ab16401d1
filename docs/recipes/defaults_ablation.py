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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


def run(task: str, name: str, overrides: list[str], steps: int, train: list[str], test: list[str]) -> dict:
    slug = name.replace(" ", "_").replace("=", "")
    weights, score = OUT / task / f"{slug}.safetensors", OUT / task / f"{slug}.eval.json"
    if not score.exists():
        common = [*TASKS[task]["model"], f"train.cache_dir={OUT / 'cache'}", "train.threads=2"]
        cli("train", "--data", *train, "--out", str(weights), f"train.max_steps={steps}", "train.epochs=1000", *common, *overrides)
        result = json.loads(cli("eval", "--weights", str(weights), "--data", *test, "--json", *common).splitlines()[-1])
        metrics = json.loads(weights.with_suffix("").with_name(f"{slug}.metrics.json").read_text())
        score.parent.mkdir(parents=True, exist_ok=True)
        score.write_text(json.dumps({"accuracy": result["accuracy"], "macro_f1": result["macro_f1"],
                                     "seconds": metrics["seconds"], "overrides": overrides}))
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
