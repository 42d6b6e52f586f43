"""Folders of images, one subfolder per class (torchvision's `ImageFolder` layout), as arrays.

    root/dogs/001.jpg        -> class 1 ("dogs")
    root/cats/kitten/02.png  -> class 0 ("cats"; files anywhere below a class folder count)

Classes are the subfolders' names sorted as Python sorts strings (as torchvision does), so label i is
`classes[i]`. Files are images by their extension (`EXTENSIONS`, any case); other files and hidden files
(".DS_Store", "._x.jpg") are ignored. Each image is decoded with Pillow, converted to RGB (or "L"),
resized so that its shorter side is `resize` and center-cropped to `size` x `size` (torchvision's
`Resize(resize)` + `CenterCrop(size)`), or passed through your `transform(PIL.Image) -> (H, W, C) array`.

Decoding happens once: the decoded uint8 pixels are kept on disk in dlcore's cache
(`cache_dir()/image_folder/...`, a memory-mapped `.npy`), keyed by the list of files with their sizes and
modification times and by the decoding settings, so a changed, added or removed file decodes the tree
afresh and an unchanged tree opens at once. Reading an item then touches only that image's bytes, so a
tree larger than memory goes through `dlcore.data.source_batches` (or straight into `Trainer.fit`, which
treats any object with `len` and `__getitem__` as a random-access source); `as_arrays()` gives a small
tree as one split `{"x", "y"}`.

Unreadable files: with `on_error="skip"` (the default) a file Pillow cannot decode (corrupt, truncated,
not an image despite its extension) is left out with one warning that counts them and names the first;
with `on_error="raise"` the first one raises a one-line ValueError naming it. Random augmentation belongs
on batches (`dlcore.data.transforms`), not in `transform`, whose output is cached.

References: Ketkar & Moolayil, Deep Learning with Python, ch. 6 (transfer learning on a folder of
images, Listing 6-15); Subramanian, Deep Learning with PyTorch, ch. 3, 5 and 8 (`ImageFolder` over
train/ and valid/ folders of dogs and cats); Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2,
section 2.1.4 (Resize 256, CenterCrop 224).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dlcore.checks import check_choice, check_int

__all__ = ["EXTENSIONS", "ImageFolder", "read_image"]

# torchvision's IMG_EXTENSIONS
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_FORMAT = 1                                    # bump when the cache's layout or the decoding changes


def _pil():
    from PIL import Image

    return Image


def _resize_crop(img, size, resize):
    """torchvision's Resize(resize) (shorter side, bilinear with antialiasing) then CenterCrop(size)."""
    Image = _pil()
    if resize is not None:
        w, h = img.size
        short, long = (w, h) if w <= h else (h, w)
        if short != resize:
            new_long = int(resize * long / short)
            new = (resize, new_long) if w <= h else (new_long, resize)
            img = img.resize(new, Image.BILINEAR)
    if size is not None:
        th, tw = size
        w, h = img.size
        if h < th or w < tw:
            raise ValueError(f"a {w}x{h} image is smaller than the {tw}x{th} crop; pass resize >= size")
        top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
        img = img.crop((left, top, left + tw, top + th))
    return img


def _size_pair(size, name):
    if size is None:
        return None
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return check_int(size[0], name, low=1), check_int(size[1], name, low=1)
    return check_int(size, name, low=1), check_int(size, name, low=1)


