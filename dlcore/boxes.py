"""Bounding boxes: formats, transforms with their image, IoU and its losses, NMS, the focal loss, AP/mAP, drawing.

Everything follows torchvision's names and semantics (``torchvision.ops`` and the box kernels of
``torchvision.transforms.v2.functional``), on arrays:

- formats: ``"xyxy"`` (corners x1, y1, x2, y2), ``"xywh"`` (top-left corner, width, height) and
  ``"cxcywh"`` (centre, width, height); a box is the last axis of size 4. Coordinates are pixels with
  x to the right and y down; a canvas size is ``(H, W)``, as torchvision's ``canvas_size``.
- transforms: ``resize``, ``crop``, ``center_crop``, ``horizontal_flip`` and ``vertical_flip`` move
  boxes the way the same transform moves their image.
- overlap: ``box_area``, ``box_iou`` and ``generalized_box_iou`` (pairwise, ``(N, M)``) and the
  element-wise losses ``giou_loss``, ``diou_loss`` and ``ciou_loss`` (torchvision's
  ``generalized_box_iou_loss``, ``distance_box_iou_loss``, ``complete_box_iou_loss``).
- detection: ``nms`` and ``batched_nms`` (exact, on the host, indices by decreasing score),
  ``nms_padded`` (fixed size, jit-friendly), ``sigmoid_focal_loss`` (RetinaNet),
  ``average_precision``, ``mean_average_precision`` and ``coco_map`` (COCO's matching and 101-point
  interpolated precision), and ``draw_bounding_boxes``.

Bad input (a box with x2 < x1 or a negative width, a NaN coordinate, a wrong shape, an unknown format)
raises a one-line ``ValueError`` naming the function and the box, before any computation. The checks
need concrete values: inside ``jax.jit`` the shapes are still checked, the values are not.

References:
    Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 12, Classification and
    Localization (box formats, ``BoundingBoxes`` through a transform, IoU, GIoU and CIoU losses), Object
    Detection (non-max suppression), Mean Average Precision, and the RetinaNet focal loss;
    Rezatofighi et al., "Generalized Intersection over Union" (2019); Zheng et al., "Distance-IoU Loss"
    (2020) and "Enhancing Geometric Factors in Model Learning and Inference for Object Detection and
    Instance Segmentation" (2020); Lin et al., "Focal Loss for Dense Object Detection" (2017); Lin et al.,
    "Microsoft COCO: Common Objects in Context" (2014) for the COCO metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_choice, check_float, check_int

__all__ = [
    "FORMATS",
    "average_precision",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "center_crop",
    "ciou_loss",
    "coco_map",
    "crop",
    "diou_loss",
    "draw_bounding_boxes",
    "generalized_box_iou",
    "giou_loss",
    "horizontal_flip",
    "mean_average_precision",
    "nms",
    "nms_padded",
    "resize",
    "sigmoid_focal_loss",
    "vertical_flip",
]

FORMATS = ("xyxy", "xywh", "cxcywh")
_REDUCTIONS = ("none", "mean", "sum")
# COCO's thresholds, computed as pycocotools computes them (the same floats, so the same matches)
_COCO_IOUS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)


# -- checks -----------------------------------------------------------------------------------------


def _concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def _check_fmt(fmt: Any, name: str, who: str) -> str:
    if isinstance(fmt, str) and fmt.lower() in FORMATS:
        return fmt.lower()
    raise ValueError(f"{who}: {name} must be one of 'xyxy', 'xywh', 'cxcywh', got {fmt!r}")


def _check_boxes(boxes: Any, who: str, name: str = "boxes", fmt: str = "xyxy", *, ndim: int | None = 2) -> Any:
    """``boxes`` as an array after checking its shape ``(N, 4)`` (or ``(..., 4)`` with ``ndim=None``) and,
    when it is concrete, that every coordinate is finite and every box well formed in ``fmt``."""
    try:
        shape = tuple(np.shape(boxes))
    except TypeError:
        raise ValueError(f"{who}: {name} must be an array of boxes, got {type(boxes).__name__}") from None
    if not shape or shape[-1] != 4 or (ndim is not None and len(shape) != ndim):
        want = "(N, 4)" if ndim == 2 else "(..., 4)"
        raise ValueError(f"{who}: {name} must have shape {want} (one box of 4 numbers per row), got shape {shape}")
    if not _concrete(boxes):
        return boxes
    arr = np.asarray(boxes)
    if not (np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating)):
        raise ValueError(f"{who}: {name} must hold real numbers, got dtype {arr.dtype}")
    flat = arr.reshape(-1, 4).astype(np.float64)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{who}: {name}{_where(i, shape)} = {flat[i].tolist()} is not finite")
    if fmt == "xyxy":
        for axis, (a, b) in (("x", (0, 2)), ("y", (1, 3))):
            bad = flat[:, b] < flat[:, a]
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"{who}: {name}{_where(i, shape)} = {flat[i].tolist()} has {axis}2 < {axis}1; "
                                 "boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2 (box_convert converts "
                                 "other formats)")
    else:
        bad = (flat[:, 2] < 0) | (flat[:, 3] < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{who}: {name}{_where(i, shape)} = {flat[i].tolist()} has a negative width or height "
                             f"(format {fmt!r})")
    return boxes


def _where(i: int, shape: tuple) -> str:
    lead = shape[:-1]
    return "[" + ", ".join(map(str, np.unravel_index(i, lead))) + "]" if lead else ""


def _check_reduction(reduction: Any, who: str) -> str:
    return check_choice(reduction, "reduction", _REDUCTIONS, who=who)


def _reduce(loss: jax.Array, reduction: str) -> jax.Array:
    if reduction == "mean":  # torchvision: the mean of nothing is 0, not NaN
        return jnp.mean(loss) if loss.size else jnp.sum(loss) * 0.0
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


# -- formats and transforms -------------------------------------------------------------------------


def box_convert(boxes: Any, in_fmt: str, out_fmt: str) -> jax.Array:
    """Converts boxes between the ``"xyxy"``, ``"xywh"`` and ``"cxcywh"`` formats (``torchvision.ops.box_convert``).

    Args:
        boxes: ``(..., 4)`` boxes in ``in_fmt``.
        in_fmt, out_fmt: ``"xyxy"`` (x1, y1, x2, y2), ``"xywh"`` (x1, y1, w, h) or ``"cxcywh"``
            (centre x, centre y, w, h).

    Returns:
        ``(..., 4)`` boxes in ``out_fmt`` (float; integer boxes are promoted to float32).

    Raises:
        ValueError: For an unknown format, a last axis other than 4, a non-finite coordinate, or a box
            with x2 < x1 (or a negative width), naming the box.

    Example (Géron, ch. 12, Classification and Localization):
        >>> box_convert([[377, 199, 248, 262]], "cxcywh", "xyxy")   # [[253., 68., 501., 330.]]
    """
    in_fmt = _check_fmt(in_fmt, "in_fmt", "box_convert")
    out_fmt = _check_fmt(out_fmt, "out_fmt", "box_convert")
    b = _as_float(_check_boxes(boxes, "box_convert", fmt=in_fmt, ndim=None))
    if in_fmt == out_fmt:
        return b
    return _from_xyxy(_to_xyxy(b, in_fmt), out_fmt)


def _to_xyxy(b: jax.Array, fmt: str) -> jax.Array:
    if fmt == "xyxy":
        return b
    if fmt == "xywh":
        return jnp.concatenate([b[..., :2], b[..., :2] + b[..., 2:]], axis=-1)
    half = b[..., 2:] / 2
    return jnp.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def _from_xyxy(b: jax.Array, fmt: str) -> jax.Array:
    if fmt == "xyxy":
        return b
    wh = b[..., 2:] - b[..., :2]
    if fmt == "xywh":
        return jnp.concatenate([b[..., :2], wh], axis=-1)
    return jnp.concatenate([(b[..., :2] + b[..., 2:]) / 2, wh], axis=-1)


def _check_size(size: Any, name: str, who: str) -> tuple[int, int]:
    try:
        h, w = size
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{who}: {name} must be (height, width), two positive ints, got {size!r}")
    return int(h), int(w)


def _resized_size(canvas: tuple[int, int], size: Any, who: str) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        s = check_int(size, "size", low=1, who=who)
        h, w = canvas
        # torchvision's rule for an int: the shorter side becomes `size`, the longer keeps the aspect ratio
        return (s, int(s * w / h)) if h <= w else (int(s * h / w), s)
    return _check_size(size, "size", who)


def resize(boxes: Any, canvas_size: Any, size: Any, fmt: str = "xyxy") -> jax.Array:
    """Boxes of an image of ``canvas_size`` resized to ``size`` (``Resize(size)`` on the image).

    Args:
        boxes: ``(..., 4)`` boxes in ``fmt``.
        canvas_size: the image's ``(H, W)`` before resizing.
        size: ``(h, w)``, or an int: the shorter side becomes ``size`` and the longer keeps the aspect ratio
            (``int(size * long / short)``), as torchvision's ``Resize(size)``.
        fmt: the boxes' format.

    Returns:
        ``(..., 4)`` float boxes in ``fmt`` on the new canvas: x scaled by ``w / W``, y by ``h / H``.
    """
    fmt = _check_fmt(fmt, "fmt", "resize")
    canvas = _check_size(canvas_size, "canvas_size", "resize")
    h, w = _resized_size(canvas, size, "resize")
    b = _as_float(_check_boxes(boxes, "resize", fmt=fmt, ndim=None))
    scale = jnp.asarray([w / canvas[1], h / canvas[0]] * 2, b.dtype)
    return b * scale


def crop(boxes: Any, top: int, left: int, height: int, width: int, fmt: str = "xyxy", *,
         clamp: bool = True) -> jax.Array:
    """Boxes of an image cropped to rows ``top:top+height`` and columns ``left:left+width``.

    Args:
        boxes: ``(..., 4)`` boxes in ``fmt``.
        top, left: the crop's top-left corner in the image (may be negative: padding).
        height, width: the crop's size, the new canvas.
        fmt: the boxes' format.
        clamp: clip the boxes to the new canvas (torchvision's v2 ``crop`` does); a box wholly outside it
            becomes empty (zero width or height).

    Returns:
        ``(..., 4)`` float boxes in ``fmt`` on the ``(height, width)`` canvas.
    """
    fmt = _check_fmt(fmt, "fmt", "crop")
    for v, name in ((top, "top"), (left, "left")):
        check_int(v, name, who="crop")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise ValueError(f"crop: height and width must be positive ints, got {height!r} and {width!r}")
    height, width = int(height), int(width)
    b = _to_xyxy(_as_float(_check_boxes(boxes, "crop", fmt=fmt, ndim=None)), fmt)
    b = b - jnp.asarray([left, top, left, top], b.dtype)
    if clamp:
        b = jnp.clip(b, 0, jnp.asarray([width, height, width, height], b.dtype))
    return _from_xyxy(b, fmt)


def center_crop(boxes: Any, canvas_size: Any, output_size: Any, fmt: str = "xyxy", *, clamp: bool = True) -> jax.Array:
    """Boxes of an image center-cropped from ``canvas_size`` to ``output_size`` (``CenterCrop``).

    The crop's corner is torchvision's: ``top = round((H - h) / 2)``, ``left = round((W - w) / 2)``.

    Args:
        boxes: ``(..., 4)`` boxes in ``fmt``.
        canvas_size: the image's ``(H, W)``.
        output_size: ``(h, w)`` or an int for a square.
        fmt: the boxes' format.
        clamp: clip the boxes to the crop.
    """
    H, W = _check_size(canvas_size, "canvas_size", "center_crop")
    if isinstance(output_size, (int, np.integer)) and not isinstance(output_size, bool):
        output_size = (output_size, output_size)
    h, w = _check_size(output_size, "output_size", "center_crop")
    top, left = int(round((H - h) / 2.0)), int(round((W - w) / 2.0))
    return crop(boxes, top, left, h, w, fmt, clamp=clamp)


def horizontal_flip(boxes: Any, canvas_size: Any, fmt: str = "xyxy") -> jax.Array:
    """Boxes of an image flipped left to right: x becomes ``W - x`` (the corners swap).

    Args:
        boxes: ``(..., 4)`` boxes in ``fmt``.
        canvas_size: the image's ``(H, W)``.
        fmt: the boxes' format.
    """
    fmt = _check_fmt(fmt, "fmt", "horizontal_flip")
    _, W = _check_size(canvas_size, "canvas_size", "horizontal_flip")
    b = _to_xyxy(_as_float(_check_boxes(boxes, "horizontal_flip", fmt=fmt, ndim=None)), fmt)
    return _from_xyxy(jnp.stack([W - b[..., 2], b[..., 1], W - b[..., 0], b[..., 3]], axis=-1), fmt)


def vertical_flip(boxes: Any, canvas_size: Any, fmt: str = "xyxy") -> jax.Array:
    """Boxes of an image flipped top to bottom: y becomes ``H - y`` (the corners swap).

    Args:
        boxes: ``(..., 4)`` boxes in ``fmt``.
        canvas_size: the image's ``(H, W)``.
        fmt: the boxes' format.
    """
    fmt = _check_fmt(fmt, "fmt", "vertical_flip")
    H, _ = _check_size(canvas_size, "canvas_size", "vertical_flip")
    b = _to_xyxy(_as_float(_check_boxes(boxes, "vertical_flip", fmt=fmt, ndim=None)), fmt)
    return _from_xyxy(jnp.stack([b[..., 0], H - b[..., 3], b[..., 2], H - b[..., 1]], axis=-1), fmt)


# -- overlap ----------------------------------------------------------------------------------------


def box_area(boxes: Any) -> jax.Array:
    """Areas of ``(N, 4)`` xyxy boxes: ``(x2 - x1) * (y2 - y1)``, shape ``(N,)``."""
    b = _as_float(_check_boxes(boxes, "box_area"))
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _inter_union(b1: jax.Array, b2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Pairwise intersection and union areas, ``(N, M)`` each."""
    lt = jnp.maximum(b1[:, None, :2], b2[None, :, :2])
    rb = jnp.minimum(b1[:, None, 2:], b2[None, :, 2:])
    wh = jnp.clip(rb - lt, 0)
    inter = wh[..., 0] * wh[..., 1]
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return inter, area1[:, None] + area2[None, :] - inter


def _pair(boxes1: Any, boxes2: Any, who: str) -> tuple[jax.Array, jax.Array]:
    b1 = _as_float(_check_boxes(boxes1, who, "boxes1"))
    b2 = _as_float(_check_boxes(boxes2, who, "boxes2"))
    dtype = jnp.result_type(b1, b2)
    return b1.astype(dtype), b2.astype(dtype)


def box_iou(boxes1: Any, boxes2: Any) -> jax.Array:
    """Intersection over union of every pair of boxes (``torchvision.ops.box_iou``).

    ``IoU = |P ∩ T| / |P ∪ T|`` (Géron, ch. 12, Classification and Localization): 0 without overlap,
    1 for the same box. Two empty boxes at the same place give NaN (0 / 0), as in torchvision.

    Args:
        boxes1: ``(N, 4)`` xyxy boxes.
        boxes2: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` IoUs.
    """
    b1, b2 = _pair(boxes1, boxes2, "box_iou")
    inter, union = _inter_union(b1, b2)
    return inter / union


def generalized_box_iou(boxes1: Any, boxes2: Any) -> jax.Array:
    """Generalized IoU of every pair of boxes (``torchvision.ops.generalized_box_iou``).

    ``GIoU = IoU - |S - (P ∪ T)| / |S|`` where ``S`` is the smallest box enclosing both (Rezatofighi et al.,
    2019): in [-1, 1], and still informative when the boxes do not overlap.

    Args:
        boxes1: ``(N, 4)`` xyxy boxes.
        boxes2: ``(M, 4)`` xyxy boxes.

    Returns:
        ``(N, M)`` GIoUs.
    """
    b1, b2 = _pair(boxes1, boxes2, "generalized_box_iou")
    inter, union = _inter_union(b1, b2)
    iou = inter / union
    lt = jnp.minimum(b1[:, None, :2], b2[None, :, :2])
    rb = jnp.maximum(b1[:, None, 2:], b2[None, :, 2:])
    wh = jnp.clip(rb - lt, 0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def _elementwise(boxes1: Any, boxes2: Any, who: str) -> tuple[jax.Array, jax.Array]:
    b1 = _as_float(_check_boxes(boxes1, who, "boxes1", ndim=None))
    b2 = _as_float(_check_boxes(boxes2, who, "boxes2", ndim=None))
    if b1.shape != b2.shape:
        raise ValueError(f"{who}: boxes1 of shape {tuple(b1.shape)} and boxes2 of shape {tuple(b2.shape)} must "
                         "have the same shape (the loss pairs box i with box i)")
    dtype = jnp.result_type(b1, b2)
    return b1.astype(dtype), b2.astype(dtype)


def _loss_inter_union(b1: jax.Array, b2: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Element-wise intersection and union of ``(..., 4)`` box pairs, ``(...,)`` each."""
    xi1 = jnp.maximum(b1[..., 0], b2[..., 0])
    yi1 = jnp.maximum(b1[..., 1], b2[..., 1])
    xi2 = jnp.minimum(b1[..., 2], b2[..., 2])
    yi2 = jnp.minimum(b1[..., 3], b2[..., 3])
    overlap = (xi2 > xi1) & (yi2 > yi1)
    inter = jnp.where(overlap, (xi2 - xi1) * (yi2 - yi1), 0.0)
    union = ((b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
             + (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1]) - inter)
    return inter, union


def _enclosing(b1: jax.Array, b2: jax.Array) -> tuple[jax.Array, ...]:
    return (jnp.minimum(b1[..., 0], b2[..., 0]), jnp.minimum(b1[..., 1], b2[..., 1]),
            jnp.maximum(b1[..., 2], b2[..., 2]), jnp.maximum(b1[..., 3], b2[..., 3]))


def giou_loss(boxes1: Any, boxes2: Any, reduction: str = "none", eps: float = 1e-7) -> jax.Array:
    """The generalized IoU loss ``1 - GIoU`` of box pairs (``torchvision.ops.generalized_box_iou_loss``).

    Géron, ch. 12, Classification and Localization: GIoU "gets smaller as P and T get further apart, which
    gives gradient descent something to play with"; the loss is ``1 - GIoU``, in [0, 2].

    Args:
        boxes1: ``(..., 4)`` xyxy boxes (e.g. predictions).
        boxes2: ``(..., 4)`` xyxy boxes of the same shape (targets).
        reduction: ``"none"`` (one loss per pair, shape ``(...)``), ``"mean"`` (0 for no boxes) or ``"sum"``.
        eps: added to the union and the enclosing area against division by zero.

    Returns:
        The losses, shape ``(...)``, or their mean or sum.
    """
    reduction = _check_reduction(reduction, "giou_loss")
    eps = check_float(eps, "eps", low=0, who="giou_loss")
    b1, b2 = _elementwise(boxes1, boxes2, "giou_loss")
    inter, union = _loss_inter_union(b1, b2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = _enclosing(b1, b2)
    enclosing = (x2 - x1) * (y2 - y1)
    return _reduce(1 - (iou - (enclosing - union) / (enclosing + eps)), reduction)


def _diou_iou(b1: jax.Array, b2: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    inter, union = _loss_inter_union(b1, b2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = _enclosing(b1, b2)
    diagonal2 = (x2 - x1) ** 2 + (y2 - y1) ** 2 + eps
    dx = (b1[..., 0] + b1[..., 2]) / 2 - (b2[..., 0] + b2[..., 2]) / 2
    dy = (b1[..., 1] + b1[..., 3]) / 2 - (b2[..., 1] + b2[..., 3]) / 2
    return 1 - iou + (dx ** 2 + dy ** 2) / diagonal2, iou


def diou_loss(boxes1: Any, boxes2: Any, reduction: str = "none", eps: float = 1e-7) -> jax.Array:
    """The distance IoU loss of box pairs (``torchvision.ops.distance_box_iou_loss``).

    ``1 - IoU + d² / c²``: ``d`` the distance between the boxes' centres, ``c`` the diagonal of the smallest
    box enclosing both (Zheng et al., 2020).

    Args:
        boxes1, boxes2: ``(..., 4)`` xyxy boxes of the same shape.
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        eps: against division by zero.

    Returns:
        The losses, shape ``(...)``, or their mean or sum.
    """
    reduction = _check_reduction(reduction, "diou_loss")
    eps = check_float(eps, "eps", low=0, who="diou_loss")
    b1, b2 = _elementwise(boxes1, boxes2, "diou_loss")
    return _reduce(_diou_iou(b1, b2, eps)[0], reduction)


def ciou_loss(boxes1: Any, boxes2: Any, reduction: str = "none", eps: float = 1e-7) -> jax.Array:
    """The complete IoU loss of box pairs (``torchvision.ops.complete_box_iou_loss``).

    The DIoU loss plus ``α v`` where ``v = 4 / π² (atan(w_t / h_t) - atan(w_p / h_p))²`` compares the aspect
    ratios and ``α = v / (1 - IoU + v + eps)`` is treated as a constant (no gradient), as in the paper and
    torchvision. Géron, ch. 12, Classification and Localization: "it is becoming the default loss for
    localization".

    Args:
        boxes1: ``(..., 4)`` xyxy boxes (predictions ``p``).
        boxes2: ``(..., 4)`` xyxy boxes of the same shape (targets ``t``).
        reduction: ``"none"``, ``"mean"`` or ``"sum"``.
        eps: against division by zero.

    Returns:
        The losses, shape ``(...)``, or their mean or sum.
    """
    reduction = _check_reduction(reduction, "ciou_loss")
    eps = check_float(eps, "eps", low=0, who="ciou_loss")
    b1, b2 = _elementwise(boxes1, boxes2, "ciou_loss")
    diou, iou = _diou_iou(b1, b2, eps)
    w_p, h_p = b1[..., 2] - b1[..., 0], b1[..., 3] - b1[..., 1]
    w_t, h_t = b2[..., 2] - b2[..., 0], b2[..., 3] - b2[..., 1]
    v = (4 / math.pi ** 2) * (jnp.arctan(w_t / h_t) - jnp.arctan(w_p / h_p)) ** 2
    alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))
    return _reduce(diou + alpha * v, reduction)


# -- the focal loss ---------------------------------------------------------------------------------


def sigmoid_focal_loss(inputs: Any, targets: Any, alpha: float = 0.25, gamma: float = 2.0,
                       reduction: str = "none") -> jax.Array:
    """RetinaNet's focal loss on logits (``torchvision.ops.sigmoid_focal_loss``).

    ``FL = α_t (1 - p_t)^γ · BCE(inputs, targets)`` with ``p = sigmoid(inputs)``,
    ``p_t = p t + (1 - p)(1 - t)`` and ``α_t = α t + (1 - α)(1 - t)`` (no ``α`` weighting when
    ``alpha < 0``): easy examples (``p_t`` near 1) count less, so rare classes and hard boxes count more
    (Lin et al., 2017; Géron, ch. 12, Object Detection, RetinaNet).

    Args:
        inputs: logits, any shape.
        targets: the same shape, 0 or 1 (soft targets in [0, 1] are accepted, as in torchvision).
        alpha: weight of the positive class in [0, 1], or negative for none.
        gamma: focusing exponent, >= 0 (0 gives the α-weighted binary cross-entropy).
        reduction: ``"none"`` (element-wise, the shape of ``inputs``), ``"mean"`` or ``"sum"``.

    Returns:
        The element-wise losses or their mean or sum.
    """
    who = "sigmoid_focal_loss"
    reduction = _check_reduction(reduction, who)
    alpha = check_float(alpha, "alpha", high=1, who=who)
    gamma = check_float(gamma, "gamma", low=0, who=who)
    x, t = _as_float(inputs), _as_float(targets)
    if x.shape != t.shape:
        raise ValueError(f"{who}: inputs of shape {tuple(x.shape)} and targets of shape {tuple(t.shape)} must have "
                         "the same shape")
    t = t.astype(x.dtype)
    p = jax.nn.sigmoid(x)
    # binary cross-entropy with logits, the stable form torch uses: max(x, 0) - x t + log(1 + exp(-|x|))
    ce = jnp.maximum(x, 0) - x * t + jnp.log1p(jnp.exp(-jnp.abs(x)))
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return _reduce(loss, reduction)


# -- non-maximum suppression ------------------------------------------------------------------------


def _check_scores(scores: Any, n: int, who: str, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores)
    if s.shape != (n,):
        raise ValueError(f"{who}: {name} must have shape ({n},), one per box, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number):
        raise ValueError(f"{who}: {name} must hold numbers, got dtype {s.dtype}")
    if n and not np.isfinite(s).all():
        i = int(np.argmax(~np.isfinite(s)))
        raise ValueError(f"{who}: {name}[{i}] = {s[i]} is not finite")
    if s.dtype.kind == "u":  # ranked by -s: a negated unsigned score wraps around (-5 -> 251 in uint8)
        s = s.astype(np.int64 if s.dtype.itemsize < 8 else np.float64)
    return s


def _nms_args(boxes, scores, iou_threshold, score_threshold, who):
    b = np.asarray(_check_boxes(boxes, who))
    s = _check_scores(scores, len(b), who)
    thr = check_float(iou_threshold, "iou_threshold", who=who)
    if score_threshold is not None:
        score_threshold = check_float(score_threshold, "score_threshold", who=who)
    if not np.issubdtype(b.dtype, np.floating):
        b = b.astype(np.float32)
    return b, s, thr, score_threshold


def _greedy_nms(b: np.ndarray, s: np.ndarray, thr: float, candidates: np.ndarray) -> np.ndarray:
    """Indices among ``candidates`` that survive greedy NMS, by decreasing score."""
    order = candidates[np.argsort(-s[candidates], kind="stable")]
    x1, y1, x2, y2 = (b[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0)
        inter = w * h
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[~(iou > thr)]  # suppressed: IoU strictly above the threshold (NaN suppresses nothing)
    return np.asarray(keep, np.int64)


def nms(boxes: Any, scores: Any, iou_threshold: float, *, score_threshold: float | None = None) -> np.ndarray:
    """Greedy non-maximum suppression (``torchvision.ops.nms``), exact, on the host.

    Géron, ch. 12, Object Detection: drop the boxes whose score is below a threshold; take the remaining box
    with the highest score and remove every other box whose IoU with it is greater than ``iou_threshold``
    (the book uses 0.6); repeat with the next remaining box.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        iou_threshold: boxes overlapping a kept box with IoU ``> iou_threshold`` are discarded.
        score_threshold: if given, boxes with a score below it are dropped first (torchvision has no such
            argument: ``nms(boxes[s >= t], s[s >= t], ...)``, with the indices mapped back).

    Returns:
        int64 NumPy array of the kept boxes' indices into ``boxes``, by decreasing score (equal scores keep
        their input order). No boxes (``N = 0``) give an empty array, as in torchvision.
    """
    b, s, thr, st = _nms_args(boxes, scores, iou_threshold, score_threshold, "nms")
    candidates = np.arange(len(b)) if st is None else np.flatnonzero(s >= st)
    return _greedy_nms(b, s, thr, candidates)


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float, *,
                score_threshold: float | None = None) -> np.ndarray:
    """Non-maximum suppression within each category: boxes of different ``idxs`` never suppress each other
    (``torchvision.ops.batched_nms``).

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        idxs: ``(N,)`` integer category (or image) of each box.
        iou_threshold: as ``nms``.
        score_threshold: as ``nms``.

    Returns:
        int64 NumPy array of the kept indices, by decreasing score over all categories.
    """
    b, s, thr, st = _nms_args(boxes, scores, iou_threshold, score_threshold, "batched_nms")
    c = np.asarray(idxs)
    if c.shape != (len(b),) or not (np.issubdtype(c.dtype, np.integer) or c.dtype == bool):
        raise ValueError(f"batched_nms: idxs must be ({len(b)},) integers, one category per box, got "
                         f"shape {c.shape} and dtype {c.dtype}")
    alive = np.ones(len(b), bool) if st is None else s >= st
    keep = [_greedy_nms(b, s, thr, np.flatnonzero(alive & (c == k))) for k in np.unique(c[alive])]
    keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return keep[np.argsort(-s[keep], kind="stable")]


def nms_padded(boxes: Any, scores: Any, iou_threshold: float, max_output: int, *,
               score_threshold: float | None = None) -> tuple[jax.Array, jax.Array]:
    """Non-maximum suppression with a fixed-size result, for use inside ``jax.jit``.

    The same greedy algorithm as ``nms`` over the boxes sorted by score (a ``fori_loop`` over an ``(N, N)``
    IoU matrix), so the first ``valid.sum()`` indices equal ``nms(...)[:max_output]``.

    Args:
        boxes: ``(N, 4)`` xyxy boxes.
        scores: ``(N,)`` scores.
        iou_threshold: as ``nms``.
        max_output: the length of the result (a Python int: it fixes the output's shape).
        score_threshold: as ``nms`` (may be traced).

    Returns:
        ``(indices, valid)``: int32 ``(max_output,)`` indices by decreasing score, padded with 0, and a bool
        ``(max_output,)`` mask of the real ones.
    """
    who = "nms_padded"
    max_output = check_int(max_output, "max_output", low=1, who=who)
    b = _as_float(_check_boxes(boxes, who))
    n = b.shape[0]
    s = jnp.asarray(scores)
    if s.shape != (n,):
        raise ValueError(f"{who}: scores must have shape ({n},), one per box, got shape {tuple(s.shape)}")
    if _concrete(scores):
        _check_scores(scores, n, who)
    if _concrete(iou_threshold):
        check_float(iou_threshold, "iou_threshold", who=who)
    if n == 0:
        return jnp.zeros(max_output, jnp.int32), jnp.zeros(max_output, bool)
    if jnp.issubdtype(s.dtype, jnp.unsignedinteger):  # ranked by -s, which wraps around for unsigned scores
        s = s.astype(jnp.int32 if s.dtype.itemsize < 4 else jnp.float32)
    order = jnp.argsort(-s, stable=True)
    sb = b[order]
    inter, union = _inter_union(sb, sb)
    over = inter / union > iou_threshold
    alive = jnp.ones(n, bool) if score_threshold is None else s[order] >= score_threshold
    later = jnp.arange(n)[None, :] > jnp.arange(n)[:, None]

    def body(i, suppressed):
        kept = ~suppressed[i] & alive[i]
        return suppressed | (kept & over[i] & later[i])

    suppressed = jax.lax.fori_loop(0, n, body, jnp.zeros(n, bool))
    keep = ~suppressed & alive
    rank = jnp.cumsum(keep) - 1
    slot = jnp.where(keep & (rank < max_output), rank, max_output)
    indices = jnp.zeros(max_output, jnp.int32).at[slot].set(order.astype(jnp.int32), mode="drop")
    return indices, jnp.arange(max_output) < jnp.sum(keep)


# -- average precision ------------------------------------------------------------------------------


def _check_detections(preds: Any, targets: Any, box_format: str, who: str) -> tuple[list, list]:
    """The images' (boxes xyxy float64, scores, labels) and (boxes, labels), checked."""
    if not isinstance(preds, Sequence) or not isinstance(targets, Sequence) or isinstance(preds, (str, bytes)):
        raise ValueError(f"{who}: preds and targets must be lists with one dict per image, got "
                         f"{type(preds).__name__} and {type(targets).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"{who}: preds has {len(preds)} images but targets has {len(targets)}; give one dict per "
                         "image in each (an empty one for an image without boxes)")
    out_p, out_t = [], []
    for kind, items, keys, out in (("preds", preds, ("boxes", "scores", "labels"), out_p),
                                   ("targets", targets, ("boxes", "labels"), out_t)):
        for i, item in enumerate(items):
            if not isinstance(item, Mapping) or any(k not in item for k in keys):
                raise ValueError(f"{who}: {kind}[{i}] must be a dict with keys {', '.join(keys)}, got "
                                 f"{sorted(item) if isinstance(item, Mapping) else type(item).__name__}")
            boxes = _host_xyxy(item["boxes"], box_format, who, f"{kind}[{i}]['boxes']")
            labels = np.asarray(item["labels"])
            if labels.size == 0:
                labels = labels.reshape(0).astype(np.int64)
            if labels.shape != (len(boxes),) or not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"{who}: {kind}[{i}]['labels'] must be ({len(boxes)},) integers, one per box, got "
                                 f"shape {labels.shape} and dtype {labels.dtype}")
            if kind == "preds":
                scores = np.asarray(item["scores"])
                scores = scores.reshape(0) if scores.size == 0 else scores
                scores = _check_scores(scores, len(boxes), who, f"preds[{i}]['scores']")
                out.append((boxes, scores.astype(np.float64), labels.astype(np.int64)))
            else:
                out.append((boxes, labels.astype(np.int64)))
    return out_p, out_t


def _host_xyxy(boxes: Any, fmt: str, who: str, name: str) -> np.ndarray:
    """``(N, 4)`` float64 xyxy boxes on the host; an empty input is no boxes."""
    raw = np.asarray(boxes)
    if raw.size == 0:
        return np.zeros((0, 4))
    b = np.array(_check_boxes(raw, who, name, fmt), np.float64)
    if fmt == "xywh":
        b[:, 2:] += b[:, :2]
    elif fmt == "cxcywh":
        b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
    return b


def _iou64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None]
    union = union - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _class_ap(preds: list, targets: list, label: int, thresholds: np.ndarray, recall_points: int,
              max_detections: int) -> np.ndarray:
    """COCO's AP of one class at each threshold, ``(T,)``; NaN when the class has no ground truth."""
    scores, matched, n_gt = [], [], 0
    for (pb, ps, pl), (tb, tl) in zip(preds, targets):
        gt = tb[tl == label]
        n_gt += len(gt)
        mine = np.flatnonzero(pl == label)
        mine = mine[np.argsort(-ps[mine], kind="mergesort")][:max_detections]
        if not mine.size:
            continue
        ious = _iou64(pb[mine], gt)  # (D, G)
        hits = np.zeros((len(thresholds), len(mine)), bool)
        for t, thr in enumerate(thresholds):
            taken = np.zeros(len(gt), bool)
            for d in range(len(mine)):
                best, m = min(thr, 1 - 1e-10), -1
                for g in range(len(gt)):  # the best still-free ground truth at IoU >= threshold
                    if taken[g] or ious[d, g] < best:
                        continue
                    best, m = ious[d, g], g
                if m >= 0:
                    taken[m], hits[t, d] = True, True
        scores.append(ps[mine])
        matched.append(hits)
    if n_gt == 0:
        return np.full(len(thresholds), np.nan)
    if not scores:
        return np.zeros(len(thresholds))
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    tp = np.concatenate(matched, axis=1)[:, order]
    tps, fps = np.cumsum(tp, axis=1, dtype=np.float64), np.cumsum(~tp, axis=1, dtype=np.float64)
    recall_levels = np.linspace(0.0, 1.0, recall_points)
    out = np.zeros(len(thresholds))
    for t in range(len(thresholds)):
        recall = tps[t] / n_gt
        precision = tps[t] / (tps[t] + fps[t] + np.spacing(1))
        # the best precision at this recall or more: the precision envelope, then a lookup per recall level
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, recall_levels, side="left")
        out[t] = np.where(idx < len(recall), precision[np.minimum(idx, len(recall) - 1)], 0.0).mean()
    return out


