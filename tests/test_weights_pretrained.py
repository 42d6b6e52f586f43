"""dlcore.weights.pretrained: torchvision's published files found, downloaded with their SHA-256 prefix
checked (against the local HTTP server of conftest.py), refused when wrong, and one line when offline."""

from __future__ import annotations

import hashlib
import io
import re

import numpy as np
import pytest
from one_line import raises_one_line

from dlcore import models, weights
from dlcore.data import download, imagenet_classes
from dlcore.data.download import ChecksumError


def test_the_table_holds_torchvisions_file_names():
    # torchvision/models/{alexnet,vgg,resnet,densenet,inception,convnext}.py, IMAGENET1K_V1
    base = "https://download.pytorch.org/models/"
    assert weights.pretrained_url("resnet101") == base + "resnet101-63fe2227.pth"
    assert weights.pretrained_url("AlexNet") == base + "alexnet-owt-7be5be79.pth"
    assert weights.pretrained_url("vgg16") == base + "vgg16-397923af.pth"
    assert weights.pretrained_url("inception_v3") == base + "inception_v3_google-0cc3c7bd.pth"
    assert weights.pretrained_url("convnext_base") == base + "convnext_base-6075fbad.pth"
    for name in ("alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "densenet121",
                 "inception_v3", "convnext_tiny", "convnext_base"):
        assert name in weights.PRETRAINED and name in models.names()      # a file for a model dlcore has
        assert re.fullmatch(r"[0-9a-f]{8}", weights.PRETRAINED.get(name).sha256_prefix)
    raises_one_line(lambda: weights.pretrained("resnet11"), "resnet11", "resnet101")


def test_imagenet_classes_ship_with_dlcore():
    names = imagenet_classes()
    assert len(names) == 1000
    assert names[207] == "golden retriever" and names[208] == "Labrador retriever"
    assert names[0] == "tench" and names[999] == "toilet tissue"
    names[0] = "changed"                       # a copy: the shipped list is not changed
    assert imagenet_classes()[0] == "tench"


def test_densenet_files_old_key_names_are_renamed():
    sd = {"features.denseblock1.denselayer3.norm.1.running_var": 1, "features.denseblock2.denselayer1.conv.2.weight": 2,
          "features.norm5.weight": 3, "classifier.bias": 4}
    assert weights._densenet_keys(sd) == {"features.denseblock1.denselayer3.norm1.running_var": 1,
                                          "features.denseblock2.denselayer1.conv2.weight": 2,
                                          "features.norm5.weight": 3, "classifier.bias": 4}


@pytest.fixture(scope="module")
def lenet_bytes():
    """A small torch-format state dict (LeNet-5's), made once for the module: (source model, file bytes)."""
    torch = pytest.importorskip("torch")
    source = models.create("lenet5", seed=1)
    buf = io.BytesIO()
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in weights.state_dict(source).items()}, buf)
    return source, buf.getvalue()


@pytest.fixture
def lenet_file(monkeypatch, lenet_bytes):
    """The file published as torchvision names its files: lenet5-<first 8 hex digits of its SHA-256>.pth."""
    source, body = lenet_bytes
    prefix = hashlib.sha256(body).hexdigest()[:8]
    table = weights._pretrained_registry()
    table.register("lenet5", weights._Published(f"lenet5-{prefix}.pth"))
    monkeypatch.setattr(weights, "PRETRAINED", table)
    return source, body, f"lenet5-{prefix}.pth"


def test_download_checks_the_prefix_loads_and_is_found_again(server, cache, monkeypatch, lenet_file):
    monkeypatch.delenv("DLCORE_WEIGHTS", raising=False)
    source, body, file = lenet_file
    server.files["/models/" + file] = body
    model = weights.pretrained("lenet5", models.create("lenet5", seed=2), base_url=server.url + "/models",
                               progress=False)
    for key, value in weights.state_dict(source).items():
        np.testing.assert_array_equal(weights.state_dict(model)[key], value)
    path = cache / "weights" / file
    assert path.read_bytes() == body and not path.with_name(file + ".sha256").exists()
    # found in the cache: no second request, even offline
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    assert weights.pretrained("lenet5", base_url=server.url + "/models") == path
    assert len(server.requests) == 1


def test_a_file_whose_hash_does_not_match_is_refused(server, cache, monkeypatch, lenet_file):
    monkeypatch.delenv("DLCORE_WEIGHTS", raising=False)
    _, body, file = lenet_file
    server.files["/models/" + file] = body + b"tampered"
    msg = raises_one_line(lambda: weights.pretrained("lenet5", base_url=server.url + "/models", progress=False),
                          file, "published prefix", exc=ChecksumError)
    assert file.split("-")[1][:8] in msg
    assert not [p.name for p in (cache / "weights").iterdir() if not p.name.endswith(".lock")]


def test_offline_or_unreachable_says_what_to_fetch_and_where(server, cache, monkeypatch, tmp_path, lenet_file):
    monkeypatch.delenv("DLCORE_WEIGHTS", raising=False)
    _, body, file = lenet_file
    monkeypatch.setenv("DLCORE_OFFLINE", "1")
    raises_one_line(lambda: weights.pretrained("lenet5"), "DLCORE_OFFLINE",
                    f"fetch https://download.pytorch.org/models/{file}", str(cache / "weights"), "$DLCORE_WEIGHTS",
                    exc=weights.WeightsNotFoundError)
    monkeypatch.delenv("DLCORE_OFFLINE")
    raises_one_line(lambda: weights.pretrained("lenet5", download=False), "download=False", file)
    raises_one_line(lambda: weights.pretrained("lenet5", base_url=server.url + "/gone", progress=False),
                    "could not be downloaded", "HTTP 404", f"fetch {server.url}/gone/{file}")
    assert server.requests                     # it did try
    # a file put where the message says is used; $DLCORE_WEIGHTS comes first
    monkeypatch.setenv("DLCORE_WEIGHTS", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / file).write_bytes(body)
    assert weights.pretrained("lenet5", download=False) == tmp_path / "mine" / file


def test_bad_arguments_are_one_line(lenet_file):
    raises_one_line(lambda: weights.pretrained("lenet5", "not a model"), "dlcore model", "str")
    raises_one_line(lambda: weights.pretrained("lenet5", download="yes"), "download")
    raises_one_line(lambda: download.fetch("http://127.0.0.1:9/x", "/tmp/x", sha256_prefix="xyz"),
                    "8 to 64 lowercase hex")
