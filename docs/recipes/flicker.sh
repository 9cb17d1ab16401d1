#!/usr/bin/env bash
# Flickering Pong (ale:Pong?flicker=0.5: each frame blank with probability 0.5), docs/tuning.md. The CNN of the shipped
# Pong agent stays as it is (frozen, each frame encoded once); what learns is the LSTM and the head: cloned from the RAM
# expert on flicker games, DAgger rounds with the model playing, then PPO in the game. The same steps for the same CNN
# without memory (single frames, T=1), so the two differ only in the memory. Every step skips what it already made.
#   clone           5 x 20k expert frames (seeds 20000-20400), 2 DAgger rounds: runs/flick/f3, and n3 (T=1) on the same data
#   tune [FRAMES]   PPO from each, 400k frames by default (resumes; training games use seeds from 1,100,000 up)
#   select DIR      each snapshot in DIR plays seeds 4000-4009 (full games): choose there
#   report WEIGHTS  30 games on seeds never used for training or choosing: 7000-7014 and 9000-9014
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
GAME='ale:Pong?flicker=0.5'
D=data/flicker3
FROZEN=(train.init=weights/pong.safetensors train.freeze_encoder=true train.lr=3e-4 train.warmup_steps=10 train.epochs=8)
NOMEM=(train.mode=windowed train.seq_len=1 train.batch_size=512)
# a weak start: a light anchor, a short value warm-up, the usual Atari PPO rate; the same for both models
TUNE=(tune.seed=1100000 tune.save_every=100000 tune.threads=1 tune.kl_coef=0.1 tune.value_warmup=30000 tune.lr=2.5e-4)
rec() { [[ -e $2/meta.yaml ]] || $PY run.py record --config pong --source "$GAME&seed=$1" --out "$2" --frames 20000 "${@:3}"; }
fit() { [[ -e $1 ]] || $PY run.py train --config pong --data $D/* --out "$1" "${@:2}" --json | tail -1; }
play() { $PY run.py play --weights "$1" --source "$GAME" --episodes "$2" --seed "$3" --json | tail -1; }

case "${1:-}" in
clone)
  for s in 0 100 200 300 400; do rec $((20000 + s)) $D/bc$s; done
  fit runs/flick/f1.safetensors "${FROZEN[@]}"
  for r in 1 2; do  # DAgger: the model plays (the expert labels), then it learns from everything recorded so far
    for s in $((2 * r - 1)) $((2 * r)); do rec $((21000 + s)) $D/dagger$s --policy runs/flick/f$r.safetensors; done
    fit runs/flick/f$((r + 1)).safetensors "${FROZEN[@]}"
  done
  fit runs/flick/n3.safetensors "${FROZEN[@]}" "${NOMEM[@]}" ;;
tune)
  for m in f n; do
    resume=(); [[ -e runs/flick/${m}_rl.run/checkpoint.safetensors ]] && resume=(--resume)
    $PY run.py tune --config pong --init runs/flick/${m}3.safetensors --envs 8 --frames "${2:-400000}" \
      --out runs/flick/${m}_rl.safetensors --game "$GAME" "${TUNE[@]}" "${resume[@]}" --json | tail -1
  done ;;
select)
  for w in "$2"/frames_*.safetensors; do echo "$w $(play "$w" 10 4000)"; done ;;
report)
  for seed in 7000 9000; do play "$2" 15 $seed; done ;;
*)
  echo "usage: bash docs/recipes/flicker.sh clone | tune [FRAMES] | select DIR | report WEIGHTS" >&2; exit 2 ;;
esac
