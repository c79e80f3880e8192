"""CAM overlay galleries: a PNG grid (matplotlib) and a static HTML page that opens offline.

A gallery is drawn from evaluation folders written by ``wsol evaluate`` (``metrics.json`` and
``per_image.csv``). For each chosen image and each run it shows the image with the CAM overlaid,
the ground-truth boxes (white), the predicted box at the run's threshold (vermillion; the fixed threshold
when the evaluation had one, else the best), the IoU and whether the class was right. Several
runs (base vs CutMix, say) appear side by side on the same images.

CAMs come from ``OUT/cams`` when the evaluation saved them, from the CAM folder of a ``--cams``
evaluation, or else are recomputed with the run's checkpoint for the chosen images only.
"""

from __future__ import annotations

import csv
import html
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .baselines import BASELINES
from .data.dataset import to_rgb
from .localize import EVAL_SIZE, boxes_from_scoremap, prepare_scoremaps, resize_boxes
from .metrics import PRECISIONS
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
    from .report import read_metrics

    folder = resolve_eval_dir(path)
    metrics = read_metrics(folder / "metrics.json")
    if "loc" not in metrics or "best_threshold" not in metrics.get("loc", {}):
        raise ValueError(
            f"{folder} holds no box evaluation (a masks-only one, or one written by another "
            "version of wsol): a gallery draws boxes at the evaluation's threshold"
        )
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


def _split(run: EvalRun, images_root: Path | None):
    """The run's evaluation split (records and class names)."""
    ctx = run.metrics.get("context", {})
    if "metadata" in ctx:
        from .data.wsolmeta import read_wsol_metadata

        if images_root is None:
            raise ValueError(f"{run.folder} evaluated a CAM folder: give --images (the image root)")
        return read_wsol_metadata(ctx["metadata"], images_root)
    import dataclasses

    from .config import DataConfig
    from .data.splits import load_split

    known = {f.name for f in dataclasses.fields(DataConfig)}
    saved = dict(ctx.get("data") or {})
    unknown = sorted(set(saved) - known)
    if unknown:  # an evaluation folder written by another version of wsol
        import warnings

        warnings.warn(
            f"{run.folder}/metrics.json: data keys this version does not know, ignored: "
            f"{', '.join(unknown)}",
            stacklevel=2,
        )
    data = DataConfig(**{k: v for k, v in saved.items() if k in known})
    if images_root is not None:
        data.root = str(images_root)
    return load_split(data, ctx.get("split", "test"))


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
        PRECISIONS[protocol.get("precision", "float64")],
        protocol.get("map_convention", "wsolevaluation"),
    )
    return dict(zip(ids, maps))


#: the gallery's colours: a perceptually uniform colour map for the CAM, and box colours that
#: colour-blind readers tell apart from it and from each other (Okabe & Ito's palette)
CAM_COLORMAP = "viridis"
GT_COLOUR = (255, 255, 255)  # white: the ground-truth boxes
PRED_COLOUR = (213, 94, 0)  # vermillion: the predicted boxes
OUTLINE_COLOUR = (0, 0, 0)  # black: the CAM's outline at the box threshold
LEGEND = (
    "white: ground truth; vermillion: predicted box; black line: the CAM at the box threshold; "
    "colours: the normalised CAM (viridis)"
)
#: a frame around every picture, so that a box along the image's edge stays visible
FRAME = 3


