"""The ``wsol`` command: a thin shell that parses arguments and calls the Python API."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path


# ---------------------------------------------------------------- numbers on the command line
def number(kind=int, low=None, high=None, low_open: bool = False, high_open: bool = False):
    """An argparse ``type``: a finite ``kind`` (int or float) within [low, high] (ends open where
    asked), or argparse's error naming the option and the allowed range; one check for every
    number a user types (nan, inf and 1e400 are refused, never clamped)."""
    import math

    what = "a whole number" if kind is int else "a number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    allowed = f"{what} {' and '.join(bounds)}".strip()

    def parse(text: str):
        try:
            value = float(text)
            if kind is int:
                if not math.isfinite(value) or value != int(value):
                    raise ValueError
                value = int(value)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        if low is not None and (value < low or (low_open and value == low)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text}")
        if high is not None and (value > high or (high_open and value == high)):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text}")
        return value

    parse.__name__ = "number"  # what argparse names in its own messages
    return parse


# ---------------------------------------------------------------- data
def cmd_data_synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthSpec, make_synthetic, make_synthetic_openimages

    spec = SynthSpec(
        classes=args.classes,
        train=args.train,
        test=args.test,
        size=args.size,
        seed=args.seed,
        image_format=args.format,
    )
    if args.layout == "openimages":
        roots = make_synthetic_openimages(args.out, spec, args.val, progress=not args.quiet)
        print(
            f"wrote {spec.train + spec.test + args.val * spec.classes} images ({spec.train} "
            f"train, {args.val} val per class, {spec.test} test, {spec.classes} classes) in "
            f"wsolevaluation's OpenImages layout to {args.out}"
        )
        print(
            f"  data.format=wsol data.root={roots['root']} data.masks={roots['masks']} "
            f"data.metadata={roots['metadata']}"
        )
        return 0
    split = make_synthetic(args.out, spec, progress=not args.quiet)
    print(
        f"wrote {len(split)} images ({spec.train} train, {spec.test} test, {spec.classes} classes) to {args.out}"
    )
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data.check import check_dataset, detect_format
    from .data.cub import is_cub_root

    images, masks = args.images, args.masks
    if images is not None and is_cub_root(images):  # metadata from `wsol data convert ROOT`:
        images, masks = images / "images", masks or images / "segmentations"  # its two roots
    elif images is not None and masks is None and (images.parent / "segmentations").is_dir():
        masks = images.parent / "segmentations"  # CUB's layout: masks beside images/
    problems, splits = check_dataset(
        args.path,
        images=images,
        masks=masks,
        annotations=args.annotations,
        deep=args.deep,
        progress=not args.quiet,
        allow_outside_root=args.allow_outside_root,
    )
    for problem in problems:
        print(problem)
    count = sum(len(s) for s in splits)
    if problems:
        print(f"{len(problems)} problem(s) in {args.path} ({count} images read)", file=sys.stderr)
        return 1
    print(f"ok: {count} images in {len(splits)} split(s), no problems")
    if args.images is None and not args.deep and detect_format(args.path) == "wsol":
        print(
            "not checked: the image files were not opened (their existence, sizes, modes and "
            "ends): pass --data ROOT to check them too"
        )
    elif not args.deep:
        print(
            "not checked: whether every image decodes to its end (cut-short JPEG and PNG files "
            "are found by their end markers; --deep decodes every image)"
        )
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .data.wsolmeta import convert_cub

    written = convert_cub(args.cub_root, args.out, val_per_class=args.val_per_class, seed=args.seed)
    for split, folder in written.items():
        print(f"{split}: {folder}")
    root = Path(args.cub_root)
    print(
        f"image ids are relative to {root / 'images'} and mask paths to "
        f"{root / 'segmentations'}; check a split with: wsol data check {written['test']} "
        f"--images {root}"
    )
    return 0


# ---------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from .yamlcheck import check_plain_yaml_file

    if args.config is not None:
        check_plain_yaml_file(args.config)  # before torch is imported: a hostile file fails fast
    from .config import find_recipe, list_recipes, load_config
    from .train import train

    if args.recipes:
        for name in list_recipes():
            print(name)
        return 0

    overrides = list(args.overrides)
    if args.skip_bad_images:
        overrides.append("data.skip_bad_images=true")
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    config = args.config
    if config is not None and "=" in str(config) and not config.exists():
        overrides.insert(0, str(config))  # `wsol train --resume --out RUN key=value`
        config = None
    if config is None:
        if not (args.resume and args.out):
            raise ValueError("give a CONFIG, or --resume with --out RUN_DIR")
        config = args.out / "config.yaml"
    config = find_recipe(config)  # a file, or a shipped recipe's name
    cfg = load_config(config, overrides)
    out = args.out or Path("runs") / Path(config).stem
    row = train(cfg, out, resume=args.resume, progress=not args.quiet)  # quiet: lines, no bars
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: rank 0 speaks
        line = f"run folder: {out}" + (f" (last epoch {row['epoch']})" if row else "")
        print(line)
        with open(Path(out) / "train.log", "a", encoding="utf-8") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
    if args.test:  # as the reference's trainer: the last checkpoint on test, right away
        from .evaluate import evaluate_checkpoint

        evaluate_checkpoint(
            out, workers=cfg.data.workers, device=cfg.device, progress=not args.quiet
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from .models import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches {args.pattern!r}")
    if args.names:
        for name in names:
            print(name)
        return 0
    print(f"{'model':<14} {'CAM at 224 px':<14} {'large feature map':<18} parameters (200 classes)")
    for name in names:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            model = create_model(name, num_classes=200).eval()
            size = tuple(model.forward_features(torch.zeros(1, 3, 224, 224)).shape[-2:])
            try:
                large = create_model(name, num_classes=200, large_feature_map=True).eval()
                big = tuple(large.forward_features(torch.zeros(1, 3, 224, 224)).shape[-2:])
                big_text = f"{big[0]} x {big[1]}"
            except ValueError:
                big_text = "-"
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<14} {f'{size[0]} x {size[1]}':<14} {big_text:<18} {params:,}")
    return 0


# ---------------------------------------------------------------- evaluate
def _protocol(args: argparse.Namespace):
    from .metrics import PROTOCOLS, named_protocol

    changes = dict(
        cam_curve_interval=args.cam_curve_interval,
        iou_thresholds=tuple(args.iou),
        normalize=not args.no_normalize,
        invalid_cams=args.invalid_cams,
    )
    if args.interpolation is not None:  # else the protocol's own
        changes["interpolation"] = args.interpolation
    if PROTOCOLS[args.protocol].fixed_threshold is None:
        changes["multi_contour"] = args.multi_contour
    else:  # a protocol with its own threshold fixes the contour mode too
        chosen = [
            flag
            for flag, given in (
                ("--threshold", args.threshold is not None),
                ("--threshold-from", args.threshold_from is not None),
                ("--val-threshold", getattr(args, "val_threshold", False)),
                ("--multi-contour", args.multi_contour),
            )
            if given
        ]
        if chosen:
            raise ValueError(
                f"--protocol {args.protocol} fixes the threshold and contour mode: "
                f"drop {', '.join(chosen)}"
            )
    return named_protocol(args.protocol, **changes)


def _fixed_threshold(args: argparse.Namespace) -> float | None:
    if args.threshold_from is None:
        return args.threshold
    import json

    data = json.loads(Path(args.threshold_from).read_text())
    try:
        return float(data["loc"]["best_threshold"])
    except KeyError:
        raise ValueError(
            f"{args.threshold_from} has no loc.best_threshold (is it a metrics.json?)"
        ) from None


def _data_split(root: Path, split: str, allow_outside_root: bool = False):
    """A split of a data root in any layout (CUB or synthetic, wsolevaluation metadata with
    its images, ImageNet), as ``wsol train`` would read it with that root."""
    from .config import DataConfig
    from .data.check import detect_format
    from .data.splits import load_split
    from .data.wsolmeta import find_metadata_dirs

    fmt = detect_format(root)
    data = {"format": fmt, "root": str(root), "allow_outside_root": allow_outside_root}
    if fmt == "wsol":  # a metadata folder: its own images root is given by --metadata instead
        raise ValueError(
            f"{root} is a wsolevaluation metadata folder: give it as --metadata "
            f"{find_metadata_dirs(root)[0]} (and the images with --images if they are elsewhere)"
        )
    return load_split(DataConfig(**data), split)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_cams, save_result

    if args.cams is None and args.baseline is None:
        if args.model is None:
            raise ValueError("give a run folder or checkpoint, or --cams CAM_DIR with --metadata")
        from .evaluate import evaluate_checkpoint

        if "=" in str(args.model) and not args.model.exists():
            raise ValueError(f"give the run folder or checkpoint first, then {args.model}")
        if args.images is not None:
            from .predict import predict_folder

            run = args.model if args.model.is_dir() else args.model.parent
            predict_folder(
                args.model,
                args.images,
                args.out or run / f"boxes_{Path(args.images).resolve().name}",
                threshold=args.threshold,
                checkpoint=args.checkpoint,
                cam_method=args.cam_method,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device or "auto",
                overlays=not args.no_overlays,
                progress=not args.quiet,
            )
            return 0
        overrides = [*args.overrides, *args.set]
        if args.data is not None:
            overrides.append(f"data.root={args.data}")
        protocol = _protocol(args)
        evaluate_checkpoint(
            args.model,
            args.out,
            split=args.split,
            checkpoint=args.checkpoint,
            overrides=overrides,
            protocol=protocol,
            cam_method=args.cam_method,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            save_cams=args.save_cams,
            val_threshold=args.val_threshold,
            fixed_threshold=_fixed_threshold(args),
            progress=not args.quiet,
            label=args.label,
            overwrite=args.overwrite,
            fix_sizes=args.fix_sizes,
        )
        return 0
    if args.overrides or args.set or args.model is not None:
        raise ValueError(
            "config overrides and a run folder belong to a model's evaluation, not to --cams or "
            "--baseline"
        )
    if args.out is None:
        raise ValueError(f"{'--cams' if args.cams else '--baseline'} needs --out")
    from .evaluate import check_out_folder, evaluation_key
    from .runtime import publish_folder, stage_folder

    protocol = _protocol(args)
    key = evaluation_key(
        cams=str(Path(args.cams).resolve()) if args.cams else None,
        baseline=args.baseline,
        metadata=str(Path(args.metadata).resolve()) if args.metadata else None,
        data=str(Path(args.data).resolve()) if args.data else None,
        split=args.split,
        protocol=protocol.to_dict(),
        threshold=_fixed_threshold(args),
    )
    check_out_folder(args.out, key, args.overwrite)
    source = "--cams" if args.cams is not None else "--baseline"
    if args.cams is not None and args.baseline is not None:
        raise ValueError("give --cams or --baseline, not both")
    split = None
    if args.metadata is None:
        if args.data is None:
            raise ValueError(
                f"{source} needs --metadata (a wsolevaluation split folder) or --data ROOT "
                "(a CUB, synthetic or ImageNet root; with --split)"
            )
        split = _data_split(args.data, args.split, args.allow_outside_root)
    elif args.data is not None:  # --metadata with its image root: image sizes, boxes.csv
        from .data.cub import is_cub_root
        from .data.wsolmeta import read_wsol_metadata

        images, masks = Path(args.data), args.masks
        if is_cub_root(images):  # a CUB root stands for its images/ and segmentations/
            images, masks = images / "images", masks or images / "segmentations"
        elif masks is None and (images.parent / "segmentations").is_dir():
            masks = images.parent / "segmentations"
        split = read_wsol_metadata(
            args.metadata,
            images,
            masks if masks is not None else images,
            allow_outside_root=args.allow_outside_root,
        )
    result = evaluate_cams(
        args.cams,
        args.metadata,
        args.masks,
        protocol,
        fixed_threshold=_fixed_threshold(args),
        predictions=args.predictions,
        allow_outside_root=args.allow_outside_root,
        engine=args.engine,
        progress=not args.quiet,
        baseline=args.baseline,
        split=split,
        boxes_out=args.baseline is None,
    )
    context = {
        "run": Path(args.cams).name if args.cams else f"{args.baseline} baseline",
        "dataset": result["dataset"],
        "split": result["split"],
    }
    if args.metadata is not None:
        context["metadata"] = str(Path(args.metadata).resolve())
    else:
        context["data"] = str(Path(args.data).resolve())
    if args.cams is not None:
        context["cams"] = str(Path(args.cams).resolve())
    else:
        context["method"] = f"{args.baseline}-baseline"
    if args.label:
        context["method"] = context["run"] = args.label
    context["evaluation"] = key
    stage = stage_folder(args.out)
    save_result(result, stage, context, echo=False)
    publish_folder(stage, args.out)
    save_result_echo(result, args.out)
    return 0


def save_result_echo(result: dict, out: Path) -> None:
    """The headline table and the files an evaluation wrote."""
    from .results import format_table

    print(format_table(result))
    names = ("metrics.json", "metrics.csv", "per_image.csv", "boxes.csv", "boxes_coco.json")
    files = [Path(out) / f for f in names]
    print("wrote " + ", ".join(str(f) for f in files if f.is_file()))


def add_protocol_arguments(p: argparse.ArgumentParser) -> None:
    from .metrics import PROTOCOLS

    g = p.add_argument_group("protocol (defaults: wsolevaluation)")
    g.add_argument(
        "--protocol",
        choices=tuple(PROTOCOLS),
        default="wsolevaluation",
        help="wsolevaluation (Choe et al. 2020: threshold sweep, MaxBoxAccV2, PxAP); "
        "cutmix2019 (the CutMix paper's Table 9: CAM threshold 0.15, largest contour, "
        "top-1 / GT-known loc; a model's results go to RUN/eval_<split>_cutmix2019); "
        "tscam_cub / tscam_ilsvrc (TS-CAM's own evaluation: linear float32 CAM resize, "
        "CAM threshold 0.1 / 0.12, its boxes and IoU rule); sat_cub / sat_ilsvrc (SAT's own: "
        "resize 256 and centre crop 224, the map normalised then resized, threshold 0.4 / 0.3, "
        "its box and IoU rule, ten-crop classes for CUB; docs/metrics.md)",
    )
    g.add_argument(
        "--cam-curve-interval",
        type=number(float, 0, 1, low_open=True, high_open=True),
        default=0.001,
        help="threshold grid spacing (default 0.001)",
    )
    g.add_argument(
        "--iou",
        type=number(int, 0, 100, low_open=True),
        nargs="+",
        default=[30, 50, 70],
        help="IoU levels in percent (default 30 50 70)",
    )
    g.add_argument(
        "--multi-contour",
        action="store_true",
        help="use all contours for the per-IoU table and loc metrics (MaxBoxAccV2 always does)",
    )
    g.add_argument(
        "--interpolation",
        choices=("cubic", "linear", "nearest", "area"),
        default=None,
        help="CAM resize to 224x224 (default the protocol's: cubic, as the reference "
        "inference.py; linear for tscam_* and sat_*)",
    )
    g.add_argument(
        "--no-normalize", action="store_true", help="CAMs are already in [0, 1]: skip min-max"
    )
    g.add_argument(
        "--invalid-cams",
        choices=("error", "zero"),
        default="error",
        help="a CAM with NaN/inf: an error naming the image (default), or scored as all zeros "
        "as the reference does",
    )
    g.add_argument(
        "--threshold",
        type=number(float, 0, 1),
        help="fixed CAM threshold for the loc metrics (chosen on val)",
    )
    g.add_argument(
        "--threshold-from", type=Path, help="take the fixed threshold from a val metrics.json"
    )
    g.add_argument(
        "--engine",
        choices=("fast", "reference"),
        default="fast",
        help="box curve engine (default fast)",
    )


# ---------------------------------------------------------------- gallery, compare
def cmd_gallery(args: argparse.Namespace) -> int:
    from .gallery import build_gallery
    from .runtime import resolve_device

    written = build_gallery(
        args.runs,
        args.out,
        select=args.select,
        count=args.count,
        seed=args.seed,
        images_root=args.images,
        device=str(resolve_device(args.device)),
    )
    if not args.quiet:
        print(f"wrote {written['png']} and {written['html']}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report import answer_sentences, compare_runs

    written = compare_runs(
        args.runs, args.out, n_boot=args.bootstrap, seed=args.seed, across=args.across
    )
    if args.quiet:  # the files only
        print(" ".join(str(p) for p in written.values() if isinstance(p, Path)))
        return 0
    print((Path(args.out) / "table.md").read_text())
    for name, path in written.items():
        print(f"{name}: {path}")
    notes = (Path(args.out) / "notes.txt").read_text().splitlines()
    for note in notes:
        print(f"note: {note}")
    if notes and "differences" not in written:
        return 0  # the notes say why there is nothing to difference
    for sentence in answer_sentences(Path(args.out) / "differences.csv", across=args.across):
        print(sentence)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .yamlcheck import check_plain_yaml_file

    for path in (args.config, args.space):
        if path is not None:
            check_plain_yaml_file(path)
    from .config import find_recipe
    from .sweep import evaluate_best, parse_seeds, run_sweep

    seeds = parse_seeds(args.test_best) if args.test_best is not None else None
    written = run_sweep(
        find_recipe(args.config),
        args.overrides,
        args.space,
        args.trials,
        args.out,
        storage=args.storage,
        study_name=args.study,
        sampler=args.sampler,
        seed=args.seed,
        nproc=args.nproc,
        prune=args.prune,
        heartbeat=args.heartbeat,
        lock_wait=args.lock_wait,
        echo=not args.quiet,
    )
    print(f"trials: {written['csv']}")
    if "best" in written:
        print(
            f"best: trial {written['best_trial']} (val {written['best_value']:.2f}) -> "
            f"{written['best']} (wsol train {written['best']})"
        )
        print(f"plots: {Path(args.out) / 'plots'}")
    if seeds is not None:
        evaluate_best(args.out, seeds, nproc=args.nproc, echo=not args.quiet)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    run_demo(
        args.out, seeds=args.seeds, epochs=args.epochs, progress=not args.quiet, methods=methods
    )
    return 0


# ---------------------------------------------------------------- parser
def _add_data_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="write the synthetic WSOL data set (CUB-200-2011 layout, or OpenImages with masks)",
        description="Write the synthetic WSOL set: objects whose class shows only in a small "
        "'head', on cluttered backgrounds, with boxes and masks (docs/data.md). --layout cub "
        "(default) writes a CUB-200-2011 root; --layout openimages wsolevaluation's OpenImages "
        "layout (instance and ignore masks).",
    )
    p.add_argument("out", type=Path, help="output folder (a CUB root, or the OpenImages layout's)")
    p.add_argument(
        "--layout",
        choices=("cub", "openimages"),
        default="cub",
        help="cub (default: images, boxes and segmentations as CUB-200-2011) or openimages "
        "(wsolevaluation's OpenImages layout: instance and ignore masks, no boxes)",
    )
    p.add_argument(
        "--val",
        type=number(int, 1),
        default=25,
        help="openimages: val (train-fullsup) images per class (default 25, as the reference's)",
    )
    p.add_argument(
        "--classes", type=number(int, 1), default=10, help="number of classes (default 10)"
    )
    p.add_argument(
        "--train", type=number(int, 1), default=1000, help="training images (default 1000)"
    )
    p.add_argument("--test", type=number(int, 1), default=500, help="test images (default 500)")
    p.add_argument(
        "--size",
        type=number(int, 16),
        default=64,
        help="smallest image side in pixels, at least 16 (default 64)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--format", choices=("jpg", "png"), default="jpg", help="image format (default jpg)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_synth)


def _add_data_check(sub) -> None:
    p = sub.add_parser(
        "check",
        help="validate a data set and report every problem with file and line (never modifies it)",
        description="Validate a CUB-200-2011 root, a wsolevaluation metadata folder or an ImageNet root. "
        "Exits 1 if any problem is found.",
    )
    p.add_argument(
        "path", type=Path, help="CUB root, metadata folder (split or parent) or ImageNet root"
    )
    p.add_argument(
        "--data",
        "--images",
        dest="images",
        type=Path,
        help="image root for a metadata folder (image ids are relative to it); a CUB root "
        "(as `wsol data convert` reads) stands for its images/ and segmentations/ (--images is "
        "its old name)",
    )
    p.add_argument(
        "--masks",
        type=Path,
        help="mask root for a metadata folder (default: --data, or the segmentations/ beside "
        "a CUB images/ folder)",
    )
    p.add_argument(
        "--annotations", type=Path, help="ImageNet val boxes: XML folder or LOC_val_solution.csv"
    )
    p.add_argument("--deep", action="store_true", help="decode every image fully (slower)")
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="accept image ids and mask paths that are absolute or contain '..'",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_data_check)


def _add_data_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert CUB-200-2011 (native) to the wsolevaluation metadata layout",
        description="Writes OUT/<CUB or SYNTH>/{train,val,test} (SYNTH for the synthetic set): val "
        "holds VAL_PER_CLASS training images per class "
        "(never trained on), for choosing hyperparameters and the CAM threshold.",
    )
    p.add_argument("cub_root", type=Path, help="CUB-200-2011 root (or a synthetic set's root)")
    p.add_argument(
        "--out", type=Path, required=True, help="metadata root to write (OUT/CUB/<split>)"
    )
    p.add_argument(
        "--val-per-class",
        type=number(int, 0),
        default=5,
        help="held-out val images per class (default 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the val draw (default 0)")
    p.set_defaults(func=cmd_data_convert)


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model or a folder of CAMs with the wsolevaluation metrics",
        description="Evaluate CAMs against wsolevaluation metadata: MaxBoxAcc, MaxBoxAccV2, GT-known / "
        "top-1 / top-5 loc, PxAP. Writes OUT/metrics.json and OUT/metrics.csv.",
    )
    p.add_argument(
        "model", nargs="?", type=Path, help="run folder or checkpoint (omit with --cams)"
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides for a model's evaluation, e.g. data.workers=8 (as --set)",
    )
    p.add_argument("--cams", type=Path, help="folder of CAMs: CAM_DIR/<image_id>.npy (any method)")
    p.add_argument(
        "--baseline",
        choices=("center",),
        help="instead of CAMs, the center-Gaussian baseline of Choe et al.'s table (with "
        "--metadata, or --data ROOT --split SPLIT)",
    )
    p.add_argument(
        "--metadata", type=Path, help="wsolevaluation split folder, e.g. metadata/CUB/test"
    )
    p.add_argument(
        "--masks", type=Path, help="mask root for PxAP (paths in localization.txt / masks.txt)"
    )
    p.add_argument(
        "--predictions", type=Path, help="CSV image_id,top5 for top-1/top-5 loc with --cams"
    )
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="with --cams: accept mask paths that are absolute or contain '..'",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="output folder (default for a model: RUN/eval_<split>, plus a part for each choice "
        "that is not the default, e.g. RUN/eval_test_scorecam_best: one folder per kind of "
        "evaluation)",
    )
    p.add_argument(
        "--fix-sizes",
        action="store_true",
        help="where an image's size in the metadata disagrees with its file, use the file's "
        "(and say how many) instead of refusing",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --out folder that holds another evaluation (it is replaced whole, "
        "never partly overwritten)",
    )
    p.add_argument(
        "--label",
        help="the name of this evaluation's row in `wsol compare` (default: the training method; "
        "for --cams: none)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    m = p.add_argument_group("model evaluation")
    m.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test"),
        help="split to evaluate (default test; also for --cams/--baseline with --data)",
    )
    m.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="which checkpoint of a run folder: last (default, as the reference reports) or "
        "best (best val score; refused when val is the test split)",
    )
    m.add_argument(
        "--data",
        type=Path,
        help="data root, if it moved since training (sets data.root); with --cams/--baseline: "
        "the CUB, synthetic or ImageNet root whose --split to evaluate against",
    )
    m.add_argument(
        "--images",
        type=Path,
        help="a folder of images with no metadata: the run's boxes (at --threshold, or the one "
        "best on its val split) and overlays of every image, to --out (default "
        "RUN/boxes_<folder name>): boxes.csv, boxes_coco.json, predictions.csv, overlays/",
    )
    m.add_argument("--no-overlays", action="store_true", help="with --images: no overlay pictures")
    m.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="other config overrides, e.g. data.workers=8",
    )
    m.add_argument(
        "--cam-method",
        default="cam",
        type=_cam_method,
        metavar="METHOD[@LAYER]",
        help="how CAMs are read: cam (default, as the training method reads them); gradcam, "
        "gradcampp, layercam, scorecam (pytorch-grad-cam; scorecam is slow); bagcams (Zhu et al. "
        "2022, post hoc on any checkpoint). @LAYER reads a layer of the model instead of its "
        "feature map, e.g. bagcams@backbone.layer3 (see docs/metrics.md)",
    )
    m.add_argument(
        "--save-cams",
        action="store_true",
        help="also write OUT/cams/<image_id>.npy: each raw CAM as evaluated (float32, 14x14 for "
        "CAM at 224 px: about 1 KB an image); `wsol evaluate --cams` reproduces the numbers",
    )
    m.add_argument(
        "--val-threshold",
        action="store_true",
        help="fix the loc threshold at val's best (written to OUT/val)",
    )
    m.add_argument(
        "--batch-size", type=number(int, 1), default=64, help="images per batch (default 64)"
    )
    m.add_argument(
        "--workers", type=number(int, 0), default=2, help="data loader processes (default 2)"
    )
    m.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default auto")
    add_protocol_arguments(p)
    p.set_defaults(func=cmd_evaluate)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a classifier with a WSOL method (CAM, CutMix, HaS, ACoL, SPG, ADL, ...) from a YAML config",
        description="Train from a YAML config (see configs/), with key=value overrides such as "
        "optim.lr=0.01 method.method=cutmix. Multi-GPU: torchrun --nproc_per_node=N -m wsol.cli train ...",
    )
    p.add_argument(
        "config",
        nargs="?",
        type=Path,
        help="YAML config, e.g. configs/cub_resnet50_cutmix.yaml, or a shipped recipe's name "
        "(cub_resnet50_cutmix; --recipes lists them); with --resume: default OUT/config.yaml",
    )
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--out", type=Path, help="run folder (default runs/<config name>)")
    p.add_argument(
        "--recipes", action="store_true", help="list the shipped recipes by name, and stop"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last.pt"
    )
    p.add_argument(
        "--skip-bad-images", action="store_true", help="skip and count unreadable images"
    )
    p.add_argument("--data", type=Path, help="data root (sets data.root)")
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), help="sets device (default: the config's)"
    )
    p.add_argument(
        "--test",
        action="store_true",
        help="then evaluate the last checkpoint on test (RUN/eval_test), as the reference's "
        "trainer does after training",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (the per-epoch lines stay)"
    )
    p.set_defaults(func=cmd_train)


def _add_models(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the registered models: CAM size and parameters",
        description="One line per registered model: its CAM size at 224 px (and with "
        "model.large_feature_map), and its parameters with a 200-class classifier.",
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'resnet*'")
    p.add_argument("--names", action="store_true", help="only the names, one per line")
    p.set_defaults(func=cmd_models)


def _add_gallery(sub) -> None:
    p = sub.add_parser(
        "gallery",
        help="render CAM overlay galleries (PNG grid and offline HTML page)",
        description="Overlay CAMs, GT boxes (white) and predicted boxes (vermillion), in a colour-blind-safe palette, for chosen images of one or "
        "more evaluations (run folders with eval_test, or evaluation folders), side by side.",
    )
    p.add_argument(
        "runs", nargs="+", type=Path, help="evaluation or run folders (the first picks the images)"
    )
    p.add_argument("--out", type=Path, required=True, help="gallery folder (PNG and HTML)")
    p.add_argument(
        "--select",
        choices=("best", "worst", "random", "class", "diff"),
        default="random",
        help="which images: best/worst IoU of the first run, random, per class, or diff (half the "
        "largest IoU gains of the last run over the first, half its largest losses)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--count", type=number(int, 1), default=16, help="images to show (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random selection")
    p.add_argument(
        "--data",
        "--images",
        dest="images",
        type=Path,
        help="image root (for --cams evaluations, or if the data moved); --images is its old name",
    )
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="device for recomputing CAMs (default auto)",
    )
    p.set_defaults(func=cmd_gallery)


def _add_compare(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="join runs into one table with curves and confidence intervals",
        description="Join evaluations (run folders with eval_test, or evaluation folders) into runs.csv "
        "(tidy), table.csv/table.md (mean ± std over seeds), differences.csv (95%% intervals against "
        "base from a bootstrap over seeds and images) and MaxBoxAcc / PxAP curve plots, and says in "
        "one sentence per method whether it localizes better. Refuses to average runs whose "
        "configs differ other than by seed, or that share a seed (name them apart with "
        "`wsol evaluate --label`).",
    )
    p.add_argument(
        "runs", nargs="+", type=Path, help="evaluation folders, or run folders with eval_test"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--bootstrap", type=number(int, 1), default=2000, help="bootstrap resamples (default 2000)"
    )
    p.add_argument(
        "--quiet", action="store_true", help="print only the files written (no table, no sentences)"
    )
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--across",
        choices=("method", "cam_method"),
        default="method",
        help="what differences.csv compares: training methods against base (default), or CAM "
        "methods against cam on each training method's checkpoints (e.g. bagcams against cam, "
        "each checkpoint's two evaluations drawn together)",
    )
    p.set_defaults(func=cmd_compare)


def _add_sweep(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="hyperparameter search on val (Choe et al.'s fair protocol), on Optuna",
        description="Random (or TPE) search over a space of config keys: every trial is a "
        "`wsol train` run folder scored by its val metric (select_metric) at the last epoch. The "
        "study lives in --storage (default: DIR/study.db, SQLite); the same command on several "
        "machines with one PostgreSQL URL shares the trials, and running it again continues the "
        "study until --trials trials are complete. See docs/sweep.md.",
    )
    p.add_argument("config", type=Path, help="YAML config every trial starts from")
    p.add_argument(
        "overrides", nargs="*", help="key=value overrides for every trial (e.g. data.root=...)"
    )
    p.add_argument(
        "--space", type=Path, required=True, help="search space YAML (see configs/spaces/)"
    )
    p.add_argument(
        "--trials",
        type=number(int, 1),
        default=30,
        help="complete trials the study needs (default 30)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="sweep folder (trials, sweep.csv, best.yaml)"
    )
    p.add_argument(
        "--storage",
        help="Optuna storage URL shared by workers, e.g. postgresql://user:pw@host/db "
        "(default: sqlite:///OUT/study.db)",
    )
    p.add_argument("--study", help="study name in the storage (default: the --out folder's name)")
    p.add_argument(
        "--sampler",
        choices=("random", "tpe"),
        default="random",
        help="default random (as Choe et al.)",
    )
    p.add_argument("--seed", type=int, help="sampler seed (default: none)")
    p.add_argument(
        "--nproc", type=number(int, 1), default=1, help="processes per trial (torchrun; default 1)"
    )
    p.add_argument(
        "--prune", action="store_true", help="stop poor trials early (median rule, per-epoch val)"
    )
    p.add_argument(
        "--test-best",
        metavar="SEEDS",
        help="then train best.yaml with SEEDS seeds (3, or 0,1,2) and evaluate each on test",
    )
    p.add_argument(
        "--heartbeat",
        type=number(float, 0, low_open=True),
        default=60.0,
        help="seconds between a trial's heartbeats; a trial silent for 3 of them is failed and "
        "retried (default 60)",
    )
    p.add_argument(
        "--lock-wait",
        type=number(float, 0, low_open=True),
        default=10.0,
        metavar="SECONDS",
        help="how long a write to a SQLite study waits for another process's before the sweep "
        "says the database is locked (default 10; raise it on a slow network file system)",
    )
    p.add_argument("--quiet", action="store_true", help="no line per finished trial")
    p.set_defaults(func=cmd_sweep)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="generate synthetic data, train base and CutMix (or --methods) on the CPU, evaluate "
        "and compare",
        description="The whole pipeline on the built-in synthetic set, on the CPU (a few minutes per seed). "
        "Re-running it resumes and keeps what is done.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)"
    )
    p.add_argument(
        "--seeds", type=number(int, 1), default=1, help="training seeds per method (default 1)"
    )
    p.add_argument(
        "--methods",
        default="base,cutmix",
        help="comma-separated methods to train: base, cutmix, has, acol, spg, adl, fsl (the FSL "
        "baseline, trained on the val split only) on the small CNN, vit_base, tscam and sat on a "
        "tiny ViT (default base,cutmix; base is always trained; every difference is to the plain CAM "
        "of the same backbone)",
    )
    p.add_argument(
        "--epochs", type=number(int, 1), help="training epochs (default: the recipe's 12)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)


def _cam_method(text: str) -> str:
    from .cam import split_cam_method

    try:
        split_cam_method(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="wsol",
        description="Weakly supervised object localization: train CutMix and baseline classifiers, "
        "extract CAMs and measure localization with the wsolevaluation protocol.",
    )
    parser.add_argument("--version", action="version", version=f"wsol {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser(
        "data",
        help="create, convert and check data sets",
        description="The data sets' commands: synth (the synthetic set, CUB or OpenImages "
        "layout), check (every problem with its file and line), convert (CUB to the "
        "wsolevaluation metadata layout).",
    )
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    _add_data_synth(dsub)
    _add_data_check(dsub)
    _add_data_convert(dsub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_models(sub)
    _add_gallery(sub)
    _add_compare(sub)
    _add_sweep(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `wsol train CONFIG --out RUN key=value`, `wsol evaluate --quiet RUN --out X k=v`:
        # overrides may stand anywhere on the line of every command that takes them
        looks = re.compile(r"^[A-Za-z_][\w.]*=")
        if hasattr(args, "overrides") and all(looks.match(e) for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"wsol: error: {_sentence(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system said no: a sentence, never a traceback
        print(f"wsol: error: {os_sentence(err)}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        if "timed out" not in str(err).lower() and "timeout" not in str(err).lower():
            raise
        print(
            "wsol: error: a distributed collective timed out: another process stopped or is "
            f"stuck (the wait is dist_timeout seconds). {_sentence(err).splitlines()[0]}",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = (
            f": `wsol train --resume --out {out}` continues it" if args.command == "train" else ""
        )
        print(f"\nwsol: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        _close_distributed()


def os_sentence(err: OSError) -> str:
    """What the file system refused, in one sentence naming the file and what to do."""
    import errno

    name = err.filename or "a file"
    code = err.errno
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write {name}: permission denied (a read-only folder?); choose another --out "
            "or make it writable"
        )
    if code == errno.ENOSPC:
        return f"no space left on the device while writing {name}: free some space and run it again"
    if code == errno.ENAMETOOLONG:
        return (
            f"a file name is longer than the file system allows: {name}; choose a shorter --out or "
            "label"
        )
    return f"{err.strerror or err}: {name}"


def _close_distributed() -> None:
    """End a torchrun process group before the interpreter exits: gloo's threads, left to the
    exit, can abort a process that finished its work (std::terminate, exit code -6)."""
    runtime = sys.modules.get("wsol.runtime")
    if runtime is not None:  # the heartbeat threads first: they call into the group's store
        runtime.stop_rank_watch()
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _sentence(err: BaseException) -> str:
    """The message of a user-facing error; one raised in a DataLoader worker arrives wrapped
    in the worker's traceback text, of which only the last line is the sentence."""
    text = str(err)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


if __name__ == "__main__":
    sys.exit(main())
