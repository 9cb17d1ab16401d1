#!/usr/bin/env bash
# Reinforcement-learning fine-tuning of the cloned Pong agent (docs/tuning.md), in three steps:
#   tune [FRAMES]       PPO from the cloned agent weights/pong_bc.safetensors; one game in four has faulty timing (actions 0-1 steps
#                       late, 5% of frames shown twice, 5% never). Checkpoints every 250k frames; run it again to
#                       resume (or raise FRAMES to go on). Training games use seeds from 100,000 up.
#   encoder [FRAMES]    from the shipped agent (as shipped at 6841639), the same PPO on plain games with the CNN trained
#                       too (tune.encoder=train), lr 1e-4, the anchor to the start annealed (KL 0.05, half-life 300k),
#                       600k frames, a snapshot every 100k: runs/pong_enc.run/ (resumes; games on seeds from 1,400,000)
#   select [DIR]        each snapshot in DIR (runs/pong_rl.run/) plays seeds 4000-4009 (full games); the best is chosen there
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
encoder)
  [[ -e runs/pong_enc_start.safetensors ]] || git show 6841639:weights/pong.safetensors > runs/pong_enc_start.safetensors
  resume=(); [[ -e runs/pong_enc.run/checkpoint.safetensors ]] && resume=(--resume)
  $PY run.py tune --config pong --init runs/pong_enc_start.safetensors --envs 8 --frames "${2:-600000}" \
    --out runs/pong_enc.safetensors --game ale:Pong tune.encoder=train tune.lr=1e-4 tune.kl_coef=0.05 \
    tune.kl_half_life=300000 tune.value_warmup=0 tune.seed=1400000 tune.save_every=100000 tune.threads=1 \
    "${resume[@]}" --json | tail -1 ;;
select)
  for w in "${2:-runs/pong_rl.run}"/frames_*.safetensors; do
    echo "$w $($PY run.py play --weights "$w" --episodes 10 --seed 4000 --json | tail -1)"
  done ;;
report)
  for seed in 7000 9000; do $PY run.py play --weights "$2" --episodes 30 --seed $seed --json | tail -1; done ;;
*)
  echo "usage: bash docs/recipes/pong_rl.sh tune [FRAMES] | encoder [FRAMES] | select [DIR] | report WEIGHTS" >&2; exit 2 ;;
esac
