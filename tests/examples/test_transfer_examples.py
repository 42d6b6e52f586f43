"""transfer_family (Subramanian, Deep Learning with PyTorch, ch. 3, 5, 8): its figures beside the book's, frozen
layers that stay frozen, StepLR's rates, the ensemble's width and each backbone's, one-line bad input."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import runner, transfer
from dlcore.nn.layers import Identity
from one_line import raises_one_line

NAME = "transfer_family"
# torchvision's penultimate widths: ResNet-34's fc reads 512, Inception-v3's 2048, DenseNet-121's 1024
WIDTHS = {"resnet34": 512, "inception_v3": 2048, "densenet121": 1024}


def test_every_part_reports_its_figures_beside_the_books(quick_run):
    report, text = quick_run(NAME)
    m, book = report["metrics"], report["book"]
    assert report["dataset"] in ("cats_vs_dogs", "photo_patches")
    assert all(np.isfinite(v) for v in m.values()), m
    for part in ("resnet18_best_val", "vgg16_frozen_val", "vgg16_augmented_val", "vgg16_precomputed_val",
                 "resnet34_val", "inception_v3_val", "ensemble_train", "ensemble_val"):
        assert 0.0 <= m[f"{part}_accuracy"] <= 1.0, part
    # the book's own figures (ch. 3: 87%; ch. 5: 98.45%; ch. 8: 98/97, 99/97.8, 99/99, ensemble 99.6/99.3)
    assert book["resnet18_best_val_accuracy"] == 0.87 and book["vgg16_frozen_val_accuracy"] == 0.9845
    assert (book["ensemble_train_accuracy"], book["ensemble_val_accuracy"]) == (0.996, 0.993)
    # --quick leaves DenseNet-121 out of the ensemble (test_each_backbones_features_are_as_wide_as_torchvisions)
    assert set(book) <= set(m) | {"densenet121_train_accuracy", "densenet121_val_accuracy"}
    # offline: random weights and the stand-in, both said, the book's figures said to be not comparable
    if report["dataset"] == "photo_patches":
        assert "not comparable with this run on photo_patches" in text
    for name in ("resnet18", "vgg16", "resnet34", "inception_v3"):
        assert re.search(rf"^{name}: (random initialisation, so the book's figures are not comparable|"
                         rf"torchvision's ImageNet weights)", text, re.M), name


def test_frozen_vgg_features_are_unchanged_and_the_classifier_trained(quick_run):
    report, text = quick_run(NAME)
    m = report["metrics"]
    # after the frozen epochs and the dropout-0.2 augmented epochs: every one of VGG-16's 13 conv layers' kernel
    # and bias is bit-identical, while the classifier's weights moved
    assert m["vgg16_frozen_max_abs_change"] == 0.0
    assert m["vgg16_classifier_max_abs_change"] > 0.0
    assert "largest change of the 26 frozen feature arrays: 0 " in text


def test_steplr_rates_are_torchs(quick_run):
    m = quick_run(NAME)[0]["metrics"]
    # StepLR(step_size=7, gamma=0.1) from lr 0.001, stepped at each epoch's end: epoch e trains at
    # 0.001 * 0.1 ** ((e - 1) // 7): epochs 1-7 at 1e-3, 8-14 at 1e-4, 15 at 1e-5
    hand = {1: 1e-3, 7: 1e-3, 8: 1e-4, 14: 1e-4, 15: 1e-5}
    for epoch, lr in hand.items():
        assert m[f"resnet18_lr_epoch_{epoch}"] == pytest.approx(lr, rel=1e-6), epoch


def test_steplr_rates_match_torch_steplr(quick_run):
    torch = pytest.importorskip("torch")
    m = quick_run(NAME)[0]["metrics"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.001, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.1)
    seen = {}
    for epoch in range(1, 16):
        seen[epoch] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    for epoch in (1, 7, 8, 14, 15):
        assert m[f"resnet18_lr_epoch_{epoch}"] == pytest.approx(seen[epoch], rel=1e-6), epoch


def test_the_ensemble_reads_the_backbones_features_side_by_side(quick_run):
    report, text = quick_run(NAME)
    m = report["metrics"]
    # under --quick two of the three backbones, and the run says so
    names = [n for n in WIDTHS if f"{n}_feature_width" in m]
    assert names == ["resnet34", "inception_v3"] and "densenet121: left out under --quick" in text
    for n in names:
        assert m[f"{n}_feature_width"] == WIDTHS[n], n
    assert m["ensemble_feature_width"] == sum(WIDTHS[n] for n in names)
    assert f"= {int(m['ensemble_feature_width'])} features" in text


@pytest.mark.parametrize("name", list(WIDTHS))
def test_each_backbones_features_are_as_wide_as_torchvisions(name):
    # the classifier each backbone loses (the example's HEADS) leaves the penultimate features at torchvision's
    # width, at the sizes the run feeds them (Inception-v3: 75x75); shapes only, nothing compiled
    tf = runner.get(NAME)
    model = nnx.eval_shape(lambda: dlcore.models.create(name, **({"aux_logits": False} if name == "inception_v3"
                                                                 else {})))
    transfer.replace_head(model, tf.HEADS[name], Identity())
    model.eval()
    size = 75 if name == "inception_v3" else 32
    out = nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((2, size, size, 3)))
    assert out.shape == (2, WIDTHS[name])


def test_ensemble_head_is_one_linear_map_of_the_concatenation_and_refuses_other_widths():
    head_cls = runner.get(NAME).EnsembleHead
    head = head_cls([3, 5, 2], 2, hidden=4, rngs=nnx.Rngs(0))
    head.eval()
    x = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32)
    # eval mode: out(fc(x)), i.e. the book's fc4(fc1(x1) + fc2(x2) + fc3(x3)) with fc_i the column blocks of fc
    w, b = np.asarray(head.fc.kernel[...]), np.asarray(head.fc.bias[...])
    blocks = (x[:, :3] @ w[:3]) + (x[:, 3:8] @ w[3:8]) + (x[:, 8:] @ w[8:]) + b
    want = blocks @ np.asarray(head.out.kernel[...]) + np.asarray(head.out.bias[...])
    np.testing.assert_allclose(np.asarray(head(x)), want, rtol=1e-5, atol=1e-6)
    raises_one_line(lambda: head(x[:, :9]), "EnsembleHead expects 10 features per row (3 + 5 + 2)", "(6, 9)")
    raises_one_line(lambda: head_cls([], 2, rngs=nnx.Rngs(0)), "EnsembleHead: widths must be positive")
    raises_one_line(lambda: head_cls([4, 0], 2, rngs=nnx.Rngs(0)), "EnsembleHead: widths must be positive")
