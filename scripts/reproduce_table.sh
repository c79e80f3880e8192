#!/usr/bin/env bash
# Reproduce clovaai/wsolevaluation's whole main table, and the CutMix paper's Table 9 (see
# docs/reproduce.md):
#  1. every cell: VGG16-GAP, InceptionV3 and ResNet-50 x CAM (base), HaS, ACoL, SPG, ADL, CutMix
#     x CUB-200-2011, ImageNet and OpenImages (configs/<data>_<backbone>_<method>.yaml, the tuned
#     values that could be found, each recipe saying which are and which are not), the last
#     checkpoint evaluated; the FSL baseline row (method fsl, trained on train-fullsup) and the
#     center-Gaussian baseline row of each test split;
#  2. the CutMix paper's Table 9 as published: its CUB recipes (VGG16-GAP, ResNet-50), evaluated
#     with --protocol cutmix2019 and with the fair metrics on the same models;
#  3. TS-CAM (ICCV 2021) as published: its DeiT-S recipes on CUB and ImageNet
#     (configs/{cub,imagenet}_deit_small_tscam_paper.yaml), evaluated with its own protocol
#     (--protocol tscam_cub / tscam_ilsvrc) and with the fair metrics on the same models.
#   - SAT's own recipes (configs/{cub,imagenet}_deit_small_sat_paper.yaml), with the fair
#     metrics (SKIP_SAT=1 leaves them out).
# Several seeds, then one table with `wsol compare` (a row per method and protocol) and ours next
# to the reference's (scripts/vs_reference.py). A GPU job: 63 runs per seed plus the papers' 6.
#
#   scripts/reproduce_table.sh [--dry-run] [SEEDS] [GPUS]     e.g. scripts/reproduce_table.sh 3 8
#
# --dry-run prints every command it would run (one per line) and runs none.
# Environment: CUB=data/CUB (images + CUBV2)  CUB_META=data/metadata/CUB  CUB_NATIVE=data/CUB_200_2011
#              IMAGENET=data/ILSVRC  IMAGENET_META=data/metadata/ILSVRC
#              IMAGENET_VAL_BOXES=data/ILSVRC/val_xml (TS-CAM's recipe reads the val boxes)
#              OPENIMAGES=data/OpenImages  OPENIMAGES_MASKS=data/masks/OpenImages
#              OPENIMAGES_META=data/metadata/OpenImages  RUNS=runs/table  OUT=results/table
#              SKIP_CUB=1, SKIP_IMAGENET=1, SKIP_OPENIMAGES=1 (leave a data set out),
#              SKIP_PAPER=1 (no CutMix-paper recipes), SKIP_TSCAM=1 (no TS-CAM recipes; they
#              also need DeiT-S's ImageNet weights in weights/, as their headers say),
#              SKIP_FSL=1, SKIP_CENTER=1,
#              METHODS="base cutmix" (a subset of base has acol spg adl cutmix; fsl is SKIP_FSL's),
#              ARCHS="resnet50" (a subset of vgg16 inception_v3 resnet50).
# The recipes train in one process at batch 32, as the reference; with GPUS > 1 the global batch
# is GPUS x 32: docs/distributed.md says what that changes (the lr is never rescaled for you).
# Finished runs are kept; killed ones resume.
set -euo pipefail
DRY=""
if [ "${1:-}" = "--dry-run" ]; then
  DRY=1
  shift
fi
SEEDS=${1:-3}
GPUS=${2:-1}
CUB=${CUB:-data/CUB}
CUB_META=${CUB_META:-data/metadata/CUB}
CUB_NATIVE=${CUB_NATIVE:-data/CUB_200_2011}
IMAGENET=${IMAGENET:-data/ILSVRC}
IMAGENET_META=${IMAGENET_META:-data/metadata/ILSVRC}
IMAGENET_VAL_BOXES=${IMAGENET_VAL_BOXES:-data/ILSVRC/val_xml}
OPENIMAGES=${OPENIMAGES:-data/OpenImages}
OPENIMAGES_MASKS=${OPENIMAGES_MASKS:-data/masks/OpenImages}
OPENIMAGES_META=${OPENIMAGES_META:-data/metadata/OpenImages}
RUNS=${RUNS:-runs/table}
OUT=${OUT:-results/table}
METHODS=${METHODS:-base has acol spg adl cutmix}
ARCHS=${ARCHS:-vgg16 inception_v3 resnet50}
[ -n "${SKIP_FSL:-}" ] || METHODS="$METHODS fsl"

run() {  # run CMD...: the command, or its line with --dry-run
  if [ -n "$DRY" ]; then
    printf '%s\n' "$*"
  else
    "$@"
  fi
}

launch() {  # launch ARGS...: one process, or torchrun with $GPUS processes
  if [ "$GPUS" -gt 1 ]; then
    run torchrun --nproc_per_node="$GPUS" -m wsol.cli "$@"
  else
    run wsol "$@"
  fi
}

train_one() {  # train_one CONFIG RUN SEED OVERRIDES...
  local config=$1 run_dir=$2 seed=$3
  shift 3
  if [ -f "$run_dir/last.pt" ]; then
    launch train --resume --out "$run_dir" --quiet
  else
    launch train "$config" --out "$run_dir" --quiet seed="$seed" "$@"
  fi
}

