"""Comparing evaluations: ``wsol compare`` tables in the papers' layout, mean and std over seeds,
paired bootstrap intervals and curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .results import metrics_table
from .rundir import resolve_eval_dir

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


def _load_run(path: Path):
    folder = resolve_eval_dir(path)
    metrics = json.loads((folder / "metrics.json").read_text())
    per_image = folder / "per_image.csv"
    rows = None
    if per_image.is_file():
        import pandas as pd

        rows = pd.read_csv(per_image)
    return folder, metrics, rows


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95
):
    """Mean of b - a over images and its percentile bootstrap interval, resampling images (the
    same resample for both: the comparison is paired). ``a``, ``b``: (images,) per-image scores,
    already averaged over seeds."""
    rng = np.random.default_rng(seed)
    diff = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = len(diff)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):
        stop = min(n_boot, start + 256)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = diff[index].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(diff.mean()), float(lo), float(hi)


def compare_runs(
    paths: list[str | Path], out_dir: str | Path, n_boot: int = 2000, seed: int = 0
) -> dict[str, Path]:
    """Join evaluations into one table in the papers' layout, with curves and, per data set and
    backbone, each method's difference to ``base`` (or the first method) with a paired bootstrap
    95% interval over images (per-image scores averaged over seeds; thresholds held at each
    run's best). Writes runs.csv (tidy), table.csv / table.md, differences.csv and PNG curves."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = [_load_run(Path(p)) for p in paths]
    tidy, per_image = [], []
    for folder, metrics, rows in loaded:
        context = dict(metrics.get("context", {}))
        context.setdefault(
            "run", folder.parent.name if folder.name.startswith("eval_") else folder.name
        )
        context["folder"] = str(folder)
        context["protocol"] = metrics.get("protocol", {}).get("name", "wsolevaluation")
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

    diffs = _differences(per_image, n_boot, seed)
    pd.DataFrame(diffs).to_csv(out / "differences.csv", index=False)

    written = {
        "runs": out / "runs.csv",
        "table": out / "table.csv",
        "differences": out / "differences.csv",
    }
    curves = []
    for folder, metrics, _ in loaded:
        ctx = metrics.get("context", {})
        run, method = str(ctx.get("run", folder.name)), str(ctx.get("method", ""))
        name = run if method in run else f"{run} {method}".strip()
        if "curves" in metrics:
            curves.append(
                (metrics["curves"]["thresholds"], metrics["curves"]["single"]["50"], name)
            )
    written["curves"] = _plot(
        out / "maxboxacc_curves.png",
        curves,
        "CAM threshold",
        "box accuracy at IoU 50 (%)",
        "MaxBoxAcc: accuracy vs CAM threshold",
    )
    pr = [
        (
            m["mask"]["pr_curve"]["recall"],
            m["mask"]["pr_curve"]["precision"],
            f"{m.get('context', {}).get('run', f.name)} PxAP {m['PxAP']:.1f}",
        )
        for f, m, _ in loaded
        if "mask" in m
    ]
    if pr:
        written["pxap"] = _plot(
            out / "pxap_curves.png", pr, "recall", "precision", "pixel precision-recall (PxAP)"
        )
    return written


def _plot(path: Path, series: list[tuple], xlabel: str, ylabel: str, title: str) -> Path:
    """One line chart of (x, y, label) series, saved as PNG."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for x, y, label in series:
        ax.plot(x, y, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _differences(per_image: list, n_boot: int, seed: int) -> list[dict]:
    import pandas as pd

    groups: dict = {}
    for context, rows in per_image:
        key = (
            str(context.get("dataset", "")),
            str(context.get("backbone", "")),
            str(context.get("cam_method", "")),
            str(context.get("protocol", "wsolevaluation")),
        )
        groups.setdefault(key, {}).setdefault(str(context.get("method", "")), []).append(rows)
    out = []
    for (dataset, backbone, cam_method, protocol), methods in groups.items():
        if len(methods) < 2:
            continue
        baseline = "base" if "base" in methods else sorted(methods)[0]

        def averaged(frames, column):
            merged = pd.concat([f.set_index("image_id")[column] for f in frames], axis=1)
            return merged.mean(axis=1)

        for method in sorted(m for m in methods if m != baseline):
            for column, metric in (
                ("MaxBoxAccV2_score", "MaxBoxAccV2"),
                ("MaxBoxAcc_correct", "MaxBoxAcc"),
            ):
                a = averaged(methods[baseline], column)
                b = averaged(methods[method], column)
                common = a.index.intersection(b.index)
                if len(common) == 0:
                    continue
                scale = 1.0 if metric == "MaxBoxAccV2" else 100.0
                mean, lo, hi = paired_bootstrap(
                    a[common].to_numpy() * scale, b[common].to_numpy() * scale, n_boot, seed
                )
                out.append(
                    {
                        "dataset": dataset,
                        "backbone": backbone,
                        "cam_method": cam_method,
                        "protocol": protocol,
                        "method": method,
                        "baseline": baseline,
                        "metric": metric,
                        "difference": mean,
                        "ci95_low": lo,
                        "ci95_high": hi,
                        "images": len(common),
                        "seeds_method": len(methods[method]),
                        "seeds_baseline": len(methods[baseline]),
                    }
                )
    return out


_NAMES = {"base": "plain CAM", "cutmix": "CutMix", "has": "HaS", "acol": "ACoL", "spg": "SPG",
          "adl": "ADL", "mixup": "Mixup", "cutout": "Cutout"}  # fmt: skip


def answer_sentences(differences: str | Path, metric: str = "MaxBoxAccV2") -> list[str]:
    """One plain sentence per method of a ``differences.csv``: does it localize better than its
    baseline, by how much, and how sure is that (the 95% interval)."""
    import pandas as pd

    path = Path(differences)
    rows = pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()
    if rows.empty:
        return ["Only one method per data set and backbone: there is no difference to state."]
    out = []
    for _, r in rows[rows["metric"] == metric].iterrows():
        name = _NAMES.get(r["method"], r["method"])
        base = _NAMES.get(r["baseline"], r["baseline"])
        lo, hi, diff = r["ci95_low"], r["ci95_high"], r["difference"]
        if lo > 0:
            verdict = f"yes, {name} localizes better than {base} here"
        elif hi < 0:
            verdict = f"no, {name} localizes worse than {base} here"
        else:
            verdict = f"not clearly: the interval includes 0, so {name} and {base} cannot be told apart here"
        seeds = f"{int(r['seeds_method'])} and {int(r['seeds_baseline'])} seeds"
        out.append(
            f"Does {name} localize better than {base} ({r['dataset']}, {r['backbone']})? {verdict}: "
            f"{metric} {diff:+.2f} points (95% interval {lo:+.2f} to {hi:+.2f}; "
            f"{int(r['images'])} test images, {seeds})."
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
