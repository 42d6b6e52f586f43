"""dlcore.data.ImageFolder and read_image on tiny PNG/JPEG trees written in tmp_path."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from one_line import raises_one_line
from PIL import Image

from dlcore.data import ImageFolder, folder, read_image, source_batches


def pattern(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write(path, a, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, format=fmt)
    return path


@pytest.fixture
def tree(tmp_path):
    """root/{B,a,cats}/ with 2, 1, 2 PNGs of 4 x 6 pixels; "B" < "a" < "cats" as Python (and torchvision) sort."""
    root = tmp_path / "train"
    pix = {}
    files = [(c, n) for c, names in (("cats", ("x.png", "sub/y.PNG")), ("a", ("1.png",)), ("B", ("z.png", "w.png")))
             for n in names]
    for seed, (c, n) in enumerate(files):                     # a seed each: no two images alike
        pix[(c, n)] = pattern(4, 6, seed)
        write(root / c / n, pix[(c, n)])
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "cats" / ".DS_Store").write_bytes(b"\0\1")
    (root / ".hidden").mkdir()
    return root, pix


def test_classes_labels_and_center_crop(tree, tmp_path):
    root, pix = tree
    ds = ImageFolder(root, size=4, dtype="uint8", cache=tmp_path / "c")
    assert ds.classes == ["B", "a", "cats"] and ds.class_to_idx == {"B": 0, "a": 1, "cats": 2}
    rel = [str(p.relative_to(root)) for p in ds.files]
    # torchvision's order: folders sorted by path, then files by name; .txt and dotfiles ignored
    assert rel == ["B/w.png", "B/z.png", "a/1.png", "cats/x.png", "cats/sub/y.PNG"]
    np.testing.assert_array_equal(ds.targets, [0, 0, 1, 2, 2])
    # the shorter side (4) is already 4: no resize; the 4 x 6 image loses one column each side
    for i, r in enumerate(rel):
        c, n = r.split("/", 1)
        np.testing.assert_array_equal(ds[i]["x"], pix[(c, n)][:, 1:5])
        assert ds[i]["y"] == ds.targets[i]
    arrays = ds.as_arrays()
    assert arrays["x"].shape == (5, 4, 4, 3) and arrays["x"].dtype == np.uint8 and arrays["y"].dtype == np.int32
    np.testing.assert_array_equal(ds[-1]["x"], arrays["x"][4])
    raises_one_line(lambda: ds[5], "out of range", "5 images", exc=IndexError)


def test_float32_resize_and_read_image_match_pillow(tmp_path):
    a = pattern(8, 16, 3)
    path = write(tmp_path / "r" / "k" / "a.png", a)
    ds = ImageFolder(tmp_path / "r", size=(4, 6), resize=4, cache=False)
    # reference: Pillow's bilinear resize of the shorter side to 4 (8 x 16 -> 4 x 8), then rows 0-3, columns 1-6
    ref = np.asarray(Image.fromarray(a).resize((8, 4), Image.BILINEAR))[:, 1:7]
    x = ds[0]["x"]
    assert x.dtype == np.float32 and x.shape == (4, 6, 3)
    np.testing.assert_allclose(x, ref / 255.0, rtol=1e-6)
    np.testing.assert_allclose(read_image(path, size=(4, 6), resize=4), x, rtol=1e-6)
    np.testing.assert_array_equal(read_image(a, size=None, dtype="uint8"), a)      # an array, kept whole
    gray = read_image(Image.fromarray(a), size=8, mode="L", dtype="uint8")
    assert gray.shape == (8, 8, 1)


def test_jpeg_decodes_as_pillow_does(tmp_path):
    a = pattern(10, 10, 4)
    path = write(tmp_path / "j" / "dogs" / "d.jpg", a, "JPEG")
    write(tmp_path / "j" / "cats" / "c.jpeg", pattern(10, 10, 5), "JPEG")
    ds = ImageFolder(tmp_path / "j", size=None, dtype="uint8", cache=False)
    np.testing.assert_array_equal(ds[1]["x"], np.asarray(Image.open(path).convert("RGB")))
    assert ds.classes == ["cats", "dogs"]


def test_the_cache_is_reused_and_a_changed_file_is_decoded_again(tree, tmp_path, monkeypatch):
    root, pix = tree
    cache = tmp_path / "cache"
    first = ImageFolder(root, size=4, dtype="uint8", cache=cache).as_arrays()["x"]
    opened = []
    real_open = folder._open
    monkeypatch.setattr(folder, "_open", lambda p: opened.append(p) or real_open(p))
    again = ImageFolder(root, size=4, dtype="uint8", cache=cache)
    assert opened == []                                         # nothing decoded: read from the cache
    np.testing.assert_array_equal(again.as_arrays()["x"], first)
    assert isinstance(again._x, np.memmap)                      # random access from disk
    import pickle

    blob = pickle.dumps(again)                                  # as grain's worker processes get it
    back = pickle.loads(blob)
    assert isinstance(back._x, np.memmap) and back._x.filename == again._x.filename       # reopened, not copied
    np.testing.assert_array_equal(back[4]["x"], again[4]["x"])
    new = pattern(4, 6, 99)
    write(root / "a" / "1.png", new)
    os.utime(root / "a" / "1.png", ns=(1, 1))                   # a different mtime even on a coarse clock
    changed = ImageFolder(root, size=4, dtype="uint8", cache=cache)
    assert opened                                               # decoded again
    np.testing.assert_array_equal(changed[2]["x"], new[:, 1:5])
    assert len(list(next(cache.iterdir()).iterdir())) == 1      # the stale copy is gone
    ImageFolder(root, size=2, dtype="uint8", cache=cache)       # another size: its own copy, the first one kept
    assert len(list(cache.iterdir())) == 2
    opened.clear()
    ImageFolder(root, size=4, dtype="uint8", cache=cache)
    assert opened == []
    # a damaged cache is decoded again, not trusted
    for npy in cache.glob("*/*/images.npy"):
        npy.write_bytes(b"garbage")
    np.testing.assert_array_equal(ImageFolder(root, size=4, dtype="uint8", cache=cache)[2]["x"], new[:, 1:5])
    arrays = changed.as_arrays()
    arrays["x"][0] = 0                                          # as_arrays is a writable copy in memory


def test_unreadable_files_are_skipped_with_one_warning_or_raise(tree, tmp_path):
    root, _ = tree
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    good = (root / "a" / "1.png").read_bytes()
    (root / "a" / "cut.png").write_bytes(good[: len(good) // 2])                  # truncated
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\): .*cut.png .* and 1 more") as rec:
        ds = ImageFolder(root, size=4, cache=tmp_path / "c")
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert len(ds) == 5 and sorted(os.path.basename(p) for p, _ in ds.skipped) == ["broken.png", "cut.png"]
    with pytest.warns(UserWarning, match="skipped 2"):          # said again when read from the cache
        ImageFolder(root, size=4, cache=tmp_path / "c")
    raises_one_line(lambda: ImageFolder(root, size=4, cache=False, on_error="raise"), "cut.png", "cannot be read")
    # the cache of the "skip" run above holds what it left out: "raise" still raises
    raises_one_line(lambda: ImageFolder(root, size=4, cache=tmp_path / "c", on_error="raise"), "cut.png",
                    "cannot be read")


def test_bad_trees_and_arguments_are_one_line(tmp_path):
    raises_one_line(lambda: ImageFolder(tmp_path / "nope"), "does not exist", "nope")
    (tmp_path / "flat").mkdir()
    write(tmp_path / "flat" / "a.png", pattern(4, 4, 0))
    raises_one_line(lambda: ImageFolder(tmp_path / "flat"), "no class folders")
    raises_one_line(lambda: ImageFolder(tmp_path / "flat" / "a.png"), "is a file")
    write(tmp_path / "t" / "dogs" / "a.png", pattern(4, 4, 0))
    (tmp_path / "t" / "cats").mkdir()
    (tmp_path / "t" / "cats" / "readme.txt").write_text("x")
    raises_one_line(lambda: ImageFolder(tmp_path / "t"), "class folder", "cats", "no image files")
    (tmp_path / "t" / "cats" / "bad.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raises_one_line(lambda: ImageFolder(tmp_path / "t", size=2, cache=False), "cats", "no readable image")
    write(tmp_path / "t" / "cats" / "big.png", pattern(6, 5, 1))
    raises_one_line(lambda: ImageFolder(tmp_path / "t", size=None, cache=False, on_error="skip"),
                    "decodes to (4, 4, 3)", "(6, 5, 3)", "size=")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", size=4, resize=2), "resize (2)")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", size=0), "size")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", dtype="float64"), "dtype")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", on_error="ignore"), "on_error")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", transform="resize"), "transform")
    raises_one_line(lambda: ImageFolder(tmp_path / "t", size=2, cache=False,
                                        transform=lambda img: np.zeros((2, 2), np.float32)), "uint8")
    raises_one_line(lambda: read_image(tmp_path / "missing.png"), "does not exist")
    raises_one_line(lambda: read_image(np.zeros((4, 4, 3), np.float32)), "uint8 array")


def test_imagenet_normalize_by_hand():
    from dlcore.data import imagenet_normalize

    x = imagenet_normalize(np.array([[[255, 0, 51]]], np.uint8))
    np.testing.assert_allclose(x[0, 0], [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225],
                               rtol=1e-6)
    assert x.dtype == np.float32
    np.testing.assert_allclose(imagenet_normalize(np.full((1, 2, 2, 3), 0.5)), imagenet_normalize(
        np.full((1, 2, 2, 3), 0.5, np.float32)))
    raises_one_line(lambda: imagenet_normalize(np.zeros((2, 2, 4), np.uint8)), "(..., H, W, 3)")
    raises_one_line(lambda: imagenet_normalize(np.full((2, 2, 3), np.nan)), "NaN")


def test_random_access_through_grain_batches(tree, tmp_path):
    root, _ = tree
    ds = ImageFolder(root, size=4, transform=None, cache=tmp_path / "c")
    seen = list(source_batches(ds, 2, shuffle=True, seed=0, device=False))
    assert [b["x"].shape for b in seen] == [(2, 4, 4, 3), (2, 4, 4, 3), (1, 4, 4, 3)]
    ys = np.concatenate([b["y"] for b in seen])
    assert sorted(ys.tolist()) == [0, 0, 1, 2, 2]
    x = np.concatenate([b["x"] for b in seen])
    full = ds.as_arrays()
    for row, y in zip(x, ys):                                   # each batch row is one of the images with its label
        match = [i for i in range(len(ds)) if np.array_equal(full["x"][i], row)]
        assert match and full["y"][match[0]] == y