def _ap_table(preds, targets, thresholds, recall_points, max_detections, box_format, who):
    recall_points = check_int(recall_points, "recall_points", low=2, who=who)
    max_detections = check_int(max_detections, "max_detections", low=1, who=who)
    box_format = _check_fmt(box_format, "box_format", who)
    p, t = _check_detections(preds, targets, box_format, who)
    labels = sorted(set(np.concatenate([x[2] for x in p] + [x[1] for x in t]).tolist())) if p else []
    table = {c: _class_ap(p, t, c, thresholds, recall_points, max_detections) for c in labels}
    return table


def _threshold(iou_threshold: Any, who: str) -> np.ndarray:
    return np.asarray([check_float(iou_threshold, "iou_threshold", low=0, high=1, who=who)])


def average_precision(preds: Sequence[Mapping], targets: Sequence[Mapping], label: int, *,
                      iou_threshold: float = 0.5, recall_points: int = 101, max_detections: int = 100,
                      box_format: str = "xyxy") -> float:
    """Average precision of one class at one IoU threshold, computed as COCO computes it.

    A detection is a true positive when it overlaps a still-unmatched ground-truth box of its class with
    IoU >= ``iou_threshold`` (it takes the best such box); detections are ranked by score over all images;
    AP is the mean, over ``recall_points`` recall levels 0, ..., 1, of the maximum precision at that recall
    or more (Géron, ch. 12, Mean Average Precision: "the maximum precision you can get with at least 0%
    recall, then 10% recall, 20%, and so on up to 100%"; COCO uses 101 levels, PASCAL VOC 2007 used 11).

    Args:
        preds: one dict per image: ``"boxes"`` ``(N, 4)``, ``"scores"`` ``(N,)``, ``"labels"`` ``(N,)`` ints
            (TorchMetrics' ``MeanAveragePrecision`` layout).
        targets: one dict per image: ``"boxes"`` ``(M, 4)``, ``"labels"`` ``(M,)``.
        label: the class.
        iou_threshold: in [0, 1].
        recall_points: the number of recall levels (101 as COCO, 11 as VOC 2007).
        max_detections: the highest-scoring detections kept per image and class (COCO: 100).
        box_format: the format of every box.

    Returns:
        The AP in [0, 1]; NaN when the class has no ground-truth box (COCO leaves such a class out of means).
    """
    table = _ap_table(preds, targets, _threshold(iou_threshold, "average_precision"), recall_points,
                      max_detections, box_format, "average_precision")
    return float(table[label][0]) if label in table else math.nan


