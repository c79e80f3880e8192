"""CAM overlay galleries: a PNG grid (matplotlib) and a static HTML page that opens offline.

A gallery is drawn from evaluation folders written by ``wsol evaluate`` (``metrics.json`` and
``per_image.csv``). For each chosen image and each run it shows the image with the CAM overlaid,
the ground-truth boxes (green), the predicted box at the run's threshold (red; the fixed threshold
when the evaluation had one, else the best), the IoU and whether the class was right. Several
runs (base vs CutMix, say) appear side by side on the same images.

CAMs come from ``OUT/cams`` when the evaluation saved them, from the CAM folder of a ``--cams``
evaluation, or else are recomputed with the run's checkpoint for the chosen images only.
"""

from __future__ import annotations

import csv
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .baselines import BASELINES
from .data.dataset import to_rgb
from .localize import EVAL_SIZE, boxes_from_scoremap, prepare_scoremaps, resize_boxes
from .rundir import cam_path, resolve_eval_dir

SELECTIONS = ("best", "worst", "random", "class", "diff")


@dataclass
class EvalRun:
    """One evaluation folder: its metrics, per-image rows and where CAMs and images come from."""

    folder: Path
    metrics: dict
    rows: dict[str, dict]
    order: list[str]

    @property
    def name(self) -> str:
        ctx = self.metrics.get("context", {})
        label = ctx.get("run") or self.folder.name
        method = ctx.get("method")
        return f"{label} ({method})" if method and method not in label else label

    @property
    def threshold(self) -> float:
        loc = self.metrics["loc"]
        return loc.get("fixed_threshold", loc["best_threshold"])

    @property
    def iou_key(self) -> str:
        return "iou_fixed" if "fixed_threshold" in self.metrics["loc"] else "iou"


def load_eval(path: str | Path) -> EvalRun:
    folder = resolve_eval_dir(path)
    metrics = json.loads((folder / "metrics.json").read_text())
    per_image = folder / "per_image.csv"
    if not per_image.is_file():
        raise FileNotFoundError(f"{per_image} does not exist; it is written by box evaluations")
    with open(per_image, newline="") as f:
        rows = list(csv.DictReader(f))
    return EvalRun(folder, metrics, {r["image_id"]: r for r in rows}, [r["image_id"] for r in rows])


