"""dlcore.boxes: formats and transforms (the book's example), IoU and its losses, NMS and the focal loss against
reference implementations written here with torch ops (torchvision's documented formulas; torchvision itself
is not installed), AP/mAP against a hand-computed case and pycocotools, drawing, and bad input."""

import contextlib
import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from one_line import raises_one_line

from dlcore import boxes as B


def random_boxes(rng, n, size=100.0, low=2.0, high=40.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(low, high, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


# -- formats and transforms --------------------------------------------------------------------------


def test_box_convert_by_hand_and_round_trip():
    cxcywh = np.array([[377, 199, 248, 262]])
    # by hand: x1 = 377 - 124, y1 = 199 - 131, x2 = 377 + 124, y2 = 199 + 131
    np.testing.assert_allclose(B.box_convert(cxcywh, "cxcywh", "xyxy"), [[253, 68, 501, 330]])
    np.testing.assert_allclose(B.box_convert(cxcywh, "cxcywh", "xywh"), [[253, 68, 248, 262]])
    rng = np.random.default_rng(0)
    b = random_boxes(rng, 7)
    for fmt in ("xywh", "cxcywh"):
        np.testing.assert_allclose(B.box_convert(B.box_convert(b, "xyxy", fmt), fmt, "xyxy"), b, rtol=1e-6, atol=1e-4)
    # a batch axis too: (..., 4)
    assert B.box_convert(b.reshape(7, 1, 4), "xyxy", "cxcywh").shape == (7, 1, 4)


def test_book_bounding_box_through_crop_and_resize():
    """Géron ch. 12, Classification and Localization: BoundingBoxes([[377, 199, 248, 262]], "CXCYWH",
    canvas_size=(500, 754)) (H x W) becomes [[90, 91, 120, 154]] on the 224 x 224 canvas. The book's
    transform is its random augmentation pipeline (flip, rotation, RandomResizedCrop), so its crop is not
    printed; the crop rows 44:425, columns 191:654 then Resize((224, 224)) maps the box to the book's
    figures (solved by hand from them: x scale 120 / 248 -> 463 columns, left = 377 - 90 * 463 / 224)."""
    box = [[377, 199, 248, 262]]
    cropped = B.crop(box, 44, 191, 381, 463, "cxcywh")
    out = B.resize(cropped, (381, 463), (224, 224), "cxcywh")
    np.testing.assert_array_equal(np.round(np.asarray(out)), [[90, 91, 120, 154]])
    # a plain Resize((224, 224)) of the 500 x 754 image, by hand: x * 224 / 754, y * 224 / 500
    np.testing.assert_allclose(B.resize(box, (500, 754), (224, 224), "cxcywh"),
                               [[377 * 224 / 754, 199 * 224 / 500, 248 * 224 / 754, 262 * 224 / 500]], rtol=1e-6)
    # Resize(224): the short side (H = 500) becomes 224, W = int(224 * 754 / 500) = 337
    np.testing.assert_allclose(B.resize(box, (500, 754), 224, "cxcywh"),
                               [[377 * 337 / 754, 199 * 224 / 500, 248 * 337 / 754, 262 * 224 / 500]], rtol=1e-6)


def test_flips_crops_and_clamping_by_hand():
    b = np.array([[10, 20, 30, 60]], np.float32)  # xyxy on an H=100, W=200 canvas
    np.testing.assert_allclose(B.horizontal_flip(b, (100, 200)), [[170, 20, 190, 60]])
    np.testing.assert_allclose(B.vertical_flip(b, (100, 200)), [[10, 40, 30, 80]])
    np.testing.assert_allclose(B.horizontal_flip(B.box_convert(b, "xyxy", "cxcywh"), (100, 200), "cxcywh"),
                               [[180, 40, 20, 40]])
    np.testing.assert_allclose(B.horizontal_flip(B.horizontal_flip(b, (100, 200)), (100, 200)), b)
    # crop rows 30:80, columns 0:25: the box is cut at the crop's right edge and moved up by 30
    np.testing.assert_allclose(B.crop(b, 30, 0, 50, 25), [[10, 0, 25, 30]])
    np.testing.assert_allclose(B.crop(b, 30, 0, 50, 25, clamp=False), [[10, -10, 30, 30]])
    # center crop 100 x 200 -> 50 x 50: top = 25, left = 75
    np.testing.assert_allclose(B.center_crop(b + [70, 0, 70, 0], (100, 200), 50), [[5, 0, 25, 35]])


# -- IoU and the box losses against torch ------------------------------------------------------------


def _torch_refs():
    torch = pytest.importorskip("torch")

    def inter_union_pairwise(a, b):
        lt = torch.max(a[:, None, :2], b[None, :, :2])
        rb = torch.min(a[:, None, 2:], b[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
        return inter, area(a)[:, None] + area(b)[None, :] - inter

    def iou(a, b):
        inter, union = inter_union_pairwise(a, b)
        return inter / union

    def giou(a, b):
        inter, union = inter_union_pairwise(a, b)
        lt = torch.min(a[:, None, :2], b[None, :, :2])
        rb = torch.max(a[:, None, 2:], b[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        area = wh[..., 0] * wh[..., 1]
        return inter / union - (area - union) / area

    def loss_terms(a, b, eps):
        x1, y1, x2, y2 = a.unbind(-1)
        g1, h1, g2, h2 = b.unbind(-1)
        xi1, yi1, xi2, yi2 = torch.max(x1, g1), torch.max(y1, h1), torch.min(x2, g2), torch.min(y2, h2)
        inter = torch.zeros_like(x1)
        mask = (yi2 > yi1) & (xi2 > xi1)
        inter[mask] = (xi2[mask] - xi1[mask]) * (yi2[mask] - yi1[mask])
        union = (x2 - x1) * (y2 - y1) + (g2 - g1) * (h2 - h1) - inter
        io = inter / (union + eps)
        c1, d1, c2, d2 = torch.min(x1, g1), torch.min(y1, h1), torch.max(x2, g2), torch.max(y2, h2)
        return io, union, (c1, d1, c2, d2)

    def giou_loss(a, b, eps=1e-7):
        io, union, (c1, d1, c2, d2) = loss_terms(a, b, eps)
        area = (c2 - c1) * (d2 - d1)
        return 1 - (io - (area - union) / (area + eps))

    def diou_loss(a, b, eps=1e-7):
        io, _, (c1, d1, c2, d2) = loss_terms(a, b, eps)
        diag = (c2 - c1) ** 2 + (d2 - d1) ** 2 + eps
        cx = (a[:, 0] + a[:, 2]) / 2 - (b[:, 0] + b[:, 2]) / 2
        cy = (a[:, 1] + a[:, 3]) / 2 - (b[:, 1] + b[:, 3]) / 2
        return 1 - io + (cx ** 2 + cy ** 2) / diag, io

    def ciou_loss(a, b, eps=1e-7):
        d, io = diou_loss(a, b, eps)
        wp, hp = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        wt, ht = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        v = (4 / (torch.pi ** 2)) * torch.pow(torch.atan(wt / ht) - torch.atan(wp / hp), 2)
        with torch.no_grad():
            alpha = v / (1 - io + v + eps)
        return d + alpha * v

    def focal(x, t, alpha=0.25, gamma=2.0):
        p = torch.sigmoid(x)
        ce = torch.nn.functional.binary_cross_entropy_with_logits(x, t, reduction="none")
        p_t = p * t + (1 - p) * (1 - t)
        loss = ce * ((1 - p_t) ** gamma)
        if alpha >= 0:
            loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
        return loss

    def nms(b, s, thr):
        order = torch.argsort(s, descending=True)
        o = iou(b, b)
        suppressed = torch.zeros(len(b), dtype=torch.bool)
        keep = []
        for i in order.tolist():
            if suppressed[i]:
                continue
            keep.append(i)
            suppressed |= o[i] > thr
        return keep

    return torch, dict(iou=iou, giou=giou, giou_loss=giou_loss, diou_loss=lambda a, b: diou_loss(a, b)[0],
                       ciou_loss=ciou_loss, focal=focal, nms=nms)


@pytest.fixture(scope="module")
def refs():
    return _torch_refs()


def test_iou_and_giou_match_torch(refs):
    torch, r = refs
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 9), random_boxes(rng, 6)
    b[0] = a[0]  # identical: IoU 1
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    np.testing.assert_allclose(jax.jit(B.box_iou)(a, b), r["iou"](ta, tb).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jax.jit(B.generalized_box_iou)(a, b), r["giou"](ta, tb).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B.box_area(a), ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])), rtol=1e-6)
    assert float(B.box_iou(a, b)[0, 0]) == pytest.approx(1.0)
    # no overlap: IoU 0 (by hand), GIoU = 0 - (enclosing - union) / enclosing = -(100 - 8) / 100... by hand
    g = B.generalized_box_iou([[0, 0, 2, 2]], [[8, 8, 10, 10]])
    assert float(B.box_iou([[0, 0, 2, 2]], [[8, 8, 10, 10]])[0, 0]) == 0.0
    assert float(g[0, 0]) == pytest.approx(-(100 - 8) / 100)


@pytest.mark.parametrize("name", ["giou_loss", "diou_loss", "ciou_loss"])
def test_box_losses_and_gradients_match_torch(refs, name):
    torch, r = refs
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 12), random_boxes(rng, 12)
    b[:3] = a[:3] + rng.uniform(-3, 3, (3, 4)).astype(np.float32) * [0, 0, 1, 1]  # some overlapping pairs
    b[5] = [300, 300, 310, 340]  # far away: no overlap
    fn = jax.jit(getattr(B, name), static_argnames="reduction")  # one compilation, not one per primitive
    ta = torch.from_numpy(a).requires_grad_(True)
    want = r[name](ta, torch.from_numpy(b))
    np.testing.assert_allclose(fn(a, b), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn(a, b, reduction="mean"), want.mean().item(), rtol=1e-5)
    np.testing.assert_allclose(fn(a, b, reduction="sum"), want.sum().item(), rtol=1e-5)
    want.sum().backward()  # CIoU's alpha is a constant in both (no_grad / stop_gradient)
    grad = jax.grad(lambda x: fn(x, b, reduction="sum"))(jnp.asarray(a))
    np.testing.assert_allclose(grad, ta.grad.numpy(), rtol=1e-4, atol=1e-6)
    assert float(fn(np.zeros((0, 4)), np.zeros((0, 4)), reduction="mean")) == 0.0  # torchvision: 0, not NaN


def test_sigmoid_focal_loss_matches_torch(refs):
    torch, r = refs
    rng = np.random.default_rng(3)
    x = rng.normal(0, 3, (5, 7)).astype(np.float32)
    t = (rng.uniform(size=(5, 7)) < 0.3).astype(np.float32)
    for alpha, gamma in ((0.25, 2.0), (-1, 2.0), (0.5, 0.0)):
        want = r["focal"](torch.from_numpy(x), torch.from_numpy(t), alpha, gamma).numpy()
        np.testing.assert_allclose(B.sigmoid_focal_loss(x, t, alpha, gamma), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(B.sigmoid_focal_loss(x, t, reduction="mean"),
                               r["focal"](torch.from_numpy(x), torch.from_numpy(t)).mean().item(), rtol=1e-5)
    from dlcore import losses

    assert losses.sigmoid_focal_loss is B.sigmoid_focal_loss


# -- NMS -------------------------------------------------------------------------------------------


def test_nms_matches_greedy_torch_reference(refs):
    torch, r = refs
    rng = np.random.default_rng(4)
    padded = jax.jit(B.nms_padded, static_argnums=3)
    for trial in range(4):
        b = random_boxes(rng, 60, size=60.0)
        s = rng.permutation(60).astype(np.float32) / 60 + 0.01  # distinct: no ties
        for thr in (0.3, 0.6):
            want = r["nms"](torch.from_numpy(b), torch.from_numpy(s), thr)
            got = B.nms(b, s, thr)
            assert got.dtype == np.int64 and got.tolist() == want
            idx, valid = padded(b, s, thr, 64)
            assert np.asarray(idx)[np.asarray(valid)].tolist() == want
    # batched: the reference per class, merged by decreasing score
    cls = rng.integers(0, 3, 60)
    want = []
    for k in range(3):
        m = np.flatnonzero(cls == k)
        want += [int(m[i]) for i in r["nms"](torch.from_numpy(b[m]), torch.from_numpy(s[m]), 0.5)]
    want.sort(key=lambda i: -s[i])
    assert B.batched_nms(b, s, cls, 0.5).tolist() == want


def test_nms_score_threshold_empty_and_jit():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    s = np.array([0.9, 0.8, 0.7, 0.2], np.float32)
    # by hand: IoU(0, 1) = 81 / 119 = 0.68 > 0.6 -> box 1 goes; box 3 (IoU 0.9 with box 0) goes too
    assert B.nms(b, s, 0.6).tolist() == [0, 2]
    assert B.nms(b, s, 0.7).tolist() == [0, 1, 2]
    assert B.nms(b, s, 0.7, score_threshold=0.75).tolist() == [0, 1]
    # per class: boxes 0 and 2 never meet boxes 1 and 3; IoU(1, 3) = 72 / 118 = 0.61
    assert B.batched_nms(b, s, [0, 1, 0, 1], 0.65).tolist() == [0, 1, 2, 3]
    assert B.batched_nms(b, s, [0, 1, 0, 1], 0.6).tolist() == [0, 1, 2]
    empty = B.nms(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64
    assert B.batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), 0.5).shape == (0,)
    fn = jax.jit(lambda bb, ss: B.nms_padded(bb, ss, 0.6, 3, score_threshold=0.5))
    idx, valid = fn(b, s)
    assert np.asarray(idx).tolist() == [0, 2, 0] and np.asarray(valid).tolist() == [True, True, False]


# -- average precision ------------------------------------------------------------------------------


def test_average_precision_by_hand():
    """One image, two ground truths, three detections: scores 0.9 (hit), 0.8 (miss), 0.7 (hit).
    Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; its envelope 1, 2/3, 2/3. COCO's 101 recall levels:
    0 .. 0.50 (51 levels) read 1, 0.51 .. 1 (50 levels) read 2/3; VOC's 11 levels: 6 and 5."""
    targets = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "labels": [1, 1]}]
    preds = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [21, 21, 31, 31]], "scores": [0.9, 0.8, 0.7],
              "labels": [1, 1, 1]}]
    assert B.average_precision(preds, targets, 1) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert B.average_precision(preds, targets, 1, recall_points=11) == pytest.approx((6 + 5 * 2 / 3) / 11)
    # IoU of the third hit is 81 / 119 = 0.68: at a 0.7 threshold it misses: precision 1 up to recall 1/2
    assert B.average_precision(preds, targets, 1, iou_threshold=0.7) == pytest.approx(51 / 101)
    # a class with no ground truth is left out of the mean; one with no detections counts as 0
    preds2 = [{**preds[0], "labels": [1, 1, 2]}, {"boxes": np.zeros((0, 4)), "scores": [], "labels": []}]
    targets2 = [{"boxes": targets[0]["boxes"] + [[40, 0, 50, 10]], "labels": [1, 1, 3]},
                {"boxes": [], "labels": []}]
    assert math.isnan(B.average_precision(preds2, targets2, 2))
    assert B.average_precision(preds2, targets2, 3) == 0.0
    ap1 = B.average_precision(preds2, targets2, 1)
    assert ap1 == pytest.approx(51 / 101)  # the third detection is class 2 now
    assert B.mean_average_precision(preds2, targets2) == pytest.approx((ap1 + 0.0) / 2)


