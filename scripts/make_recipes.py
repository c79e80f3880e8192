"""Write the recipes of clovaai/wsolevaluation's whole table, one per cell, with the provenance of
every tuned value, and the table of values and sources in docs/reproduce.md.

    python scripts/make_recipes.py            # (re)write configs/<data>_<backbone>_<method>.yaml
    python scripts/make_recipes.py --check    # exit 1, naming the files, if any has drifted

Cells: {cub, imagenet, openimages} x {vgg16, inception_v3, resnet50} x {base (CAM), has, acol,
spg, adl, cutmix, fsl}. Edit the tables below, never the generated files (tests/test_recipes.py
fails when they drift from this script).

Where the tuned values come from. Choe et al. tuned every cell with a 30-trial random search on
train-fullsup and published the winners in a spreadsheet linked from the reference's README
(section 5, "Library of WSOL methods"); the spreadsheet cannot be read from here. The values
below are copies of it in public training scripts, found by searching public code for their
distinctive digits; each names its file. A value that no copy gives is NOT presented as tuned:
the recipe says what it is instead (a code default of the reference's config.py, or a starting
point taken from another cell), and docs/reproduce.md marks it.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("cub", "imagenet", "openimages")
BACKBONES = ("vgg16", "inception_v3", "resnet50")
METHODS = ("base", "has", "acol", "spg", "adl", "cutmix", "fsl")

#: the public files the tuned values are copied from
SOURCES = {
    "readme": "clovaai/wsolevaluation README.md (section 6, its example train command)",
    "dualcam": "finallyupper/dual-cam scripts/run_train.sh",
    "rs_cam": "jjRen-xd/WSOL_RS train_PN2.sh",
    "rs_a": "jjRen-xd/WSOL_RS train_PN2_other.sh",
    "rs_b": "jjRen-xd/WSOL_RS train_C45V2_other.sh",
    "smallobj": "dongjunhwang/small_object_wsol scripts/resnet_imagenet_ours.sh",
}

#: the reference's code defaults (clovaai/wsolevaluation config.py) of each method's parameters
CODE_DEFAULTS = {
    "base": {},
    "has": {"has_grid_size": 4, "has_drop_rate": 0.5},
    "acol": {"acol_threshold": 0.7},
    "spg": {
        "spg_threshold_1h": 0.7,
        "spg_threshold_1l": 0.01,
        "spg_threshold_2h": 0.5,
        "spg_threshold_2l": 0.05,
        "spg_threshold_3h": 0.7,
        "spg_threshold_3l": 0.1,
    },
    "adl": {"adl_drop_rate": 0.75, "adl_threshold": 0.9},
    "cutmix": {"cutmix_beta": 1.0, "cutmix_prob": 1.0},
    "fsl": {"fsl_target": "auto"},
}


def _spg(*values: float) -> dict:
    keys = ("1h", "1l", "2h", "2l", "3h", "3l")
    return {f"spg_threshold_{k}": v for k, v in zip(keys, values)}


#: (data set, backbone, method) -> {key: (value, sources)}; keys are config keys
#: (``lr`` is optim.lr, ``weight_decay`` optim.weight_decay, ``large_feature_map``
#: model.large_feature_map, the rest the method section's)
TUNED: dict[tuple[str, str, str], dict[str, tuple[object, tuple[str, ...]]]] = {}


def _tuned(data: str, backbone: str, method: str, sources: tuple[str, ...], **values) -> None:
    TUNED[(data, backbone, method)] = {k: (v, sources) for k, v in values.items()}


# CAM on CUB and ImageNet: dual-cam's "vanilla" CAM runs (50 epochs / decay 15 on CUB, 10 / 3 on
# ILSVRC, batch 32); the CUB values again in WSOL_RS's train_PN2.sh (the InceptionV3 lr there is
# typed "0.0.00224844746"); ILSVRC ResNet-50's lr again in small_object_wsol.
_tuned("cub", "vgg16", "base", ("dualcam", "rs_cam"), lr=0.00001268269, weight_decay=5e-4,
       large_feature_map=False)  # fmt: skip
_tuned("cub", "resnet50", "base", ("dualcam", "rs_cam"), lr=0.00023222617, weight_decay=1e-4,
       large_feature_map=True)  # fmt: skip
_tuned("cub", "inception_v3", "base", ("dualcam", "rs_cam"), lr=0.00224844746,
       weight_decay=5e-4, large_feature_map=True)  # fmt: skip
_tuned("imagenet", "vgg16", "base", ("dualcam",), lr=0.00001654502, weight_decay=5e-4,
       large_feature_map=False)  # fmt: skip
_tuned("imagenet", "resnet50", "base", ("dualcam",), lr=0.00003108411, weight_decay=1e-4,
       large_feature_map=True)  # fmt: skip
TUNED[("imagenet", "resnet50", "base")]["lr"] = (0.00003108411, ("dualcam", "smallobj"))
_tuned("imagenet", "inception_v3", "base", ("dualcam",), lr=0.0003606503, weight_decay=5e-4,
       large_feature_map=True)  # fmt: skip
# OpenImages VGG16 CAM: the reference README's own example command
_tuned("openimages", "vgg16", "base", ("readme",), lr=0.00227913316, weight_decay=5e-4,
       large_feature_map=False)  # fmt: skip

# The five WSOL methods on CUB: WSOL_RS runs each of them with CUB's protocol (50 epochs, decay
# 15, 5 fully supervised images per class) on its own data sets, in two files that agree except
# where DISAGREE says so; their large_feature_map is in LFM_NOTE.
_M = ("rs_a", "rs_b")
_tuned("cub", "resnet50", "has", _M, lr=0.00361996526, weight_decay=1e-4, has_grid_size=120,
       has_drop_rate=0.66)  # fmt: skip
_tuned("cub", "vgg16", "has", ("rs_b",), lr=0.00342891848, weight_decay=5e-4, has_grid_size=65,
       has_drop_rate=0.47)  # fmt: skip
TUNED[("cub", "vgg16", "has")]["has_drop_rate"] = (0.47, _M)
TUNED[("cub", "vgg16", "has")]["weight_decay"] = (5e-4, _M)
_tuned("cub", "inception_v3", "has", _M, lr=0.01400558066, weight_decay=5e-4, has_grid_size=170,
       has_drop_rate=0.26)  # fmt: skip
_tuned("cub", "resnet50", "acol", _M, lr=0.00001700073, weight_decay=1e-4, acol_threshold=0.57)
_tuned("cub", "vgg16", "acol", _M, lr=0.00010569582, weight_decay=5e-4, acol_threshold=0.89)
_tuned("cub", "inception_v3", "acol", _M, lr=0.00658832165, weight_decay=5e-4,
       acol_threshold=0.79)  # fmt: skip
_tuned("cub", "resnet50", "spg", _M, lr=0.00004521947, weight_decay=1e-4,
       **_spg(0.41, 0.35, 0.24, 0.21, 0.12, 0.08))  # fmt: skip
_tuned("cub", "vgg16", "spg", _M, lr=0.00012558923, weight_decay=5e-4,
       **_spg(0.29, 0.23, 0.03, 0.02, 0.82, 0.59))  # fmt: skip
_tuned("cub", "inception_v3", "spg", _M, lr=0.0003360682, weight_decay=5e-4,
       **_spg(0.28, 0.02, 0.17, 0.03, 0.47, 0.31))  # fmt: skip
_tuned("cub", "resnet50", "adl", _M, lr=0.01253438325, weight_decay=1e-4, adl_threshold=0.76,
       adl_drop_rate=0.24)  # fmt: skip
_tuned("cub", "vgg16", "adl", _M, lr=0.00002430601, weight_decay=5e-4, adl_threshold=0.72,
       adl_drop_rate=0.33)  # fmt: skip
_tuned("cub", "inception_v3", "adl", _M, lr=0.00038655054, weight_decay=5e-4,
       adl_threshold=0.86, adl_drop_rate=0.69)  # fmt: skip
_tuned("cub", "resnet50", "cutmix", _M, lr=0.0003333722, weight_decay=1e-4, cutmix_beta=1.35,
       cutmix_prob=0.24)  # fmt: skip
_tuned("cub", "vgg16", "cutmix", _M, lr=0.00003220934, weight_decay=5e-4, cutmix_beta=0.85,
       cutmix_prob=0.79)  # fmt: skip
_tuned("cub", "inception_v3", "cutmix", _M, lr=0.00225171726, weight_decay=5e-4,
       cutmix_beta=0.04, cutmix_prob=0.30)  # fmt: skip

#: the five methods' large_feature_map on CUB: the two WSOL_RS files disagree for ResNet-50
#: (false in train_PN2_other.sh, true in train_C45V2_other.sh) and agree on false for VGG16 and
#: InceptionV3; ResNet-50 follows the second (as its tuned CAM cell: true)
LFM_NOTE = {
    "resnet50": (True, ("rs_b",), "train_PN2_other.sh sets it false"),
    "vgg16": (False, _M, None),
    "inception_v3": (False, _M, None),
}
for (_d, _b, _m), _values in TUNED.items():
    if _d == "cub" and _m != "base":
        _lfm, _src, _ = LFM_NOTE[_b]
        _values["large_feature_map"] = (_lfm, _src)

#: where the copies disagree, or another public copy gives another value: said in the recipe
DISAGREE = {
    ("cub", "vgg16", "has"): (
        "jjRen-xd/WSOL_RS disagrees with itself: train_C45V2_other.sh (run B17) has lr "
        "0.00342891848 and grid 65, train_PN2_other.sh (run A2_2, a re-run) lr 0.00142891848 and "
        "grid 4 (the code default); the first is taken"
    ),
    ("cub", "resnet50", "cutmix"): (
        "another public CUB ResNet-50 script (found by exact-string search, not named here) "
        "runs cutmix_prob 0.34 with beta 1.35; WSOL_RS's 0.24 is taken"
    ),
    ("cub", "resnet50", "spg"): (
        "another public config (found by exact-string search) has spg_threshold_3l 0.06 beside "
        "the same other five thresholds; WSOL_RS's 0.08 is taken"
    ),
}
DISAGREE[("cub", "inception_v3", "base")] = (
    "none in value, but WSOL_RS's train_PN2.sh types the lr as 0.0.00224844746 (a typo of "
    "dual-cam's 0.00224844746)"
)
for (_d, _b, _m), _values in TUNED.items():
    if _d == "cub" and _m != "base" and _b == "resnet50":
        DISAGREE.setdefault((_d, _b, _m), "")
        extra = "large_feature_map: " + LFM_NOTE["resnet50"][2]
        DISAGREE[(_d, _b, _m)] = "; ".join(x for x in (DISAGREE[(_d, _b, _m)], extra) if x)

#: every backbone's weight decay in every copy found: 1e-4 for ResNet-50, 5e-4 for the others
BACKBONE_WD = {"vgg16": 5e-4, "inception_v3": 5e-4, "resnet50": 1e-4}

#: each data set's protocol, as the reference runs it (README example and config.py; CUB and
#: ILSVRC as every copy above: 50 epochs / decay 15 and 10 / 3, batch 32)
PROTOCOL = {
    "cub": {
        "title": "CUB-200-2011",
        "name": "CUB",
        "epochs": 50,
        "lr_step": 15,
        "val_per_class": 5,
        "select": "MaxBoxAccV2",
        "data": {
            "format": "wsol",
            "root": "data/CUB                # CUB_200_2011/images and CUBV2 unpacked into one folder",
            "metadata": "data/metadata/CUB   # wsolevaluation's metadata/CUB (train/ val/ test/)",
        },
        "splits": (
            "all 5,994 training images; val = its separate metadata/CUB/val (1,000 CUBV2 images, "
            "5 per class: train-fullsup), never trained on; test = the 5,794 test images"
        ),
    },
    "imagenet": {
        "title": "ImageNet (ILSVRC 2012)",
        "name": "ILSVRC",
        "epochs": 10,
        "lr_step": 3,
        "val_per_class": 0,
        "select": "MaxBoxAccV2",
        "data": {
            "format": "imagenet",
            "root": "data/ILSVRC                 # train/<wnid>/..., val/ILSVRC2012_val_*.JPEG, val2/ (ImageNetV2)",
            "metadata": "data/metadata/ILSVRC    # wsolevaluation's metadata/ILSVRC (val/ and test/)",
        },
        "splits": (
            "the 1.28 M training images (data.proxy_train: true trains on the reference's "
            "image_ids_proxy.txt, its set for fast searches); val = its metadata/ILSVRC/val "
            "(ImageNetV2, 10 images per class: train-fullsup), test = ILSVRC val (50,000 "
            "images). Without ImageNetV2: drop data.metadata and set data.annotations (the val "
            "XML folder): val is then the test split and no best.pt is kept"
        ),
    },
    "openimages": {
        "title": "OpenImages30k",
        "name": "OpenImages",
        "epochs": 10,
        "lr_step": 3,
        "val_per_class": 5,
        "select": "PxAP",
        "data": {
            "format": "wsol",
            "root": "data/OpenImages              # train/ val/ test/<class>/<image>.jpg",
            "masks": "data/masks/OpenImages       # val/ test/<class>/<image>_<instance>.png, _ignore.png",
            "metadata": "data/metadata/OpenImages # wsolevaluation's metadata/OpenImages",
        },
        "splits": (
            "the 29,819 training images of 100 classes; val = its metadata/OpenImages/val (25 "
            "images per class with instance masks), of which data.val_per_class 5 are used "
            "(the reference's num_val_sample_per_class 5, chosen with the run's seed as its "
            "data_loaders.py chooses them); test = 5,000 images with masks (PxAP)"
        ),
    },
}

NAMES = {"vgg16": "VGG16-GAP", "inception_v3": "InceptionV3", "resnet50": "ResNet-50"}
FILES = {"vgg16": "wsol/vgg.py", "inception_v3": "wsol/inception.py", "resnet50": "wsol/resnet.py"}
METHOD_TEXT = {
    "base": "plain CAM training (wsolevaluation's `cam`)",
    "has": "Hide-and-Seek: has_grid_size-pixel cells hidden with probability has_drop_rate",
    "acol": "ACoL: two classifier branches, B erasing where A's normalised map >= acol_threshold",
    "spg": "SPG: guidance branches with (high, low) thresholds spg_threshold_{1,2,3}{h,l}",
    "adl": "ADL: drop mask (p = adl_drop_rate) where attention >= adl_threshold x max",
    "cutmix": "CutMix: Beta(cutmix_beta) boxes, applied to a batch with probability cutmix_prob",
    "fsl": (
        "the FSL baseline (Choe et al.): a foreground predictor (per-pixel BCE) trained on the "
        "train-fullsup (val) split's boxes or masks, our reading of the paper (docs/metrics.md)"
    ),
}


def model_text(data: str, backbone: str, method: str) -> str:
    """What the model is: the reference's network for this backbone and method."""
    if method == "acol":
        return {
            "vgg16": "VggAcol's pools (3 x 3 max-pools, then a 3 x 3 average pool) and two new "
            "branches instead of conv6 and the classifier",
            "inception_v3": "two new branches on Mixed_6e instead of the head (InceptionAcol)",
            "resnet50": "two new branches on layer4 instead of the fc (ResNetAcol)",
        }[backbone]
    if method == "spg":
        return {
            "vgg16": "VggSpg's layout: a 3 x 3 pool4, two new 3 x 3 convs (SPG_A_3) instead of "
            "conv6, a new class map and SPG's branches",
            "inception_v3": "the reference's head, a new class map and SPG's branches "
            "(InceptionSpg)",
            "resnet50": "a new class map (xavier, as ResNetSpg's SPG_A4) and SPG's branches",
        }[backbone]
    head = {
        "vgg16": "conv6 (3 x 3, 1024 channels) and a new classifier N(0, 0.01)",
        "inception_v3": "the reference's head after Mixed_6e and a new classifier",
        "resnet50": "a new classifier N(0, 0.01)",
    }[backbone]
    if data == "imagenet" and backbone == "resnet50" and method != "fsl":
        head = "the pretrained 1000-class fc kept (the reference keeps it on ILSVRC)"
    if method == "adl":
        head += "; ADL layers at the reference's positions"
    if method == "fsl":
        head += " (frozen, untrained); one 1 x 1 conv from the feature map to a foreground map"
    return head


