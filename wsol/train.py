"""``wsol train``: CutMix and baseline classifiers for WSOL, on the CPU, one GPU or many.

Multi-GPU and multi-node runs go through ``torchrun`` (DistributedDataParallel; NCCL on GPUs,
gloo on the CPU): RANK / WORLD_SIZE / LOCAL_RANK are read from the environment.

A run folder holds ``config.yaml`` (the resolved config), ``log.csv`` (one row per epoch),
``last.pt`` (after every epoch) and ``best.pt`` (best val score). Checkpoints are written
atomically and hold the model, optimizer, scheduler, AMP scaler, epoch and RNG states; every
epoch's randomness (data order, augmentation, mixing) is seeded from (seed, epoch, rank), so
``--resume`` continues a killed run exactly where its last finished epoch left it.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from .config import RUN_ONLY_KEYS, TrainConfig, config_to_dict, flatten, save_config
from .data.dataset import batches_of, collate_skipping
from .data.splits import NoValSplit, check_mask_files, load_split, val_is_test, val_source
from .methods import Method, MethodConfig, create_method
from .models import create_model
from .rundir import RunDir
from .runtime import (
    RunLock,
    amp_dtype,
    atomic_save,
    atomic_write_text,
    clean_temporaries,
    epoch_seed,
    load_checkpoint,
    rng_state,
    runtime_line,
    runtime_record,
    seed_everything,
    set_rng_state,
    setup_distributed,
    write_csv,
)
from .tracking import RunLog, fixed_val_batch

LOG_COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_images",
    "lr",
    "images_per_s",
    "skipped_images",
    "val_top1_acc",
    "val_MaxBoxAcc",
    "val_MaxBoxAccV2",
    "val_PxAP",
    "seconds",
)


class DivergedError(FloatingPointError, ValueError):
    """The training loss became NaN or infinite (a learning rate too high, most often)."""


def build_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD with two groups, as the reference: the model's head parameters (its
    ``head_prefixes``: e.g. ResNet's layer4 and classifier; with ``optim.head_params:
    classifier`` only the classifier) at ``lr * head_lr_mult``, every other parameter at ``lr``."""
    o = cfg.optim
    if o.head_params == "classifier":  # only the final classifier at the head rate
        is_head = [n.startswith("classifier.") for n, _ in model.named_parameters()]
        params = [p for _, p in model.named_parameters()]
        head = [p for p, h in zip(params, is_head) if h]
        backbone = [p for p, h in zip(params, is_head) if not h]
    else:
        head, backbone = model.head_parameters(), model.backbone_parameters()
    groups = [
        {"params": backbone, "lr": o.lr},
        {"params": head, "lr": o.lr * o.head_lr_mult},
    ]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(
            decay_groups(model, groups, o.weight_decay), lr=o.lr, betas=(0.9, 0.999), eps=1e-8
        )
    return torch.optim.SGD(
        groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov
    )


def decay_groups(model, groups: list[dict], weight_decay: float) -> list[dict]:
    """Each learning-rate group split in two, as timm's ``create_optimizer`` splits the
    parameters (timm 0.3.x ``optim_factory.add_weight_decay``, which TS-CAM trains with): no
    weight decay on 1-D parameters (norms, biases), names ending in ``.bias`` and the model's
    ``no_weight_decay()`` names (a ViT's position embedding and class token); ``weight_decay``
    on the rest. Empty groups are left out."""
    skip = set(getattr(model, "no_weight_decay", lambda: ())())
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for group in groups:
        decay, no_decay = [], []
        for p in group["params"]:
            name = names[id(p)]
            (no_decay if p.ndim <= 1 or name.endswith(".bias") or name in skip else decay).append(p)
        out += [
            {**group, "params": no_decay, "weight_decay": 0.0},
            {**group, "params": decay, "weight_decay": weight_decay},
        ]
    return [g for g in out if g["params"]]


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """The learning-rate multiplier of 0-based ``epoch``, in closed form (so a resumed run that
    extends ``epochs`` follows the new schedule).

    ``step`` counts as wsolevaluation's trainer does: before 1-based epoch e it multiplies the
    lr by ``lr_gamma`` whenever e is a multiple of ``lr_step`` (``adjust_learning_rate(epoch + 1)``
    in its main.py), so 1-based epoch e trains at ``lr * lr_gamma ** (e // lr_step)``: with
    ``lr_step`` 15 the 15th, 30th and 45th epochs are the first at each lower rate."""
    o = cfg.optim
    if o.scheduler == "step":
        return o.lr_gamma ** ((epoch + 1) // max(1, o.lr_step))
    if o.scheduler == "steps":
        e = epoch + 1
        return o.lr_gamma ** sum(1 for k in range(1, e + 1) if any(k % s == 0 for s in o.lr_steps))
    if o.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, cfg.epochs)))
    if o.scheduler == "none":
        return 1.0
    raise ValueError(f"unknown optim.scheduler {o.scheduler!r}: step, steps, cosine or none")