def overlay(
    image: Image.Image, scoremap: np.ndarray, gt_boxes, pred_boxes, alpha: float = 0.5
) -> np.ndarray:
    """(H + 2 FRAME, W + 2 FRAME, 3) uint8: the image at the score map's size, the CAM in
    ``CAM_COLORMAP``, GT boxes in ``GT_COLOUR`` and predicted boxes in ``PRED_COLOUR`` (boxes in
    score-map pixels, inclusive ends), inside a grey frame of ``FRAME`` pixels that keeps boxes
    on the image's edge visible."""
    import cv2
    from matplotlib import colormaps

    h, w = scoremap.shape
    base = np.asarray(to_rgb(image).resize((w, h), Image.BILINEAR), dtype=np.float32)
    heat = colormaps[CAM_COLORMAP](scoremap)[..., :3] * 255
    inner = ((1 - alpha) * base + alpha * heat).astype(np.uint8)
    out = np.full((h + 2 * FRAME, w + 2 * FRAME, 3), 128, dtype=np.uint8)
    out[FRAME : FRAME + h, FRAME : FRAME + w] = inner
    out = np.ascontiguousarray(out)
    for boxes, colour in ((gt_boxes, GT_COLOUR), (pred_boxes, PRED_COLOUR)):
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=float).reshape(-1, 4):
            start = (int(round(x0)) + FRAME, int(round(y0)) + FRAME)
            cv2.rectangle(out, start, (int(round(x1)) + FRAME, int(round(y1)) + FRAME), colour, 2)
    return out


def _safe(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)


SELECTION_WORDS = {
    "best": "the {n} images with the highest IoU of {first}",
    "worst": "the {n} images with the lowest IoU of {first}",
    "random": "{n} images drawn at random (seed {seed})",
    "class": "{n} images drawn class by class (seed {seed})",
    "diff": "the images where {last} gains most IoU over {first}, then those where it loses "
    "most (half each, {n} in all)",
}


def describe_selection(select: str, runs: list[EvalRun], n: int, seed: int) -> str:
    """How the images were chosen, in words (printed on the PNG and the HTML page)."""
    return SELECTION_WORDS[select].format(n=n, seed=seed, first=runs[0].name, last=runs[-1].name)


def class_name(names: list[str], label) -> str:
    """A class's name (its label when the data have no names)."""
    try:
        k = int(label)
    except (TypeError, ValueError):
        return str(label)
    return names[k] if 0 <= k < len(names) else str(k)


def threshold_contour(scoremap: np.ndarray, threshold: float) -> list[np.ndarray]:
    """The outlines of ``scoremap >= threshold`` (OpenCV contours, as the boxes come from)."""
    import cv2

    mask = (scoremap >= threshold).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return list(contours)


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
    import cv2

    runs = [load_eval(p) for p in eval_dirs]
    for run in runs:
        protocol = run.metrics.get("protocol", {})
        if protocol.get("center_crop"):
            raise ValueError(
                f"{run.folder}: its protocol ({protocol.get('name')}) centre-crops the images, "
                "and a gallery draws CAMs on the whole image: make the gallery from an "
                "evaluation without a crop (e.g. --protocol wsolevaluation)"
            )
    ids = select_images(runs, select, count, seed)
    how = describe_selection(select, runs, len(ids), seed)
    from .runtime import check_output_folder, publish_folder, stage_folder

    final = Path(out_dir)
    check_output_folder(final, "index.html", "a gallery")
    out = stage_folder(final)  # written whole, moved into place at the end
    (out / "images").mkdir(parents=True, exist_ok=True)
    images_root = Path(images_root) if images_root is not None else None
    split = _split(runs[0], images_root)
    records, names = split.by_id(), list(split.class_names)
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
            contours = threshold_contour(maps[image_id], run.threshold)
            cv2.drawContours(picture, contours, -1, OUTLINE_COLOUR, 1, offset=(FRAME, FRAME))
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
    _png(out / "gallery.png", runs, ids, cells, names, how)
    (out / "index.html").write_text(_html(runs, ids, cells, names, how), encoding="utf-8")
    publish_folder(out, final)
    return {
        "png": final / "gallery.png",
        "pdf": final / "gallery.pdf",
        "svg": final / "gallery.svg",
        "html": final / "index.html",
    }


