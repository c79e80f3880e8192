"""data.decode: device: the training images decoded and augmented on the device (the GPU path of
ImageNet-scale runs), tested here on its CPU path: the same augmentation as the loader's PIL
transform (the same draws: resize, crop offsets, flip), pixels within the filters' difference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wsol.data.dataset import DeviceAugment, EncodedDataset, collate_skipping, train_transform
from wsol.data.records import DatasetSplit, ImageRecord


def _images(tmp_path, n=4):
    rng = np.random.default_rng(0)
    records = []
    for k in range(n):
        h, w = 40 + 3 * k, 50 - 2 * k
        # smooth content, so that the two resize filters agree closely
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([(x * 255 / w), (y * 255 / h), np.full((h, w), 60 * k)], -1)
        img = (img + rng.normal(0, 2, img.shape)).clip(0, 255).astype(np.uint8)
        path = tmp_path / (f"i{k}.jpg" if k % 2 == 0 else f"i{k}.png")
        Image.fromarray(img).save(path, quality=95) if k % 2 == 0 else Image.fromarray(img).save(
            path
        )
        records.append(ImageRecord(path.name, path, k % 2, (w, h)))
    return DatasetSplit("t", "train", records)


def test_the_device_path_draws_and_augments_as_the_cpu_path(tmp_path):
    split = _images(tmp_path)
    cpu = train_transform(36, 32)
    device = DeviceAugment(36, 32, "cpu")
    encoded = EncodedDataset(split, None)
    for seed in range(6):
        torch.manual_seed(seed)
        expected = torch.stack([cpu(Image.open(r.path).convert("RGB")) for r in split.records])
        torch.manual_seed(seed)
        batch = collate_skipping([encoded[k] for k in range(len(split))])
        assert isinstance(batch[0], list)  # the files' bytes, decoded below
        got = device(batch[0])
        assert got.shape == expected.shape == (4, 3, 32, 32)
        # the same crop and flip: the pixels agree up to the two resize filters (and JPEG
        # decoders); a different crop or flip would differ by far more
        diff = (got - expected).abs().mean(dim=(1, 2, 3))
        assert (diff < 0.1).all(), diff


def test_training_decodes_on_the_device_path(synth_root, tmp_path):
    from conftest import cpu_run

    from wsol.config import load_config
    from wsol.train import train

    cfg = load_config(
        None, cpu_run(synth_root, **{"data.val_per_class": 2, "data.decode": "device"})
    )
    row = train(cfg, tmp_path / "run", progress=False, echo=False)
    assert row["train_images"] > 0 and np.isfinite(row["train_loss"])
    import yaml

    runtime = yaml.safe_load((tmp_path / "run" / "runtime.yaml").read_text())
    assert (
        runtime[0]["loader"]["decode"] == "device" and runtime[0]["loader"]["pin_memory"] is False
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_decoding_matches_the_cpus(tmp_path):
    split = _images(tmp_path)
    encoded = [EncodedDataset(split, None)[k][0] for k in range(len(split))]
    cpu = DeviceAugment(36, 32, "cpu").decode(encoded)
    gpu = DeviceAugment(36, 32, "cuda").decode(encoded)
    for a, b in zip(cpu, gpu):
        assert a.shape == b.shape
        assert (a.float() - b.cpu().float()).abs().mean() < 2.0  # nvjpeg vs libjpeg rounding


def test_a_file_that_cannot_be_decoded_is_named(tmp_path):
    from wsol.data.dataset import ImageReadError

    split = _images(tmp_path)
    bad = split.records[2].path
    bad.write_bytes(bad.read_bytes()[:40])  # a JPEG cut short: its header only
    encoded = EncodedDataset(split, None)
    batch = collate_skipping([encoded[k] for k in range(len(split))])
    names = [str(r.path) for r in split.records]
    with pytest.raises(ImageReadError, match=str(bad.name)):
        DeviceAugment(36, 32, "cpu")(batch[0], names)
