"""Readers for WSOL data sets; they all produce :class:`ImageRecord` lists in a :class:`DatasetSplit`."""

from .check import check_dataset, detect_format
from .cub import read_cub
from .imagenet import read_imagenet_train, read_imagenet_val
from .records import DataFormatError, DatasetSplit, ImageRecord, Problem, ProblemLog
from .synth import SynthSpec, make_synthetic
from .wsolmeta import convert_cub, read_wsol_metadata, split_train_val, write_wsol_metadata

__all__ = [
    "DataFormatError",
    "DatasetSplit",
    "ImageRecord",
    "Problem",
    "ProblemLog",
    "SynthSpec",
    "check_dataset",
    "convert_cub",
    "detect_format",
    "make_synthetic",
    "read_cub",
    "read_imagenet_train",
    "read_imagenet_val",
    "read_wsol_metadata",
    "split_train_val",
    "write_wsol_metadata",
]
