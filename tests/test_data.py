"""Tests of dlcore.data: registry, embedded datasets, IDX cache, TFDS path, loader."""

from __future__ import annotations

import dataclasses
import gzip
import struct

import numpy as np
import pytest

from dlcore import data
from dlcore.data import DatasetNotFoundError

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch):
    """Points both the dlcore cache and the TFDS data dir at empty tmp dirs,
    so a real MNIST on the test machine cannot leak into these tests."""
    cache = tmp_path / "cache"
    tfds_dir = tmp_path / "tfds"
    cache.mkdir()
    tfds_dir.mkdir()
    monkeypatch.setenv("DLCORE_DATA", str(cache))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    monkeypatch.setenv("DLCORE_OFFLINE", "1")  # no test reaches the network
    monkeypatch.delenv("DLCORE_MIRROR", raising=False)
    return cache, tfds_dir


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """IDX encoding written by hand (independent of dlcore's reader)."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_mnist_cache(directory, rng, sizes=(("train", 5), ("test", 3)), gz=True):
    """Writes random MNIST-shaped IDX files; returns {split: (images, labels)}."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in sizes:
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
        for stem, array in zip(IDX_FILES[split], (images, labels)):
            payload = idx_bytes(array)
            if gz:
                (directory / f"{stem}.gz").write_bytes(gzip.compress(payload))
            else:
                (directory / stem).write_bytes(payload)
        written[split] = (images, labels)
    return written


# --- registry ---------------------------------------------------------------


def test_names_and_info():
    assert data.names() == sorted(data.names())
    assert {"blobs", "digits", "fashion_mnist", "mnist", "thermometer", "cifar10", "diabetes",
            "breast_cancer", "california_housing", "bank_marketing"} <= set(data.names())
    for name in data.names():
        meta = data.info(name)
        assert meta.name == name and meta.description and meta.source
        assert meta.splits
    assert data.info("thermometer").embedded and data.info("digits").embedded
    assert not data.info("mnist").embedded and not data.info("fashion_mnist").embedded
    assert data.info("digits").options == ("image_size", "flatten")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.info("mnist").name = "x"


EMBEDDED = [n for n in data.names() if data.info(n).embedded]


@pytest.mark.parametrize("name", EMBEDDED)
def test_info_sizes_are_the_split_sizes_load_returns(name):
    # Every embedded set loads in about a second at most (mnist1d, breast_cancer's first sklearn import).
    meta = data.info(name)
    splits = data.load(name)
    assert meta.sizes == {split: len(arrays["x"]) for split, arrays in splits.items()}
    assert tuple(meta.sizes) == meta.splits
    # a count written in the description (as "353/89" once was, for a 354/88 split) must be the real
    # one; fractions ("80/20", "90/5/5") sum to 100
    import re

    for group in re.findall(r"\d[\d,]*(?:/\d[\d,]*)+", meta.description):
        numbers = [int(v.replace(",", "")) for v in group.split("/")]
        assert sum(numbers) == 100 or numbers == list(meta.sizes.values()), (name, group, meta.sizes)


def test_info_sizes_of_a_real_dataset_are_none_and_diabetes_is_354_88():
    assert data.info("mnist").sizes is None
    assert data.info("diabetes").sizes == {"train": 354, "test": 88}  # round(0.8 * 442) train


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnsit'.*'mnist'"):
        data.load("mnsit")
    with pytest.raises(ValueError, match=r"unknown dataset 'nope' \(\d+ known: see dlcore data list\)"):
        data.info("nope")


def test_unknown_split_lists_dataset_splits():
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train'\]"):
        data.load("thermometer", "test")
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        data.load("digits", split="validation")


def test_unknown_option_lists_accepted_ones():
    with pytest.raises(ValueError, match=r"no option\(s\) \['size'\].*image_size"):
        data.load("digits", size=28)


# --- embedded datasets ------------------------------------------------------


def test_thermometer_exact_values():
    t_c = [0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0]
    t_u = [35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4]
    splits = data.load("thermometer")
    assert list(splits) == ["train"]
    train = data.load("thermometer", "train")
    assert train["x"].shape == (11, 1) and train["y"].shape == (11, 1)
    assert train["x"].dtype == np.float32 and train["y"].dtype == np.float32
    np.testing.assert_array_equal(train["x"][:, 0], np.float32(t_u))
    np.testing.assert_array_equal(train["y"][:, 0], np.float32(t_c))
    # Fresh arrays each call: a caller's in-place edit must not leak.
    train["x"][0] = -1.0
    assert data.load("thermometer", "train")["x"][0, 0] == np.float32(35.7)


