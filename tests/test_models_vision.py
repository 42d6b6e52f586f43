"""The vision model zoo: registry, exact parameter counts, input checks, PyTorch weight files."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import models, weights

# torchvision's counts at 1000 classes (and Keras's trainable count for Xception)
COUNTS = {
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808, "vgg11": 132_863_336, "vgg16": 138_357_544, "vgg19_bn": 143_678_248,
    "alexnet": 61_100_840, "densenet121": 7_978_856, "mobilenet_v2": 3_504_872, "googlenet": 13_004_888,
    "xception": 22_855_952, "se_resnet50": 28_088_024, "lenet5": 61_706, "mnist_bn_cnn": 207_018,
    "fashion_cnn": 1_413_834, "mnist_cnn_001": 21_840, "cats_dogs_cnn": 3_308_961,
}


def _count(name, **kw):
    return models.count_params(nnx.eval_shape(lambda: models.create(name, **kw)))


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_parameter_counts_match_torchvision(name):
    assert _count(name) == COUNTS[name]


def test_registry_has_the_zoo_and_googlenet_without_aux_heads():
    expected = {"lenet5", "alexnet", "googlenet", "densenet121", "xception", "se_resnet50", "mobilenet_v2",
                "mnist_convnet", "mnist_bn_cnn", "cats_dogs_cnn", "mnist_cnn_001", "fashion_cnn"}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    assert expected <= set(models.names())
    assert _count("googlenet", aux_logits=False) == 6_624_904
    assert _count("resnet18", num_classes=10) == 11_689_512 - 513 * 990


def _shape(model, size, c=3):
    return nnx.eval_shape(lambda m, x: m(x), model, jnp.zeros((2, size, size, c)))


@pytest.mark.parametrize("name,min_size", [("alexnet", 63), ("vgg11", 32), ("googlenet", 31),
                                           ("densenet121", 29), ("xception", 7)])
def test_too_small_images_are_refused_by_name(name, min_size):
    model = models.create(name, num_classes=3) if name not in ("alexnet", "vgg11") else \
        nnx.eval_shape(lambda: models.create(name, num_classes=3))
    model.eval()
    assert _shape(model, min_size).shape == (2, 3)      # the smallest size that works does work
    with pytest.raises(ValueError, match=f"(?i){name[:5]}.*at least {min_size}x{min_size}"):
        _shape(model, min_size - 1)


def test_wrong_channel_count_is_refused_by_name():
    model = models.create("resnet18", num_classes=3)
    with pytest.raises(ValueError, match=r"ResNet.*expects 3 input channels.*NCHW"):
        model(jnp.zeros((1, 3, 32, 32)))
    with pytest.raises(ValueError, match="mnist_bn_cnn expects 1 input channels"):
        models.create("mnist_bn_cnn")(jnp.zeros((1, 28, 28, 3)))
    with pytest.raises(ValueError, match="LeNet5 needs images of at least 32x32"):
        models.create("lenet5")(jnp.zeros((1, 28, 28, 1)))
    assert models.create("lenet5", padding=2)(jnp.zeros((1, 28, 28, 1))).shape == (1, 10)


def test_books_models_check_the_image_size_their_linear_was_built_for():
    with pytest.raises(ValueError, match="fashion_cnn was built for 28x28 images.*image_size=32"):
        models.create("fashion_cnn")(jnp.zeros((1, 32, 32, 1)))
    with pytest.raises(ValueError, match="cats_dogs_cnn was built for 224x224"):
        _shape(nnx.eval_shape(lambda: models.create("cats_dogs_cnn")), 150)


def test_books_models_shapes_and_modes():
    m = models.create("cats_dogs_cnn", image_size=64)
    assert m(jnp.zeros((2, 64, 64, 3))).shape == (2, 1)
    m = models.create("mnist_convnet")
    y = m(jnp.zeros((2, 28, 28, 1)))
    np.testing.assert_allclose(np.exp(np.asarray(y)).sum(-1), 1.0, rtol=1e-5)   # log-probabilities


# ------------------------------------------------------------------------------------------------
# state dicts: errors and files
# ------------------------------------------------------------------------------------------------

def _small():
    return models.create("mnist_bn_cnn")


def test_state_dict_round_trip_and_keys():
    a, b = _small(), models.create("mnist_bn_cnn", seed=1)
    sd = weights.state_dict(a)
    assert set(weights.torch_keys(a)) | {"conv_unit_1.1.num_batches_tracked", "conv_unit_2.1.num_batches_tracked"} \
        == set(sd)
    assert sd["conv_unit_1.0.weight"].shape == (16, 1, 3, 3) and sd["fc1.weight"].shape == (128, 1568)
    weights.load_state_dict(b, sd)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 28, 28, 1)), jnp.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))


def test_bad_state_dicts_name_the_tensor():
    m = _small()
    sd = weights.state_dict(m)
    before = np.asarray(m.fc2.kernel[...]).copy()
    missing = dict(sd)
    del missing["conv_unit_2.1.running_var"]
    with pytest.raises(ValueError, match="missing tensor 'conv_unit_2.1.running_var'"):
        weights.load_state_dict(m, missing)
    bad = dict(sd, **{"fc2.weight": np.zeros((10, 64), np.float32), "fc2.bias": np.ones(10, np.float32)})
    with pytest.raises(ValueError, match=r"tensor 'fc2.weight' has shape \(10, 64\).*\(10, 128\)"):
        weights.load_state_dict(m, bad)
    np.testing.assert_array_equal(np.asarray(m.fc2.kernel[...]), before)  # nothing was changed
    extra = dict(sd, **{"fc3.weight": np.zeros((2, 2), np.float32)})
    with pytest.raises(ValueError, match="unexpected tensor 'fc3.weight'"):
        weights.load_state_dict(m, extra)
    weights.load_state_dict(m, extra, strict=False)
    weights.load_state_dict(m, {k: v for k, v in sd.items() if "num_batches_tracked" not in k})  # optional
    weights.load_state_dict(m, {"module." + k: v for k, v in sd.items()})   # DataParallel prefix


def test_safetensors_file_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    a, b = _small(), models.create("mnist_bn_cnn", seed=1)
    path = weights.save(a, tmp_path / "w.safetensors")
    weights.load(b, path)
    np.testing.assert_array_equal(np.asarray(a.fc1.kernel[...]), np.asarray(b.fc1.kernel[...]))
    with pytest.raises(ValueError, match="does not exist"):
        weights.load(b, tmp_path / "nope.safetensors")


def test_pth_file_from_torch(tmp_path):
    torch = pytest.importorskip("torch")
    a, b = _small(), models.create("mnist_bn_cnn", seed=1)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in weights.state_dict(a).items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    weights.load(b, tmp_path / "ckpt.pth")
    np.testing.assert_array_equal(np.asarray(a.conv_unit_2[0].kernel[...]), np.asarray(b.conv_unit_2[0].kernel[...]))


def test_googlenet_paper_variant_traces_with_aux_heads():
    m = nnx.eval_shape(lambda: models.create("googlenet", paper=True))   # LRN, 5x5 branches, no BN
    assert models.count_params(m) == 13_378_280
    out = _shape(m, 224)
    assert isinstance(out, models.GoogLeNetOutputs) and [o.shape for o in out] == [(2, 1000)] * 3
    m.eval()
    assert _shape(m, 224).shape == (2, 1000)
