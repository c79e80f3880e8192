from pathlib import Path

import numpy as np
from PIL import Image

from wsol.data import SynthSpec, make_synthetic, read_cub
from wsol.data.synth import class_style, render_example


def test_cub_reader_loads_it_unchanged(synth_root: Path):
    train, test = read_cub(synth_root, "train"), read_cub(synth_root, "test")
    assert len(train) == 24 and len(test) == 12
    assert train.num_classes == 4
    assert all(len(r.boxes) == 1 and len(r.mask_paths) == 1 for r in train)


def test_boxes_are_the_tight_box_of_the_mask(synth_root: Path):
    for r in read_cub(synth_root, "all"):
        mask = np.asarray(Image.open(r.mask_paths[0])) > 0
        assert mask.shape == (r.size[1], r.size[0])
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = r.boxes[0]
        # encloses the whole object and touches it on all four sides (inclusive pixel ends)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)


def test_deterministic_for_a_seed(tmp_path: Path):
    spec = SynthSpec(classes=3, train=6, test=3, size=40, seed=7)
    make_synthetic(tmp_path / "a", spec, progress=False)
    make_synthetic(tmp_path / "b", spec, progress=False)
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    other = SynthSpec(classes=3, train=6, test=3, size=40, seed=8)
    assert not np.array_equal(render_example(0, 0, spec)[0], render_example(0, 0, other)[0])


def test_objects_vary_in_scale_and_heads_identify_the_class():
    spec = SynthSpec(classes=10, size=64, seed=0)
    fractions = [render_example(i, i % 10, spec)[1].mean() for i in range(200)]
    assert min(fractions) < 0.2 and max(fractions) > 0.5
    heads = {tuple(np.round(class_style(k, 10)["head"])) for k in range(10)}
    assert len(heads) == 10  # one head colour per class
    bodies = {tuple(np.round(class_style(k, 10)["body_a"])) for k in range(10)}
    assert len(bodies) == 5  # bodies are shared in pairs: the body alone is a subtler cue