def build_scheduler(optimizer, cfg: TrainConfig):
    lr_factor(cfg, 0)  # fail early on an unknown scheduler
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(cfg, epoch))


def train_step(
    model,
    images: torch.Tensor,
    targets: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    method: Method | MethodConfig,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    dtype=None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch through the method's hooks (its batch, its loss);
    returns (loss, number correct against the first labels) as tensors on the device, so that
    the step does not wait for the device."""
    if not isinstance(method, Method):
        method = create_method(method)
    batch = method.prepare_batch(images, targets, generator)
    with torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None):
        logits, loss = method.training_loss(model, batch, label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach(), method.correct(logits, batch)


def repair_best(out: Path, ckpt: dict) -> None:
    """Make best.pt agree with last.pt after a kill between their writes: when last.pt says
    that its own epoch is the best, best.pt must hold that epoch too."""
    best = ckpt.get("best")
    if not best or best["epoch"] != ckpt["epoch"] + 1:
        return
    path = out / "best.pt"
    if path.is_file() and load_checkpoint(path).get("epoch") == ckpt["epoch"]:
        return
    tmp = out / f".best.pt.tmp{os.getpid()}"
    shutil.copyfile(out / "last.pt", tmp)
    os.replace(tmp, path)


def _read_log(path: Path, upto_epoch: int) -> list[dict]:
    """Rows of epochs 1..upto_epoch (1-based, as logged)."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) <= upto_epoch]


def _check_select_metric(cfg: TrainConfig, val_split) -> None:
    """Fail before any work if ``select_metric`` cannot be measured on the val split."""
    metric = cfg.select_metric
    if val_split is None or metric in ("auto", "top1_acc", "top5_acc"):
        return
    if metric in ("MaxBoxAccV2", "MaxBoxAcc") and not val_split.has_boxes:
        raise ValueError(f"select_metric {metric} needs boxes, and the val split has none")
    if metric == "PxAP" and not val_split.has_masks:
        raise ValueError("select_metric PxAP needs masks, and the val split has none")


def _select_score(cfg: TrainConfig, val: dict | None) -> tuple[str, float] | None:
    if val is None:
        return None
    metric = cfg.select_metric
    if metric == "auto":
        metric = "MaxBoxAccV2" if "MaxBoxAccV2" in val else "PxAP" if "PxAP" in val else "top1_acc"
    value = val["classification"][metric] if metric in ("top1_acc", "top5_acc") else val.get(metric)
    if value is None:
        raise ValueError(f"select_metric {metric} is not available on the val split")
    return metric, float(value)


def make_loader(dataset, cfg: TrainConfig, d, epoch: int, seed: int) -> DataLoader:
    """The training loader of one epoch: shuffled by (seed, epoch), sharded under DDP."""
    if d.world > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed
        )
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate_skipping,
        drop_last=False,  # as the reference's DataLoader: the last, smaller batch trains too
        **loader_settings(cfg, d),
    )


def loader_settings(cfg: TrainConfig, d) -> dict:
    """The data loader's settings, chosen for the device (recorded in RUN/runtime.yaml): pinned
    memory and 4 batches prefetched per worker on a GPU (copies are non-blocking); no
    persistent workers: each epoch's loader is made anew, so that its workers' augmentation is
    seeded by (seed, epoch) and a resumed run repeats it exactly."""
    gpu = d.device.type == "cuda"
    out = {
        "num_workers": cfg.data.workers,
        "pin_memory": gpu and cfg.data.decode == "cpu",
        "persistent_workers": False,
    }
    if cfg.data.workers > 0:
        out["prefetch_factor"] = 4 if gpu else 2
    return out