def optim_text(backbone: str, method: str) -> str:
    """Which parameters train at 10x (the reference's main.py grouping)."""
    if backbone == "resnet50":
        if method in ("acol", "spg"):
            return "layer4 at 10x lr, the method's new layers at lr (main.py's grouping)"
        return "layer4 and the classifier at 10x lr"
    if backbone == "vgg16":
        if method == "spg":
            return "conv4, conv5 and every new layer at 10x lr"
        return "everything after the VGG conv layers at 10x lr"
    return "every new layer (after Mixed_6e) at 10x lr"


def resolve(data: str, backbone: str, method: str) -> list[tuple[str, object, str]]:
    """Every tuned key of a cell: (key, value, where it comes from), tuned or not."""
    found = TUNED.get((data, backbone, method), {})
    cam = TUNED.get((data, backbone, "base"), {})
    out = []

    def src(names: tuple[str, ...]) -> str:
        return "tuned: " + "; ".join(SOURCES[n] for n in names)

    if "lr" in found:
        out.append(("lr", found["lr"][0], src(found["lr"][1])))
    elif "lr" in cam:
        out.append(
            (
                "lr",
                cam["lr"][0],
                "NOT tuned (no copy found): the tuned CAM lr of this data set "
                "and backbone, as a starting point",
            )  # fmt: skip
        )
    else:
        readme = TUNED[("openimages", "vgg16", "base")]["lr"][0]
        out.append(
            (
                "lr",
                readme,
                "NOT tuned (no copy found): the reference README's OpenImages VGG16 "
                "CAM lr, the only published OpenImages value, as a starting point",
            )  # fmt: skip
        )
    if "weight_decay" in found:
        out.append(("weight_decay", found["weight_decay"][0], src(found["weight_decay"][1])))
    else:
        out.append(
            (
                "weight_decay",
                BACKBONE_WD[backbone],
                "NOT tuned (no copy found): this backbone's weight decay in every copy found",
            )  # fmt: skip
        )
    if "large_feature_map" in found:
        lfm = found["large_feature_map"]
        out.append(("large_feature_map", lfm[0], src(lfm[1])))
    elif "large_feature_map" in cam and method != "base":
        out.append(
            (
                "large_feature_map",
                cam["large_feature_map"][0],
                "NOT tuned (no copy found): the tuned CAM cell's value",
            )  # fmt: skip
        )
    else:
        out.append(
            ("large_feature_map", False, "NOT tuned (no copy found): the reference's default")
        )
    for key, default in CODE_DEFAULTS[method].items():
        if key in found:
            out.append((key, found[key][0], src(found[key][1])))
        elif method == "fsl":
            out.append(
                (key, default, "ours: boxes filled in where the split has boxes, else masks")
            )
        else:
            out.append(
                (key, default, "NOT tuned (no copy found): the reference's config.py default")
            )
    return out


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.15f}".rstrip("0")
        text = text + "0" if text.endswith(".") else text
        assert float(text) == value, (value, text)
        return text
    return str(value)


