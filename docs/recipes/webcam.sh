#!/usr/bin/env bash
# docs/webcam.md's figures on the synthetic stand-in: an encoder trained by us on the pose task (standing in for
# ImageNet weights), then the gesture task trained with it frozen, end to end from it, and end to end from scratch, on
# the same sessions and the same number of steps; scored on sessions used for neither training nor choosing.
# Resumable: each step skips what exists. Usage: bash docs/recipes/webcam.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${1:-2}
export TORCH_HOME=${TORCH_HOME:-$PWD/runs/webcam/torch_home}  # where model.pretrained=true finds the stand-in
D=data/webcam R=runs/webcam
IMAGENET=(model.grayscale=false model.mean=[0.485,0.456,0.406] model.std=[0.229,0.224,0.225])
run() { python run.py "$@"; }
rec() { [[ -e $2/meta.yaml ]] || run record --config gesture --source "$1" --out "$2" record.frames="$3"; }
fit() { local out=$1; shift; [[ -e $out ]] || run train --config gesture --out "$out" train.threads="$THREADS" "$@"; }

# 1. The stand-in encoder: mobilenet_v3_small trained frame by frame on where the hand is and whether it is open.
for s in 100 101 102 103 104 105; do rec "synthetic:gestures?task=pose&seed=$s" $D/pose$s 1500; done
fit $R/pose.safetensors --data $D/pose1* "${IMAGENET[@]}" model.pretrained=false train.freeze_encoder=false \
  train.seq_len=1 train.batch_size=64 train.max_steps=400 train.val_fraction=0 train.lr=3e-3
python docs/recipes/stand_in_encoder.py $R/pose.safetensors

# 2. Gestures: six minutes of training video (6 x 900 frames at 15 fps, 2 of them held out for choosing the epoch),
#    four sessions for the scores.
for s in 1 2 3 4 5 6 7 8; do rec "synthetic:gestures?seed=$s" $D/g$s 900; done
for s in 50 51 52 53; do rec "synthetic:gestures?seed=$s" $D/test$s 900; done
TRAIN=($D/g1 $D/g2 $D/g3 $D/g4 $D/g5 $D/g6) VAL=($D/g7 $D/g8)

# 3. The same 300 steps three ways, then the frozen encoder at the config's full 2,000 steps.
fit $R/frozen300.safetensors --data "${TRAIN[@]}" --val "${VAL[@]}" train.max_steps=300
fit $R/finetune300.safetensors --data "${TRAIN[@]}" --val "${VAL[@]}" train.max_steps=300 train.freeze_encoder=false
fit $R/scratch300.safetensors --data "${TRAIN[@]}" --val "${VAL[@]}" train.max_steps=300 train.freeze_encoder=false \
  model.pretrained=false "${IMAGENET[@]}"
fit $R/frozen.safetensors --data "${TRAIN[@]}" --val "${VAL[@]}"

# 4. Scores on the test sessions, through the real Predictor.
for w in frozen300 finetune300 scratch300 frozen; do
  [[ -e $R/$w.eval.json ]] || run eval --weights $R/$w.safetensors --data $D/test5* --json | tail -1 > $R/$w.eval.json
  echo "$w $(cat $R/$w.eval.json)"
done