def _mean(values: list) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def mean_average_precision(preds: Sequence[Mapping], targets: Sequence[Mapping], *, iou_threshold: float = 0.5,
                           recall_points: int = 101, max_detections: int = 100, box_format: str = "xyxy") -> float:
    """mAP at one IoU threshold (``mAP@0.5`` by default, PASCAL VOC's metric): the mean of
    ``average_precision`` over the classes that have ground-truth boxes.

    Args: as ``average_precision`` without ``label``.

    Returns:
        The mAP in [0, 1]; NaN when no image has a ground-truth box.
    """
    table = _ap_table(preds, targets, _threshold(iou_threshold, "mean_average_precision"), recall_points,
                      max_detections, box_format, "mean_average_precision")
    return _mean([v[0] for v in table.values()])


def coco_map(preds: Sequence[Mapping], targets: Sequence[Mapping], *, recall_points: int = 101,
             max_detections: int = 100, box_format: str = "xyxy") -> dict[str, float]:
    """COCO's box mAP: mAP averaged over the IoU thresholds 0.50, 0.55, ..., 0.95 (``mAP@[.50:.95]``).

    Géron, ch. 12, Mean Average Precision: "the mAP is computed for different IoU thresholds (0.50, 0.55,
    0.60, ..., 0.95), and the final metric is the mean of all these mAPs". Matching, ranking and the
    101-point interpolated precision are pycocotools' ``COCOeval`` (area range "all", no crowd boxes).

    Args: as ``mean_average_precision``.

    Returns:
        ``{"map": mAP@[.50:.95], "map_50": mAP@0.5, "map_75": mAP@0.75}`` (pycocotools' first three stats,
        TorchMetrics' names); NaN when no image has a ground-truth box.
    """
    table = _ap_table(preds, targets, _COCO_IOUS, recall_points, max_detections, box_format, "coco_map")
    rows = [v for v in table.values() if not np.isnan(v).any()]
    if not rows:
        return {"map": math.nan, "map_50": math.nan, "map_75": math.nan}
    aps = np.stack(rows)  # (classes, thresholds)
    return {"map": float(aps.mean()), "map_50": float(aps[:, 0].mean()), "map_75": float(aps[:, 5].mean())}