evaluate_one() {  # evaluate_one RUN PROTOCOL: the last checkpoint, as the reference reports
  local run_dir=$1 protocol=$2 out="$1/eval_test"
  [ "$protocol" = wsolevaluation ] || out="$1/eval_test_$protocol"
  [ -f "$out/metrics.json" ] || launch evaluate "$run_dir" --protocol "$protocol" --out "$out" --quiet
  EVALS+=("$out")
}

center() {  # center NAME METADATA [--masks MASKS]: the center baseline, no training
  local out="$RUNS/center_baseline_$1" meta=$2
  shift 2
  [ -f "$out/metrics.json" ] || run wsol evaluate --baseline center --metadata "$meta/test" "$@" --out "$out" --quiet
  EVALS+=("$out")
}

# data set -> "root metadata overrides..." for train_one
DATASETS=()
[ -n "${SKIP_CUB:-}" ] || DATASETS+=(cub)
[ -n "${SKIP_IMAGENET:-}" ] || DATASETS+=(imagenet)
[ -n "${SKIP_OPENIMAGES:-}" ] || DATASETS+=(openimages)
data_overrides() {
  case $1 in
    cub) echo "data.root=$CUB data.metadata=$CUB_META" ;;
    imagenet) echo "data.root=$IMAGENET data.metadata=$IMAGENET_META" ;;
    openimages) echo "data.root=$OPENIMAGES data.masks=$OPENIMAGES_MASKS data.metadata=$OPENIMAGES_META" ;;
  esac
}

# a vision transformer paper's own recipes (configs/{cub,imagenet}_deit_small_$1_paper.yaml),
# each evaluated under its own protocol ($2 on CUB, $3 on ImageNet; none if not given) and the
# fair one
vit_paper_recipes() {
  local method=$1 run_dir
  if [ -z "${SKIP_CUB:-}" ]; then
    run_dir="$RUNS/cub_deit_small_${method}_paper_seed$seed"
    train_one "configs/cub_deit_small_${method}_paper.yaml" "$run_dir" "$seed" data.root="$CUB_NATIVE"
    if [ -n "${2:-}" ]; then evaluate_one "$run_dir" "$2"; fi
    evaluate_one "$run_dir" wsolevaluation
  fi
  if [ -z "${SKIP_IMAGENET:-}" ]; then
    run_dir="$RUNS/imagenet_deit_small_${method}_paper_seed$seed"
    train_one "configs/imagenet_deit_small_${method}_paper.yaml" "$run_dir" "$seed" \
      data.root="$IMAGENET" data.annotations="$IMAGENET_VAL_BOXES"
    if [ -n "${3:-}" ]; then evaluate_one "$run_dir" "$3"; fi
    evaluate_one "$run_dir" wsolevaluation
  fi
}

EVALS=()
for data in "${DATASETS[@]}"; do
  case $data in
    cub) run wsol data check "$CUB_META" --data "$CUB" --quiet ;;
    openimages) run wsol data check "$OPENIMAGES_META" --data "$OPENIMAGES" --masks "$OPENIMAGES_MASKS" --quiet ;;
  esac
  if [ -z "${SKIP_CENTER:-}" ]; then
    case $data in
      cub) center cub "$CUB_META" ;;
      imagenet) center imagenet "$IMAGENET_META" ;;
      openimages) center openimages "$OPENIMAGES_META" --masks "$OPENIMAGES_MASKS" ;;
    esac
  fi
done
for seed in $(seq 0 $((SEEDS - 1))); do
  for data in "${DATASETS[@]}"; do
    # shellcheck disable=SC2046  # the overrides are words on purpose
    for arch in $ARCHS; do
      for method in $METHODS; do
        run_dir="$RUNS/${data}_${arch}_${method}_seed$seed"
        train_one "configs/${data}_${arch}_${method}.yaml" "$run_dir" "$seed" $(data_overrides "$data")
        evaluate_one "$run_dir" wsolevaluation
      done
    done
  done
  if [ -z "${SKIP_PAPER:-}" ] && [ -z "${SKIP_CUB:-}" ]; then
    for arch in vgg16 resnet50; do
      for method in base cutmix; do
        run_dir="$RUNS/cub_${arch}_${method}_paper_seed$seed"
        train_one "configs/cub_${arch}_${method}_paper.yaml" "$run_dir" "$seed" data.root="$CUB_NATIVE"
        evaluate_one "$run_dir" cutmix2019
        evaluate_one "$run_dir" wsolevaluation
      done
    done
  fi
  [ -n "${SKIP_TSCAM:-}" ] || vit_paper_recipes tscam tscam_cub tscam_ilsvrc
  [ -n "${SKIP_SAT:-}" ] || vit_paper_recipes sat sat_cub sat_ilsvrc
done
run wsol compare "${EVALS[@]}" --out "$OUT"
if [ -n "$DRY" ] || [ -f "$OUT/table.csv" ]; then  # ours next to wsolevaluation's main table
  run "${PYTHON:-python}" "$(dirname "$0")/vs_reference.py" "$OUT/table.csv" --out "$OUT/vs_reference.md"
fi
if [ -z "${SKIP_CUB:-}" ] && [[ " $ARCHS " == *" resnet50 "* ]] && [[ " $METHODS " == *" base "* ]] && [[ " $METHODS " == *" cutmix "* ]]; then
  run wsol gallery "$RUNS/cub_resnet50_base_seed0" "$RUNS/cub_resnet50_cutmix_seed0" --out "$OUT/gallery_cub_resnet50" --select diff
fi
[ -n "$DRY" ] || echo "table: $OUT/table.md   next to the reference: $OUT/vs_reference.md   differences: $OUT/differences.csv"
