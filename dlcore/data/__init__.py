"""Datasets as dicts of NumPy arrays; loaders, transforms, text and time-series tools.

- `load(name, split)`: a named dataset, real (TFDS copy, dlcore's cache or a
  checksummed download) or embedded; `load_or_standin` falls back on an
  embedded stand-in when the real one cannot be had; `names`, `info`.
- `protocol`: the one batch protocol ({"x", "y", "w"}; inputs may be a tuple or
  dict) and `protocol.source`, which turns arrays, a `Loader`, a grain source or
  any iterable of batches into the batches the Trainer consumes.
- `Loader`: shuffled mini-batches on the device; `source_batches`: grain over
  random-access sources larger than memory.
- `transforms`: jittable, batched, keyed image transforms.
- `text`: vocabularies, BPE/WordPiece tokenizers, padding and masks, word vectors.
- `timeseries`: forecasting windows, covariates, chronological splits, baselines.
- `tabular`: CSV to arrays, one-hot and standardisation fitted on train.
- `ImageFolder`: a class-per-subfolder tree of images, decoded once (cached on disk), random access;
  `read_image`: one image resized and center-cropped.
- `imagenet_classes`, `imagenet_normalize`: ImageNet's 1,000 class names (shipped) and channel statistics.
"""

from dlcore.data import protocol, tabular, text, timeseries, transforms
from dlcore.data.download import ChecksumError, DownloadError
from dlcore.data.folder import ImageFolder, read_image
from dlcore.data.idx import read_idx
from dlcore.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_classes, imagenet_normalize
from dlcore.data.loader import ArraySource, Loader, batches, num_batches, source_batches, validate_split
from dlcore.data.registry import (
    DatasetInfo,
    DatasetNotFoundError,
    cache_dir,
    info,
    load,
    load_or_standin,
    names,
    prepare,
)

__all__ = [
    "ArraySource",
    "ChecksumError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DownloadError",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolder",
    "Loader",
    "batches",
    "cache_dir",
    "imagenet_classes",
    "imagenet_normalize",
    "info",
    "load",
    "load_or_standin",
    "names",
    "num_batches",
    "prepare",
    "protocol",
    "read_idx",
    "read_image",
    "source_batches",
    "tabular",
    "text",
    "timeseries",
    "transforms",
    "validate_split",
]
