#!/usr/bin/env bash
# Reproduce the CutMix WSOL comparison two ways (see docs/reproduce.md):
#  1. wsolevaluation's main table: VGG16-GAP, InceptionV3 and ResNet-50, each of its six methods
#     (METHODS: base = CAM, has, acol, spg, adl, cutmix) on CUB-200-2011 and ImageNet, the last
#     checkpoint evaluated, and the center-Gaussian baseline on each test split;
#  2. the CutMix paper's Table 9 as published: its CUB recipes (VGG16-GAP, ResNet-50), evaluated
#     with --protocol cutmix2019 and with the fair metrics on the same models.
# Several seeds, then one table with `wsol compare` (a row per method and protocol). A GPU job.
#
#   scripts/reproduce_cutmix_table.sh [SEEDS] [GPUS]      e.g. scripts/reproduce_cutmix_table.sh 3 8
#
# Environment: CUB=data/CUB (images + CUBV2)  CUB_META=data/metadata/CUB
#              CUB_NATIVE=data/CUB_200_2011  IMAGENET=data/ILSVRC  IMAGENET_META=data/metadata/ILSVRC
#              RUNS=runs/paper  OUT=results/paper
#              SKIP_IMAGENET=1 (CUB only), SKIP_PAPER=1 (no CutMix-paper recipes),
#              METHODS="base cutmix" (a subset of the six), ARCHS="resnet50" (of the three).
# Finished runs are kept; killed ones resume.
set -euo pipefail
SEEDS=${1:-3}
GPUS=${2:-1}
CUB=${CUB:-data/CUB}
CUB_META=${CUB_META:-data/metadata/CUB}
CUB_NATIVE=${CUB_NATIVE:-data/CUB_200_2011}
IMAGENET=${IMAGENET:-data/ILSVRC}
IMAGENET_META=${IMAGENET_META:-data/metadata/ILSVRC}
RUNS=${RUNS:-runs/paper}
OUT=${OUT:-results/paper}
METHODS=${METHODS:-base has acol spg adl cutmix}
ARCHS=${ARCHS:-vgg16 inception_v3 resnet50}

launch() {  # launch ARGS...: one process, or torchrun with $GPUS processes
  if [ "$GPUS" -gt 1 ]; then
    torchrun --nproc_per_node="$GPUS" -m wsol.cli "$@"
  else
    wsol "$@"
  fi
}

train_one() {  # train_one CONFIG RUN SEED OVERRIDES...
  local config=$1 run=$2 seed=$3
  shift 3
  if [ -f "$run/last.pt" ]; then
    launch train --resume --out "$run" --quiet
  else
    launch train "$config" --out "$run" --quiet seed="$seed" "$@"
  fi
}

evaluate_one() {  # evaluate_one RUN PROTOCOL: the last checkpoint, as the reference reports
  local run=$1 protocol=$2 out="$1/eval_test"
  [ "$protocol" = wsolevaluation ] || out="$1/eval_test_$protocol"
  [ -f "$out/metrics.json" ] || launch evaluate "$run" --protocol "$protocol" --out "$out" --quiet
  EVALS+=("$out")
}

EVALS=()
wsol data check "$CUB_META" --images "$CUB" --quiet
# the center baseline: one map for every image, no training
out="$RUNS/center_baseline_cub"
[ -f "$out/metrics.json" ] || wsol evaluate --baseline center --metadata "$CUB_META/test" --out "$out" --quiet
EVALS+=("$out")
if [ -z "${SKIP_IMAGENET:-}" ]; then
  out="$RUNS/center_baseline_imagenet"
  [ -f "$out/metrics.json" ] || wsol evaluate --baseline center --metadata "$IMAGENET_META/test" --out "$out" --quiet
  EVALS+=("$out")
fi
for seed in $(seq 0 $((SEEDS - 1))); do
  for arch in $ARCHS; do
    for method in $METHODS; do
      run="$RUNS/cub_${arch}_${method}_seed$seed"
      train_one "configs/cub_${arch}_${method}.yaml" "$run" "$seed" data.root="$CUB" data.metadata="$CUB_META"
      evaluate_one "$run" wsolevaluation
      if [ -z "${SKIP_IMAGENET:-}" ]; then
        run="$RUNS/imagenet_${arch}_${method}_seed$seed"
        train_one "configs/imagenet_${arch}_${method}.yaml" "$run" "$seed" data.root="$IMAGENET" data.metadata="$IMAGENET_META"
        evaluate_one "$run" wsolevaluation
      fi
    done
  done
  if [ -z "${SKIP_PAPER:-}" ]; then
    for arch in vgg16 resnet50; do
      for method in base cutmix; do
        run="$RUNS/cub_${arch}_${method}_paper_seed$seed"
        train_one "configs/cub_${arch}_${method}_paper.yaml" "$run" "$seed" data.root="$CUB_NATIVE"
        evaluate_one "$run" cutmix2019
        evaluate_one "$run" wsolevaluation
      done
    done
  fi
done
wsol compare "${EVALS[@]}" --out "$OUT"
if [ -f "$OUT/table.csv" ]; then  # ours next to wsolevaluation's main table
  "${PYTHON:-python}" "$(dirname "$0")/vs_reference.py" "$OUT/table.csv" --out "$OUT/vs_reference.md"
fi
wsol gallery "$RUNS/cub_resnet50_base_seed0" "$RUNS/cub_resnet50_cutmix_seed0" --out "$OUT/gallery_cub_resnet50" --select diff
echo "table: $OUT/table.md   next to the reference: $OUT/vs_reference.md   differences: $OUT/differences.csv   gallery: $OUT/gallery_cub_resnet50/index.html"
