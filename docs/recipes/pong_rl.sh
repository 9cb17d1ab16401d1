#!/usr/bin/env bash
# Reinforcement-learning fine-tuning of the cloned Pong agent (docs/tuning.md), in three steps:
#   tune [FRAMES]       PPO from the cloned agent weights/pong_bc.safetensors; one game in four has faulty timing (actions 0-1 steps
#                       late, 5% of frames shown twice, 5% never). Checkpoints every 250k frames; run it again to
#                       resume (or raise FRAMES to go on). Training games use seeds from 100,000 up.
#   select              each snapshot in runs/pong_rl.run/ plays seeds 4000-4009 (full games); the best is chosen there
#   report WEIGHTS      30 fresh games on each of two seed sets never used for training or choosing: 7000-7029, 9000-9029
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
OUT=runs/pong_rl.safetensors
FAULTS="ale:Pong?delay=0-1&repeat=0.05&drop=0.05"
case "${1:-}" in
tune)
  resume=(); [[ -e runs/pong_rl.run/checkpoint.safetensors ]] && resume=(--resume)
  $PY run.py tune --config pong --init weights/pong_bc.safetensors --envs 8 --frames "${2:-1500000}" --out "$OUT" \
    --game ale:Pong ale:Pong ale:Pong "$FAULTS" "${resume[@]}" --json ;;
select)
  for w in runs/pong_rl.run/frames_*.safetensors; do
    echo "$w $($PY run.py play --weights "$w" --episodes 10 --seed 4000 --json | tail -1)"
  done ;;
report)
  for seed in 7000 9000; do $PY run.py play --weights "$2" --episodes 30 --seed $seed --json | tail -1; done ;;
*)
  echo "usage: bash docs/recipes/pong_rl.sh tune [FRAMES] | select | report WEIGHTS" >&2; exit 2 ;;
esac
