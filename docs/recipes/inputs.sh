#!/usr/bin/env bash
# What the model reads, compared by cloning (docs/tuning.md, "What else the model reads"). Each arm learns from the
# same 100k frames of the RAM expert (seeds 20000-20400), the plain Pong CNN frozen, then two DAgger rounds of its
# own (seeds 22001-22004: the arm plays, the expert labels).
#   bash docs/recipes/inputs.sh GAME DATA PREFIX ARM
#     GAME    the game, e.g. ale:Pong or 'ale:Pong?flicker=0.5'
#     DATA    where the recordings go (the expert's are shared by the arms): data/pong_in
#     PREFIX  the weights' prefix: PREFIX${ARM}1..3.safetensors, e.g. runs/pong_in/
#     ARM     base (the frames alone), prev (model.prev_action=true) or state (train.state_weight=1)
# Every step is skipped when its output exists, so a stopped run goes on where it stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
GAME=${1:?GAME} I=${2:?DATA} P=${3:?PREFIX} arm=${4:?ARM: base, prev or state}
case $arm in base) extra=() ;; prev) extra=(model.prev_action=true) ;; state) extra=(train.state_weight=1) ;;
  *) echo "inputs.sh: ARM is base, prev or state, not '$arm'" >&2; exit 2 ;; esac
mkdir -p "$(dirname "$P")"
sep="&"; [[ $GAME == *\?* ]] || sep="?"
rec() { [[ -e $2/meta.yaml ]] || $PY run.py record --config pong --source "$GAME${sep}seed=$1" --out "$2" --frames 20000 "${@:3}"; }
fit() {
  [[ -e $1 ]] || $PY run.py train --config pong --data "$I"/bc* "${@:2}" --out "$1" train.init=weights/pong.safetensors \
    train.freeze_encoder=true train.lr=3e-4 train.warmup_steps=10 train.epochs=8 train.threads=1 "${extra[@]}" \
    train.cache_dir="$I"/cache --json | tail -1
}
for s in 0 100 200 300 400; do rec $((20000 + s)) "$I"/bc$s; done
fit "$P${arm}1.safetensors"
for r in 1 2; do
  for s in $((2 * r - 1)) $((2 * r)); do rec $((22000 + s)) "$I/$arm/dagger$s" --policy "$P$arm$r.safetensors"; done
  fit "$P$arm$((r + 1)).safetensors" "$I/$arm"/dagger*
done
