from pathlib import Path

import pytest

from wsol.data import DataFormatError, ProblemLog, read_cub


def test_reads_splits_labels_boxes_and_sizes(tiny_cub: Path):
    train = read_cub(tiny_cub, "train")
    test = read_cub(tiny_cub, "test")
    assert [r.image_id for r in train] == ["001.Alpha/a_1.jpg", "002.Beta/b_1.jpg"]
    assert [r.label for r in test] == [0, 1]
    assert train.class_names == ["001.Alpha", "002.Beta"]
    first = train[0]
    assert first.size == (40, 30)
    assert first.boxes == ((2.0, 3.0, 22.0, 13.0),)  # x, y, w, h -> x0, y0, x0 + w, y0 + h
    assert test[1].boxes == ((1.0, 2.0, 4.0, 6.0), (10.0, 10.0, 30.0, 30.0))
    assert first.path == tiny_cub / "images" / "001.Alpha/a_1.jpg"
    assert len(read_cub(tiny_cub, "all")) == 4


@pytest.mark.parametrize(
    "file,content,line,words",
    [
        ("images.txt", "1 001.Alpha/a_1.jpg\n2\n", 2, "expected 2 fields"),
        ("image_class_labels.txt", "1 1\n2 x\n3 2\n4 2\n", 2, "cannot read 'x' as int"),
        ("image_class_labels.txt", "1 1\n2 1\n3 7\n4 2\n", 3, "class id 7 out of range"),
        ("bounding_boxes.txt", "1 2 3 4 5\n2 1 1 -3 4\n", 2, "negative box width"),
        ("bounding_boxes.txt", "1 2 3 400 5\n", 1, "lies outside"),
        ("train_test_split.txt", "1 1\n1 0\n", 2, "duplicate id 1"),
    ],
)
def test_malformed_lines_raise_with_file_and_line(tiny_cub: Path, file, content, line, words):
    (tiny_cub / file).write_text(content)
    with pytest.raises(DataFormatError) as info:
        read_cub(tiny_cub, "all")
    err = info.value
    assert err.path.endswith(file)
    assert err.line == line
    assert words in str(err)
    assert f"{file}:{line}:" in str(err)


def test_missing_image_names_the_listing_line(tiny_cub: Path):
    (tiny_cub / "images" / "002.Beta/b_1.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"images.txt:3: image file .*b_1.jpg is missing"):
        read_cub(tiny_cub, "train")


def test_lenient_log_collects_every_problem(tiny_cub: Path):
    (tiny_cub / "image_class_labels.txt").write_text("1 1\n2 9\n3 2\n4 x\n")
    log = ProblemLog(strict=False)
    split = read_cub(tiny_cub, "all", log=log)
    lines = {p.line for p in log.problems if p.path.endswith("image_class_labels.txt")}
    assert {2, 4} <= lines  # both bad lines, not only the first
    assert any("class id 9 out of range" in p.message for p in log.problems)
    assert [r.image_id for r in split] == ["001.Alpha/a_1.jpg", "002.Beta/b_1.jpg"]


def test_segmentations_become_mask_paths(tiny_cub: Path):
    seg = tiny_cub / "segmentations" / "001.Alpha" / "a_1.png"
    seg.parent.mkdir(parents=True)
    seg.write_bytes(b"")
    split = read_cub(tiny_cub, "train")
    assert split[0].mask_paths == (seg,)
    assert split[1].mask_paths == ()


def test_missing_root_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_cub(tmp_path / "nope")
