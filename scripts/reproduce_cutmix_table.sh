#!/usr/bin/env bash
# Reproduce the CutMix WSOL comparison (CutMix paper, Table 9) under the wsolevaluation protocol:
# VGG16-GAP and ResNet-50, plain CAM training (base) and CutMix, on CUB-200-2011 and ImageNet,
# several seeds, then one table with `wsol compare`. A GPU job: see docs/reproduce.md.
#
#   scripts/reproduce_cutmix_table.sh [SEEDS] [GPUS]      e.g. scripts/reproduce_cutmix_table.sh 3 8
#
# Environment: CUB=data/CUB_200_2011  IMAGENET=data/ILSVRC  RUNS=runs/paper  OUT=results/paper
#              SKIP_IMAGENET=1 to do CUB only. Finished runs are kept; killed ones resume.
set -euo pipefail
SEEDS=${1:-3}
GPUS=${2:-1}
CUB=${CUB:-data/CUB_200_2011}
IMAGENET=${IMAGENET:-data/ILSVRC}
RUNS=${RUNS:-runs/paper}
OUT=${OUT:-results/paper}

launch() {  # launch ARGS...: one process, or torchrun with $GPUS processes
  if [ "$GPUS" -gt 1 ]; then
    torchrun --nproc_per_node="$GPUS" -m wsol.cli "$@"
  else
    wsol "$@"
  fi
}

run_one() {  # run_one CONFIG NAME SEED DATA_ROOT
  local config=$1 name=$2 seed=$3 root=$4 run="$RUNS/$2_seed$3"
  if [ -f "$run/last.pt" ]; then
    launch train --resume --out "$run" --quiet
  else
    launch train "$config" --out "$run" --quiet seed="$seed" data.root="$root"
  fi
  [ -f "$run/eval_test/metrics.json" ] || launch evaluate "$run" --val-threshold --quiet
  EVALS+=("$run/eval_test")
}

EVALS=()
wsol data check "$CUB" --quiet
for seed in $(seq 0 $((SEEDS - 1))); do
  for arch in vgg16 resnet50; do
    for method in base cutmix; do
      run_one "configs/cub_${arch}_${method}.yaml" "cub_${arch}_${method}" "$seed" "$CUB"
    done
  done
  if [ -z "${SKIP_IMAGENET:-}" ]; then
    for method in base cutmix; do
      run_one "configs/imagenet_resnet50_${method}.yaml" "imagenet_resnet50_${method}" "$seed" "$IMAGENET"
    done
  fi
done
wsol compare "${EVALS[@]}" --out "$OUT"
wsol gallery "$RUNS/cub_resnet50_base_seed0" "$RUNS/cub_resnet50_cutmix_seed0" --out "$OUT/gallery_cub_resnet50" --select diff
echo "table: $OUT/table.md   differences: $OUT/differences.csv   gallery: $OUT/gallery_cub_resnet50/index.html"