def test_digits_shapes_ranges_and_split():
    splits = data.load("digits")
    train, test = splits["train"], splits["test"]
    assert train["x"].shape == (1437, 8, 8, 1) and test["x"].shape == (360, 8, 8, 1)
    assert train["y"].shape == (1437,) and test["y"].shape == (360,)
    assert train["x"].dtype == np.float32 and train["y"].dtype == np.int32
    both_x = np.concatenate([train["x"], test["x"]])
    assert both_x.min() == 0.0 and both_x.max() == 1.0
    # sklearn pixels are integers 0..16, so x * 16 is integral.
    np.testing.assert_array_equal(both_x * 16, np.round(both_x * 16))
    assert set(np.unique(test["y"])) == set(range(10))

    # The split is a partition of sklearn's 1797 images.
    from sklearn.datasets import load_digits

    raw = load_digits()
    raw_rows = {r.tobytes() + bytes([t]) for r, t in zip(raw.images.astype(np.float32) / 16, raw.target)}
    ours = {
        x[..., 0].tobytes() + bytes([int(y)])
        for x, y in zip(both_x, np.concatenate([train["y"], test["y"]]))
    }
    assert ours == raw_rows


@pytest.mark.parametrize("found", [True, False], ids=["file read", "through scikit-learn"])
def test_digits_and_sample_photos_are_scikit_learns_own(found, monkeypatch):
    # read from scikit-learn's data files without importing it (the seconds a `dlcore run` would pay), or, where
    # those files are not found, through its loaders: the same arrays either way
    from sklearn.datasets import load_digits, load_sample_images

    from dlcore.data import embedded

    if not found:
        monkeypatch.setattr(embedded, "_sklearn_file", lambda *parts: None)
    for fn in (embedded._digits_raw, embedded._sample_images):
        fn.cache_clear()
    try:
        images, labels = embedded._digits_raw()
        photos = embedded._sample_images()
    finally:
        for fn in (embedded._digits_raw, embedded._sample_images):
            fn.cache_clear()
    ref = load_digits()
    assert images.dtype == ref.images.dtype and labels.dtype == ref.target.dtype
    np.testing.assert_array_equal(images, ref.images)
    np.testing.assert_array_equal(labels, ref.target)
    ref_photos = load_sample_images().images
    assert len(photos) == len(ref_photos) == 2
    for ours, theirs in zip(photos, ref_photos):
        assert ours.dtype == np.uint8 and not ours.flags.writeable
        np.testing.assert_array_equal(ours, theirs)


def test_digits_deterministic_and_flatten():
    a, b = data.load("digits"), data.load("digits")
    for split in ("train", "test"):
        np.testing.assert_array_equal(a[split]["x"], b[split]["x"])
        np.testing.assert_array_equal(a[split]["y"], b[split]["y"])
    flat = data.load("digits", "train", flatten=True)
    assert flat["x"].shape == (1437, 64)
    np.testing.assert_array_equal(flat["x"], a["train"]["x"].reshape(1437, 64))


