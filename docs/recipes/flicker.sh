#!/usr/bin/env bash
# Flickering Pong (ale:Pong?flicker=0.5: each frame blank with probability 0.5), docs/tuning.md. The CNN of the shipped
# Pong agent stays as it is (frozen, each frame encoded once); what learns is the LSTM and the head: cloned from the RAM
# expert on flicker games, DAgger rounds with the model playing, then PPO in the game. Every step skips what it made.
#   clone           5 x 20k expert frames (seeds 20000-20400), 2 DAgger rounds: runs/flick/f3 (CNN+LSTM), and n3, the same
#                   CNN without memory (single frames, T=1) on the same data
#   tune [FRAMES]   the same PPO from each: runs/flick/f_rl, n_rl (400k frames; resumes; games on seeds 1,100,000 up)
#   more [FRAMES]   3 more DAgger rounds (runs/flick/f6), then the same PPO from it: runs/flick/f6_rl (the shipped agent)
#   encoder [FRAMES] from the agent `more` made (f6_rl; as shipped before, also in git: 4053599), PPO with the CNN
#                   trained too (tune.encoder=train), 150k frames: its 150k snapshot was shipped at 6841639
#                   (runs/flick/enc_rl.run/frames_000149504.safetensors)
#   long [FRAMES]   from the agent `encoder` made (shipped at 6841639), the same PPO with the CNN trained, longer: 1M
#                   frames, the anchor to the start annealed (KL 0.05, half-life 300k), a snapshot every 100k
#                   (runs/flick/long.run/frames_*.safetensors; resumes where it stopped). Run on to 2M with
#                   `long 2000000` (the schedule stretched); the shipped weights are its 1.6M snapshot (chosen on
#                   4000-4019), runs/flick/long.run/frames_001600512.safetensors
#   inputs ARM      hypotheses 2 and 3 against the plain clone, each arm from the same expert frames (bc: 5 x 20k, seeds
#                   20000-20400, recorded with what was pressed and the RAM state) and 2 DAgger rounds of its own (seeds
#                   22001-22004): base (as `clone`), prev (model.prev_action=true), state (train.state_weight=1: a head
#                   learns the ball and paddles from the LSTM's output, training only); runs/flick/in_ARM3.safetensors
#   actions ARM [FRAMES] hypothesis 3 in RL: from the shipped agent, the PPO of `long` (fresh, seeds from 1,400,000) for
#                   200k frames, ARM plain or prev (tune.prev_action=true: the LSTM also reads the class it played,
#                   its weights for it starting at zero); runs/flick/act_ARM.safetensors
#   prevrl [FRAMES] the previous-action clone (`inputs prev`: runs/flick/in_prev3) through the PPO of `long` (CNN
#                   trained, seeds from 1,500,000), 2M frames by default, a snapshot every 100k; resumes where it stopped:
#                   runs/flick/prevrl.run/frames_*.safetensors
#   select DIR [SEED] each snapshot in DIR plays seeds SEED.. +9 (4000; full games): choose there (4000 and 4010 for long)
#   report WEIGHTS  30 games on seeds never used for training or choosing: 7000-7014 and 9000-9014
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
GAME='ale:Pong?flicker=0.5'
D=data/flicker3
FROZEN=(train.init=weights/pong.safetensors train.freeze_encoder=true train.lr=3e-4 train.warmup_steps=10 train.epochs=8 train.threads=1)
NOMEM=(train.mode=windowed train.seq_len=1 train.batch_size=512)
# a weak start: a light anchor, a short value warm-up, the usual Atari PPO rate; the same for every model
TUNE=(tune.seed=1100000 tune.save_every=100000 tune.threads=1 tune.kl_coef=0.1 tune.value_warmup=30000 tune.lr=2.5e-4)
rec() { [[ -e $2/meta.yaml ]] || $PY run.py record --config pong --source "$GAME&seed=$1" --out "$2" --frames 20000 "${@:3}"; }
fit() { [[ -e $1 ]] || $PY run.py train --config pong --data $D/* --out "$1" "${@:2}" --json | tail -1; }
dagger() {  # rounds $1..$2: the model plays (the expert labels), then it learns from everything recorded so far
  for ((r = $1; r <= $2; r++)); do
    for s in $((2 * r - 1)) $((2 * r)); do rec $((21000 + s)) $D/dagger$s --policy runs/flick/f$r.safetensors; done
    fit runs/flick/f$((r + 1)).safetensors "${FROZEN[@]}"
  done
}
tune() {  # START OUT FRAMES
  local resume=(); [[ -e ${2%.safetensors}.run/checkpoint.safetensors ]] && resume=(--resume)
  $PY run.py tune --config pong --init "$1" --envs 8 --frames "$3" --out "$2" --game "$GAME" "${TUNE[@]}" "${resume[@]}" \
    --json | tail -1
}
play() { $PY run.py play --weights "$1" --source "$GAME" --episodes "$2" --seed "$3" --json | tail -1; }

case "${1:-}" in
clone)
  for s in 0 100 200 300 400; do rec $((20000 + s)) $D/bc$s; done
  fit runs/flick/f1.safetensors "${FROZEN[@]}"
  dagger 1 2
  fit runs/flick/n3.safetensors "${FROZEN[@]}" "${NOMEM[@]}" ;;
tune)
  for m in f n; do tune runs/flick/${m}3.safetensors runs/flick/${m}_rl.safetensors "${2:-400000}"; done ;;
more)
  dagger 3 5
  tune runs/flick/f6.safetensors runs/flick/f6_rl.safetensors "${2:-400000}" ;;
encoder)
  TUNE=(tune.seed=1200000 tune.save_every=50000 tune.threads=1 tune.kl_coef=0.1 tune.value_warmup=0 tune.lr=1e-4
        tune.encoder=train)
  [[ -e runs/flick/f6_rl.safetensors ]] || git show 4053599:weights/flickering_pong.safetensors > runs/flick/f6_rl.safetensors
  tune runs/flick/f6_rl.safetensors runs/flick/enc_rl.safetensors "${2:-150000}" ;;
long)
  TUNE=(tune.seed=1300000 tune.save_every=100000 tune.threads=1 tune.kl_coef=0.05 tune.kl_half_life=300000
        tune.value_warmup=0 tune.lr=1e-4 tune.encoder=train)
  [[ -e runs/flick/long_start.safetensors ]] ||
    git show 6841639:weights/flickering_pong.safetensors > runs/flick/long_start.safetensors
  tune runs/flick/long_start.safetensors runs/flick/long.safetensors "${2:-1000000}" ;;
inputs)  # the cloning arms of docs/recipes/inputs.sh on Flickering Pong: runs/flick/in_ARM1..3
  bash docs/recipes/inputs.sh "$GAME" data/flicker_in runs/flick/in_ "${2:?base, prev or state}" ;;
actions)
  arm=${2:?plain or prev}
  TUNE=(tune.seed=1400000 tune.save_every=50000 tune.threads=1 tune.kl_coef=0.05 tune.kl_half_life=300000
        tune.value_warmup=0 tune.lr=1e-4 tune.encoder=train tune.prev_action=$([[ $arm == prev ]] && echo true || echo false))
  [[ -e runs/flick/act_start.safetensors ]] || git show 301ee7b:weights/flickering_pong.safetensors > runs/flick/act_start.safetensors
  tune runs/flick/act_start.safetensors runs/flick/act_$arm.safetensors "${3:-200000}" ;;
prevrl)
  TUNE=(tune.seed=1500000 tune.save_every=100000 tune.threads=1 tune.kl_coef=0.05 tune.kl_half_life=300000
        tune.value_warmup=30000 tune.lr=1e-4 tune.encoder=train)
  tune runs/flick/in_prev3.safetensors runs/flick/prevrl.safetensors "${2:-2000000}" ;;
select)
  for w in "$2"/frames_*.safetensors; do echo "$w $(play "$w" 10 "${3:-4000}")"; done ;;
report)
  for seed in 7000 9000; do play "$2" 15 $seed; done ;;
*)
  echo "usage: bash docs/recipes/flicker.sh clone | tune [FRAMES] | more [FRAMES] | encoder [FRAMES] | long [FRAMES] | inputs ARM | actions ARM [FRAMES] | prevrl [FRAMES] | select DIR [SEED] | report WEIGHTS" >&2; exit 2 ;;
esac
