"""flower_locator and fcn_demo (Géron ch. 12): the quick runs, the book's FCN figures, the pieces by hand, and
transfer.dense_to_conv against a dense layer (and torch's flatten order)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from one_line import raises_one_line

from dlcore import transfer
from dlcore.examples import fcn_demo, flower_locator
from dlcore.nn.layers import Linear

# ---- flower_locator (Géron ch. 12, Classification and Localization) ----


def test_flower_locator_quick_reports_accuracy_and_iou(quick_run):
    report, text = quick_run("flower_locator")
    m = report["metrics"]
    assert report["dataset"] == "photo_patches"
    assert 0.0 <= m["test_accuracy"] <= 1.0 and 0.0 < m["test_mean_iou"] <= 1.0
    assert "mean IoU" in text and "0.2 CE + 0.8 box MSE" in text


def test_pasted_boxes_frame_the_pasted_pixels():
    images = np.ones((6, 8, 8, 3), np.float32)  # white patches: the only pixels at 1.0 on a darker canvas
    x, box = flower_locator.paste_on_canvas(images, seed=3)
    for im, b in zip(x, box):
        ys, xs = np.nonzero((im == 1.0).all(-1))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == tuple(b.astype(int))
        assert 12 <= b[2] - b[0] <= 36 and 12 <= b[3] - b[1] <= 36  # a quarter to three quarters of 48


def test_locator_loss_by_hand():
    logits = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    box = jnp.array([[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]])
    targets = {"label": jnp.array([0, 0]), "box": jnp.array([[0.5, 0.5, 0.2, 0.6], [0.1, 0.1, 0.1, 0.1]])}
    # CE: log 2 and log(1 + e^-2); box MSE: 0.4^2 / 4 and 0
    want = [0.2 * np.log(2) + 0.8 * 0.04, 0.2 * np.log1p(np.exp(-2.0))]
    np.testing.assert_allclose(flower_locator.locator_loss((logits, box), targets), want, rtol=1e-6)
    # a negative predicted width is an empty box, IoU 0; the target itself IoU 1
    pred = flower_locator.predicted_boxes(np.array([[0.5, 0.5, -0.1, 0.2], [0.5, 0.5, 0.2, 0.2]]))
    np.testing.assert_allclose(pred, [[0.5, 0.4, 0.5, 0.6], [0.4, 0.4, 0.6, 0.6]], atol=1e-7)


# ---- fcn_demo (Géron ch. 12, Fully Convolutional Networks; Semantic Segmentation) ----


def test_fcn_demo_quick_gives_the_books_grid(quick_run):
    report, text = quick_run("fcn_demo")
    m, book = report["metrics"], report["book"]
    for k in ("bottleneck_side_224", "bottleneck_side_448", "grid_side_448", "outputs_per_cell"):
        assert m[k] == book[k], k  # 7, 14, 8, 107 (Figure 12-26)
    assert m["fcn_224_max_diff"] < 1e-5 and m["fcn_448_window_max_diff"] < 1e-5
    assert 0.0 <= m["skips_pixel_accuracy"] <= 1.0
    assert "8x8 x 107" in text


def test_dense_to_conv_slides_the_dense_layer():
    lin = Linear(3 * 4 * 5, 6, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 6, 5))
    conv = transfer.dense_to_conv(lin, (3, 4, 5))
    y = np.asarray(conv(x))  # (2, 3, 3, 6): one output per 3 x 4 window
    assert y.shape == (2, 3, 3, 6)
    for i, j in ((0, 0), (2, 1), (1, 2)):
        np.testing.assert_allclose(y[:, i, j], lin(x[:, i:i + 3, j:j + 4].reshape(2, -1)), rtol=1e-5, atol=1e-6)
    raises_one_line(lambda: transfer.dense_to_conv(lin, (3, 4, 4)), "dense_to_conv", "48", "60")
    raises_one_line(lambda: transfer.dense_to_conv(lin, (3, 4, 5), flatten_order="whc"), "flatten_order")
    raises_one_line(lambda: transfer.dense_to_conv(conv, (3, 4, 5)), "Linear")


def test_dense_to_conv_with_torch_flatten_order():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    dense = torch.nn.Linear(5 * 3 * 4, 7)  # on nn.Flatten() of NCHW maps (C=5, H=3, W=4)
    x = torch.randn(2, 5, 3, 4)
    want = dense(torch.flatten(x, 1)).detach().numpy()
    lin = Linear(60, 7, rngs=nnx.Rngs(0))
    lin.kernel[...] = jnp.asarray(dense.weight.detach().numpy().T)
    lin.bias[...] = jnp.asarray(dense.bias.detach().numpy())
    conv = transfer.dense_to_conv(lin, (3, 4, 5), flatten_order="chw")
    got = np.asarray(conv(jnp.asarray(x.permute(0, 2, 3, 1).numpy())))[:, 0, 0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_segmentation_net_shapes_and_scores_by_hand():
    x = jnp.zeros((2, 32, 32, 3))
    for skips in (True, False):
        assert fcn_demo.SegmentationFCN(skips=skips, width=4, rngs=nnx.Rngs(0))(x).shape == (2, 32, 32, 3)
    pred = np.array([[0, 0, 1, 2]])
    true = np.array([[0, 1, 1, 1]])
    # class 0: 1/2, class 1: 1/3, class 2: 0/2; pixel accuracy 2/4
    s = fcn_demo.segmentation_scores(pred, true)
    assert s["pixel_accuracy"] == 0.5 and s["mean_iou"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    data = fcn_demo.shapes_segmentation(4, seed=0)
    assert data["x"].shape == (4, 32, 32, 3) and set(np.unique(data["y"])) <= {0, 1, 2}
    assert (data["y"] > 0).any(axis=(1, 2)).all()  # every image holds a shape