def test_coco_map_matches_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    preds, targets, images, anns, dets = [], [], [], [], []
    for img in range(1, 9):
        gt_b, gt_l, d_b, d_s, d_l = [], [], [], [], []
        for cls in (1, 2, 3):
            for _ in range(rng.integers(0, 4)):
                g = random_boxes(rng, 1, size=200.0, low=10, high=60)[0]
                gt_b.append(g), gt_l.append(cls)
                if rng.uniform() < 0.8:  # a detection near it, with a jitter that spans the IoU thresholds
                    d_b.append(g + rng.normal(0, 4, 4).astype(np.float32)), d_s.append(rng.uniform()), d_l.append(cls)
            for _ in range(rng.integers(0, 3)):  # false positives
                d_b.append(random_boxes(rng, 1, size=200.0, low=10, high=60)[0]), d_s.append(rng.uniform())
                d_l.append(int(rng.integers(1, 4)))
        d_b = np.array(d_b, np.float32).reshape(-1, 4)
        d_b[:, 2:] = np.maximum(d_b[:, 2:], d_b[:, :2] + 1)
        gt_b = np.array(gt_b, np.float32).reshape(-1, 4)
        preds.append({"boxes": d_b, "scores": np.array(d_s), "labels": np.array(d_l, int)})
        targets.append({"boxes": gt_b, "labels": np.array(gt_l, int)})
        images.append({"id": img})
        for g, c in zip(gt_b.astype(float), gt_l):
            w, h = g[2] - g[0], g[3] - g[1]
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": c, "bbox": [g[0], g[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for d, s, c in zip(d_b.astype(float), d_s, d_l):
            dets.append({"image_id": img, "category_id": c, "bbox": [d[0], d[1], d[2] - d[0], d[3] - d[1]],
                         "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in (1, 2, 3)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    got = B.coco_map(preds, targets)
    np.testing.assert_allclose([got["map"], got["map_50"], got["map_75"]], ev.stats[:3], rtol=1e-6, atol=1e-9)
    assert B.mean_average_precision(preds, targets, iou_threshold=0.5) == pytest.approx(ev.stats[1], abs=1e-9)
    # the same boxes in COCO's own xywh format
    as_xywh = [{**p, "boxes": np.asarray(B.box_convert(p["boxes"], "xyxy", "xywh"))} for p in preds]
    t_xywh = [{**t, "boxes": np.asarray(B.box_convert(t["boxes"], "xyxy", "xywh"))
               if len(t["boxes"]) else t["boxes"]} for t in targets]
    assert B.coco_map(as_xywh, t_xywh, box_format="xywh")["map"] == pytest.approx(ev.stats[0], abs=1e-5)


# -- drawing ---------------------------------------------------------------------------------------


def test_draw_bounding_boxes_outlines_only():
    img = np.full((20, 30, 3), 7, np.uint8)
    out = B.draw_bounding_boxes(img, [[2, 3, 12, 15], [20, 5, 28, 9]], colors=["red", (0, 0, 255)], width=1)
    assert out.shape == img.shape and out.dtype == np.uint8 and (img == 7).all()  # a new array
    assert tuple(out[3, 2]) == (255, 0, 0) and tuple(out[15, 12]) == (255, 0, 0)  # corners (x, y) = (2, 3), (12, 15)
    assert tuple(out[9, 24]) == (0, 0, 255)
    assert (out[5:14, 4:11] == 7).all()  # the inside is untouched
    assert (out[0, :] == 7).all()
    labelled = B.draw_bounding_boxes(img, [[0, 0, 29, 19]], labels=["rose"], width=2)
    assert (labelled[2:18, 2:28] != 7).any()  # the label's text is written inside


# -- bad input -------------------------------------------------------------------------------------


def test_bad_input_one_line_each():
    good = np.array([[0, 0, 1, 1], [0, 0, 2, 2]], np.float32)
    bad = np.array([[0, 0, 1, 1], [0, 0, 2, 2], [5, 0, 2, 3]], np.float32)
    raises_one_line(lambda: B.box_iou(good, bad), "box_iou", "boxes2[2]", "x2 < x1")
    raises_one_line(lambda: B.nms(bad, [1, 2, 3], 0.5), "nms", "boxes[2]", "x2 < x1")
    raises_one_line(lambda: B.giou_loss([[0, 5, 1, 1]], [[0, 0, 1, 1]]), "giou_loss", "boxes1[0]", "y2 < y1")
    raises_one_line(lambda: B.box_convert([[0, 0, -1, 1]], "xywh", "xyxy"), "box_convert", "negative width")
    raises_one_line(lambda: B.box_convert(good, "xyxy", "yxyx"), "out_fmt", "'yxyx'")
    raises_one_line(lambda: B.box_iou(np.zeros((3, 5)), good), "box_iou", "(N, 4)", "(3, 5)")
    raises_one_line(lambda: B.box_iou([[0, 0, np.nan, 1]], good), "boxes1[0]", "not finite")
    raises_one_line(lambda: B.nms(good, [0.5], 0.5), "nms", "scores", "(2,)")
    raises_one_line(lambda: B.nms(good, [0.5, np.nan], 0.5), "scores[1]", "not finite")
    raises_one_line(lambda: B.nms(good, [0.5, 0.4], "high"), "iou_threshold")
    raises_one_line(lambda: B.ciou_loss(good, good[:1]), "ciou_loss", "same shape")
    raises_one_line(lambda: B.diou_loss(good, good, reduction="avg"), "reduction", "'avg'")
    raises_one_line(lambda: B.sigmoid_focal_loss(np.zeros(3), np.zeros(4)), "sigmoid_focal_loss", "same shape")
    raises_one_line(lambda: B.resize(good, (10, 0), 5), "resize", "canvas_size")
    raises_one_line(lambda: B.mean_average_precision([{"boxes": good}], [{"boxes": good, "labels": [0, 0]}]),
                    "preds[0]", "scores")
    raises_one_line(lambda: B.coco_map([], [{}]), "coco_map", "0 images", "1")
    raises_one_line(lambda: B.draw_bounding_boxes(np.zeros((4, 4, 3)), good), "uint8")
    raises_one_line(lambda: B.draw_bounding_boxes(np.zeros((4, 4, 3), np.uint8), good, colors=["nocolour", "red"]),
                    "unknown colour")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint32])
def test_nms_ranks_unsigned_integer_scores_by_value(dtype):
    """Scores are ranked by -score: negating unsigned integers wraps around (-5 -> 251 in uint8), which put a
    score of 0 first. Box 1 has the top score and suppresses boxes 0 and 3 (IoU 0.68)."""
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    s = np.array([0, 5, 3, 1], dtype)
    np.testing.assert_array_equal(B.nms(b, s, 0.5), [1, 2])
    np.testing.assert_array_equal(B.batched_nms(b, s, np.array([0, 1, 0, 1]), 0.5), [1, 2, 0])
    keep, valid = B.nms_padded(b, s, 0.5, 4)
    np.testing.assert_array_equal(np.asarray(keep)[np.asarray(valid)], [1, 2])
