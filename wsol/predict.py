"""Boxes and overlays for any folder of images, with no metadata: ``wsol evaluate RUN --images
FOLDER``. Each image is classified by the trained model, the CAM of its top-1 class is read as
the model's method reads it, and the boxes at one threshold (given, or the one that is best on the
run's val split) are written in the original image's pixels:

    OUT/boxes.csv          image_id, class (top-1), class_name, which, score_threshold, box,
                           x0, y0, x1, y1 (inclusive), score, image_width, image_height
    OUT/boxes_coco.json    the same boxes in COCO's detection-result layout
    OUT/overlays/*.png     the image, the CAM and its boxes (with --overlays)
    OUT/predictions.csv    image_id, top-1 class, its name and softmax probability
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: the image files a folder is searched for (recursively, case-insensitive suffix)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Every image file below ``folder``, in sorted order; refuses a folder without any."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder} is not a folder")
    found = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not found:
        raise ValueError(f"--images {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    return found


def predict_folder(
    model_path: str | Path,
    images: str | Path,
    out_dir: str | Path,
    *,
    threshold: float | None = None,
    checkpoint: str = "last",
    cam_method: str = "cam",
    batch_size: int = 32,
    workers: int = 2,
    device: str = "auto",
    overlays: bool = True,
    progress: bool = True,
    echo: bool = True,
) -> dict:
    """Boxes (and overlays) of every image in ``images`` from a trained run; returns
    ``{"threshold": t, "images": n, "files": [...]}``. ``threshold`` None: the CAM threshold
    that is best on the run's val split (evaluated first), as ``--val-threshold`` chooses it."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .cam import eval_mode, extract
    from .config import anchor_data_paths, config_from_dict
    from .data.dataset import RecordDataset, batches_of, eval_transform
    from .data.records import DatasetSplit, ImageRecord
    from .data.splits import NoValSplit, load_split
    from .evaluate import CamStore, box_rows, evaluate_model
    from .gallery import overlay
    from .localize import prepare_scoremaps
    from .metrics import Protocol
    from .results import write_boxes
    from .runtime import (
        load_checkpoint_model,
        method_of,
        publish_folder,
        setup_distributed,
        stage_folder,
        write_csv,
    )

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"--threshold must be in [0, 1], not {threshold}")
    folder = Path(images)
    files = list_images(folder)
    d = setup_distributed(device)
    model, cfg_dict, ckpt = load_checkpoint_model(Path(model_path), d.device, checkpoint)
    cfg = anchor_data_paths(config_from_dict(cfg_dict), ckpt.get("workdir"))
    reader = method_of(cfg_dict).cams
    names = list(ckpt.get("class_names") or [])
    protocol = Protocol()
    if threshold is None:
        try:
            val = load_split(cfg.data, "val", cfg.seed)
        except (NoValSplit, FileNotFoundError, ValueError) as err:
            raise ValueError(
                f"give --threshold T: the run's val split, on which the threshold would be "
                f"chosen, cannot be read ({err})"
            ) from None
        result = evaluate_model(
            model, val, protocol, device=d.device, crop_size=cfg.data.crop_size,
            batch_size=batch_size, workers=workers, cam_method=cam_method, per_image=False,
            progress=progress, cam_reader=reader,
        )  # fmt: skip
        threshold = float(result["loc"]["best_threshold"])
        if echo:
            print(f"threshold {threshold:g}: the best on the run's val split ({len(val)} images)")
    records = [
        ImageRecord(p.relative_to(folder).as_posix(), p, 0, None) for p in files
    ]  # fmt: skip
    split = DatasetSplit("images", "images", records, names, folder)
    loader = DataLoader(
        RecordDataset(split, eval_transform(cfg.data.crop_size)),
        batch_size=batch_size,
        num_workers=workers,
    )
    store, classes, predictions = CamStore(), {}, []
    bar = tqdm(total=len(records), desc="images", unit="img", disable=not progress)
    for batch, _, indices in batches_of(loader):
        batch = batch.to(d.device)
        with torch.no_grad(), eval_mode(model):
            logits = model(batch)
        probs = logits.float().softmax(dim=1)
        top = probs.argmax(dim=1)
        _, cams = extract(model, batch, top, cam_method, reader, progress)
        ids = [records[i].image_id for i in indices.tolist()]
        store.add(ids, cams.float().cpu().numpy())
        for image_id, c, p in zip(ids, top.tolist(), probs.max(dim=1).values.tolist()):
            classes[image_id] = c
            name = names[c] if c < len(names) else ""
            predictions.append(
                {"image_id": image_id, "class": c, "class_name": name, "probability": p}
            )
        bar.update(len(ids))
    bar.close()
    out = Path(out_dir)
    stage = stage_folder(out)
    try:
        by_id = split.by_id()
        rows = box_rows(store, by_id, protocol, {"chosen": threshold}, classes)
        written = write_boxes(stage, rows, names)
        write_csv(stage / "predictions.csv", predictions)
        if overlays:
            from .gallery import _safe

            (stage / "overlays").mkdir()
            for ids, raw in store:
                maps = prepare_scoremaps(raw, ids, protocol.eval_size, invalid="zero")
                for image_id, scoremap in zip(ids, maps):
                    mine = [r for r in rows if r["image_id"] == image_id]
                    w, h = mine[0]["image_width"], mine[0]["image_height"]
                    sx, sy = scoremap.shape[1] / w, scoremap.shape[0] / h
                    boxes = [(r["x0"] * sx, r["y0"] * sy, r["x1"] * sx, r["y1"] * sy) for r in mine]
                    with Image.open(by_id[image_id].path) as im:
                        picture = overlay(im, scoremap, [], boxes)
                    Image.fromarray(picture).save(stage / "overlays" / f"{_safe(image_id)}.png")
        (stage / "context.json").write_text(
            json.dumps(
                {
                    "run": str(Path(model_path).resolve()),
                    "checkpoint": str(ckpt["path"]),
                    "images": str(folder.resolve()),
                    "threshold": threshold,
                    "cam_method": cam_method,
                },
                indent=1,
            )  # fmt: skip
        )
        publish_folder(stage, out)
    except BaseException:
        import shutil

        shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        store.close()
    files_out = [out / p.name for p in written] + [out / "predictions.csv"]
    if overlays:
        files_out.append(out / "overlays")
    if echo:
        print(f"{len(records)} images, {len(rows)} boxes at CAM threshold {threshold:g}")
        print("wrote " + ", ".join(str(f) for f in files_out))
    return {"threshold": threshold, "images": len(records), "files": files_out,
            "boxes": len(rows), "scores": np.array([r["score"] for r in rows])}  # fmt: skip