def select_images(
    runs: list[EvalRun], how: str = "random", count: int = 16, seed: int = 0
) -> list[str]:
    """Image ids to show: ``best`` / ``worst`` IoU of the first run, ``random``, ``class``
    (stratified over labels) or ``diff`` (the largest IoU gains of the last run over the first,
    then its largest losses: half the images each)."""
    if how not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}")
    first = runs[0]
    ids = [i for i in first.order if all(i in r.rows for r in runs)]
    if not ids:
        raise ValueError("the runs share no image")
    key = first.iou_key
    iou = {i: float(first.rows[i][key]) for i in ids}
    if how == "best":
        return sorted(ids, key=lambda i: -iou[i])[:count]
    if how == "worst":
        return sorted(ids, key=lambda i: iou[i])[:count]
    if how == "diff":  # half the largest gains of the last run over the first, half its losses
        last = runs[-1]
        gain = {i: float(last.rows[i][last.iou_key]) - iou[i] for i in ids}
        gains = sorted(ids, key=lambda i: -gain[i])[: (count + 1) // 2]
        losses = [i for i in sorted(ids, key=lambda i: gain[i]) if i not in gains]
        return gains + losses[: count - len(gains)]
    rng = np.random.default_rng(seed)
    if how == "random":
        return [
            ids[k] for k in sorted(rng.choice(len(ids), size=min(count, len(ids)), replace=False))
        ]
    by_class: dict[str, list[str]] = {}
    for i in ids:
        by_class.setdefault(first.rows[i].get("label", ""), []).append(i)
    picked: list[str] = []
    while len(picked) < min(count, len(ids)):
        for members in by_class.values():
            left = [m for m in members if m not in picked]
            if left and len(picked) < count:
                picked.append(left[int(rng.integers(len(left)))])
    return picked


def _records(run: EvalRun, images_root: Path | None):
    """{image_id: ImageRecord} of the run's evaluation split."""
    ctx = run.metrics.get("context", {})
    if "metadata" in ctx:
        from .data.wsolmeta import read_wsol_metadata

        if images_root is None:
            raise ValueError(f"{run.folder} evaluated a CAM folder: give --images (the image root)")
        return read_wsol_metadata(ctx["metadata"], images_root).by_id()
    from .config import DataConfig
    from .data.splits import load_split

    data = DataConfig(**ctx["data"])
    if images_root is not None:
        data.root = str(images_root)
    return load_split(data, ctx.get("split", "test")).by_id()


def _scoremaps(run: EvalRun, ids: list[str], records, device: str = "cpu") -> dict[str, np.ndarray]:
    ctx = run.metrics.get("context", {})
    protocol = run.metrics["protocol"]
    # CAMs saved by this very evaluation (an older cams/ in the folder may be another model's),
    # or the CAM folder an `evaluate --cams` read
    folder = (
        run.folder / "cams"
        if ctx.get("saved_cams") and (run.folder / "cams").is_dir()
        else Path(ctx["cams"])
        if "cams" in ctx
        else None
    )
    baseline = str(ctx.get("method", "")).removesuffix("-baseline")
    if folder is None and baseline in BASELINES:
        raw = [BASELINES[baseline](tuple(protocol["eval_size"]))] * len(ids)
    elif folder is not None:
        raw = [np.load(cam_path(folder, i)) for i in ids]
    else:
        import torch

        from .cam import extract
        from .data.dataset import eval_transform
        from .runtime import load_checkpoint_model, method_of

        model, cfg, _ = load_checkpoint_model(ctx["checkpoint"], device)
        transform = eval_transform(cfg["data"]["crop_size"])
        images = torch.stack([transform(to_rgb(Image.open(records[i].path))) for i in ids]).to(
            device
        )
        labels = torch.tensor([records[i].label for i in ids], device=device)
        reader = method_of(cfg).cams
        _, cams = extract(model, images, labels, ctx.get("cam_method", "cam"), reader)
        raw = list(cams.float().cpu().numpy())
    maps = prepare_scoremaps(
        raw,
        ids,
        tuple(protocol["eval_size"]),
        protocol.get("normalize", True),
        protocol.get("interpolation", "cubic"),
        protocol.get("invalid_cams", "error"),
    )
    return dict(zip(ids, maps))


def overlay(
    image: Image.Image, scoremap: np.ndarray, gt_boxes, pred_boxes, alpha: float = 0.5
) -> np.ndarray:
    """(H, W, 3) uint8: the image at the score map's size, the CAM in a jet colour map, GT boxes
    in green and predicted boxes in red (boxes in score-map pixels, inclusive ends)."""
    import cv2
    from matplotlib import colormaps

    h, w = scoremap.shape
    base = np.asarray(to_rgb(image).resize((w, h), Image.BILINEAR), dtype=np.float32)
    heat = colormaps["jet"](scoremap)[..., :3] * 255
    out = np.ascontiguousarray(((1 - alpha) * base + alpha * heat).astype(np.uint8))
    for boxes, colour in ((gt_boxes, (0, 255, 0)), (pred_boxes, (255, 0, 0))):
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=int).reshape(-1, 4):
            cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
    return out


def _safe(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)