def _wrap(text: str, first: str, rest: str, width: int = 100) -> list[str]:
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=first + " ",
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def recipe(data: str, backbone: str, method: str) -> str:
    """The text of ``configs/<data>_<backbone>_<method>.yaml``."""
    p = PROTOCOL[data]
    values = resolve(data, backbone, method)
    v = {k: val for k, val, _ in values}
    keep_fc = data == "imagenet" and backbone == "resnet50" and method not in ("acol", "spg", "fsl")
    header = _wrap(
        f"{p['title']}, {NAMES[backbone]}, {method}: clovaai/wsolevaluation's {p['name']} "
        f"protocol (main.py, config.py, data_loaders.py, {FILES[backbone]}).",
        "#",
        "# ",
    )
    header.append(
        "# Generated by scripts/make_recipes.py from its tables: edit those, not this file."
    )
    header += _wrap(p["splits"] + ". Resize 256, random crop 224, flip; val/test resized to "
                    "224 x 224.", "# - data:", "#   ")  # fmt: skip
    lfm = "true (28x28 CAMs)" if v["large_feature_map"] else "false (14x14 CAMs)"
    header += _wrap(f"torchvision ImageNet weights, {model_text(data, backbone, method)}; "
                    f"large_feature_map {lfm}.", "# - model:", "#   ")  # fmt: skip
    decays = ", ".join(str(e) for e in range(p["lr_step"], p["epochs"], p["lr_step"]))
    header += _wrap(
        f"SGD, Nesterov momentum 0.9, {optim_text(backbone, method)} (lr_classifier_ratio 10); "
        f"{p['epochs']} epochs, lr / 10 from epochs {decays} on (lr_decay_frequency "
        f"{p['lr_step']}, the reference's counting); batch 32 in one process (the reference's; "
        "docs/distributed.md says what to change for a larger global batch); last batch kept; "
        "float32.",
        "# - optim:",
        "#   ",
    )
    if method == "fsl":
        sel = ("none: it trains on val, so `wsol evaluate` scores last.pt on test, the same "
               "metrics as every method")  # fmt: skip
    else:
        sel = (f"val {p['select']} at the reference's threshold step 0.001 picks best.pt; "
               "`wsol evaluate` reports last.pt, as the reference does")  # fmt: skip
    header += _wrap(sel + ".", "# - selection:", "#   ")
    header += _wrap(f"{METHOD_TEXT[method]}.", "# Method:", "#   ")
    header.append(
        "# Hyperparameters (Choe et al. tune each cell on train-fullsup; docs/reproduce.md):"
    )
    for key, value, source in values:
        header += _wrap(f"{key} {_yaml_value(value)}: {source}", "#   -", "#     ")
    if (data, backbone, method) in DISAGREE:
        header += _wrap(
            "Sources disagree: " + DISAGREE[(data, backbone, method)] + ".", "#", "#   "
        )
    lines = header + ["data:"]
    for key, text in p["data"].items():
        lines.append(f"  {key}: {text}")
    lines += [
        f"  val_per_class: {p['val_per_class']}",
        "  resize_size: 256",
        "  crop_size: 224",
        "  workers: 8",
        "model:",
        f"  name: {backbone}",
        "  pretrained: torchvision",
        f"  large_feature_map: {_yaml_value(v['large_feature_map'])}",
        f"  keep_pretrained_classifier: {_yaml_value(keep_fc)}",
        "method:",
        f"  method: {method}",
    ]
    lines += [f"  {k}: {_yaml_value(v[k])}" for k in CODE_DEFAULTS[method]]
    lines += [
        "optim:",
        f"  lr: {_yaml_value(v['lr'])}",
        "  head_lr_mult: 10.0",
        "  momentum: 0.9",
        "  nesterov: true",
        f"  weight_decay: {_yaml_value(v['weight_decay'])}",
        "  scheduler: step",
        f"  lr_step: {p['lr_step']}",
        "  lr_gamma: 0.1",
        f"epochs: {p['epochs']}",
        "batch_size: 32",
        "amp: none",
        "eval_every: 1",
        f"select_metric: {p['select']}",
        "cam_curve_interval: 0.001",
    ]
    return "\n".join(lines) + "\n"