def test_digits_mnist_layout():
    native = data.load("digits", "test")
    big = data.load("digits", "test", image_size=28)
    x = big["x"]
    assert x.shape == (360, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_array_equal(big["y"], native["y"])
    assert x.min() >= 0.0 and x.max() <= 1.0
    # A 4-pixel frame of zeros, like MNIST's 20x20 digits in 28x28.
    border = np.ones((28, 28), bool)
    border[4:24, 4:24] = False
    assert np.all(x[:, border, 0] == 0.0)
    # Every digit has ink in the central 20x20 box.
    assert np.all(x[:, 4:24, 4:24, 0].max(axis=(1, 2)) > 0.5)
    # Centre content is the bilinear resize of the native digit.
    import jax
    import jax.numpy as jnp

    expected = jax.image.resize(jnp.asarray(native["x"][:, :, :, 0]), (360, 20, 20), "linear")
    np.testing.assert_allclose(x[:, 4:24, 4:24, 0], np.clip(np.asarray(expected), 0, 1), atol=1e-5)
    assert data.load("digits", "train", image_size=28, flatten=True)["x"].shape == (1437, 784)
    with pytest.raises(ValueError, match="image_size must be 8.*or 28"):
        data.load("digits", image_size=32)


def test_blobs_shapes_labels_determinism():
    splits = data.load("blobs")
    train, test = splits["train"], splits["test"]
    assert train["x"].shape == (800, 2) and test["x"].shape == (200, 2)
    assert train["x"].dtype == np.float32 and train["y"].dtype == np.int32
    y = np.concatenate([train["y"], test["y"]])
    np.testing.assert_array_equal(np.bincount(y), [334, 333, 333])
    again = data.load("blobs")
    np.testing.assert_array_equal(again["train"]["x"], train["x"])
    np.testing.assert_array_equal(again["test"]["y"], test["y"])
    other = data.load("blobs", seed=1)
    assert not np.array_equal(other["train"]["x"], train["x"])
    # Shuffled: labels are not in generation order.
    assert not np.all(np.diff(train["y"]) >= 0)


def test_blobs_given_centers_and_stds():
    centers = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    splits = data.load("blobs", n_samples=400, centers=centers, cluster_std=[0.5, 2.0], seed=3)
    x = np.concatenate([splits["train"]["x"], splits["test"]["x"]])
    y = np.concatenate([splits["train"]["y"], splits["test"]["y"]])
    assert x.shape == (400, 3)
    for k, std in enumerate([0.5, 2.0]):
        pts = x[y == k]
        np.testing.assert_allclose(pts.mean(axis=0), centers[k], atol=4 * std / np.sqrt(len(pts)) + 1e-3)
        np.testing.assert_allclose(pts.std(axis=0), std, rtol=0.25)
    # Random centres stay within center_box.
    small = data.load("blobs", "train", n_samples=50, centers=4, cluster_std=0.0, center_box=(2, 3))
    assert small["x"].min() >= 2 and small["x"].max() <= 3
    with pytest.raises(ValueError, match="n_features=2 disagrees"):
        data.load("blobs", centers=centers, n_features=2)
    with pytest.raises(ValueError, match="cluster_std"):
        data.load("blobs", centers=3, cluster_std=[1.0, 2.0])
    with pytest.raises(ValueError, match="n_samples"):
        data.load("blobs", n_samples=1)


# --- IDX reader and dlcore cache --------------------------------------------


def test_read_idx_plain_gzip_and_wider_dtypes(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 3, 2), dtype=np.uint8)
    (tmp_path / "a").write_bytes(idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a"), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.gz"), images)
    ints = np.array([[1, -2], [70000, -70000]], dtype=np.int32)
    (tmp_path / "b").write_bytes(idx_bytes(ints, 0x0C))
    got = data.read_idx(tmp_path / "b")
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, ints)


def test_read_idx_rejects_bad_files(tmp_path):
    good = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    cases = {
        "truncated": (good[:-10], "truncated"),
        "trailing": (good + b"\0", "unexpected bytes"),
        "magic": (b"\x12\x34" + good[2:], "not an IDX file"),
        "short": (b"\0\0", "too short"),
        "header": (good[:9], "truncated"),
        "badgz": (gzip.compress(good)[:-20], "gzip"),
    }
    for fname, (payload, message) in cases.items():
        (tmp_path / fname).write_bytes(payload)
        with pytest.raises(ValueError, match=message):
            data.read_idx(tmp_path / fname)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_cache(isolated_dirs, gz):
    cache, _ = isolated_dirs
    written = write_mnist_cache(cache / "mnist", np.random.default_rng(1), gz=gz)
    assert data.cache_dir() == cache
    splits = data.load("mnist")
    assert list(splits) == ["train", "test"]
    for split, (images, labels) in written.items():
        got = splits[split]
        assert got["x"].shape == (len(images), 28, 28, 1) and got["x"].dtype == np.float32
        assert got["y"].dtype == np.int32
        np.testing.assert_array_equal(got["x"][..., 0], images.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(got["y"], labels)
    test = data.load("mnist", "test", flatten=True)
    assert test["x"].shape == (3, 784)
    # Only the requested split's files are needed.
    for stem in IDX_FILES["train"]:
        (cache / "mnist" / (stem + (".gz" if gz else ""))).unlink()
    assert data.load("mnist", "test")["x"].shape == (3, 28, 28, 1)
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte"):
        data.load("mnist", "train")


def test_fashion_mnist_uses_its_own_cache_dir(isolated_dirs):
    cache, _ = isolated_dirs
    write_mnist_cache(cache / "mnist", np.random.default_rng(2))
    with pytest.raises(DatasetNotFoundError):
        data.load("fashion_mnist")
    written = write_mnist_cache(cache / "fashion_mnist", np.random.default_rng(3))
    np.testing.assert_array_equal(data.load("fashion_mnist", "train")["y"], written["train"][1])


def test_mnist_truncated_file_is_a_clear_error_not_a_fallback(isolated_dirs):
    cache, _ = isolated_dirs
    write_mnist_cache(cache / "mnist", np.random.default_rng(4), gz=False)
    path = cache / "mnist" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated") as excinfo:
        data.load("mnist")
    assert not isinstance(excinfo.value, DatasetNotFoundError)
    with pytest.raises(ValueError, match="truncated"):
        data.load_or_standin("mnist", "digits")


def test_mnist_mismatched_counts(isolated_dirs):
    cache, _ = isolated_dirs
    write_mnist_cache(cache / "mnist", np.random.default_rng(5))
    (cache / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8)))
    )
    with pytest.raises(ValueError, match="3 images but .* 4 labels"):
        data.load("mnist", "test")