def read_image(image, *, size: int | tuple[int, int] | None = 224, resize: int | None = None, mode: str = "RGB",
               dtype: str = "float32") -> np.ndarray:
    """One image decoded, resized (shorter side to `resize`), center-cropped to `size`, as an HWC array.

    Args:
        image: a file path, a `PIL.Image`, or an (H, W, 3) / (H, W) uint8 array (scikit-learn's sample photos).
        size: the center crop, an int (square) or (height, width); None keeps the resized image whole.
        resize: the shorter side before the crop; None resizes to `size` (a square crop's side), as
            torchvision's `Resize(size)` + `CenterCrop(size)`; 256 with size 224 is the ImageNet recipe.
        mode: "RGB" (3 channels) or "L" (1 channel).
        dtype: "float32" (pixels / 255, in [0, 1]) or "uint8".

    Returns:
        (size_h, size_w, C) array of `dtype`.

    Raises:
        ValueError: a missing or unreadable file, a bad array, or an image smaller than the crop; one line.
    """
    check_choice(mode, "mode", ("RGB", "L"), who="read_image")
    check_choice(dtype, "dtype", ("float32", "uint8"), who="read_image")
    size = _size_pair(size, "size")
    if resize is not None:
        resize = check_int(resize, "resize", low=1)
    elif size is not None:
        resize = min(size)
    Image = _pil()
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise ValueError(f"image file {path} does not exist" if not path.exists() else f"{path} is not a file")
        img = _open(path)
    elif isinstance(image, Image.Image):
        img = image
    else:
        a = np.asarray(image)
        if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"read_image needs a path, a PIL image or an (H, W[, 3]) uint8 array, got "
                             f"{a.dtype} {a.shape}")
        img = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a)
    out = _to_array(_resize_crop(img.convert(mode), size, resize), mode)
    return out if dtype == "uint8" else out.astype(np.float32) / 255.0


def _open(path: Path):
    """Decode a file fully (Pillow is lazy: a truncated file fails only when its pixels are read)."""
    Image = _pil()
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except Exception as e:                     # UnidentifiedImageError, OSError (truncated), SyntaxError, ...
        why = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"image file {path} cannot be read: {why[:120]}") from None


def _to_array(img, mode) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[..., None] if mode == "L" else a


