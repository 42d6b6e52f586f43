"""The convnext_photos example (Géron ch. 12, Using TorchVision's Pretrained Models): its claims, checked.

The preprocessing and the top-3 softmax are checked against PyTorch (torchvision's `weights.transforms()` for
ConvNeXt-base is `F.interpolate(bilinear, antialias=True)` to a shorter side of 232, a center crop of 224 and
ImageNet normalisation); the run itself in quick mode, which offline has no ImageNet weights and must say so.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlcore import data
from dlcore.runner import get

BOOK = {"china_top1_class": 698, "flower_top1_class": 985,          # Géron ch. 12: palace, daisy
        "china_top3_p1": 0.8618, "china_top3_p2": 0.1185, "china_top3_p3": 0.0197,
        "flower_top3_p1": 0.8106, "flower_top3_p2": 0.0964, "flower_top3_p3": 0.0930}


def test_convnext_photos_runs_and_says_which_weights(quick_run):
    report, text = quick_run("convnext_photos")
    m = report["metrics"]
    assert report["book"] == BOOK
    assert m["convnext_base_params"] == 88_591_464                   # torchvision's ConvNeXt_Base_Weights meta
    for photo in ("china", "flower"):
        p = [m[f"{photo}_top3_p{k}"] for k in (1, 2, 3)]
        assert p == sorted(p, reverse=True) and sum(p) == pytest.approx(1.0, abs=1e-5)
    if m["imagenet_weights"]:                                         # torchvision's file is on this machine
        assert m["china_top1_class"] == 698 and m["flower_top1_class"] == 985
        for k, v in BOOK.items():
            assert m[k] == pytest.approx(v, abs=0.01), k
        assert "['palace', 'daisy']" in text
    else:                                                             # offline: random weights, said plainly
        assert "RANDOM weights" in text and "convnext_base-6075fbad.pth" in text
        assert "not comparable with the book's" in text


def test_preprocess_is_torchvisions_transform():
    torch = pytest.importorskip("torch")
    ex = get("convnext_photos")
    x = data.load("sample_photos")["train"]["x"]                      # (2, 427, 640, 3) in [0, 1]
    ours = np.asarray(ex.preprocess(x))
    assert ours.shape == (2, 224, 224, 3)
    # torchvision: shorter side 232 -> (232, int(232 * 640 / 427)) = (232, 347); crop offsets round((h - 224) / 2)
    t = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(232, 347), mode="bilinear",
                                        antialias=True, align_corners=False)[:, :, 4:228, 62:286]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = ((t - mean) / std).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_top3_is_topk_then_softmax_of_the_three():
    torch = pytest.importorskip("torch")
    logits = np.random.default_rng(0).normal(size=(2, 1000)).astype(np.float32)
    ids, probs = get("convnext_photos").top3(logits)
    values, expected_ids = torch.from_numpy(logits).topk(k=3, dim=1)
    np.testing.assert_array_equal(ids, expected_ids.numpy())
    np.testing.assert_allclose(probs, values.softmax(dim=1).numpy(), rtol=1e-6)