DOC_BEGIN = "<!-- recipes table: generated by scripts/make_recipes.py -->"
DOC_END = "<!-- end of the recipes table -->"


def docs_table() -> str:
    """One row per cell: the values of its tuned keys and where each comes from."""
    keys = {name: i + 1 for i, name in enumerate(SOURCES)}
    rows = [
        DOC_BEGIN,
        "",
        "Sources: "
        + "; ".join(f"[{keys[n]}] {SOURCES[n]}" for n in SOURCES)
        + ". A value in *italics* was not found in any copy (a code default or a starting "
        "point, as the recipe's header says); never read it as the reference's.",
        "",
        "| recipe | lr | weight decay | large feature map | method parameters | sources |",
        "|---|---|---|---|---|---|",
    ]
    for data in DATASETS:
        for backbone in BACKBONES:
            for method in METHODS:
                cells, params, used = {}, [], set()
                for key, value, source in resolve(data, backbone, method):
                    text = _yaml_value(value)
                    tuned = source.startswith("tuned")
                    if tuned:
                        used |= {n for n in SOURCES if SOURCES[n] in source}
                    text = text if tuned else f"*{text}*"
                    if key in ("lr", "weight_decay", "large_feature_map"):
                        cells[key] = text
                    else:
                        params.append(f"{key.split('_', 1)[1] if method != 'fsl' else key} {text}")
                refs = ", ".join(f"[{keys[n]}]" for n in SOURCES if n in used) or "none"
                if (data, backbone, method) in DISAGREE:
                    refs += " (disagree: see the recipe)"
                rows.append(
                    f"| `{data}_{backbone}_{method}` | {cells['lr']} | {cells['weight_decay']} | "
                    f"{cells['large_feature_map']} | {', '.join(params) or '-'} | {refs} |"
                )
    rows += ["", DOC_END]
    return "\n".join(rows)


def outputs() -> dict[Path, str]:
    """Every generated file and its text (docs/reproduce.md with its table block replaced)."""
    files = {
        ROOT / "configs" / f"{d}_{b}_{m}.yaml": recipe(d, b, m)
        for d in DATASETS
        for b in BACKBONES
        for m in METHODS
    }
    doc = ROOT / "docs" / "reproduce.md"
    text = doc.read_text(encoding="utf-8")
    if DOC_BEGIN not in text or DOC_END not in text:
        raise SystemExit(f"{doc} has no recipes-table markers ({DOC_BEGIN} ... {DOC_END})")
    before, rest = text.split(DOC_BEGIN, 1)
    after = rest.split(DOC_END, 1)[1]
    files[doc] = before + docs_table() + after
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file differs")
    args = parser.parse_args(argv)
    drifted = []
    for path, text in outputs().items():
        now = path.read_text(encoding="utf-8") if path.is_file() else None
        if now == text:
            continue
        if args.check:
            drifted.append(path.relative_to(ROOT).as_posix())
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if drifted:
        print("out of date (run python scripts/make_recipes.py): " + ", ".join(drifted))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