# -- drawing ----------------------------------------------------------------------------------------

_PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))


def draw_bounding_boxes(image: Any, boxes: Any, labels: Sequence[str] | None = None, colors: Any = None,
                        width: int = 1) -> np.ndarray:
    """Draws xyxy boxes (and their labels) on an image (``torchvision.utils.draw_bounding_boxes``), with Pillow.

    Args:
        image: ``(H, W, 3)`` uint8 array (channels last); it is not modified.
        boxes: ``(N, 4)`` xyxy boxes in pixels (convert others with ``box_convert``); coordinates are
            truncated to integers, as torchvision does.
        labels: ``N`` strings written at each box's top-left corner, or None.
        colors: one colour for all boxes or one per box: a name Pillow knows (``"red"``, ``"#ff0000"``) or an
            RGB tuple; None gives each box a colour of a fixed palette.
        width: line width in pixels.

    Returns:
        A new ``(H, W, 3)`` uint8 array.
    """
    from PIL import Image, ImageColor, ImageDraw

    who = "draw_bounding_boxes"
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{who}: image must be an (H, W, 3) uint8 array (channels last), got shape {img.shape} "
                         f"and dtype {img.dtype}; convert a [0, 1] float image with (x * 255).astype(np.uint8)")
    b = np.asarray(_check_boxes(boxes, who))
    width = check_int(width, "width", low=1, who=who)
    n = len(b)
    if labels is not None and (isinstance(labels, str) or len(labels) != n):
        raise ValueError(f"{who}: labels must be a list of {n} strings, one per box, got {labels!r}")
    if colors is None:
        colors = [_PALETTE[i % len(_PALETTE)] for i in range(n)]
    elif isinstance(colors, str) or (isinstance(colors, tuple) and len(colors) == 3
                                     and all(isinstance(c, (int, np.integer)) for c in colors)):
        colors = [colors] * n
    elif len(colors) != n:
        raise ValueError(f"{who}: colors must be one colour or a list of {n}, one per box, got {len(colors)}")
    rgb = []
    for c in colors:
        try:
            rgb.append(ImageColor.getrgb(c)[:3] if isinstance(c, str) else tuple(int(v) for v in c)[:3])
        except (ValueError, TypeError):
            raise ValueError(f"{who}: unknown colour {c!r}; give a name such as 'red', '#ff0000' or an RGB "
                             "tuple") from None
    canvas = Image.fromarray(img.copy())
    draw = ImageDraw.Draw(canvas)
    for i, box in enumerate(b.astype(np.int64).tolist()):
        draw.rectangle(box, outline=rgb[i], width=width)
        if labels is not None and labels[i]:
            draw.text((box[0] + width, box[1] + width), str(labels[i]), fill=rgb[i])
    return np.asarray(canvas)
