"""Results on disk: ``metrics.json`` (everything) and a tidy ``metrics.csv`` (one row per
metric), and the short table printed after an evaluation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from .runtime import atomic_write_text, write_csv

CONTEXT_COLUMNS = ("run", "dataset", "split", "backbone", "method", "seed", "cam_method")


PROTOCOL_COLUMNS = ("protocol", "cam_curve_interval", "iou_thresholds", "contour_mode", "eval_size")


def flatten_metrics(result: Mapping) -> dict[str, float]:
    """The scalar metrics of an evaluation result, by name (percent, thresholds in [0, 1])."""
    rows: dict[str, float] = {}
    for key in ("MaxBoxAcc", "MaxBoxAccV2", "PxAP"):
        if key in result:
            rows[key] = result[key]
    for mode, per_iou in result.get("box", {}).items():
        for d, values in per_iou.items():
            rows[f"MaxBoxAcc@{d}/{mode}"] = values["max_box_acc"]
            rows[f"best_threshold@{d}/{mode}"] = values["best_threshold"]
    for key, value in result.get("loc", {}).items():
        if isinstance(value, (int, float)):
            rows[key] = value
    for key, value in result.get("classification", {}).items():
        rows[key] = value
    return rows


def metrics_table(result: Mapping, context: Mapping | None = None) -> list[dict]:
    """Tidy rows: one per metric, with the run context and the protocol settings."""
    context = dict(context or {})
    protocol = result.get("protocol", {})
    base = {c: context.get(c, "") for c in CONTEXT_COLUMNS}
    base.update(
        protocol=protocol.get("name", "wsolevaluation"),
        cam_curve_interval=protocol.get("cam_curve_interval", ""),
        iou_thresholds=" ".join(str(d) for d in protocol.get("iou_thresholds", [])),
        contour_mode="multi" if protocol.get("multi_contour") else "single",
        eval_size="x".join(str(v) for v in protocol.get("eval_size", [])),
    )
    return [
        {**base, "metric": name, "value": value} for name, value in flatten_metrics(result).items()
    ]


def write_metrics(
    out_dir: str | Path, result: Mapping, context: Mapping | None = None
) -> tuple[Path, Path]:
    """Write ``metrics.json`` (result + context) and ``metrics.csv`` (tidy) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"context": dict(context or {}), **result}
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=1) + "\n")
    columns = [*CONTEXT_COLUMNS, "metric", "value", *PROTOCOL_COLUMNS]
    write_csv(out / "metrics.csv", metrics_table(result, context), columns)
    return out / "metrics.json", out / "metrics.csv"


def format_table(result: Mapping) -> str:
    """A short human-readable table of the headline metrics."""
    rows = flatten_metrics(result)
    order = [
        "top1_acc",
        "top5_acc",
        "MaxBoxAcc",
        "MaxBoxAccV2",
        *[k for k in rows if k.startswith("MaxBoxAcc@")],
        *[k for k in rows if k.endswith("@best") or k.endswith("@fixed")],
        "best_threshold",
        "fixed_threshold",
        "PxAP",
    ]
    seen, lines = set(), []
    width = max((len(k) for k in rows), default=10)
    for key in order:
        if key in rows and key not in seen:
            seen.add(key)
            value = rows[key]
            text = f"{value:.4f}" if "threshold" in key else f"{value:.2f}"
            lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


#: boxes.csv's columns (docs/metrics.md, "Boxes out")
BOX_COLUMNS = (
    "image_id", "class", "class_name", "which", "score_threshold", "box", "x0", "y0", "x1", "y1",
    "score", "image_width", "image_height",
)  # fmt: skip


def write_boxes(out_dir: str | Path, rows: list[dict], class_names: list[str]) -> list[Path]:
    """``boxes.csv`` (every box of every image: at the chosen threshold, ``which`` ``chosen``,
    and at the best threshold of each IoU, ``best@<IoU>``) and ``boxes_coco.json`` (the chosen
    boxes, in COCO's detection-result layout with its images and categories). Coordinates are
    the original image's pixels, x1 / y1 inclusive (the reference's convention); COCO's
    ``bbox`` is [x, y, width, height] with width = x1 - x0 + 1."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for r in rows:
        c = int(r["class"])
        r["class_name"] = class_names[c] if 0 <= c < len(class_names) else ""
    write_csv(out / "boxes.csv", rows, list(BOX_COLUMNS))
    images, seen = [], {}
    for r in rows:
        if r["image_id"] not in seen:
            seen[r["image_id"]] = len(seen) + 1
            images.append(
                {
                    "id": seen[r["image_id"]],
                    "file_name": r["image_id"],
                    "width": r["image_width"],
                    "height": r["image_height"],
                }  # fmt: skip
            )
    labels = sorted({int(r["class"]) for r in rows})
    categories = [
        {"id": c, "name": class_names[c] if c < len(class_names) else str(c)} for c in labels
    ]
    annotations = []
    for r in rows:
        if r["which"] != "chosen":
            continue
        w, h = r["x1"] - r["x0"] + 1, r["y1"] - r["y0"] + 1
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": seen[r["image_id"]],
                "category_id": int(r["class"]),
                "bbox": [r["x0"], r["y0"], w, h],
                "area": w * h,
                "score": r["score"],
                "iscrowd": 0,
                "score_threshold": r["score_threshold"],
            }  # fmt: skip
        )
    coco = {
        "info": {"description": "wsol: boxes from CAMs at the chosen threshold"},
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }
    atomic_write_text(out / "boxes_coco.json", json.dumps(coco) + "\n")
    return [out / "boxes.csv", out / "boxes_coco.json"]
