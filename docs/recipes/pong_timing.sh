#!/usr/bin/env bash
# Fine-tune the Pong agent to tolerate real-time timing: DAgger rounds in which the agent plays with its
# actions arriving 0-2 steps late (drawn per action), 10% of frames shown twice and 10% never shown, and the
# expert labels each frame for the step its action will reach (it looks ahead in the emulator). One session
# in four is played without faults, so the agent keeps its lockstep play. Training data: seeds 600-699.
# Rounds are chosen on seeds 3000-3009 (1,800-step games, with and without faults); scores are reported on
# other seeds (docs/realtime.md). Each round resumes from what the previous one left in data/ and runs/.
# Usage: bash docs/recipes/pong_timing.sh round N PREV_WEIGHTS | select WEIGHTS
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
JIT="&delay=0-2&repeat=0.1&drop=0.1"
rec() {  # rec SEED NAME FAULTS POLICY
  [[ -e data/timing/$2/meta.yaml ]] || $PY run.py record --config pong --source "ale:Pong?seed=$1$3" --policy "$4" \
    --out "data/timing/$2" --frames 15000
}
case "${1:-}" in
round)  # round N PREV: four sessions played by PREV, then train on every timing session so far, from PREV
  n=$2 prev=$3 base=$((600 + 40 * ($2 - 1)))
  rec "$base" "r${n}_jit$base" "$JIT" "$prev" & rec $((base + 10)) "r${n}_jit$((base + 10))" "$JIT" "$prev" & wait
  rec $((base + 20)) "r${n}_clean$((base + 20))" "" "$prev" & rec $((base + 30)) "r${n}_jit$((base + 30))" "$JIT" "$prev" & wait
  $PY run.py train --config pong --data data/timing/* --out "runs/timing_r$n.safetensors" train.init="$prev" \
    train.epochs=2 train.lr=3e-4 train.warmup_steps=10 ;;
select)  # select WEIGHTS: mean score over seeds 3000-3009, 1,800-step games, without and with faults
  for faults in "" "$JIT"; do
    $PY run.py play --weights "$2" --source "ale:Pong?max_episode_steps=1800$faults" --episodes 10 --seed 3000 --json | tail -1
  done ;;
*)
  echo "usage: bash docs/recipes/pong_timing.sh round N PREV_WEIGHTS | select WEIGHTS" >&2; exit 2 ;;
esac