def build_gallery(
    eval_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    select: str = "random",
    count: int = 16,
    seed: int = 0,
    images_root: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Path]:
    """Render the gallery; returns the paths of ``gallery.png`` and ``index.html``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load_eval(p) for p in eval_dirs]
    ids = select_images(runs, select, count, seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images_root = Path(images_root) if images_root is not None else None
    records = _records(runs[0], images_root)
    size = tuple(runs[0].metrics["protocol"]["eval_size"])
    cells: dict[tuple[int, str], dict] = {}
    for k, run in enumerate(runs):
        maps = _scoremaps(run, ids, records, device)
        multi = run.metrics["loc"].get("contour_mode") == "multi"
        for n, image_id in enumerate(ids):
            r = records[image_id]
            gt = resize_boxes(np.asarray(r.boxes).reshape(-1, 4), r.size, size)
            pred = boxes_from_scoremap(maps[image_id], [run.threshold], multi)[0]
            picture = overlay(Image.open(r.path), maps[image_id], gt, pred)
            file = f"images/{k}_{n}_{_safe(image_id)}.png"  # n: ids that read alike differ
            Image.fromarray(picture).save(out / file)
            row = run.rows[image_id]
            cells[k, image_id] = {
                "file": file,
                "picture": picture,
                "iou": float(row[run.iou_key]),
                "correct": row.get("top1_correct"),
                "prediction": row.get("prediction"),
                "label": row.get("label", r.label),
            }

    # PNG grid: one row per image, one column per run
    fig, axes = plt.subplots(
        len(ids), len(runs), figsize=(2.6 * len(runs), 2.6 * len(ids)), squeeze=False
    )
    for row_index, image_id in enumerate(ids):
        for k, run in enumerate(runs):
            ax = axes[row_index][k]
            cell = cells[k, image_id]
            ax.imshow(cell["picture"])
            ax.set_xticks([])
            ax.set_yticks([])
            mark = {"1": "class ok", "0": "class wrong"}.get(cell["correct"], "")
            ax.set_title(f"IoU {cell['iou']:.2f} {mark}", fontsize=8)
            if row_index == 0:
                ax.set_title(f"{run.name}\nIoU {cell['iou']:.2f} {mark}", fontsize=8)
    fig.suptitle(f"green: ground truth, red: predicted box ({select} {len(ids)})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "gallery.png", dpi=80)
    plt.close(fig)

    (out / "index.html").write_text(_html(runs, ids, cells, select), encoding="utf-8")
    return {"png": out / "gallery.png", "html": out / "index.html"}


def _html(runs: list[EvalRun], ids: list[str], cells: dict, select: str) -> str:
    head = "".join(
        f"<th data-k='{3 * k + 2}' data-num='1'>IoU {html.escape(r.name)}</th><th>{html.escape(r.name)}</th>"
        f"<th data-k='{3 * k + 4}'>class {html.escape(r.name)}</th>"
        for k, r in enumerate(runs)
    )
    body = []
    for image_id in ids:
        label = cells[0, image_id]["label"]
        tds = [f"<td>{html.escape(image_id)}</td><td>{html.escape(str(label))}</td>"]
        for k in range(len(runs)):
            c = cells[k, image_id]
            ok = {"1": "right", "0": "wrong"}.get(c["correct"], "")
            pred = (
                ""
                if c["prediction"] in (None, "")
                else f" (pred {html.escape(str(c['prediction']))})"
            )
            tds.append(
                f"<td data-v='{c['iou']:.4f}'>{c['iou']:.3f}</td>"
                f"<td><img src='{html.escape(c['file'])}' width='180' height='180' alt='{html.escape(image_id)}'></td>"
                f"<td>{ok}{pred}</td>"
            )
        body.append(f"<tr>{''.join(tds)}</tr>")
    thresholds = ", ".join(f"{html.escape(r.name)}: t = {r.threshold:.3f}" for r in runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wsol gallery</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px; text-align: center; }} th[data-k] {{ cursor: pointer; background: #eef; }}
</style></head><body>
<h1>CAM gallery ({html.escape(select)}, {len(ids)} images)</h1>
<p>Green: ground-truth boxes. Red: predicted box at the threshold ({thresholds}).
Click a blue header to sort; type to filter by image id or class.</p>
<p><input id="filter" placeholder="filter" oninput="filterRows()">
<select id="which" onchange="filterRows()"><option value="">all</option><option value="right">class right (first run)</option>
<option value="wrong">class wrong (first run)</option></select></p>
<table id="t"><thead><tr><th data-k="0">image</th><th data-k="1">class</th>{head}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
<script>
function filterRows() {{
  const q = document.getElementById('filter').value.toLowerCase();
  const w = document.getElementById('which').value;
  for (const tr of document.querySelectorAll('#t tbody tr')) {{
    const text = (tr.cells[0].textContent + ' ' + tr.cells[1].textContent).toLowerCase();
    const cls = tr.cells[4].textContent;
    tr.style.display = text.includes(q) && (!w || cls.startsWith(w)) ? '' : 'none';
  }}
}}
for (const th of document.querySelectorAll('th[data-k]')) {{
  th.addEventListener('click', () => {{
    const k = +th.dataset.k, num = th.dataset.num === '1', body = document.querySelector('#t tbody');
    const asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    const rows = [...body.rows].sort((a, b) => {{
      const x = num ? +a.cells[k].dataset.v : a.cells[k].textContent, y = num ? +b.cells[k].dataset.v : b.cells[k].textContent;
      return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1);
    }});
    rows.forEach(r => body.appendChild(r));
  }});
}}
</script></body></html>
"""


__all__ = [
    "build_gallery",
    "select_images",
    "overlay",
    "load_eval",
    "EVAL_SIZE",
]
