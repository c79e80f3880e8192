from pathlib import Path

import pytest
from conftest import write_image

from wsol.data import DataFormatError, read_imagenet_train, read_imagenet_val

XML = """<annotation>
  <folder>val</folder><filename>{name}</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
OBJ = "<object><name>{wnid}</name><bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>"


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    for wnid in ("n02", "n01"):
        for i in range(2):
            write_image(root / "train" / wnid / f"{wnid}_{i}.JPEG", (20, 16), seed=i)
    write_image(root / "val" / "ILSVRC2012_val_00000001.JPEG", (40, 30))
    write_image(root / "val" / "ILSVRC2012_val_00000002.JPEG", (32, 32))
    ann = root / "xml"
    ann.mkdir()
    objs = OBJ.format(1, 2, 30, 20, wnid="n02") + OBJ.format(5, 5, 10, 10, wnid="n02")
    (ann / "ILSVRC2012_val_00000001.xml").write_text(
        XML.format(name="ILSVRC2012_val_00000001", w=40, h=30, objects=objs)
    )
    (ann / "ILSVRC2012_val_00000002.xml").write_text(
        XML.format(
            name="ILSVRC2012_val_00000002", w=32, h=32, objects=OBJ.format(0, 0, 31, 31, wnid="n01")
        )
    )
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n02 1 2 30 20 n02 5 5 10 10 \n"
        "ILSVRC2012_val_00000002,n01 0 0 31 31 \n"
    )
    return root


def test_train_folders_sorted_by_wnid(imagenet: Path):
    train = read_imagenet_train(imagenet)
    assert train.class_names == ["n01", "n02"]
    assert [r.label for r in train] == [0, 0, 1, 1]
    assert train[0].image_id == "train/n01/n01_0.JPEG"


@pytest.mark.parametrize("source", ["xml", "LOC_val_solution.csv"])
def test_val_boxes_from_xml_and_csv_agree(imagenet: Path, source):
    val = read_imagenet_val(imagenet, imagenet / source)
    assert [r.image_id for r in val] == [
        "val/ILSVRC2012_val_00000001.JPEG",
        "val/ILSVRC2012_val_00000002.JPEG",
    ]
    assert [r.label for r in val] == [1, 0]
    assert val[0].boxes == ((1.0, 2.0, 30.0, 20.0), (5.0, 5.0, 10.0, 10.0))
    assert val[0].size == (40, 30)


def test_malformed_csv_row_names_line(imagenet: Path):
    csv = imagenet / "LOC_val_solution.csv"
    csv.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n02 1 2 30\n")
    with pytest.raises(DataFormatError, match=r"LOC_val_solution.csv:2: PredictionString"):
        read_imagenet_val(imagenet, csv)


def test_malformed_xml_names_file(imagenet: Path):
    bad = imagenet / "xml" / "ILSVRC2012_val_00000002.xml"
    bad.write_text("<annotation><size>")
    with pytest.raises(DataFormatError, match="ILSVRC2012_val_00000002.xml:1: malformed XML"):
        read_imagenet_val(imagenet, imagenet / "xml")