def _png(path: Path, runs, ids, cells, names, how: str) -> None:
    """A readable grid: a row per image (its id and class on the left), a column per run (its
    name on top); several images per row when there is one run; a colour bar for the CAM and a
    legend of the colours. Also written as PDF and SVG beside the PNG."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm
    from matplotlib.colors import Normalize

    single = len(runs) == 1
    cols = min(4, len(ids)) if single else len(runs)
    rows = -(-len(ids) // cols) if single else len(ids)
    side = 3.0
    width = side * cols + 1.6
    heading = (
        textwrap.fill(how, width=int(width * 11))
        + "\n"
        + textwrap.fill(LEGEND, width=int(width * 11))
    )
    head_lines = heading.count("\n") + 1
    head_in = 0.22 * head_lines + 0.5 + (0.35 if not single else 0)  # inches above the grid
    fig, axes = plt.subplots(rows, cols, figsize=(width, side * rows + head_in), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for n, image_id in enumerate(ids):
        for k, run in enumerate(runs):
            ax = axes[n // cols][n % cols] if single else axes[n][k]
            cell = cells[k, image_id]
            ax.imshow(cell["picture"])
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            mark = {"1": "class right", "0": "class wrong"}.get(cell["correct"], "")
            ax.set_title(f"IoU {cell['iou']:.2f}  {mark}".strip(), fontsize=9, pad=3)
            if not single and n == 0:  # the run's name once, above its column
                ax.annotate(
                    textwrap.shorten(run.name, width=34), (0.5, 1.0), xytext=(0, 16),
                    xycoords="axes fraction", textcoords="offset points", ha="center",
                    va="bottom", fontsize=10, fontweight="bold",
                )  # fmt: skip
            if single or k == 0:
                name = textwrap.shorten(class_name(names, cell["label"]), width=26)
                ax.set_ylabel(f"{_short(image_id)}\n{name}", fontsize=9)
    top = 1 - head_in / (side * rows + head_in)
    fig.tight_layout(rect=(0, 0, 1 - 1.1 / width, top), h_pad=1.2)
    bar = fig.add_axes((1 - 0.95 / width, 0.15, 0.18 / width, 0.6 * top))
    fig.colorbar(cm.ScalarMappable(Normalize(0, 1), CAM_COLORMAP), cax=bar, label="normalised CAM")
    # the heading just above the grid as drawn (square images leave slack in their cells),
    # the empty margin cut off when saving
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    grid_top = max(ax.get_tightbbox(renderer).y1 for ax in axes.flat if ax.axison)
    fig.text(
        0.5, fig.transFigure.inverted().transform((0, grid_top))[1] + 0.06 / (side * rows),
        heading, ha="center", va="bottom", fontsize=9,
    )  # fmt: skip
    for suffix in (".png", ".pdf", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=100, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def _short(image_id: str, keep: int = 28) -> str:
    return image_id if len(image_id) <= keep else "..." + image_id[-keep:]


def per_class_iou(run: EvalRun, names: list[str]) -> dict[str, float]:
    """Mean IoU per class over every image of the evaluation (not only the shown ones)."""
    sums: dict[str, list[float]] = {}
    for row in run.rows.values():
        sums.setdefault(str(row.get("label", "")), []).append(float(row[run.iou_key]))
    order = sorted(sums, key=lambda label: (len(label), label))  # numeric order for labels
    return {class_name(names, label): float(np.mean(sums[label])) for label in order}


def _html(runs: list[EvalRun], ids: list[str], cells: dict, names: list[str], how: str) -> str:
    esc = html.escape
    head = "".join(
        f"<th data-k='{2 + 3 * k}' data-num='1'>IoU<br>{esc(r.name)}</th><th>{esc(r.name)}</th>"
        f"<th data-k='{4 + 3 * k}'>class right?<br>{esc(r.name)}</th>"
        for k, r in enumerate(runs)
    )
    body = []
    for image_id in ids:
        label = cells[0, image_id]["label"]
        tds = [
            f"<td>{esc(image_id)}</td>"
            f"<td data-v='{esc(str(label))}'>{esc(class_name(names, label))}</td>"
        ]
        for k in range(len(runs)):
            c = cells[k, image_id]
            ok = {"1": "right", "0": "wrong"}.get(c["correct"], "")
            pred = (
                ""
                if c["prediction"] in (None, "")
                else f" (predicted {esc(class_name(names, c['prediction']))})"
            )
            tds.append(
                f"<td data-v='{c['iou']:.4f}'>{c['iou']:.3f}</td>"
                f"<td><img src='{esc(c['file'])}' width='200' height='200' alt='{esc(image_id)}'></td>"
                f"<td data-ok='{ok}'>{ok}{pred}</td>"
            )
        body.append(f"<tr>{''.join(tds)}</tr>")
    thresholds = ", ".join(f"{esc(r.name)}: t = {r.threshold:.3f}" for r in runs)
    options = "".join(
        f"<option value='{k}:{v}'>class {v} ({esc(r.name)})</option>"
        for k, r in enumerate(runs)
        for v in ("right", "wrong")
    )
    tables = [per_class_iou(r, names) for r in runs]
    classes = list(tables[0])
    class_rows = "".join(
        f"<tr><td>{esc(c)}</td>"
        + "".join(f"<td>{t.get(c, float('nan')):.3f}</td>" for t in tables)
        + "</tr>"
        for c in classes
    )
    class_head = "".join(f"<th>{esc(r.name)}</th>" for r in runs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>wsol gallery</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }} table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px; text-align: center; }}
th[data-k] {{ cursor: pointer; background: #eef; }} th[data-k]::after {{ content: ' \u21c5'; color: #99a; }}
th[data-dir='asc']::after {{ content: ' \u25b2'; color: #000; }} th[data-dir='desc']::after {{ content: ' \u25bc'; color: #000; }}
</style></head><body>
<h1>CAM gallery: {len(ids)} images</h1>
<p>Chosen: {esc(how)}.</p>
<p>White: ground-truth boxes. Vermillion: predicted box at the threshold ({thresholds}). Black
line: the CAM's outline at that threshold. Colours: the normalised CAM (viridis, perceptually
uniform; the box colours are told apart by colour-blind readers too).</p>
<p>Click a blue header to sort (numbers sort as numbers); type to filter by image id or class.</p>
<p><input id="filter" placeholder="filter" oninput="filterRows()">
<select id="which" onchange="filterRows()"><option value="">all images</option>{options}</select></p>
<table id="t"><thead><tr><th data-k="0">image</th><th data-k="1" data-num="1">class</th>{head}</tr></thead>
<tbody>{"".join(body)}</tbody></table>
<h2>Mean IoU per class (every image of each evaluation)</h2>
<table id="classes"><thead><tr><th>class</th>{class_head}</tr></thead><tbody>{class_rows}</tbody></table>
<script>
function filterRows() {{
  const q = document.getElementById('filter').value.toLowerCase();
  const w = document.getElementById('which').value;
  for (const tr of document.querySelectorAll('#t tbody tr')) {{
    const text = (tr.cells[0].textContent + ' ' + tr.cells[1].textContent).toLowerCase();
    let keep = text.includes(q);
    if (w) {{
      const [k, v] = w.split(':');
      keep = keep && tr.cells[4 + 3 * (+k)].dataset.ok === v;
    }}
    tr.style.display = keep ? '' : 'none';
  }}
}}
for (const th of document.querySelectorAll('th[data-k]')) {{
  th.addEventListener('click', () => {{
    const k = +th.dataset.k, num = th.dataset.num === '1', body = document.querySelector('#t tbody');
    const asc = th.dataset.dir !== 'asc';
    for (const other of document.querySelectorAll('th[data-k]')) delete other.dataset.dir;
    th.dataset.dir = asc ? 'asc' : 'desc';
    const value = c => num ? +c.dataset.v : c.textContent;
    const rows = [...body.rows].sort((a, b) => {{
      const x = value(a.cells[k]), y = value(b.cells[k]);
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