def train_one_epoch(
    model,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    method: Method,
    d,
    generator: torch.Generator,
    scaler=None,
    dtype=None,
    progress: bool = True,
    desc: str = "epoch",
) -> dict:
    """One pass over ``loader``; returns loss, accuracy, images and skipped images summed over
    every process, and the seconds it took."""
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model.train()
    steps = (
        len(loader) if cfg.max_steps_per_epoch <= 0 else min(len(loader), cfg.max_steps_per_epoch)
    )
    loss_sum = torch.zeros((), device=d.device)
    correct_sum = torch.zeros((), device=d.device, dtype=torch.float64)
    seen = skipped = 0
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, unit="batch", disable=not (progress and d.main))
    from .data.dataset import DeviceAugment

    device_augment = DeviceAugment(cfg.data.resize_size, cfg.data.crop_size, d.device)
    for step, (images, targets, indices, n_skipped) in enumerate(batches_of(loader)):
        if step >= steps:
            break
        skipped += n_skipped
        if images is None:
            continue
        if isinstance(images, list):  # data.decode: device: decoded and augmented here
            records = loader.dataset.split.records
            images = device_augment(images, [str(records[int(i)].path) for i in indices])
        images = images.to(d.device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(d.device, non_blocking=True)
        loss, correct = train_step(
            model,
            images,
            targets,
            optimizer,
            method,
            generator,
            scaler,
            dtype,
            cfg.optim.label_smoothing,
        )
        loss_sum += loss * len(targets)
        correct_sum += correct
        seen += len(targets)
        if d.main and (step % 10 == 0 or step == steps - 1):
            rate = seen * d.world / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss_sum.item() / max(seen, 1):.3f}", img_s=f"{rate:.0f}")
        bar.update()
    bar.close()
    elapsed = time.perf_counter() - t0
    totals = torch.tensor([loss_sum.item(), correct_sum.item(), seen, skipped], dtype=torch.float64)
    if d.world > 1:
        totals = totals.to(d.device)
        dist.all_reduce(totals)
        totals = totals.cpu()
    loss_total, correct_total, seen_total, skipped_total = totals.tolist()
    return {
        "loss": loss_total / max(seen_total, 1),
        "acc": 100.0 * correct_total / max(seen_total, 1),
        "images": int(seen_total),
        "skipped": int(skipped_total),
        "seconds": elapsed,
        "finite": math.isfinite(loss_total),
    }


def validate(
    model, val_split, cfg: TrainConfig, d, dtype=None, method: Method | None = None
) -> dict:
    """Classification and localization on the val split, at the config's threshold step."""
    from .evaluate import evaluate_model
    from .metrics import Protocol

    return evaluate_model(
        model,
        val_split,
        Protocol(cam_curve_interval=cfg.cam_curve_interval),
        device=d.device,
        crop_size=cfg.data.crop_size,
        batch_size=cfg.batch_size,
        workers=cfg.data.workers,
        amp_dtype=dtype,
        per_image=False,
        progress=False,
        cam_reader=method.cams if method is not None else None,
    )


def log_row(epoch: int, stats: dict, lr: float, val: dict | None) -> dict:
    """One row of ``log.csv`` (``LOG_COLUMNS``)."""
    return {
        "epoch": epoch + 1,
        "train_loss": stats["loss"],
        "train_acc": stats["acc"],
        "train_images": stats["images"],
        "lr": lr,
        "images_per_s": stats["images"] / max(stats["seconds"], 1e-9),
        "skipped_images": stats["skipped"],
        "val_top1_acc": val["classification"]["top1_acc"] if val else "",
        "val_MaxBoxAcc": val.get("MaxBoxAcc", "") if val else "",
        "val_MaxBoxAccV2": val.get("MaxBoxAccV2", "") if val else "",
        "val_PxAP": val.get("PxAP", "") if val else "",
        "seconds": stats["seconds"],
    }


def _epoch_line(row: dict) -> str:
    text = (
        f"epoch {row['epoch']}: loss {row['train_loss']:.4f} acc {row['train_acc']:.1f} "
        f"{row['images_per_s']:.0f} img/s"
    )
    if row["val_top1_acc"] != "":
        text += f" | val top-1 {row['val_top1_acc']:.1f}"
        if row["val_MaxBoxAccV2"] != "":
            text += f" MaxBoxAccV2 {row['val_MaxBoxAccV2']:.1f}"
    if row["skipped_images"]:
        text += f" | skipped {row['skipped_images']} unreadable images"
    return text


