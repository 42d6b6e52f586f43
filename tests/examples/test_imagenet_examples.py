"""The ImageNet-weights examples (imagenet_inference, vgg16_head, visualise_cnn) under --quick, offline: the
books' parameter counts exactly, the random-weights fallback said in one line, the activation shapes."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from dlcore.data import imagenet_classes


def test_imagenet_inference_counts_and_top5(quick_run):
    report, text = quick_run("imagenet_inference")
    m = report["metrics"]
    assert m["resnet101_params"] == 44_549_160                # torchvision's resnet101; the book's "44.5 million"
    assert m["resnet101_params_millions"] == report["book"]["resnet101_params_millions"] == 44.5
    assert m["alexnet_params"] == 61_100_840                  # torchvision's alexnet
    # offline: no weights, said in one line with what to fetch, and no 96.57% beside noise
    assert "fetch https://download.pytorch.org/models/resnet101-63fe2227.pth" in text
    assert "top1_percent" not in m
    rows = re.findall(r"^  (\d)\. (.+?) +(\d+\.\d\d)%   \(index (\d+)\)$", text, re.M)
    names = imagenet_classes()
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert all(names[int(i)] == n.strip() for _, n, _, i in rows)
    assert int(rows[0][3]) == m["top1_index"]
    assert [float(r[2]) for r in rows] == sorted((float(r[2]) for r in rows), reverse=True)
    assert "resize 73, center crop 64 -> batch (1, 64, 64, 3)" in text


def test_vgg16_head_prints_the_books_counts(quick_run):
    report, text = quick_run("vgg16_head")
    m = report["metrics"]
    # Listing 6-16's output: 138,357,544 - (4096*1000 + 1000) + (4096*256 + 256) + (256 + 1)
    assert m["total_params"] == 135_309_633 and "135,309,633 total parameters." in text
    assert m["trainable_params"] == 1_049_089 and "1,049,089 training parameters." in text
    # the head trained on the precomputed features sits in VGG-16: the whole network agrees with it
    n_val = 32
    assert abs(m["end_to_end_val_accuracy"] - m["val_accuracy"]) <= 1 / n_val + 1e-6
    assert "fetch https://download.pytorch.org/models/vgg16-397923af.pth" in text


def test_visualise_cnn_shapes_and_grids(quick_run):
    report, text = quick_run("visualise_cnn")
    m = report["metrics"]
    # a 64 x 64 image: conv1_1 and its ReLU at full size, conv2_1 after one 2x2 pool, conv5_3 after four
    assert (m["features0_height"], m["features0_channels"]) == (64, 64)
    assert (m["features1_height"], m["features1_channels"]) == (64, 64)
    assert (m["features5_height"], m["features5_channels"]) == (32, 128)
    assert (m["features28_height"], m["features28_channels"]) == (4, 512)
    assert (m["filters"], m["filter_size"]) == (64, 3)
    saved = dict(re.findall(r"^plot: (.*/(visualise_cnn_\w+)\.png)$", text, re.M)[i][::-1] for i in range(5))
    assert sorted(saved) == ["visualise_cnn_features_0", "visualise_cnn_features_1", "visualise_cnn_features_28",
                             "visualise_cnn_features_5", "visualise_cnn_filters"]
    # 64 maps in 8 columns of (side + 1 pixel of padding); 64 filters of 3 x 3 in colour, zoomed 16 times
    assert Image.open(Path(saved["visualise_cnn_features_5"])).size == (8 * 33, 8 * 33)
    assert Image.open(Path(saved["visualise_cnn_filters"])).size == (8 * 4 * 16, 8 * 4 * 16)
    assert Image.open(Path(saved["visualise_cnn_filters"])).mode == "RGB"