def test_mnist_absent_raises_not_found_and_standin_falls_back(isolated_dirs):
    cache, tfds_dir = isolated_dirs
    with pytest.raises(DatasetNotFoundError) as excinfo:
        data.load("mnist")
    err = excinfo.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert "\n" not in message
    assert str(tfds_dir) in message and str(cache / "mnist") in message
    assert "t10k-labels-idx1-ubyte" in message and "DLCORE_DATA" in message
    assert err.searched == (str(tfds_dir), str(cache / "mnist"))

    splits, used = data.load_or_standin("mnist", "digits", standin_options={"image_size": 28})
    assert used == "digits"
    assert splits["train"]["x"].shape == (1437, 28, 28, 1)
    test, used = data.load_or_standin("mnist", "digits", split="test")
    assert used == "digits" and test["x"].shape == (360, 8, 8, 1)
    with pytest.raises(ValueError, match="unknown dataset 'digitz'"):
        data.load_or_standin("mnist", "digitz")


def test_load_or_standin_prefers_the_real_dataset(isolated_dirs):
    cache, _ = isolated_dirs
    written = write_mnist_cache(cache / "mnist", np.random.default_rng(6))
    test, used = data.load_or_standin("mnist", "digits", split="test", standin_options={"image_size": 28})
    assert used == "mnist"
    np.testing.assert_array_equal(test["y"], written["test"][1])


