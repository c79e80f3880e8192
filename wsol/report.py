"""Comparing evaluations: ``wsol compare`` tables in the papers' layout, mean and std over seeds,
paired bootstrap intervals and curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .config import RUN_ONLY_KEYS, flatten
from .methods.base import method_title
from .metrics import ADDED_PROTOCOL_FIELDS, PROTOCOLS
from .results import metrics_table
from .rundir import resolve_eval_dir
from .runtime import check_output_folder, publish_folder, stage_folder

# ------------------------------------------------------------------------------- comparing
HEADLINE = (
    "top1_acc",
    "top1_loc@fixed",
    "top1_loc@best",
    "gt_known_loc@best",
    "MaxBoxAcc",
    "MaxBoxAccV2",
    "PxAP",
)
GROUP = ("dataset", "backbone", "method", "cam_method", "protocol")


class PoolingError(ValueError):
    """Evaluations that would be averaged into one row are not seeds of one setting."""


#: config keys that may differ between seeds of one setting
POOLABLE_KEYS = {"seed", *RUN_ONLY_KEYS}


def _training_config(context: dict) -> dict | None:
    """The training config of an evaluated checkpoint (its run folder's config.yaml)."""
    import yaml

    checkpoint = context.get("checkpoint")
    if not checkpoint:
        return None
    path = Path(checkpoint).parent / "config.yaml"
    if not path.is_file():
        return None
    from .config import ConfigError, config_from_dict, config_to_dict

    raw = yaml.safe_load(path.read_text()) or {}
    try:  # as this version writes it (earlier versions listed every method's keys)
        raw = config_to_dict(config_from_dict(raw))
    except (ConfigError, ValueError):
        pass
    cfg = flatten(raw)
    # how it was trained (processes, global batch, device, versions): runs that differ in it
    # are not seeds of one setting either; a run resumed another way lists each way, in order
    segments = context.get("runtime") or [{}]
    for key in ("world_size", "global_batch", "device", "torch", "wsol"):
        cfg[f"runtime.{key}"] = " -> ".join(str(s.get(key, "not recorded")) for s in segments)
    return cfg


def check_pooling(contexts: list[dict]) -> None:
    """Refuse rows that would pool evaluations of different settings, the same seed twice or
    one evaluation twice (see :func:`compare_runs`)."""
    groups: dict = {}
    for context in contexts:
        key = tuple(str(context.get(c, "") or "") for c in GROUP)
        groups.setdefault(key, []).append(context)
    problems = []
    for key, members in groups.items():
        row = " / ".join(k for k in key if k)
        for what, values in (
            (
                "protocol settings",
                [json.dumps(c.get("protocol_settings"), sort_keys=True) for c in members],
            ),
            ("ground truth (data set)", [str(c.get("gt_fingerprint")) for c in members]),
        ):
            if len(set(values)) > 1:
                first = members[0]
                other = next(c for c, v in zip(members, values) if v != values[0])
                detail = (
                    _protocol_difference(
                        first.get("protocol_settings"), other.get("protocol_settings")
                    )
                    if what == "protocol settings"
                    else "their image ids, labels, sizes or boxes differ"
                )
                problems.append(
                    f"{row}: {first['folder']} and {other['folder']} were evaluated with different "
                    f"{what} ({detail}): not seeds of one setting"
                )
        seen: dict = {}
        for c in members:
            source = c.get("checkpoint") or c.get("cams") or c["folder"]
            if source in seen:
                problems.append(
                    f"{row}: {c['folder']} and {seen[source]} evaluate the same {source}"
                )
            seen[source] = c["folder"]
        configs = [(c, _training_config(c)) for c in members]
        configs = [(c, cfg) for c, cfg in configs if cfg is not None]
        by_seed: dict = {}
        for c, cfg in configs:
            seed = cfg.get("seed")
            if seed in by_seed and by_seed[seed]["checkpoint"] != c["checkpoint"]:
                problems.append(
                    f"{row}: {by_seed[seed]['folder']} and {c['folder']} are both seed {seed}: "
                    "one setting's seeds must differ"
                )
            by_seed.setdefault(seed, c)
        if len(configs) > 1:
            first, first_cfg = configs[0]
            for c, cfg in configs[1:]:
                keys = sorted(
                    k
                    for k in set(first_cfg) | set(cfg)
                    if k not in POOLABLE_KEYS and first_cfg.get(k) != cfg.get(k)
                )
                if keys:
                    shown = ", ".join(
                        f"{k} ({first_cfg.get(k)!r} vs {cfg.get(k)!r})" for k in keys[:4]
                    )
                    problems.append(
                        f"{row}: {first['folder']} and {c['folder']} differ in {shown}"
                        f"{' and more' if len(keys) > 4 else ''}: not seeds of one setting"
                    )
    if problems:
        raise PoolingError(
            "these evaluations would be averaged into one row, but should not be:\n  "
            + "\n  ".join(problems)
            + "\nLeave some out, or name each setting's evaluations apart with "
            "`wsol evaluate ... --label NAME` so that each is a row of its own."
        )


def read_metrics(path: Path) -> dict:
    """A metrics.json, or ValueError naming the file and line where it is not valid JSON (cut
    short, or edited by hand)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}); re-run its evaluation"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not an evaluation's metrics (a JSON object is expected)")
    return data


#: per_image.csv's columns that must be numbers
_NUMERIC = ("iou", "gt_known_correct", "MaxBoxAcc_correct", "MaxBoxAccV2_score", "threshold",
            "iou_fixed", "top1_correct", "top5_correct", "top1_loc_fixed_correct")  # fmt: skip


#: the protocol settings that make results comparable (the name is a column of its own)
PROTOCOL_SETTINGS = ("cam_curve_interval", "iou_thresholds", "multi_contour", "eval_size",
                     "interpolation", "normalize", "fixed_threshold", "invalid_cams",
                     "precision", "loc_convention", "map_convention", "center_crop",
                     "ten_crop")  # fmt: skip


def _protocol_settings(metrics: dict) -> dict:
    protocol = metrics.get("protocol", {})
    return {k: protocol.get(k, ADDED_PROTOCOL_FIELDS.get(k)) for k in PROTOCOL_SETTINGS}


def _protocol_difference(a: dict | None, b: dict | None) -> str:
    a, b = a or {}, b or {}
    keys = [k for k in PROTOCOL_SETTINGS if a.get(k) != b.get(k)]
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys) or "unknown"


def _load_run(path: Path):
    folder = resolve_eval_dir(path)
    metrics = read_metrics(folder / "metrics.json")
    per_image = folder / "per_image.csv"
    rows = None
    if per_image.is_file():
        import pandas as pd

        try:
            rows = pd.read_csv(per_image)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ValueError(f"{per_image}: not a readable CSV ({err})") from None
        for column in (c for c in _NUMERIC if c in rows):
            values = pd.to_numeric(rows[column], errors="coerce")
            bad = values.isna() | ~np.isfinite(values.fillna(0))
            if bad.any():
                row = int(np.argmax(bad.to_numpy()))
                raise ValueError(
                    f"{per_image}:{row + 2}: {column} is {rows[column].iloc[row]!r}, not a finite "
                    "number: this evaluation cannot be compared (re-run it)"
                )
    return folder, metrics, rows


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
):
    """Mean of b - a over images and its percentile bootstrap interval, resampling images (the
    same resample for both: the comparison is paired). ``a``, ``b``: (images,) per-image scores
    of one run each (see :func:`hierarchical_bootstrap` for several seeds)."""
    return hierarchical_bootstrap(np.asarray(a)[None], np.asarray(b)[None], n_boot, seed, level)


def hierarchical_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    paired: bool = False,
):
    """Mean difference b - a and its percentile bootstrap interval over training seeds and
    images: ``a`` (seeds_a, images) and ``b`` (seeds_b, images) hold per-image scores, one row
    per training seed. Each resample draws seeds with replacement for each side, then images
    with replacement (the same images for both sides: paired), so the interval carries the
    seed-to-seed variance as well as the image sampling. With one seed each it is the paired
    image bootstrap. ``paired``: row k of ``a`` and of ``b`` come from one training run (two
    CAM methods on one checkpoint): the same seeds are drawn for both sides."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("a and b must be (seeds, images) with the same images")
    if paired and len(a) != len(b):
        raise ValueError("paired seeds need as many rows on both sides")
    n = a.shape[1]
    means = np.empty(n_boot)
    for start in range(0, n_boot, 64):
        stop = min(n_boot, start + 64)
        k = stop - start
        rows_a = rng.integers(0, len(a), size=(k, len(a)))
        rows_b = rows_a if paired else rng.integers(0, len(b), size=(k, len(b)))
        per_a = a[rows_a].mean(axis=1)  # (k, images): the mean over the drawn seeds
        per_b = b[rows_b].mean(axis=1)
        images = rng.integers(0, n, size=(k, n))
        diff = np.take_along_axis(per_b - per_a, images, axis=1)
        means[start:stop] = diff.mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(b.mean() - a.mean()), float(lo), float(hi)


def compare_runs(
    paths: list[str | Path],
    out_dir: str | Path,
    n_boot: int = 2000,
    seed: int = 0,
    across: str = "method",
) -> dict[str, Path]:
    """Join evaluations into one table in the papers' layout, with curves and, per data set and
    backbone, each method's difference to ``base`` (or the first method) with a 95% interval
    from a hierarchical bootstrap (training seeds, then images; thresholds held at each run's
    best). Writes runs.csv (tidy), table.csv / table.md, differences.csv (when there is a
    difference to take) and PNG curves.

    Refuses (:class:`PoolingError`) to pool evaluations of one row whose training configs
    differ in anything but the seed, or that share a seed: they are not seeds of one setting.
    Give them different names (``wsol evaluate --label``) to compare them as rows.

    ``across="cam_method"``: the differences are between CAM methods (``cam`` the baseline) on
    each training method's runs, e.g. BagCAMs against CAM on the same checkpoints."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    out = Path(out_dir)
    loaded = [_load_run(Path(p)) for p in paths]
    contexts = []
    for folder, metrics, _ in loaded:
        context = dict(metrics.get("context", {}))
        context.setdefault(
            "run", folder.parent.name if folder.name.startswith("eval_") else folder.name
        )
        context["folder"] = str(folder)
        context["protocol"] = metrics.get("protocol", {}).get("name", "wsolevaluation")
        context["protocol_settings"] = _protocol_settings(metrics)
        context["gt_fingerprint"] = metrics.get("gt_fingerprint")
        contexts.append(context)
    check_pooling(contexts)
    final = out
    check_output_folder(final, "table.csv", "a comparison")
    out = stage_folder(final)  # written whole, moved into place at the end
    tidy, per_image = [], []
    for (folder, metrics, rows), context in zip(loaded, contexts):
        for row in metrics_table(metrics, context):
            row["folder"] = str(folder)
            tidy.append(row)
        if rows is not None:
            per_image.append((context, rows))
    frame = pd.DataFrame(tidy)
    for col in GROUP:
        frame[col] = frame[col].fillna("").astype(str)
    frame.to_csv(out / "runs.csv", index=False)

    heads = frame[frame["metric"].isin(HEADLINE)]
    grouped = heads.groupby([*GROUP, "metric"])["value"]
    mean = grouped.mean().unstack("metric")
    std = grouped.std().unstack("metric")  # NaN with a single seed
    seeds = grouped.count().unstack("metric").max(axis=1)
    wide = pd.DataFrame(index=mean.index)
    for metric in HEADLINE:
        if metric in mean.columns:
            wide[metric] = mean[metric]
            wide[f"{metric}_std"] = std[metric]
    wide["seeds"] = seeds
    wide = wide.reset_index()
    wide.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(_markdown(wide), encoding="utf-8")

    results = [(c, m) for c, (_, m, _) in zip(contexts, loaded)]
    diffs = _differences(per_image, n_boot, seed, results, across)
    notes = _comparison_notes(loaded, contexts)
    (out / "notes.txt").write_text("".join(n + "\n" for n in notes), encoding="utf-8")
    written = {"runs": out / "runs.csv", "table": out / "table.csv"}
    if notes:
        written["notes"] = out / "notes.txt"
    stale = out / "differences.csv"
    if diffs:
        pd.DataFrame(diffs).to_csv(stale, index=False)
        written["differences"] = stale
    elif stale.exists():
        stale.unlink()  # an earlier comparison's: it would not describe these runs
    written["curves"] = plot_threshold_curves(loaded, contexts, out / "maxboxacc_curves.png")
    if any("mask" in m for _, m, _ in loaded):
        written["pxap"] = plot_pxap_curves(loaded, contexts, out / "pxap_curves.png")
    publish_folder(out, final)
    return {k: final / Path(v).name if isinstance(v, Path) else v for k, v in written.items()}


#: one colour per row in every plot of a comparison: Okabe & Ito's palette, which colour-blind
#: readers tell apart (black last)
ROW_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
               "#000000")  # fmt: skip


def _rows(loaded, contexts, need: str):
    """{row key: [metrics of its seeds]} of the evaluations that have ``need``, the name of each
    row (what varies between rows) and its colour, the same in every plot."""
    rows: dict = {}
    for (_, metrics, _), context in zip(loaded, contexts):
        key = tuple(str(context.get(c, "") or "") for c in GROUP)
        rows.setdefault(key, [])
        if need in metrics:
            rows[key].append(metrics)
    keys = list(rows)
    varying = [i for i in range(len(GROUP)) if len({k[i] for k in keys}) > 1]
    names = {k: " / ".join(k[i] for i in varying if k[i]) or k[2] or "run" for k in keys}
    colours = {k: ROW_COLOURS[n % len(ROW_COLOURS)] for n, k in enumerate(keys)}
    return {k: v for k, v in rows.items() if v}, names, colours


def _save(fig, path: Path, dpi: int = 110) -> Path:
    """The figure as PNG, and as PDF and SVG beside it (for papers)."""
    for suffix in (".png", ".pdf", ".svg"):
        fig.savefig(path.with_suffix(suffix), dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return path


def plot_threshold_curves(loaded, contexts, path: Path) -> Path:
    """Box accuracy against the CAM threshold: one panel per IoU evaluated (MaxBoxAcc@d, the
    largest connected component) and one for MaxBoxAccV2's curve (the mean over the IoUs of the
    all-contours accuracy); one colour per row (method, with data set and backbone when
    several), the mean over seeds with a band from the lowest to the highest seed, and a marker
    at the threshold each evaluation used for its loc metrics (the val-chosen one with
    ``--val-threshold``, else the best on the split; averaged over seeds). Also PDF and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, names, colours = _rows(loaded, contexts, "curves")
    ious = sorted({d for ms in rows.values() for m in ms for d in m["curves"]["single"]}, key=int)
    panels = [(f"MaxBoxAcc@{d}", "single", (d,)) for d in ious] + [("MaxBoxAccV2", "multi", ious)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.8), squeeze=False)
    for ax, (title, mode, levels) in zip(axes[0], panels):
        for key, members in rows.items():
            x = np.asarray(members[0]["curves"]["thresholds"], dtype=np.float64)
            ys = np.asarray(
                [np.mean([m["curves"][mode][d] for d in levels if d in m["curves"][mode]], axis=0)
                 for m in members],
                dtype=np.float64,
            )  # fmt: skip
            mean, colour = ys.mean(axis=0), colours[key]
            seeds = len(members)
            label = f"{names[key]} ({seeds} seed{'s' if seeds > 1 else ''})"
            ax.plot(x, mean, color=colour, label=label, linewidth=1.6)
            if seeds > 1:
                ax.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=colour, alpha=0.2)
            used = [
                m["loc"].get("fixed_threshold", m["loc"].get("best_threshold")) for m in members
            ]
            used = [t for t in used if t is not None]
            if used:
                t = float(np.mean(used))
                ax.plot([t], [np.interp(t, x, mean)], marker="v", color=colour, markersize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("CAM threshold", fontsize=9)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("box accuracy (%)", fontsize=9)
    # beside the panels, not over a curve (saved with the figure's tight bounding box)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0)
    fig.suptitle(
        "Box accuracy vs CAM threshold: mean over seeds, band min to max; marker: the threshold "
        "the loc metrics used",
        fontsize=9,
    )
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_pxap_curves(loaded, contexts, path: Path) -> Path:
    """Pixel precision-recall curves (PxAP): one colour per row, the same as in the box curves,
    a thin line per seed; the legend gives each row's mean PxAP. Also PDF and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, names, colours = _rows(loaded, contexts, "mask")
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for key, members in rows.items():
        pxap = np.mean([m["PxAP"] for m in members])
        for n, m in enumerate(members):
            curve = m["mask"]["pr_curve"]
            label = f"{names[key]}: PxAP {pxap:.1f} ({len(members)} seed(s))" if n == 0 else None
            ax.plot(curve["recall"], curve["precision"], color=colours[key], label=label,
                    linewidth=1.4 if len(members) == 1 else 0.9)  # fmt: skip
    ax.set_xlabel("recall", fontsize=9)
    ax.set_ylabel("precision", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("Pixel precision-recall (PxAP: the area under it)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _comparison_notes(loaded, contexts) -> list[str]:
    """What a comparison could not do, and why: evaluations without per-image rows (their box
    metrics cannot be differenced image by image), and rows of one data set and backbone that
    are not paired because their ground truth or protocol settings differ."""
    notes = []
    for folder, metrics, rows in loaded:
        if rows is None and "box" in metrics:
            notes.append(
                f"{folder} has no per_image.csv, so its boxes are not differenced against other "
                "methods (it is written by every `wsol evaluate` of boxes: re-run the evaluation)"
            )
    by_row: dict = {}
    for context in contexts:
        key = (context.get("dataset"), context.get("backbone"), context.get("cam_method"),
               context.get("protocol"))  # fmt: skip
        by_row.setdefault(key, set()).add(
            (
                str(context.get("gt_fingerprint")),
                json.dumps(context.get("protocol_settings"), sort_keys=True),
            )
        )
    for key, kinds in by_row.items():
        if len(kinds) > 1:
            notes.append(
                f"{' / '.join(str(k) for k in key if k)}: evaluations of different ground truth "
                "or protocol settings are not paired (each is differenced only against its own kind)"
            )
    return notes


#: the headline metric of each named protocol's comparisons (wsol.metrics.PROTOCOLS)
PROTOCOL_HEADLINE = {name: p.headline for name, p in PROTOCOLS.items()}
#: what a run's training schedule is made of: differenced rows that differ in it are flagged
SCHEDULE_KEYS = ("epochs", "max_steps_per_epoch", "batch_size", "optim.scheduler", "optim.lr_step")


def _per_image_score(frame, metric: str):
    """Each image's score (0-100) under ``metric``, from a per_image.csv, or None."""
    if metric == "MaxBoxAccV2" and "MaxBoxAccV2_score" in frame:
        return frame["MaxBoxAccV2_score"]
    if metric == "MaxBoxAcc" and "MaxBoxAcc_correct" in frame:
        return frame["MaxBoxAcc_correct"] * 100.0
    if metric == "top1_loc@fixed" and "top1_loc_fixed_correct" in frame:
        return frame["top1_loc_fixed_correct"] * 100.0  # by its protocol's own rule
    if metric == "top1_loc@fixed" and {"iou_fixed", "top1_correct"} <= set(frame.columns):
        return ((frame["iou_fixed"] >= 0.5) & (frame["top1_correct"] == 1)) * 100.0  # older
    return None


def _resampled(seeds_a: int, seeds_b: int, images: bool) -> str:
    """What an interval resamples, in words."""
    several = seeds_a > 1 or seeds_b > 1
    if images:
        return "seeds and images" if several else "images (one seed per side)"
    return "seeds" if several else "nothing (one seed per side: no interval)"


def _same_checkpoints(contexts_a: list, contexts_b: list) -> bool:
    """Whether two sides' evaluations, in the order given, read the same checkpoint files one
    for one (two CAM methods on the same training runs): row k of one side may then be drawn
    with row k of the other."""

    def runs(contexts):
        return [(str(c.get("seed")), str(c.get("checkpoint"))) for c in contexts]

    return len(contexts_a) > 0 and runs(contexts_a) == runs(contexts_b)


def _schedule_note(contexts_a: list, contexts_b: list) -> str:
    """'' if both sides trained on one schedule, else what differs (epochs, steps, batch)."""

    def schedules(contexts):
        out = set()
        for c in contexts:
            cfg = _training_config(c) or {}
            runtime = (c.get("runtime") or [{}])[-1]
            out.add(
                tuple(str(cfg.get(k)) for k in SCHEDULE_KEYS) + (str(runtime.get("global_batch")),)
            )
        return out

    a, b = schedules(contexts_a), schedules(contexts_b)
    if a == b and len(a) == 1:
        return ""
    names = (*SCHEDULE_KEYS, "global batch")
    diff = []
    for i, name in enumerate(names):
        va, vb = sorted({s[i] for s in a}), sorted({s[i] for s in b})
        if va != vb:
            diff.append(f"{name} {'/'.join(va)} vs {'/'.join(vb)}")
    return "trained on different schedules: " + "; ".join(diff) if diff else ""


#: what ``wsol compare --across`` differences, and the baseline each is differenced against
ACROSS = {"method": "base", "cam_method": "cam"}


def _differences(
    per_image: list,
    n_boot: int,
    seed: int,
    results: list | None = None,
    across: str = "method",
) -> list[dict]:
    """Each method's difference to the baseline method of its data set, backbone, CAM method
    and protocol: the protocol's headline metric first (``headline`` True), then the other box
    metrics, with hierarchical bootstrap intervals over seeds and images; PxAP (not a sum over
    images) from each run's value, its interval over seeds only. ``results``: (context,
    metrics.json) of every evaluation, for PxAP.

    ``across="cam_method"``: instead, each CAM method's difference to ``cam`` (or the first) on
    the same training method's runs: the CAMs of one checkpoint against another's of the same
    checkpoint, so where both sides have the same seeds the bootstrap draws them together."""
    import pandas as pd

    if across not in ACROSS:
        raise ValueError(f"across must be one of {', '.join(ACROSS)}, not {across!r}")
    fixed_field = "cam_method" if across == "method" else "method"

    def key_of(context) -> tuple:
        # only evaluations of the same ground truth, with the same protocol settings, are paired
        return (
            str(context.get("dataset", "")),
            str(context.get("backbone", "")),
            str(context.get(fixed_field, "")),
            str(context.get("protocol", "wsolevaluation")),
            str(context.get("gt_fingerprint")),
            json.dumps(context.get("protocol_settings"), sort_keys=True),
        )

    groups: dict = {}
    for context, rows in per_image:
        groups.setdefault(key_of(context), {}).setdefault(
            str(context.get(across, "")), []
        ).append((context, rows))
    pxap: dict = {}
    for context, metrics in results or []:
        if "PxAP" in metrics:
            entry = pxap.setdefault(key_of(context), {}).setdefault(
                str(context.get(across, "")), []
            )
            entry.append((context, float(metrics["PxAP"])))
            groups.setdefault(key_of(context), {})
    out = []
    rng = np.random.default_rng(seed)
    for group_key, methods in groups.items():
        dataset, backbone, fixed, protocol = group_key[:4]
        side = pxap.get(group_key, {})  # PxAP per method, one value per run
        names = set(methods) | set(side)
        if len(names) < 2:
            continue
        baseline = ACROSS[across] if ACROSS[across] in names else sorted(names)[0]
        for entries in (*methods.values(), *side.values()):  # seed order on every side
            entries.sort(key=lambda item: str(item[0].get("seed")))
        headline = PROTOCOL_HEADLINE.get(protocol, "MaxBoxAccV2")
        if headline == "MaxBoxAccV2" and not methods and side:
            headline = "PxAP"  # masks only (OpenImages)
        metrics = [headline, *(m for m in ("MaxBoxAccV2", "MaxBoxAcc") if m != headline)]

        def per_seed(frames, metric):  # (seeds, images) by image id
            series = [_per_image_score(f, metric) for _, f in frames]
            if any(x is None for x in series):
                return None
            cols = [x.set_axis(f["image_id"]) for x, (_, f) in zip(series, frames)]
            return pd.concat(cols, axis=1).T

        for method in sorted(n for n in names if n != baseline):
            common_row = {"dataset": dataset, "backbone": backbone, fixed_field: fixed,
                          across: method, "protocol": protocol, "baseline": baseline,
                          "across": across}  # fmt: skip
            contexts_a = [c for c, _ in methods.get(baseline, [])] or [
                c for c, _ in side.get(baseline, [])
            ]
            contexts_b = [c for c, _ in methods.get(method, [])] or [
                c for c, _ in side.get(method, [])
            ]
            note = _schedule_note(contexts_a, contexts_b)
            # one checkpoint per seed read by both CAM methods: its two evaluations are drawn
            # together (compared by checkpoint file, not by seed alone)
            paired = across == "cam_method" and _same_checkpoints(contexts_a, contexts_b)
            if across == "cam_method" and not paired:
                unpaired = "the CAM methods were not read on the same checkpoints (drawn apart)"
                note = f"{note}; {unpaired}" if note else unpaired
            for metric in metrics:
                if method not in methods or baseline not in methods:
                    continue
                a = per_seed(methods[baseline], metric)
                b = per_seed(methods[method], metric)
                if a is None or b is None:
                    continue
                common = a.columns.intersection(b.columns)
                if len(common) == 0:
                    continue
                mean, lo, hi = hierarchical_bootstrap(
                    a[common].to_numpy(), b[common].to_numpy(), n_boot, seed, paired=paired
                )
                out.append({**common_row, "metric": metric, "headline": metric == headline,
                            "difference": mean, "ci95_low": lo, "ci95_high": hi,
                            "resampled": _resampled(len(a), len(b), True),
                            "images": len(common), "seeds_method": len(b),
                            "seeds_baseline": len(a), "note": note})  # fmt: skip
            if baseline in side and method in side:
                sa, sb = side[baseline], side[method]
                va, vb = np.array([v for _, v in sa]), np.array([v for _, v in sb])
                diff = float(vb.mean() - va.mean())
                lo = hi = float("nan")
                same_runs = across == "cam_method" and _same_checkpoints(
                    [c for c, _ in sa], [c for c, _ in sb]
                )
                if same_runs and len(va) > 1:  # one checkpoint's two CAM methods: draw it once
                    boots = [rng.choice(vb - va, len(va)).mean() for _ in range(n_boot)]
                elif len(va) > 1 or len(vb) > 1:
                    boots = [
                        rng.choice(vb, len(vb)).mean() - rng.choice(va, len(va)).mean()
                        for _ in range(n_boot)
                    ]
                    lo, hi = (float(q) for q in np.quantile(boots, [0.025, 0.975]))
                out.append({**common_row, "metric": "PxAP", "headline": headline == "PxAP",
                            "difference": diff, "ci95_low": lo, "ci95_high": hi,
                            "resampled": _resampled(len(va), len(vb), False), "images": "",
                            "seeds_method": len(vb), "seeds_baseline": len(va), "note": note})  # fmt: skip
    return out


def answer_sentences(
    differences: str | Path, metric: str | None = None, across: str = "method"
) -> list[str]:
    """One plain sentence per method of a ``differences.csv``: does it localize better than its
    baseline under the row's protocol, by how much (the protocol's headline metric, or
    ``metric``), and how sure is that (the 95% interval, and what it resamples). ``across``:
    what the comparison differenced (``wsol compare --across``), for the sentence when there
    was nothing to difference."""
    import pandas as pd

    path = Path(differences)
    rows = pd.read_csv(path) if path.is_file() and path.stat().st_size > 1 else pd.DataFrame()
    if rows.empty:
        if across == "cam_method":
            return [
                "Only one CAM method per training method, data set and backbone: there is "
                "nothing to difference (no differences.csv)."
            ]
        return [
            "Only one method per data set and backbone: there is nothing to difference "
            "(no differences.csv)."
        ]
    if metric is not None:
        chosen = rows[rows["metric"] == metric]
    elif "headline" in rows:
        chosen = rows[rows["headline"].astype(str).str.lower() == "true"]
    else:  # an older differences.csv
        chosen = rows[rows["metric"] == "MaxBoxAccV2"]
    from .cam import CAM_TITLES

    def cam_title(name: str) -> str:
        method, _, layer = str(name).partition("@")
        return CAM_TITLES.get(method, method) + (f" at {layer}" if layer else "")

    out = []
    for _, r in chosen.iterrows():
        cams = r.get("across") == "cam_method"  # CAM methods on the same checkpoints
        if cams:
            name, base = cam_title(r["cam_method"]), cam_title(r["baseline"])
        else:
            name, base = method_title(r["method"]), method_title(r["baseline"])
        lo, hi, diff = r["ci95_low"], r["ci95_high"], r["difference"]
        shown = r["metric"]
        if lo != lo:  # NaN: no interval (one seed per side, a metric that is not per image)
            verdict = "cannot be said: there is no interval with one seed per side"
            interval = "no interval"
        elif lo > 0:
            verdict = f"yes, {name} localizes better than {base} here"
        elif hi < 0:
            verdict = f"no, {name} localizes worse than {base} here"
        else:
            verdict = f"not clearly: the interval includes 0, so {name} and {base} cannot be told apart here"
        if lo == lo:
            resampled = r.get("resampled", "seeds and images")
            interval = f"95% interval {lo:+.2f} to {hi:+.2f}, bootstrap over {resampled}"
        seeds = f"{int(r['seeds_method'])} and {int(r['seeds_baseline'])} seeds"
        images = (
            f"{int(r['images'])} test images, "
            if str(r.get("images", "")) not in ("", "nan")
            else ""
        )
        protocol = r.get("protocol", "wsolevaluation")
        note = r.get("note", "")
        note = f" Note: {note}." if isinstance(note, str) and note else ""
        where = f"{r['dataset']}, {r['backbone']}"
        if cams:
            where += f", the checkpoints of {method_title(r['method'])}"
            if int(r["seeds_method"]) == int(r["seeds_baseline"]):  # the same runs read twice
                seeds = f"{int(r['seeds_method'])} seeds"
        out.append(
            f"Does {name} localize better than {base} ({where}, {protocol} protocol)? "
            f"{verdict}: {shown} {diff:+.2f} points ({interval}; {images}{seeds}).{note}"
        )
    return out


def _markdown(wide) -> str:
    metrics = [m for m in HEADLINE if m in wide.columns]
    header = (
        "| dataset | backbone | method | CAM | protocol | " + " | ".join(metrics) + " | seeds |"
    )
    lines = [header, "|" + "---|" * (6 + len(metrics))]
    for _, row in wide.iterrows():
        cells = []
        for m in metrics:
            mean, std = row[m], row.get(f"{m}_std")
            if mean != mean:  # NaN: not measured
                cells.append("")
            elif std == std and row["seeds"] > 1:
                cells.append(f"{mean:.2f} ± {std:.2f}")
            else:
                cells.append(f"{mean:.2f}")
        lines.append(
            f"| {row['dataset']} | {row['backbone']} | {row['method']} | {row['cam_method']} | "
            f"{row['protocol']} | " + " | ".join(cells) + f" | {int(row['seeds'])} |"
        )
    return "\n".join(lines) + "\n"
