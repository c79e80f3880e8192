from pathlib import Path

from wsol.cli import main
from wsol.data import check_dataset, convert_cub


def test_good_sets_have_no_problems(tiny_cub: Path, tmp_path: Path):
    problems, splits = check_dataset(tiny_cub, progress=False)
    # a CUB root is two splits (issue: it used to report one)
    assert problems == [] and [(s.split, len(s)) for s in splits] == [("train", 2), ("test", 2)]
    written = convert_cub(tiny_cub, tmp_path / "meta", val_per_class=0)
    problems, splits = check_dataset(tmp_path / "meta", images=tiny_cub / "images", progress=False)
    assert problems == [] and len(splits) == 2
    assert main(["data", "check", str(tiny_cub), "--quiet"]) == 0
    assert written


def test_broken_cub_reports_every_problem_and_changes_nothing(tiny_cub: Path, capsys):
    (tiny_cub / "images" / "001.Alpha/a_2.jpg").unlink()  # missing file (images.txt line 2)
    (tiny_cub / "images" / "002.Beta/b_1.jpg").write_bytes(b"not an image")  # unreadable (line 3)
    (tiny_cub / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n4 5\n")  # label out of range
    (tiny_cub / "bounding_boxes.txt").write_text("1 2 3 4 5\n1 30 20 15 5\n3 1 1 2 2\n4 1 1 -2 2\n")
    before = {p: p.read_bytes() for p in tiny_cub.rglob("*") if p.is_file()}
    problems, _ = check_dataset(tiny_cub, progress=False)
    text = "\n".join(str(p) for p in problems)
    assert "images.txt:2: image file" in text and "missing" in text
    assert "images.txt:3: image file" in text and "unreadable" in text
    assert "image_class_labels.txt:4: class id 5 out of range" in text
    assert "bounding_boxes.txt:2: box" in text and "outside" in text  # 30+15 > 40
    assert "bounding_boxes.txt:4: negative box width" in text
    assert {p: p.read_bytes() for p in tiny_cub.rglob("*") if p.is_file()} == before
    assert main(["data", "check", str(tiny_cub), "--quiet"]) == 1
    out = capsys.readouterr()
    assert "image_class_labels.txt:4" in out.out and "problem(s)" in out.err


def test_metadata_size_mismatch_and_duplicates(tiny_cub: Path, tmp_path: Path):
    written = convert_cub(tiny_cub, tmp_path / "meta", val_per_class=0)
    sizes = written["test"] / "image_sizes.txt"
    sizes.write_text(
        sizes.read_text().replace("001.Alpha/a_2.jpg,50,40", "001.Alpha/a_2.jpg,51,40")
    )
    ids = written["test"] / "image_ids.txt"
    ids.write_text(ids.read_text() + "002.Beta/b_2.jpg\n")
    problems, _ = check_dataset(tmp_path / "meta", images=tiny_cub / "images", progress=False)
    text = "\n".join(str(p) for p in problems)
    assert (
        "test/image_ids.txt:1: 001.Alpha/a_2.jpg: metadata size 51x40 differs from the file's 50x40"
        in text
    )
    assert "test/image_ids.txt:3: duplicate image id 002.Beta/b_2.jpg" in text


def test_missing_path_fails_cleanly(tmp_path: Path, capsys):
    assert main(["data", "check", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_reference_is_up_to_date():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parent.parent / "scripts" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DOC.read_text() == module.render(), "run: python scripts/gen_cli_docs.py"


def test_missing_box_and_size_lines_are_problems(tiny_cub: Path, tmp_path: Path, capsys):
    (tiny_cub / "bounding_boxes.txt").write_text("1 2.0 3.0 20.0 10.0\n2 0 0 50 40\n3 5 5 10 10\n")
    problems, _ = check_dataset(tiny_cub, progress=False)
    assert any("b_2.jpg has no box" in str(p) for p in problems)  # image 4 lost its lines
    meta = tmp_path / "meta"
    written = convert_cub(_fresh_cub(tmp_path), meta, val_per_class=0)
    sizes = written["test"] / "image_sizes.txt"
    sizes.write_text("".join(sizes.read_text().splitlines(keepends=True)[1:]))
    assert main(["data", "check", str(written["test"]), "--quiet"]) == 1
    assert "has no size (no line in image_sizes.txt)" in capsys.readouterr().out


def _fresh_cub(tmp_path: Path) -> Path:
    from conftest import write_tiny_cub

    return write_tiny_cub(tmp_path / "fresh")


def test_gen_cli_docs_help_prints_help_and_writes_nothing(capsys):
    import importlib.util

    script = Path(__file__).parent.parent / "scripts" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs_help", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = module.DOC.stat().st_mtime_ns
    import pytest

    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0 and "Rewrite" in capsys.readouterr().out
    assert module.DOC.stat().st_mtime_ns == before


def test_converted_metadata_checks_clean_against_the_cub_root(synth_root, tmp_path, capsys):
    # `wsol data convert ROOT --out META` prints how to check it, and that command finds every
    # image under ROOT/images and every mask under ROOT/segmentations
    from wsol.cli import main

    assert main(["data", "convert", str(synth_root), "--out", str(tmp_path / "meta")]) == 0
    printed = capsys.readouterr().out
    test = tmp_path / "meta" / "SYNTH" / "test"
    assert f"wsol data check {test} --images {synth_root}" in printed
    assert main(["data", "check", str(test), "--images", str(synth_root), "--quiet"]) == 0
    assert (
        main(["data", "check", str(test), "--images", str(synth_root / "images"), "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert out.count("no problems") == 2
