from pathlib import Path

import pytest

from wsol.data import DataFormatError, convert_cub, read_cub, read_wsol_metadata, split_train_val
from wsol.data.wsolmeta import read_class_names


def test_cub_round_trip_through_metadata(tiny_cub: Path, tmp_path: Path):
    written = convert_cub(tiny_cub, tmp_path / "metadata", val_per_class=0)
    assert set(written) == {"train", "test"}
    for split in ("train", "test"):
        native = read_cub(tiny_cub, split)
        meta = read_wsol_metadata(written[split], tiny_cub / "images")
        assert [r.image_id for r in meta] == [r.image_id for r in native]
        assert [r.label for r in meta] == [r.label for r in native]
        assert [r.size for r in meta] == [r.size for r in native]
        assert [r.path for r in meta] == [r.path for r in native]
        assert [r.boxes for r in meta] == [r.boxes for r in native]
    assert read_class_names(written["test"]) == ["001.Alpha", "002.Beta"]
    text = (written["test"] / "localization.txt").read_text().splitlines()
    assert text == [
        "001.Alpha/a_2.jpg,0,0,50,40",
        "002.Beta/b_2.jpg,1,2,4,6",
        "002.Beta/b_2.jpg,10,10,30,30",
    ]


def test_val_split_is_held_out_of_train_per_class(synth_root: Path, tmp_path: Path):
    written = convert_cub(synth_root, tmp_path / "m", val_per_class=2, seed=1)
    train = read_wsol_metadata(written["train"], synth_root / "images")
    val = read_wsol_metadata(written["val"], synth_root / "images", synth_root / "segmentations")
    assert len(val) == 2 * 4
    assert not {r.image_id for r in train} & {r.image_id for r in val}
    assert len(train) + len(val) == 24
    assert sorted(r.label for r in val) == [0, 0, 1, 1, 2, 2, 3, 3]
    # masks travel in masks.txt beside the box localization.txt
    assert all(r.mask_paths and r.mask_paths[0].is_file() for r in val)
    again = split_train_val(read_cub(synth_root, "train"), 2, seed=1)[1]
    assert [r.image_id for r in again] == [r.image_id for r in val]


def _meta(folder: Path, ids, labels, sizes=None, loc=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_ids.txt").write_text("".join(i + "\n" for i in ids))
    (folder / "class_labels.txt").write_text("".join(line + "\n" for line in labels))
    if sizes is not None:
        (folder / "image_sizes.txt").write_text("".join(line + "\n" for line in sizes))
    if loc is not None:
        (folder / "localization.txt").write_text("".join(line + "\n" for line in loc))
    return folder


def test_openimages_masks_and_ignore(tmp_path: Path):
    meta = _meta(
        tmp_path / "OpenImages" / "test",
        ["a/1.jpg", "a/2.jpg"],
        ["a/1.jpg,0", "a/2.jpg,3"],
        loc=["a/1.jpg,m/1a.png,m/1_ignore.png", "a/1.jpg,m/1b.png,", "a/2.jpg,m/2a.png,"],
    )
    split = read_wsol_metadata(meta, tmp_path / "img", tmp_path / "masks")
    assert split.name == "OpenImages" and split.split == "test"
    one, two = split.records
    assert one.mask_paths == (tmp_path / "masks/m/1a.png", tmp_path / "masks/m/1b.png")
    assert one.ignore_path == tmp_path / "masks/m/1_ignore.png"
    assert two.ignore_path is None and two.size is None and two.boxes == ()


@pytest.mark.parametrize(
    "file,lines,bad_line,words",
    [
        ("class_labels.txt", ["x.jpg,0", "y.jpg,zero"], 2, "cannot read 'zero' as int"),
        ("image_sizes.txt", ["x.jpg,10,10", "y.jpg,10"], 2, "expected 3 fields"),
        ("localization.txt", ["x.jpg,1,1,5,5", "y.jpg,6,1,5,5"], 2, "x1 < x0"),
        ("localization.txt", ["x.jpg,1,1,5,50"], 1, "outside the image"),
        ("localization.txt", ["x.jpg,1,1,5"], 1, "expected 5 fields (box) or 3 fields (mask)"),
        ("class_labels.txt", ["x.jpg,0", "x.jpg,1", "y.jpg,0"], 2, "duplicate image id x.jpg"),
        ("image_ids.txt", ["x.jpg", "y.jpg", "x.jpg"], 3, "duplicate image id x.jpg"),
        ("class_labels.txt", ["x.jpg,0", "z.jpg,1"], 2, "z.jpg is not in image_ids.txt"),
    ],
)
def test_malformed_metadata_names_file_and_line(tmp_path: Path, file, lines, bad_line, words):
    meta = _meta(
        tmp_path / "CUB" / "val",
        ["x.jpg", "y.jpg"],
        ["x.jpg,0", "y.jpg,1"],
        ["x.jpg,10,10", "y.jpg,10,10"],
    )
    (meta / file).write_text("".join(line + "\n" for line in lines))
    with pytest.raises(DataFormatError) as info:
        read_wsol_metadata(meta)
    assert info.value.path.endswith(file)
    assert info.value.line == bad_line
    assert words in str(info.value)
