#!/usr/bin/env bash
# The recipe behind weights/pong.safetensors: behaviour cloning from the RAM expert, DAgger rounds, then a
# plain-loss fine-tune. Seeds below 1000 make training data; rounds were chosen on seeds 3000-3009; scores
# are reported on 1000-1009 and 2000-2009. Each stage resumes from the files the previous one left in
# data/ and runs/. Usage: bash docs/recipes/pong.sh stage1|stage2|stage3|score WEIGHTS
# Stages 1 and 2 trained with the class-weighted loss that was the default then (train.balance=weighted);
# stage 1's data was labelled by the expert planning with a 16-unit coast (expert.coast=16).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { python run.py "$@"; }
round() {  # round NAME POLICY DATA SEED... -- TRAIN_OVERRIDES...: record with POLICY playing, then train NAME on DATA
  local name=$1 policy=$2 data=$3; shift 3
  local seeds=() ; while [[ $1 != -- ]]; do seeds+=("$1"); shift; done; shift
  for s in "${seeds[@]}"; do
    [[ -e data/$data/dagger$s/meta.yaml ]] || run record --config pong --source "ale:Pong?seed=$s" --policy "$policy" \
      --out "data/$data/dagger$s" --frames 20000 "${EXTRA[@]}"
  done
  run train --config pong --data data/"$data"/* --out "runs/$name.safetensors" "$@"
}
FINE=(train.epochs=2 train.lr=3e-4 train.warmup_steps=10)

case "${1:-}" in
stage1)
  EXTRA=(expert.coast=16)
  for s in 0 100 200 300 400; do
    [[ -e data/pong/bc$s/meta.yaml ]] || run record --config pong --source "ale:Pong?seed=$s" --out data/pong/bc$s --frames 20000 "${EXTRA[@]}"
  done
  run train --config pong --data data/pong/bc* --out runs/pong_bc.safetensors train.balance=weighted
  prev=runs/pong_bc.safetensors
  seeds=("500 600" "700 800" "900 950" "850 880" "530 630" "730 830" "560 660" "760 860" "570 670" "770 870")
  for r in $(seq 1 10); do
    # shellcheck disable=SC2086  # round 1 trains from scratch, later rounds warm-start from the previous one
    round "pong_d$r" "$prev" pong ${seeds[r-1]} -- train.balance=weighted $([[ $r -gt 1 ]] && echo train.init="$prev" "${FINE[@]}")
    prev=runs/pong_d$r.safetensors
  done ;;
stage2)
  EXTRA=()
  for s in 0 100 200 300 400; do
    [[ -e data/pong2/bc$s/meta.yaml ]] || run record --config pong --source "ale:Pong?seed=$s" --out data/pong2/bc$s --frames 20000
  done
  run train --config pong --data data/pong2/* --out runs/pong2_b.safetensors train.init=runs/pong_d10.safetensors \
    train.balance=weighted train.epochs=3 train.lr=3e-4 train.warmup_steps=10
  prev=runs/pong2_b.safetensors
  for r in 1 2 3 4 5; do
    round "pong2_d$r" "$prev" pong2 "51$r" "52$r" -- train.balance=weighted train.init="$prev" "${FINE[@]}"
    prev=runs/pong2_d$r.safetensors
  done ;;
stage3)  # the same data, plain loss, 2 + 4 epochs: the shipped weights
  run train --config pong --data data/pong2/* --out runs/pong2_n1.safetensors train.init=runs/pong2_d5.safetensors "${FINE[@]}"
  run train --config pong --data data/pong2/* --out runs/pong2_n2.safetensors train.init=runs/pong2_n1.safetensors \
    train.epochs=4 train.lr=3e-4 train.warmup_steps=10 ;;
score)  # score WEIGHTS: the three seed sets, 10 games each
  for s in 1000 2000 3000; do run play --weights "$2" --episodes 10 --seed $s --json | tail -1; done ;;
*)
  echo "usage: bash docs/recipes/pong.sh stage1|stage2|stage3|score WEIGHTS" >&2; exit 2 ;;
esac
