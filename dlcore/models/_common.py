"""Input checks shared by the image models: fail fast, naming the model, before any computation."""

from __future__ import annotations

import jax


def check_image(x: jax.Array, *, channels: int, min_size: int, model: str) -> None:
    """Raise ValueError unless `x` is an NHWC batch with `channels` channels and H, W >= `min_size`.

    Args:
        x: the model's input.
        channels: expected C.
        min_size: smallest H and W the model's strides and pooling leave at least one pixel of.
        model: the model's name for the message.
    """
    shape = tuple(x.shape)
    if x.ndim != 4:
        raise ValueError(f"{model} expects NHWC images (N, H, W, {channels}), got shape {shape}")
    if shape[-1] != channels:
        hint = " (NCHW input? transpose it to NHWC)" if shape[1] == channels else ""
        raise ValueError(f"{model} expects {channels} input channels (last axis), got shape {shape}{hint}")
    if min(shape[1], shape[2]) < min_size:
        raise ValueError(f"{model} needs images of at least {min_size}x{min_size}: its strides and "
                         f"pooling shrink smaller ones to nothing; got {shape[1]}x{shape[2]}")


def check_map(x: jax.Array, got: tuple[int, int], want: tuple[int, int], *, model: str, image_size: int) -> None:
    """Raise ValueError unless the conv stack maps `x` to the (H, W) the first Linear was sized for."""
    if tuple(got) != tuple(want):
        raise ValueError(f"{model} was built for {image_size}x{image_size} images (its first Linear sees a "
                         f"{want[0]}x{want[1]} map); got {x.shape[1]}x{x.shape[2]}, which gives "
                         f"{got[0]}x{got[1]}: create it with image_size={x.shape[1]}")
