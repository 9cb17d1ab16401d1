#!/usr/bin/env bash
# A Pong agent past its teacher (docs/tuning.md "A teacher that looks ahead"): the RAM expert looking 60 steps ahead
# in a copy of the emulator (expert.lookahead=60) labels what the shipped agent sees while the agent plays (DAgger);
# the agent is fine-tuned on it, round after round. Every step skips what it already made, so a killed run resumes.
#   teacher         the teacher's own score: 5 games, seeds 5000-5004
#   rounds N        DAgger rounds 1..N: the latest agent plays 2 x 20k frames (seeds 31000 up), the teacher labels,
#                   the agent is fine-tuned on all rounds' data: runs/la/r1.safetensors, r2, ...
#   select          each round's agent on seeds 4000-4009 (choose there)
#   report WEIGHTS  30 games on seeds never used for training or choosing: 7000-7014 and 9000-9014
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
D=data/la
TEACH=(expert.lookahead=60)
FINE=(train.epochs=2 train.lr=3e-4 train.warmup_steps=10 train.threads=1)
play() { $PY run.py play --weights "$1" --episodes "$2" --seed "$3" --json | tail -1; }
case "${1:-}" in
teacher)
  $PY run.py play --expert --episodes 5 --seed 5000 --json "${TEACH[@]}" | tail -1 ;;
rounds)
  prev=weights/pong.safetensors
  for ((r = 1; r <= ${2:-3}; r++)); do
    for s in $((31000 + 2 * r)) $((31001 + 2 * r)); do
      [[ -e $D/dagger$s/meta.yaml ]] || $PY run.py record --config pong --source "ale:Pong?seed=$s" --policy "$prev" \
        --out $D/dagger$s --frames 20000 "${TEACH[@]}" predict.backend=torch
    done
    [[ -e runs/la/r$r.safetensors ]] || $PY run.py train --config pong --data $D/* --out runs/la/r$r.safetensors \
      train.init="$prev" "${FINE[@]}" --json | tail -1
    prev=runs/la/r$r.safetensors
  done ;;
select)
  for w in runs/la/r*.safetensors; do echo "$w $(play "$w" 10 4000)"; done ;;
report)
  for seed in 7000 9000; do play "$2" 15 $seed; done ;;
*)
  echo "usage: bash docs/recipes/pong_lookahead.sh teacher | rounds [N] | select | report WEIGHTS" >&2; exit 2 ;;
esac