class ImageFolder:
    """A class-per-subfolder tree of images as a random-access source of `{"x": image, "y": label}`.

    Args:
        root: the folder holding one subfolder per class (e.g. "data/dogs_vs_cats/train").
        size: the center crop, an int or (height, width); None keeps images whole (they must then share a size).
        resize: the shorter side before the crop (None: the crop's side); 256 with size 224 is ImageNet's.
        transform: instead of resize and crop, `PIL.Image (RGB or L) -> (H, W, C) uint8 array`, the same
            shape for every image. Its output is cached under its qualified name: rename it when you change
            it, or pass `cache=False`.
        mode: "RGB" or "L" (grayscale, one channel).
        dtype: what items and `as_arrays` hold: "float32" (pixels / 255, in [0, 1]) or "uint8".
        cache: True (dlcore's cache), a folder for the decoded arrays, or False (decode into memory, write
            nothing). Default: True, or False with a `transform`.
        on_error: "skip" unreadable image files with one warning that counts them, or "raise" at the first.

    Attributes:
        classes: the class names, sorted; `class_to_idx`: name -> label.
        files: the image files kept, in label then path order; `targets`: their labels (int32, (N,)).
        skipped: (path, reason) of every file left out as unreadable.

    Shapes: `self[i]["x"]` is (H, W, C); `as_arrays()["x"]` is (N, H, W, C), `["y"]` is (N,) int32.

    Raises:
        ValueError: (one line, before decoding) a missing root, a root with no class folders, a class folder
            with no image files (named), bad arguments; while decoding, an unreadable file with
            `on_error="raise"`, a class left with no readable image, or images of different sizes.

    Example:
        >>> train = ImageFolder("dogs_vs_cats/train", size=224, resize=256)   # doctest: +SKIP
        >>> train.classes, len(train), train[0]["x"].shape                   # doctest: +SKIP
        (['cats', 'dogs'], 2000, (224, 224, 3))
    """

    def __init__(self, root: str | os.PathLike, *, size: int | tuple[int, int] | None = 224, resize: int | None = None,
                 transform: Callable[[Any], np.ndarray] | None = None, mode: str = "RGB", dtype: str = "float32",
                 cache: bool | str | os.PathLike | None = None, on_error: str = "skip"):
        check_choice(mode, "mode", ("RGB", "L"), who="ImageFolder")
        check_choice(dtype, "dtype", ("float32", "uint8"), who="ImageFolder")
        check_choice(on_error, "on_error", ("skip", "raise"), who="ImageFolder")
        if transform is not None and not callable(transform):
            raise ValueError(f"ImageFolder: transform must be a function PIL.Image -> array, got "
                             f"{type(transform).__name__}")
        if not (cache is None or isinstance(cache, (bool, str, os.PathLike))):
            raise ValueError(f"ImageFolder: cache must be True, False or a folder, got {type(cache).__name__}")
        self.size = _size_pair(size, "size")
        if resize is not None:
            resize = check_int(resize, "resize", low=1)
            if self.size is not None and resize < min(self.size):
                raise ValueError(f"ImageFolder: resize ({resize}) must be at least the crop size {self.size}")
        elif self.size is not None:
            resize = min(self.size)
        self.resize, self.transform, self.mode, self.dtype, self.on_error = resize, transform, mode, dtype, on_error
        if not isinstance(root, (str, os.PathLike)):
            raise ValueError(f"ImageFolder: root must be a folder path, got {type(root).__name__}")
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise ValueError(f"image folder {self.root} does not exist")
        if not self.root.is_dir():
            raise ValueError(f"image folder {self.root} is a file, not a folder of class folders")
        self.classes = sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith("."))
        if not self.classes:
            raise ValueError(f"image folder {self.root} has no class folders (expected {self.root}/<class>/<image>)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        found = []                                             # (path, label)
        for c in self.classes:
            files = _images_below(self.root / c)
            if not files:
                raise ValueError(f"class folder {self.root / c} holds no image files ({', '.join(EXTENSIONS)})")
            found += [(f, self.class_to_idx[c]) for f in files]
        self._x, self._kept, self.skipped = self._decoded(found, cache if cache is not None else transform is None)
        if self.skipped and on_error == "raise":  # decoded by an earlier "skip" run: the cache kept what it left out
            path, why = self.skipped[0]
            raise ValueError(f"image file {path} cannot be read: {why[:120]}")
        self.files = [found[i][0] for i in self._kept]
        self.targets = np.asarray([found[i][1] for i in self._kept], np.int32)
        counts = np.bincount(self.targets, minlength=len(self.classes))
        if (counts == 0).any():
            empty = self.classes[int(np.argmin(counts))]
            raise ValueError(f"class folder {self.root / empty} has no readable image (all were skipped)")
        if self.skipped:
            path, why = self.skipped[0]
            more = f" and {len(self.skipped) - 1} more" if len(self.skipped) > 1 else ""
            warnings.warn(f"ImageFolder {self.root}: skipped {len(self.skipped)} unreadable image file(s): "
                          f"{path} ({why}){more}", stacklevel=2)

    # -- decoding and the cache ---------------------------------------------------------------------

    def _key(self, found) -> dict:
        files = []
        for path, label in found:
            st = path.stat()
            files.append([str(path.relative_to(self.root)), label, st.st_size, st.st_mtime_ns])
        t = self.transform
        return {"format": _FORMAT, "size": self.size, "resize": self.resize, "mode": self.mode,
                "transform": None if t is None else f"{getattr(t, '__module__', '')}.{getattr(t, '__qualname__', t)}",
                "files": files}

    def _decoded(self, found, cache):
        if cache is False:
            return self._decode(found, None)
        from dlcore.data.sources import cache_dir

        base = (cache_dir() / "image_folder") if cache is True else Path(cache).expanduser()
        key = self._key(found)
        # one folder per tree and decoding settings (other sizes keep their own copies); inside it, one copy
        # per state of the files, the earlier ones removed
        settings = {k: v for k, v in key.items() if k != "files"}
        tree = base / hashlib.sha256(json.dumps([str(self.root.resolve()), settings]).encode()).hexdigest()[:12]
        where = tree / hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
        if (where / "meta.json").is_file():
            try:
                meta = json.loads((where / "meta.json").read_text())
                x = np.load(where / "images.npy", mmap_mode="r")
                if len(x) == len(meta["kept"]):
                    return x, meta["kept"], [tuple(s) for s in meta["skipped"]]
            except (OSError, ValueError, KeyError):
                pass                                           # a damaged cache: decode again
        tree.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".decoding-", dir=tree))
        try:
            x, kept, skipped = self._decode(found, tmp / "images.npy")
            del x
            (tmp / "meta.json").write_text(json.dumps({"kept": kept, "skipped": skipped, "root": str(self.root)}))
            for old in tree.iterdir():                         # an earlier state of this tree is stale now
                if old != tmp and old.is_dir() and not old.name.startswith(".decoding-"):
                    shutil.rmtree(old, ignore_errors=True)
            try:
                os.replace(tmp, where)
            except OSError:                                    # another process finished the same tree first
                if not (where / "meta.json").is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return np.load(where / "images.npy", mmap_mode="r"), kept, skipped

    def _decode(self, found, npy: Path | None):
        arrays, kept, skipped, shape = [], [], [], None
        out = None
        for i, (path, _) in enumerate(found):
            try:
                img = _open(path).convert(self.mode)
                if self.transform is not None:
                    a = np.asarray(self.transform(img))
                    if a.dtype != np.uint8 or a.ndim != 3:
                        raise TypeError(f"ImageFolder: transform must return an (H, W, C) uint8 array, got "
                                        f"{a.dtype} {a.shape} for {path}")
                else:
                    a = _to_array(_resize_crop(img, self.size, self.resize), self.mode)
            except ValueError as e:
                if self.on_error == "raise":
                    raise
                skipped.append((str(path), str(e).rsplit("cannot be read: ", 1)[-1]))
                continue
            except TypeError as e:
                raise ValueError(str(e)) from None
            if shape is None:
                shape = a.shape
                if npy is not None:                            # room for every file; trimmed if some are skipped
                    out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(found), *shape))
            elif a.shape != shape:
                raise ValueError(f"image {path} decodes to {a.shape}, the first image to {shape}: pass size= "
                                 f"(or a transform) so that every image has the same shape")
            if out is not None:
                out[len(kept)] = a
            else:
                arrays.append(a)
            kept.append(i)
        if not kept:
            raise ValueError(f"image folder {self.root}: none of its {len(found)} image files is readable")
        if out is None:
            return np.stack(arrays), kept, skipped
        out.flush()
        if len(kept) < len(found):                             # rewrite without the unused rows
            del out
            full = np.load(npy, mmap_mode="r")
            small = np.lib.format.open_memmap(npy.with_name("kept.npy"), mode="w+", dtype=np.uint8,
                                              shape=(len(kept), *shape))
            small[:] = full[: len(kept)]
            small.flush()
            del small, full
            os.replace(npy.with_name("kept.npy"), npy)
        return None, kept, skipped

    # -- access ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.targets)

    def __getstate__(self) -> dict:
        """Pickled (for grain's worker processes) by the cache file's name, not its pixels."""
        state = dict(self.__dict__)
        if isinstance(self._x, np.memmap) and self._x.filename:
            state["_x"] = ("memmap", self._x.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        x = state["_x"]
        if isinstance(x, tuple) and x[0] == "memmap":
            state["_x"] = np.load(x[1], mmap_mode="r")
        self.__dict__.update(state)

    def _pixels(self, a):
        return np.asarray(a, np.float32) / 255.0 if self.dtype == "float32" else np.asarray(a)

    def __getitem__(self, i) -> dict[str, np.ndarray]:
        """Record i: `{"x": (H, W, C) image of `dtype`, "y": int32 label}`; negative i counts from the end."""
        from dlcore.checks import is_int

        if not is_int(i):
            raise TypeError(f"ImageFolder indices are ints, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for an ImageFolder of {n} images")
        i = int(i) % n
        return {"x": self._pixels(self._x[i]), "y": self.targets[i]}

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The whole tree as one split: `{"x": (N, H, W, C) images of `dtype`, "y": (N,) int32 labels}`."""
        return {"x": self._pixels(np.array(self._x)), "y": self.targets.copy()}      # in memory, writable

    def __repr__(self) -> str:
        shape = tuple(self._x.shape[1:])
        return (f"ImageFolder({str(self.root)!r}, {len(self)} images of {shape}, classes={self.classes}"
                f"{f', {len(self.skipped)} skipped' if self.skipped else ''})")


def _images_below(folder: Path) -> list[Path]:
    """Image files below `folder` in torchvision's order: folders sorted by path, files by name in each."""
    walked = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        walked.append((dirpath, filenames))
    return [Path(dirpath) / f for dirpath, filenames in sorted(walked) for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(EXTENSIONS)]
