"""Our table next to wsolevaluation's main table: for every data set, backbone and method of a
`wsol compare` table.csv, our mean (± std over seeds) beside the reference's number and the
difference.

    python scripts/vs_reference.py results/paper/table.csv --out results/paper/vs_reference.md

The reference numbers are those of docs/reproduce.md, transcribed from main_table.png in
clovaai/wsolevaluation (MaxBoxAccV2 for ImageNet and CUB, PxAP for OpenImages; test split; the
absolute value is CAM's plus the method's printed difference; the FSL and center baselines'
rows as printed), for all three data sets.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

BACKBONES = ("vgg16", "inception_v3", "resnet50")
#: data set -> (metric, CAM's row, then each method's printed difference to CAM)
REFERENCE = {
    "ILSVRC": (
        "MaxBoxAccV2",
        {
            "base": (60.0, 63.4, 63.7),
            "has": (+0.6, +0.3, -0.3),
            "acol": (-2.6, +0.3, -1.4),
            "spg": (-0.1, -0.1, -0.4),
            "adl": (-0.2, -2.0, +0.0),
            "cutmix": (-0.6, +0.5, -0.4),
        },
        (52.5, 52.5, 52.5),
    ),
    "CUB": (
        "MaxBoxAccV2",
        {
            "base": (63.7, 56.7, 63.0),
            "has": (+0.0, -3.3, +1.7),
            "acol": (-6.3, -0.5, +3.5),
            "spg": (-7.4, -0.8, -2.6),
            "adl": (+2.6, +2.1, -4.6),
            "cutmix": (-1.4, +0.8, -0.2),
        },
        (59.7, 59.7, 59.7),
    ),
    "OpenImages": (
        "PxAP",
        {
            "base": (58.3, 63.2, 58.5),
            "has": (-0.2, -5.1, -2.6),
            "acol": (-4.0, -6.0, -1.2),
            "spg": (+0.0, -0.9, -1.8),
            "adl": (+0.4, -6.4, -3.3),
            "cutmix": (-0.2, -0.7, -0.8),
        },
        (45.8, 45.8, 45.8),
    ),
}


#: the table's "FSL baseline" row (absolute values, not differences), per backbone
FSL = {
    "ILSVRC": (60.3, 65.3, 66.3),
    "CUB": (71.6, 86.6, 82.4),
    "OpenImages": (65.9, 74.1, 74.4),
}


def reference_value(dataset: str, backbone: str, method: str) -> float | None:
    """The reference's absolute number (CAM + difference; the center baseline's row for
    ``center-baseline``, the FSL baseline's for ``fsl``), or None where its table has none."""
    if dataset not in REFERENCE:
        return None
    _, rows, center = REFERENCE[dataset]
    if method == "center-baseline":
        return center[0]
    if method == "fsl":
        return FSL[dataset][BACKBONES.index(backbone)] if backbone in BACKBONES else None
    if backbone not in BACKBONES or method not in rows:
        return None
    k = BACKBONES.index(backbone)
    cam = rows["base"][k]
    return round(cam if method == "base" else cam + rows[method][k], 1)


def side_by_side(table_csv: str | Path) -> str:
    """A Markdown table: ours next to the reference's, row by row of ``table_csv``."""
    import pandas as pd

    table = pd.read_csv(table_csv, dtype={"dataset": str, "backbone": str, "method": str})
    for column in ("dataset", "backbone", "method", "protocol"):
        if column in table:
            table[column] = table[column].fillna("")
    lines = [
        "| data set | backbone | method | metric | ours | seeds | reference | ours - reference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        dataset, backbone, method = str(row["dataset"]), str(row["backbone"]), str(row["method"])
        if dataset not in REFERENCE or row.get("protocol", "wsolevaluation") != "wsolevaluation":
            continue
        metric = REFERENCE[dataset][0]
        ours = row.get(metric, math.nan)
        if ours != ours:  # NaN: not measured
            continue
        std = row.get(f"{metric}_std", math.nan)
        shown = f"{ours:.1f}" + (f" ± {std:.1f}" if std == std else "")
        ref = reference_value(dataset, backbone, method)
        diff = f"{ours - ref:+.1f}" if ref is not None else ""
        lines.append(
            f"| {dataset} | {backbone} | {method} | {metric} | {shown} | {int(row['seeds'])} | "
            f"{'' if ref is None else f'{ref:.1f}'} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", type=Path, help="table.csv written by `wsol compare`")
    parser.add_argument("--out", type=Path, help="Markdown file to write (default: print)")
    args = parser.parse_args(argv)
    text = side_by_side(args.table)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
