#!/usr/bin/env bash
# Fine-tune the Pong agent to tolerate real-time timing: DAgger rounds in which the agent plays with its
# actions arriving 0-2 steps late (drawn per action), 10% of frames shown twice and 10% never shown, and the
# expert labels each frame for the step its action will reach (it looks ahead in the emulator). One session
# (CLEAN) of the four is played without faults, so the agent keeps its lockstep play. Training data: seeds 600-699.
# Rounds are chosen on seeds 3000-3009 (1,800-step games, with and without faults); scores are reported on
# other seeds (docs/realtime.md). Each round resumes from what the previous one left in data/ and runs/.
# Usage: bash docs/recipes/pong_timing.sh round N PREV_WEIGHTS [MORE_DATA...] | select WEIGHTS
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
JIT=${JIT:-"&delay=0-2&repeat=0.1&drop=0.1"}  # round 1; round 2: JIT="&delay=0-1&repeat=0.05&drop=0.05" CLEAN=2 LR=1e-4 EPOCHS=1
CLEAN=${CLEAN:-1}  # sessions of the four played without faults
LR=${LR:-3e-4} EPOCHS=${EPOCHS:-2}
rec() {  # rec SEED NAME FAULTS POLICY
  [[ -e data/timing/$2/meta.yaml ]] || $PY run.py record --config pong --source "ale:Pong?seed=$1$3" --policy "$4" \
    --out "data/timing/$2" --frames 15000
}
case "${1:-}" in
round)  # round N PREV [DATA...]: four sessions played by PREV, then train from PREV on them (and DATA)
  n=$2 prev=$3 base=$((600 + 40 * ($2 - 1)))
  clean() { [[ $1 -ge 2 && $1 -lt $((2 + CLEAN)) ]]; }  # sessions 2 (and 3) of the four play without faults
  kind() { if clean "$1"; then echo clean; else echo jit; fi; }
  faults() { if clean "$1"; then echo ""; else echo "$JIT"; fi; }
  for pair in "0 1" "2 3"; do
    for k in $pair; do rec $((base + 10 * k)) "r${n}_$(kind "$k")$((base + 10 * k))" "$(faults "$k")" "$prev" & done; wait
  done
  $PY run.py train --config pong --data data/timing/r"$n"_* "${@:4}" --out "runs/timing_r$n.safetensors" train.init="$prev" \
    train.epochs="$EPOCHS" train.lr="$LR" train.warmup_steps=10 ;;
select)  # select WEIGHTS: mean score over seeds 3000-3009, 1,800-step games, without and with faults
  for faults in "" "$JIT"; do
    $PY run.py play --weights "$2" --source "ale:Pong?max_episode_steps=1800$faults" --episodes 10 --seed 3000 --json | tail -1
  done ;;
*)
  echo "usage: bash docs/recipes/pong_timing.sh round N PREV_WEIGHTS [MORE_DATA...] | select WEIGHTS" >&2; exit 2 ;;
esac
