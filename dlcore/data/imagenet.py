"""ImageNet's 1,000 class names and the normalisation torchvision's pretrained models expect.

The class names ship with dlcore (`imagenet_classes.txt`, package data): the short names torchvision
and PyTorch Hub use, in the index order of the models' 1,000 outputs (index 207 is "golden retriever").
Two names occur twice, as in every copy of this list: "crane" (134, the bird; 517, the machine) and
"maillot" (638, 639).

References: Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2, section 2.1.4 (Resize 256,
CenterCrop 224, Normalize with these means and standard deviations) and section 2.1.5 (the labels file).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

# ImageNet's per-channel RGB statistics (pixels in [0, 1]): one definition, the transforms' own
from dlcore.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "imagenet_classes", "imagenet_normalize"]


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[str, ...]:
    text = resources.files("dlcore.data").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:                     # a damaged install, not a user error
        raise RuntimeError(f"dlcore's imagenet_classes.txt holds {len(names)} names, not 1000: reinstall dlcore")
    return names


def imagenet_classes() -> list[str]:
    """ImageNet's 1,000 class names in the order of a torchvision model's outputs.

    Returns:
        A new list of 1,000 strings; `imagenet_classes()[207] == "golden retriever"`.

    Example:
        >>> from dlcore.data import imagenet_classes
        >>> imagenet_classes()[207]
        'golden retriever'
    """
    return list(_classes())


def imagenet_normalize(images) -> np.ndarray:
    """Scale images to [0, 1] (uint8 input) and normalise each channel with ImageNet's mean and std.

    Args:
        images: (..., H, W, 3) uint8 pixels in [0, 255] or floats already in [0, 1] (NHWC or one HWC image).

    Returns:
        float32 array of the same shape: (x / 255 - mean) / std for uint8, (x - mean) / std for floats.

    Raises:
        ValueError: the last axis is not 3 RGB channels, or the floats hold NaN or infinity.
    """
    x = np.asarray(images)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"imagenet_normalize needs RGB images (..., H, W, 3), got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
        if not np.isfinite(x).all():
            raise ValueError("imagenet_normalize got NaN or infinite pixels")
    else:
        raise ValueError(f"imagenet_normalize needs uint8 or float pixels, got {x.dtype}")
    return (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
