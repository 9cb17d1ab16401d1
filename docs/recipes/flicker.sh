#!/usr/bin/env bash
# Flickering Pong (ale:Pong?flicker=0.5, each frame blank with probability 0.5): the CNN+LSTM and the same CNN
# without memory (T=1) trained on the same data. Starts from runs/flick_n1.safetensors and
# runs/flick_nomem_n1.safetensors (docs/pong.md says how those were made).
# Usage: bash docs/recipes/flicker.sh train|score
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { python run.py "$@"; }
rec() { [[ -e $2/meta.yaml ]] || run record --config pong --source "ale:Pong?flicker=0.5&seed=$1" --out "$2" --frames 20000 "${@:3}"; }
FINE=(train.epochs=4 train.lr=3e-4 train.warmup_steps=10)
NOMEM=(train.mode=windowed train.seq_len=1 train.batch_size=512)

case "${1:-}" in
train)
  for s in 0 100 200 300 400; do rec $((20000 + s)) data/flicker2/bc$s; done
  for s in 1 2 3 4; do rec $((21000 + s)) data/flicker2/dagger$s --policy runs/flick_n1.safetensors; done
  run train --config pong --data data/flicker2/* --out runs/flick_s1.safetensors train.init=runs/flick_n1.safetensors "${FINE[@]}"
  for s in 5 6; do rec $((21000 + s)) data/flicker2/dagger$s --policy runs/flick_s1.safetensors; done
  run train --config pong --data data/flicker2/* --out runs/flick_s2.safetensors train.init=runs/flick_s1.safetensors "${FINE[@]}"
  run train --config pong --data data/flicker2/* --out runs/flick_nomem_s.safetensors "${NOMEM[@]}" \
    train.init=runs/flick_nomem_n1.safetensors train.epochs=2 train.lr=3e-4 train.warmup_steps=10 ;;
score)
  for w in runs/flick_s2.safetensors runs/flick_nomem_s.safetensors; do
    for s in 1000 2000 3000; do
      run play --weights $w --source 'ale:Pong?flicker=0.5' --episodes 10 --seed $s --json | tail -1
    done
  done ;;
*)
  echo "usage: bash docs/recipes/flicker.sh train|score" >&2; exit 2 ;;
esac
