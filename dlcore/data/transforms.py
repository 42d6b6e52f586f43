"""Image transforms: jittable, batched, keyed.

Every transform takes a batch of NHWC images ``(B, H, W, C)``; random ones
take a ``jax.random`` key first and draw their parameters *per image* (one
key per image, split from the given key, applied with ``vmap``): the same key
gives the same augmentation, another key another one. All of them trace under
``jax.jit`` (output shapes depend only on static arguments) and run on the
device, so augmentation lives inside the jitted training step.

Pixel values are floats, in [0, 1] after `to_float`; colour transforms clip to
[0, 1]. The names and defaults are torchvision's (``transforms.Normalize``,
``RandomResizedCrop``, ``ColorJitter``, ``RandAugment``, ...), as used in the
books (Stevens et al., ch. 2 and 7; Géron, ch. 12).

Example::

    augment = compose(
        partial(random_resized_crop, size=224),
        random_flip,
        partial(color_jitter, brightness=0.4, contrast=0.4, saturation=0.4),
        partial(normalize, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
    images = jax.jit(augment)(key, images)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_choice, check_float, check_int

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "center_crop",
    "color_jitter",
    "compose",
    "imagenet_preprocess",
    "normalize",
    "rand_augment",
    "random_crop",
    "random_flip",
    "random_resized_crop",
    "random_rotation",
    "resize",
    "rotate",
    "to_float",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Array = jax.Array


def _keyed(fn: Callable) -> Callable:
    fn.keyed = True  # type: ignore[attr-defined]
    return fn


def _check(images: Any, name: str) -> Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{name}: expects a batch of NHWC images (B, H, W, C), got shape {images.shape}; "
            "add a batch axis with images[None]"
        )
    return images


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name}: size must be an int or (height, width) >= 1, got {size!r}")
    return size  # type: ignore[return-value]


def _float(images: Array) -> Array:
    return images if jnp.issubdtype(images.dtype, jnp.floating) else images.astype(jnp.float32)


def _concrete_at_most_one(*values) -> bool:
    """Whether every value is known now (not traced) and within [-1, 1]."""
    try:
        return all(np.all(np.abs(np.asarray(v, np.float64)) <= 1) for v in values)
    except (TypeError, jax.errors.TracerArrayConversionError):
        return False


def _unit_float(images: Array, who: str) -> Array:
    """Images of an operation that works on [0, 1] and clips to it: integer pixels (0..255) would all clip to
    0 or 1, so they are refused with the conversion to use."""
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{who}: expects float images in [0, 1], got {images.dtype} pixels; convert them first "
                         f"with dlcore.data.transforms.to_float(images)")
    return images


# --- deterministic ---------------------------------------------------------------


def to_float(images: Any, scale: float = 255.0) -> Array:
    """Integer pixels to float32 in [0, 1] (torchvision's ``ToTensor`` scaling).

    Args:
        images: ``(B, H, W, C)``, typically uint8.
        scale: The value of a full-intensity pixel.

    Returns:
        float32 ``(B, H, W, C)`` = ``images / scale``.
    """
    return _check(images, "to_float").astype(jnp.float32) / scale


def normalize(images: Any, mean: Sequence[float] | float, std: Sequence[float] | float) -> Array:
    """``(x - mean) / std`` per channel (torchvision's ``Normalize``).

    Args:
        images: ``(B, H, W, C)`` float.
        mean: One value, or one per channel.
        std: One value, or one per channel (all > 0).

    Returns:
        ``(B, H, W, C)`` float.
    """
    images = _check(images, "normalize")
    if not jnp.issubdtype(images.dtype, jnp.floating) and _concrete_at_most_one(mean, std):
        raise ValueError(f"normalize: {images.dtype} pixels with the mean and std of [0, 1] images (as "
                         f"ImageNet's); convert them first with dlcore.data.transforms.to_float(images)")
    images = _float(images)
    mean, std = jnp.asarray(mean, images.dtype), jnp.asarray(std, images.dtype)
    c = images.shape[-1]
    for v, label in ((mean, "mean"), (std, "std")):
        if v.ndim > 1 or (v.ndim == 1 and v.shape[0] not in (1, c)):
            raise ValueError(f"normalize: {label} must be one value or {c} (one per channel), got {v.shape}")
    try:
        concrete = np.asarray(std)
    except jax.errors.TracerArrayConversionError:  # std is traced: checked by the caller
        concrete = None
    if concrete is not None and np.any(concrete <= 0):
        raise ValueError(f"normalize: std must be > 0, got {concrete}")
    return (images - mean) / std


def resize(images: Any, size: int | Sequence[int], method: str = "linear", antialias: bool = True) -> Array:
    """Resizes images (torchvision's ``Resize``).

    Args:
        images: ``(B, H, W, C)``.
        size: ``(height, width)``, or an int: the shorter side becomes
            ``size`` and the other keeps the aspect ratio (as torchvision).
        method: ``"linear"`` (bilinear), ``"nearest"``, ``"cubic"``, ...
        antialias: Low-pass filter when shrinking (torchvision's default for
            tensors since 0.17).

    Returns:
        ``(B, h, w, C)`` float.
    """
    images = _float(_check(images, "resize"))
    _, h, w, c = images.shape
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = check_int(size, "size", low=1, who="resize")
        short, long = (h, w) if h <= w else (w, h)
        new_long = int(size * long / short)
        out = (size, new_long) if h <= w else (new_long, size)
    else:
        out = _pair(size, "resize")
    return jax.image.resize(images, (images.shape[0], *out, c), method=method, antialias=antialias)


def center_crop(images: Any, size: int | Sequence[int]) -> Array:
    """The central ``size`` window of each image (torchvision's ``CenterCrop``).

    Returns:
        ``(B, h, w, C)``.

    Raises:
        ValueError: If ``size`` exceeds the image.
    """
    images = _check(images, "center_crop")
    th, tw = _pair(size, "center_crop")
    _, h, w, _ = images.shape
    if th > h or tw > w:
        raise ValueError(f"center_crop: crop {th}x{tw} is larger than the images ({h}x{w}); resize first")
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return images[:, top:top + th, left:left + tw, :]


def imagenet_preprocess(images: Any) -> Array:
    """The books' ImageNet preprocessing: resize 256, centre crop 224, normalise.

    ``Resize(256)``, ``CenterCrop(224)``, ``ToTensor()``, ``Normalize(mean=
    [0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`` (Stevens et al., ch. 2).

    Args:
        images: ``(B, H, W, 3)``: uint8 (scaled by 1/255) or float in [0, 1].

    Returns:
        float32 ``(B, 224, 224, 3)``.
    """
    images = _check(images, "imagenet_preprocess")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        images = to_float(images)
    return normalize(center_crop(resize(images, 256), 224), IMAGENET_MEAN, IMAGENET_STD)


def rotate(images: Any, degrees: Any, fill: float = 0.0) -> Array:
    """Rotates each image about its centre, counter-clockwise, bilinear.

    Args:
        images: ``(B, H, W, C)``.
        degrees: One angle, or one per image ``(B,)``.
        fill: Value of pixels rotated in from outside.

    Returns:
        ``(B, H, W, C)`` float.
    """
    images = _float(_check(images, "rotate"))
    angles = jnp.broadcast_to(jnp.asarray(degrees, images.dtype), images.shape[:1])
    return jax.vmap(lambda im, a: _warp(im, _rotation(a, im.shape), fill))(images, angles)


# --- random ------------------------------------------------------------------------


@_keyed
def random_flip(key: Array, images: Any, p: float = 0.5, direction: str = "horizontal") -> Array:
    """Flips each image with probability ``p`` (``RandomHorizontalFlip``/``VerticalFlip``).

    Args:
        key: A ``jax.random`` key.
        images: ``(B, H, W, C)``.
        p: Probability of a flip, per image.
        direction: ``"horizontal"`` (left-right) or ``"vertical"``.
    """
    images = _check(images, "random_flip")
    check_choice(direction, "direction", ("horizontal", "vertical"), who="random_flip")
    axis = 2 if direction == "horizontal" else 1
    flip = jax.random.bernoulli(key, p, images.shape[:1])
    return jnp.where(flip[:, None, None, None], jnp.flip(images, axis=axis), images)


@_keyed
def random_crop(key: Array, images: Any, size: int | Sequence[int], padding: int = 0,
                fill: float = 0.0) -> Array:
    """A random ``size`` window of each image, after optional zero padding (``RandomCrop``).

    Returns:
        ``(B, h, w, C)``.
    """
    images = _check(images, "random_crop")
    th, tw = _pair(size, "random_crop")
    if padding:
        images = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)),
                         constant_values=fill)
    b, h, w, c = images.shape
    if th > h or tw > w:
        raise ValueError(f"random_crop: crop {th}x{tw} is larger than the (padded) images ({h}x{w})")
    ky, kx = jax.random.split(key)
    tops = jax.random.randint(ky, (b,), 0, h - th + 1)
    lefts = jax.random.randint(kx, (b,), 0, w - tw + 1)
    return jax.vmap(lambda im, t, l: jax.lax.dynamic_slice(im, (t, l, 0), (th, tw, c)))(images, tops, lefts)


@_keyed
def random_resized_crop(key: Array, images: Any, size: int | Sequence[int],
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Array:
    """A random box of random area and aspect, resized to ``size`` (``RandomResizedCrop``).

    Per image: an area fraction in ``scale`` and a log-uniform aspect ratio in
    ``ratio``; the box is clipped to the image (torchvision retries 10 times
    and then falls back to a centre crop; one clipped draw keeps this
    jittable), placed uniformly, and resampled bilinearly.

    Returns:
        ``(B, h, w, C)`` float.
    """
    images = _float(_check(images, "random_resized_crop"))
    th, tw = _pair(size, "random_resized_crop")
    b, h, w, c = images.shape
    ka, kr, ky, kx = jax.random.split(key, 4)
    area = jax.random.uniform(ka, (b,), minval=scale[0], maxval=scale[1]) * h * w
    log_r = jax.random.uniform(kr, (b,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
    r = jnp.exp(log_r)
    bw = jnp.clip(jnp.sqrt(area * r), 1.0, w)
    bh = jnp.clip(jnp.sqrt(area / r), 1.0, h)
    top = jax.random.uniform(ky, (b,)) * (h - bh)
    left = jax.random.uniform(kx, (b,)) * (w - bw)

    def one(im, top, left, bh, bw):
        # Output pixel (i, j) samples input (top + (i + .5) * bh / th - .5, ...).
        scale_ = jnp.stack([th / bh, tw / bw])
        translation = -jnp.stack([top, left]) * scale_
        return jax.image.scale_and_translate(im, (th, tw, c), (0, 1), scale_, translation, "linear",
                                             antialias=True)

    return jax.vmap(one)(images, top, left, bh, bw)


@_keyed
def random_rotation(key: Array, images: Any, degrees: float | tuple[float, float], fill: float = 0.0) -> Array:
    """Rotates each image by a uniform angle in ``[-degrees, degrees]`` (``RandomRotation``)."""
    images = _check(images, "random_rotation")
    lo, hi = (-abs(degrees), abs(degrees)) if np.isscalar(degrees) else degrees
    angles = jax.random.uniform(key, images.shape[:1], minval=lo, maxval=hi)
    return rotate(images, angles, fill)


@_keyed
def color_jitter(key: Array, images: Any, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0) -> Array:
    """Random brightness, contrast, saturation and hue (torchvision's ``ColorJitter``).

    Factors are drawn per image: brightness, contrast and saturation in
    ``[max(0, 1 - v), 1 + v]``, the hue shift in ``[-hue, hue]`` (hue <= 0.5,
    a fraction of the colour wheel). They are applied in this fixed order
    (torchvision shuffles the order per call). Saturation and hue need 3
    channels. Input in [0, 1]; output clipped to [0, 1].
    """
    images = _unit_float(_check(images, "color_jitter"), "color_jitter")
    check_float(hue, "hue", low=0, high=0.5, who="color_jitter")
    if (saturation or hue) and images.shape[-1] != 3:
        raise ValueError(f"color_jitter: saturation and hue need RGB images, got {images.shape[-1]} channels")
    b = images.shape[0]
    kb, kc, ks, kh = jax.random.split(key, 4)

    def factor(k, v):
        return jax.random.uniform(k, (b, 1, 1, 1), minval=max(0.0, 1 - v), maxval=1 + v)

    if brightness:
        images = _blend(images, jnp.zeros_like(images), factor(kb, brightness))
    if contrast:
        mean = _gray(images).mean(axis=(1, 2, 3), keepdims=True)
        images = _blend(images, mean, factor(kc, contrast))
    if saturation:
        images = _blend(images, _gray(images), factor(ks, saturation))
    if hue:
        shift = jax.random.uniform(kh, (b, 1, 1), minval=-hue, maxval=hue)
        hsv = _rgb_to_hsv(images)
        hsv = hsv.at[..., 0].set((hsv[..., 0] + shift) % 1.0)
        images = _hsv_to_rgb(hsv)
    return images


_RANDAUG_OPS = ("identity", "brightness", "contrast", "color", "sharpness", "posterize", "solarize",
                "autocontrast", "rotate", "shear_x", "shear_y", "translate_x", "translate_y")


@_keyed
def rand_augment(key: Array, images: Any, num_ops: int = 2, magnitude: float = 9.0,
                 num_magnitude_bins: int = 31, fill: float = 0.0) -> Array:
    """RandAugment: ``num_ops`` random operations per image at one magnitude.

    Operations (uniformly chosen per image and step, with a random sign where
    it has one): identity, brightness, contrast, colour (saturation),
    sharpness, posterize, solarize, autocontrast, rotate (up to 30 degrees),
    shear x/y (up to 0.3), translate x/y (up to 45% of the side). Strengths
    scale with ``magnitude / (num_magnitude_bins - 1)``, as torchvision's
    ``RandAugment`` (Cubuk et al., RandAugment, CVPR Workshops 2020); the
    histogram ``equalize`` operation is left out.

    Args:
        key: A ``jax.random`` key.
        images: ``(B, H, W, C)`` float in [0, 1].
        num_ops: Operations applied in sequence to each image.
        magnitude: Strength, from 0 to ``num_magnitude_bins - 1``.

    Returns:
        ``(B, H, W, C)`` float in [0, 1].
    """
    images = _unit_float(_check(images, "rand_augment"), "rand_augment")
    check_float(magnitude, "magnitude", low=0, high=num_magnitude_bins - 1, who="rand_augment")
    m = magnitude / (num_magnitude_bins - 1)
    _, h, w, c = images.shape

    def color_ops(im, s):
        return [
            lambda im: im,
            lambda im: _blend(im, jnp.zeros_like(im), 1 + s * 0.9 * m),
            lambda im: _blend(im, _gray(im).mean(), 1 + s * 0.9 * m),
            lambda im: _blend(im, _gray(im), 1 + s * 0.9 * m) if c == 3 else im,
            lambda im: _blend(im, _smooth(im), 1 + s * 0.9 * m),
            lambda im: jnp.floor(im * 255 / 2 ** jnp.round(4 * m)) * 2 ** jnp.round(4 * m) / 255,
            lambda im: jnp.where(im >= 1.0 - m, 1.0 - im, im),
            _autocontrast,
        ]

    def geometric(kind, s):
        if kind == "rotate":
            return _rotation(s * 30.0 * m, (h, w, c))
        if kind == "shear_x":
            return jnp.array([[1.0, 0.0, 0.0], [s * 0.3 * m, 1.0, -s * 0.3 * m * (h - 1) / 2]])
        if kind == "shear_y":
            return jnp.array([[1.0, s * 0.3 * m, -s * 0.3 * m * (w - 1) / 2], [0.0, 1.0, 0.0]])
        if kind == "translate_x":
            return jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, -s * 0.45 * m * w]])
        return jnp.array([[1.0, 0.0, -s * 0.45 * m * h], [0.0, 1.0, 0.0]])

    def one(key, im):
        for k in jax.random.split(key, num_ops):
            ko, ks = jax.random.split(k)
            op = jax.random.randint(ko, (), 0, len(_RANDAUG_OPS))
            s = jnp.where(jax.random.bernoulli(ks), 1.0, -1.0)
            branches = [functools.partial(lambda im, f: f(im), f=f) for f in color_ops(im, s)]
            branches += [functools.partial(lambda im, g: _warp(im, g, fill), g=geometric(kind, s))
                         for kind in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")]
            im = jnp.clip(jax.lax.switch(op, branches, im), 0.0, 1.0)
        return im

    return jax.vmap(one)(jax.random.split(key, images.shape[0]), images)


def compose(*steps: Callable) -> Callable[[Array, Array], Array]:
    """Chains transforms into one ``(key, images) -> images`` function.

    Random transforms (those taking a key) get their own key, split from the
    one given; deterministic ones are called with the images alone. Bind
    options with ``functools.partial``.
    """

    def keyed(step: Callable) -> bool:
        return bool(getattr(getattr(step, "func", step), "keyed", False))

    def apply(key: Array, images: Array) -> Array:
        keys = jax.random.split(key, max(1, len(steps)))
        for k, step in zip(keys, steps):
            images = step(k, images) if keyed(step) else step(images)
        return images

    return apply


# --- helpers ---------------------------------------------------------------------


def _blend(a: Array, b: Array, factor: Any) -> Array:
    """``b + factor * (a - b)`` clipped to [0, 1] (PIL's ImageEnhance)."""
    return jnp.clip(b + factor * (a - b), 0.0, 1.0)


def _gray(images: Array) -> Array:
    if images.shape[-1] != 3:
        return images
    weights = jnp.array([0.299, 0.587, 0.114], images.dtype)  # ITU-R 601-2 luma, as PIL
    return (images * weights).sum(axis=-1, keepdims=True)


def _smooth(im: Array) -> Array:
    """PIL's SMOOTH filter (3x3, centre weight 5) on one (H, W, C) image, edges kept."""
    kernel = jnp.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], im.dtype) / 13
    padded = jnp.pad(im, ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w, _ = im.shape
    out = sum(kernel[i, j] * padded[i:i + h, j:j + w] for i in range(3) for j in range(3))
    return out.at[0].set(im[0]).at[-1].set(im[-1]).at[:, 0].set(im[:, 0]).at[:, -1].set(im[:, -1])


def _autocontrast(im: Array) -> Array:
    lo = im.min(axis=(0, 1), keepdims=True)
    hi = im.max(axis=(0, 1), keepdims=True)
    return jnp.where(hi > lo, (im - lo) / jnp.where(hi > lo, hi - lo, 1.0), im)


def _rotation(degrees: Any, shape: tuple[int, ...]) -> Array:
    """2x3 matrix mapping output (row, col, 1) to input (row, col) for a
    counter-clockwise rotation about the image centre."""
    h, w = shape[0], shape[1]
    t = jnp.deg2rad(degrees)
    cos, sin = jnp.cos(t), jnp.sin(t)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    # Inverse map: rotate output coordinates clockwise back into the input.
    rows = jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])  # acts on (dy, dx)
    offset = jnp.stack([cy, cx]) - rows @ jnp.stack([cy, cx])
    return jnp.concatenate([rows, offset[:, None]], axis=1)


def _warp(im: Array, matrix: Array, fill: float) -> Array:
    """Bilinear resampling of one (H, W, C) image: output (r, c) reads input
    ``matrix @ (r, c, 1)``; outside pixels read ``fill``."""
    h, w, c = im.shape
    rr, cc = jnp.meshgrid(jnp.arange(h, dtype=im.dtype), jnp.arange(w, dtype=im.dtype), indexing="ij")
    coords = matrix.astype(im.dtype) @ jnp.stack([rr.ravel(), cc.ravel(), jnp.ones(h * w, im.dtype)])
    sample = lambda ch: jax.scipy.ndimage.map_coordinates(ch, list(coords), order=1, mode="constant",  # noqa: E731
                                                          cval=fill)
    return jax.vmap(sample, in_axes=2, out_axes=1)(im).reshape(h, w, c)


def _rgb_to_hsv(rgb: Array) -> Array:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc, minc = rgb.max(-1), rgb.min(-1)
    v = maxc
    delta = maxc - minc
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = jnp.where(maxc == r, bc - gc, jnp.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    return jnp.stack([h, s, v], -1)


def _hsv_to_rgb(hsv: Array) -> Array:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = jnp.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(jnp.int32) % 6
    r = jnp.choose(i, [v, q, p, p, t, v], mode="clip")
    g = jnp.choose(i, [t, v, v, q, p, p], mode="clip")
    b = jnp.choose(i, [p, p, t, v, v, q], mode="clip")
    return jnp.stack([r, g, b], -1)