@dataclass
class TrainState:
    """Everything a checkpoint holds, in one place: what trains and where it stands."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    epoch: int = -1  # the last finished epoch (0-based); -1: none yet
    best: dict | None = None

    def load(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.best = ckpt["epoch"], ckpt.get("best")
        set_rng_state(ckpt["rng"])

    def checkpoint(self, **extra) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "best": self.best,
            "rng": rng_state(),
            **extra,
        }


def _load_splits(cfg: TrainConfig, method: Method):
    """(train, val or None): the data first, so a missing path fails before any work. A method
    that trains on the fully supervised val split (the FSL baseline) gets it as its training
    split, and no val split (it would choose on its own training images)."""
    if method.train_split == "val":
        try:
            train_split = load_split(cfg.data, "val", cfg.seed)
        except NoValSplit as err:
            raise ValueError(
                f"method {cfg.method.method} trains on the fully supervised val split, and "
                f"there is none: {err}"
            ) from None
        method.check_train_split(train_split)
        val_split = None
    else:
        train_split = load_split(cfg.data, "train", cfg.seed)
        try:
            val_split = load_split(cfg.data, "val", cfg.seed)
        except NoValSplit:
            val_split = None
    if not train_split.records:
        raise ValueError(f"the {method.train_split} split of {cfg.data.root} is empty")
    _check_labels(train_split)
    _check_select_metric(cfg, val_split)
    for split in (train_split, val_split):
        if split is not None and split.has_masks:
            check_mask_files(split)
    return train_split, val_split


def _check_labels(split) -> None:
    """Without class names, the classifier's size comes from the labels: every class 0..K-1 must
    have a training image, or a stray label would silently build a bigger classifier."""
    if split.class_names:
        return
    present = {r.label for r in split.records}
    missing = sorted(set(range(split.num_classes)) - present)
    if missing:
        shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"the training labels of {split.name} run to {split.num_classes - 1}, but classes "
            f"{shown} have no training image ({len(missing)} of {split.num_classes}): fix the "
            "labels, or list the classes in class_names.txt beside the metadata"
        )


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    echo: bool = True,
) -> dict:
    """Train a model as ``cfg`` says into ``out_dir``; returns the last epoch's log row.

    With ``resume``, ``out_dir/last.pt`` restores model, optimizer, scheduler, scaler, epoch
    and RNG state, and training continues with the next epoch. ``progress``: the batch bars;
    ``echo``: the per-epoch lines (with the whole run's ETA), also kept in ``RUN/train.log``.
    """
    run = RunDir(out_dir)
    d = setup_distributed(cfg.device, cfg.dist_timeout)
    method = create_method(cfg.method)
    train_split, val_split = _load_splits(cfg, method)
    splits = split_record(cfg, train_split, val_split, method)
    last = None  # the checkpoint a resume continues from, read once
    if resume:
        if not run.checkpoint("last").is_file():
            raise FileNotFoundError(f"--resume: {run.checkpoint('last')} does not exist")
        last = load_checkpoint(run.checkpoint("last"))
    changes = resume_changes(run.path, cfg, last) if resume else []
    runtime = {
        **runtime_record(d, cfg.batch_size),
        "loader": {
            **loader_settings(cfg, d),
            "decode": cfg.data.decode,
            "channels_last": cfg.model.channels_last,
            "non_blocking": True,
        },
    }
    # one entry per stretch of epochs run the same way: a resume with another number of
    # processes (another global batch), device or version starts a new one
    segments = list(last.get("runtime") or []) if last else []
    runtime_changed = (
        bool(segments) and {k: v for k, v in segments[-1].items() if k != "from_epoch"} != runtime
    )
    if not segments or runtime_changed:
        segments.append({"from_epoch": (last["epoch"] + 2) if last else 1, **runtime})

    seed_everything(epoch_seed(cfg.seed, -1, 0))  # the same initial weights on every rank
    model = method.adapt_model(
        create_model(
            cfg.model.name,
            train_split.num_classes,
            cfg.model.pretrained,
            cfg.model.large_feature_map,
            cfg.model.keep_pretrained_classifier,
            drop_path_rate=cfg.model.drop_path_rate,
        )
    ).to(d.device)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = build_optimizer(model, cfg)
    dtype = amp_dtype(cfg, d.device)
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    state = TrainState(model, optimizer, build_scheduler(optimizer, cfg), scaler)

    with RunLock(run.path, d):
        clean_temporaries(run.path)
        if resume:
            state.load(last)
            # the lr of the next epoch from this config's schedule: the optimizer's saved lr was
            # set by the old one (e.g. cosine to 0 at the old number of epochs), and a run that
            # is extended follows the longer run's schedule from here on
            next_epoch = state.epoch + 1
            for group, base in zip(optimizer.param_groups, state.scheduler.base_lrs):
                group["lr"] = base * lr_factor(cfg, next_epoch)
            if d.main:
                repair_best(run.path, {"epoch": state.epoch, "best": state.best})
        elif run.checkpoint("last").exists():  # every rank stops, none waits for the others
            raise FileExistsError(
                f"{run.path} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        if d.main:
            run.path.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run.config)
            atomic_write_text(run.splits, yaml.safe_dump(splits, sort_keys=False))
            atomic_write_text(run.path / "runtime.yaml", yaml.safe_dump(segments, sort_keys=False))
            if runtime_changed:
                before = {k: v for k, v in segments[-2].items() if k != "from_epoch"}
                changes = [
                    *changes,
                    *(
                        {"key": f"runtime.{k}", "was": before.get(k), "now": v}
                        for k, v in runtime.items()
                        if before.get(k) != v
                    ),
                ]
            if changes:
                record_changes(run.path, state.epoch + 1, changes)
        log_rows = _read_log(run.log, state.epoch + 1) if d.main else []
        log = RunLog(run.path, d.main, echo, cfg.tensorboard)
        log.line(
            f"{'resumed after epoch ' + str(state.epoch + 1) if resume else 'started'}: "
            f"{cfg.model.name}, {cfg.method.method}, {cfg.epochs} epochs, seed {cfg.seed}"
        )
        trained_on = "" if method.train_split == "train" else f" of the {method.train_split} split"
        log.line(f"train: {splits['train_images']} images{trained_on} | val: {splits['val']}")
        log.line(f"runs as {runtime_line(runtime)}")
        for c in changes:
            if c["key"].startswith("runtime."):
                key = c["key"].removeprefix("runtime.")
                log.line(
                    f"resumed with {key} {c['now']}, trained until now with {c['was']}: the epochs "
                    "from here on run differently (RUN/runtime.yaml, config_history.yaml)"
                )
            else:
                log.line(f"changed on resume: {c['key']} {c['was']!r} -> {c['now']!r}")
        if splits["val_is_test"]:
            log.line("val is the test split: no best.pt is kept (it would choose on test)")
        overlay = (
            fixed_val_batch(val_split, cfg.data.crop_size)
            if val_split is not None and log.writer is not None
            else None
        )

        train_model = model
        if d.world > 1:
            train_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[d.local_rank] if d.device.type == "cuda" else None
            )
        dataset = method.train_dataset(train_split, cfg.data)
        extra = {
            "config": config_to_dict(cfg),
            "num_classes": train_split.num_classes,
            "class_names": train_split.class_names,
            "splits": splits,
            "runtime": segments,
            # relative data paths of the config are relative to this folder
            "workdir": last.get("workdir", os.getcwd()) if last else os.getcwd(),
        }
        row: dict = {}
        for epoch in range(state.epoch + 1, cfg.epochs):
            started = time.perf_counter()
            seed = epoch_seed(cfg.seed, epoch, d.rank)
            seed_everything(seed)
            loader = make_loader(dataset, cfg, d, epoch, seed)
            stats = train_one_epoch(
                train_model,
                loader,
                optimizer,
                cfg,
                method,
                d,
                torch.Generator().manual_seed(seed),
                scaler,
                dtype,
                progress,
                f"epoch {epoch + 1}/{cfg.epochs}",
            )
            if not stats["finite"]:
                raise DivergedError(
                    f"epoch {epoch + 1}: the training loss is not finite (it diverged): lower "
                    f"optim.lr (now {cfg.optim.lr:g}), or resume from an earlier checkpoint"
                )
            lr = optimizer.param_groups[0]["lr"]
            state.scheduler.step()
            due = (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs
            val = (
                validate(model, val_split, cfg, d, dtype, method)
                if val_split is not None and due
                else None
            )
            row = log_row(epoch, stats, lr, val)
            score = None if splits["val_is_test"] else _select_score(cfg, val)
            is_best = score is not None and (state.best is None or score[1] > state.best["value"])
            state.epoch = epoch
            if is_best:
                state.best = {"metric": score[0], "value": score[1], "epoch": epoch + 1}
            if d.main:
                log_rows.append(row)
                # the log first: a resume drops rows past last.pt
                write_csv(run.log, log_rows, list(LOG_COLUMNS))
                checkpoint = state.checkpoint(**extra)
                atomic_save(checkpoint, run.checkpoint("last"))
                if is_best:
                    atomic_save(checkpoint, run.checkpoint("best"))
                left = log.eta(time.perf_counter() - started, epoch + 1, cfg.epochs)
                log.line(f"{_epoch_line(row)} | run ETA {left}")
                log.scalars(row)
                if val is not None and overlay is not None:
                    cams = _overlay_cams(model, overlay, method, d, dtype)
                    threshold = val.get("loc", {}).get("best_threshold")
                    log.overlays(epoch + 1, overlay[0], cams, overlay[2], threshold)
        log.close()
        if d.world > 1:
            dist.barrier()
        return row


def _overlay_cams(model, batch, method, d, dtype) -> torch.Tensor:
    from .cam import eval_mode, logits_and_cams

    images, labels = batch[0], batch[1]
    with eval_mode(model), torch.autocast(d.device.type, dtype=dtype, enabled=dtype is not None):
        _, cams = logits_and_cams(model, images.to(d.device), labels, reader=method.cams)
    return cams


#: config keys a resumed run may change: what it trains is unchanged (more epochs extend it;
#: the rest only says where the data are or how they are read)
RESUMABLE_KEYS = (*RUN_ONLY_KEYS, "epochs", "eval_every", "max_steps_per_epoch")


def normalized_config(data: dict) -> dict:
    """A saved config as this version writes it: read and written again, so that the flat
    ``method`` section of earlier versions (every method's keys) compares equal to the method's
    own (see ``MethodConfig``); as saved if it no longer reads."""
    from .config import ConfigError, config_from_dict

    try:
        return config_to_dict(config_from_dict(data))
    except (ConfigError, ValueError):
        return data


def resume_changes(out: Path, cfg: TrainConfig, ckpt: dict) -> list[dict]:
    """The changes ``cfg`` makes to the config a run was trained with (``ckpt``, its last.pt):
    allowed ones (``RESUMABLE_KEYS``) are returned, any other is refused before any work, so
    that what a resumed run says it ran is what ran."""
    ran, done = flatten(normalized_config(ckpt["config"])), ckpt["epoch"] + 1
    now = flatten(config_to_dict(cfg))
    changed = [
        {"key": k, "was": ran.get(k), "now": now.get(k)}
        for k in sorted(set(ran) | set(now))
        if ran.get(k) != now.get(k)
    ]
    refused = [c for c in changed if c["key"] not in RESUMABLE_KEYS]
    if refused:
        listed = "; ".join(f"{c['key']} {c['was']!r} -> {c['now']!r}" for c in refused)
        raise ValueError(
            f"--resume keeps the recipe a run was trained with, and these keys differ from it: "
            f"{listed}. Resume without them (`wsol train --resume --out {out}`), or start a new "
            f"run in another --out; a resumed run may change only {', '.join(RESUMABLE_KEYS)}"
        )
    epochs = [c for c in changed if c["key"] == "epochs"]
    if epochs and epochs[0]["now"] < done:
        raise ValueError(f"--resume with epochs={epochs[0]['now']}: {done} epochs are already done")
    return changed


def record_changes(out: Path, epoch: int, changes: list[dict]) -> None:
    """Append a resume's config changes to ``RUN/config_history.yaml``."""
    import datetime

    path = Path(out) / "config_history.yaml"
    history = yaml.safe_load(path.read_text()) if path.is_file() else None
    history = history or []
    history.append(
        {
            "resumed_after_epoch": epoch,
            "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "changes": changes,
        }
    )
    atomic_write_text(path, yaml.safe_dump(history, sort_keys=False))


def split_record(cfg: TrainConfig, train_split, val_split, method: Method | None = None) -> dict:
    """What a run trained on and chose on: saved as ``RUN/splits.yaml`` and in checkpoints."""
    trained_on = method.train_split if method is not None else "train"
    return {
        "train_split": trained_on,
        "train_images": len(train_split),
        "val": (
            val_source(cfg.data)
            if val_split is not None
            else f"none (it trains on the {trained_on} split)"
            if trained_on == "val"
            else "none"
        ),
        "val_images": len(val_split) if val_split is not None else 0,
        "val_is_test": val_split is not None and val_is_test(cfg.data),
    }


class _CallableModule(types.ModuleType):
    """``wsol.train(cfg, out)`` calls :func:`train`: the public API names the function after
    this module, and a module attribute of the package cannot be both."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