def test_cache_dir_default(monkeypatch, tmp_path):
    monkeypatch.delenv("DLCORE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / ".cache" / "dlcore"
    monkeypatch.setenv("DLCORE_DATA", "")
    assert data.cache_dir() == tmp_path / ".cache" / "dlcore"


# --- TFDS path --------------------------------------------------------------


def write_tfds_metadata(tfds_dir, name, file_format, sizes=(("train", 5), ("test", 3))):
    """Writes the metadata files (dataset_info.json, features.json) of a
    prepared TFDS dataset, without its records: what `is_prepared` and
    `tfds.testing.mock_data(policy=USE_FILES)` read. Nothing is downloaded."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=str(tfds_dir), file_format=file_format)
    builder.data_path.mkdir(parents=True)
    template = tfds.core.ShardedFileTemplate(
        data_dir=builder.data_path, dataset_name=name, filetype_suffix=file_format
    )
    builder.info.set_splits(
        tfds.core.SplitDict(
            [
                tfds.core.SplitInfo(
                    name=split, shard_lengths=[n], num_bytes=0,
                    filename_template=template.replace(split=split),
                )
                for split, n in sizes
            ]
        )
    )
    builder.info.write_to_directory(builder.data_path)
    return builder.data_path


def test_tfds_data_source_under_mock_data(isolated_dirs):
    """`tfds.testing.mock_data` replaces the array_record reader with random
    examples; USE_FILES makes it keep our metadata dir, so dlcore's real
    "is it prepared, in a random-access format?" check runs unmocked."""
    import tensorflow_datasets as tfds

    _, tfds_dir = isolated_dirs
    write_tfds_metadata(tfds_dir, "mnist", "array_record")
    with tfds.testing.mock_data(
        num_examples=6, data_dir=str(tfds_dir), policy=tfds.testing.MockPolicy.USE_FILES
    ):
        expected = tfds.data_source("mnist", split="train", data_dir=str(tfds_dir), download=False)
        images = np.stack([expected[i]["image"] for i in range(6)])
        labels = np.array([expected[i]["label"] for i in range(6)])
        train = data.load("mnist", "train")
        both = data.load("mnist", data_dir=tfds_dir, flatten=True)
    assert train["x"].shape == (6, 28, 28, 1) and train["x"].dtype == np.float32
    assert train["y"].shape == (6,) and train["y"].dtype == np.int32
    np.testing.assert_array_equal(train["x"], images.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(train["y"], labels)
    assert train["x"].max() > 0.5  # really came from uint8 0..255 data
    assert set(both) == {"train", "test"} and both["test"]["x"].shape == (6, 784)


def test_tfds_copy_in_tfrecord_format_is_reported(isolated_dirs):
    _, tfds_dir = isolated_dirs
    path = write_tfds_metadata(tfds_dir, "mnist", "tfrecord")
    with pytest.raises(DatasetNotFoundError, match=f"{path}.*tfrecord.*array_record"):
        data.load("mnist", "train")


def test_tfds_unprepared_dir_triggers_no_download(isolated_dirs, monkeypatch):
    """A dataset directory without prepared metadata counts as absent; the
    TFDS download entry point must never run."""
    import tensorflow_datasets as tfds

    _, tfds_dir = isolated_dirs
    (tfds_dir / "mnist" / "3.0.1").mkdir(parents=True)

    def forbidden(*args, **kwargs):
        raise AssertionError("download_and_prepare must not be called")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", forbidden)
    with pytest.raises(DatasetNotFoundError, match="not a prepared TFDS dataset"):
        data.load("mnist")


# --- loader -----------------------------------------------------------------


def make_split(n=10):
    return {"x": np.arange(n * 2, dtype=np.float32).reshape(n, 2), "y": np.arange(n, dtype=np.int32)}


def test_batches_sizes_and_drop_last():
    split = make_split(10)
    sizes = [len(b["y"]) for b in data.batches(split, 4)]
    assert sizes == [4, 4, 2]
    assert [len(b["x"]) for b in data.batches(split, 4, drop_last=True)] == [4, 4]
    assert data.num_batches(10, 4, False) == 3 and data.num_batches(10, 4, True) == 2
    assert data.num_batches(8, 4, False) == 2 and data.num_batches(3, 4, True) == 0
    assert list(data.batches(split, 20, drop_last=True)) == []
    batches = list(data.batches(split, 3))
    np.testing.assert_array_equal(np.concatenate([b["y"] for b in batches]), split["y"])
    assert set(batches[0]) == {"x", "y"} and batches[0]["x"].shape == (3, 2)


def test_batches_shuffle_is_a_seeded_permutation():
    split = make_split(23)
    first = [b["y"] for b in data.batches(split, 5, shuffle=True, seed=7)]
    again = [b["y"] for b in data.batches(split, 5, shuffle=True, seed=7)]
    other = [b["y"] for b in data.batches(split, 5, shuffle=True, seed=8)]
    order = np.concatenate(first)
    np.testing.assert_array_equal(order, np.concatenate(again))
    assert not np.array_equal(order, np.concatenate(other))
    assert not np.array_equal(order, split["y"])
    np.testing.assert_array_equal(np.sort(order), split["y"])  # every row exactly once
    # x rows travel with their y.
    for b in data.batches(split, 5, shuffle=True, seed=7):
        np.testing.assert_array_equal(b["x"][:, 0], 2 * b["y"])


def test_batches_shuffle_with_jax_key():
    import jax

    split = make_split(16)
    key = jax.random.key(0)
    order = np.concatenate([b["y"] for b in data.batches(split, 4, shuffle=True, seed=key)])
    np.testing.assert_array_equal(order, np.asarray(jax.random.permutation(key, 16)))
    legacy = np.concatenate(
        [b["y"] for b in data.batches(split, 4, shuffle=True, seed=jax.random.PRNGKey(0))]
    )
    np.testing.assert_array_equal(np.sort(legacy), split["y"])


def test_validate_split_and_batch_errors():
    assert data.validate_split(make_split(7)) == 7
    with pytest.raises(ValueError, match=r"differ in length \(x=4, y=3\)"):
        data.batches({"x": np.zeros((4, 2)), "y": np.zeros(3)}, 2)
    with pytest.raises(ValueError, match="no 'x' key"):
        data.validate_split({"y": np.zeros(3)})
    with pytest.raises(ValueError, match="leading example axis"):
        data.validate_split({"x": np.zeros(3), "y": 1.0})
    with pytest.raises(ValueError, match="empty"):
        data.validate_split({"x": np.zeros((0, 2))})
    with pytest.raises(ValueError, match="dict of arrays"):
        data.validate_split([np.zeros(3)])
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            data.batches(make_split(), bad)
    with pytest.raises(ValueError, match="seed"):
        data.batches(make_split(), 2, shuffle=True, seed="abc")
