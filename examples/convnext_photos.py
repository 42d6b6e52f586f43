"""A pretrained ConvNeXt-base on scikit-learn's two sample photos, Géron, Hands-On ML, ch. 12.

Recipe (ch. 12, Using TorchVision's Pretrained Models): `convnext_base(weights=ConvNeXt_Base_Weights.IMAGENET1K_V1)`
(338 MB, downloaded from the Torch Hub); the two sample photos of `load_sample_images()` (427 x 640, pixels
scaled to [0, 1]) go through `weights.transforms()`: resize the shorter side to 232 (bilinear, antialiased),
center crop 224, normalise with ImageNet's per-channel means and standard deviations; `model.eval()`, and the
2 x 1,000 logits give `argmax` classes [698, 985], 'palace' and 'daisy'; the top three by `topk(k=3)` are
['palace', 'monastery', 'lakeside'] and ['daisy', 'pot', 'ant'], and the softmax *of those three logits* is
[[0.8618, 0.1185, 0.0197], [0.8106, 0.0964, 0.0930]].

dlcore: `models.create("convnext_base")` (88,591,464 parameters, torchvision's names);
`weights.pretrained("convnext_base", model)` loads torchvision's `convnext_base-6075fbad.pth`, found in
`$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights`, or downloaded with its checksum when the network allows
(torchvision's IMAGENET1K_V1 file, the one the book loads); `data.transforms.resize` / `center_crop` and
`data.imagenet_normalize` are `weights.transforms()` on NHWC arrays (JAX's antialiased bilinear resize, not
torchvision's own kernel: the probabilities may differ from the book's in the third decimal);
`data.imagenet_classes()` is `weights.meta["categories"]`. Without the weights file (offline, or
`DLCORE_OFFLINE` set) the network keeps its random initialisation and the run says so: the metric
`imagenet_weights` is 0, and the classes and probabilities printed beside the book's are noise, not
comparable with them. Under --quick with random weights the photos are cropped to 64 pixels (resize 66)
instead of 224, which changes nothing but the noise.

Run: `dlcore run convnext_photos` or `python examples/convnext_photos.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import data, models, weights
from dlcore.data import transforms
from dlcore.models.registry import count_params
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="convnext_photos",
    title="Pretrained ConvNeXt-base on two photos: resize 232, center crop 224, normalise; top-3 classes",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 12, Deep Computer Vision Using Convolutional Neural Networks, Using TorchVision's Pretrained "
            "Models",
    source="the ConvNeXt_Base_Weights.IMAGENET1K_V1 example: argmax, topk(k=3) and the softmax of the top 3",
    data="",
    standin="sample_photos",
    book_figures={"china_top1_class": 698, "flower_top1_class": 985,
                  "china_top3_p1": 0.8618, "china_top3_p2": 0.1185, "china_top3_p3": 0.0197,
                  "flower_top3_p1": 0.8106, "flower_top3_p2": 0.0964, "flower_top3_p3": 0.0930},
)

PHOTOS = ("china", "flower")                                   # load_sample_images()'s order
BOOK_TOP3 = (("palace", "monastery", "lakeside"), ("daisy", "pot", "ant"))
BOOK_PROBS = ((0.8618, 0.1185, 0.0197), (0.8106, 0.0964, 0.0930))


def preprocess(images: np.ndarray, resize: int = 232, size: int = 224) -> jax.Array:
    """ConvNeXt_Base_Weights.IMAGENET1K_V1.transforms() on NHWC images in [0, 1].

    Args:
        images: (N, H, W, 3) floats in [0, 1].
        resize: the shorter side after the bilinear, antialiased resize (232).
        size: the center crop (224).

    Returns:
        (N, size, size, 3) float32, normalised with ImageNet's means and standard deviations.
    """
    x = transforms.center_crop(transforms.resize(images, resize), size)    # (N, size, size, 3)
    return jnp.asarray(data.imagenet_normalize(np.asarray(x)))


def top3(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The book's `y_logits.topk(k=3)` then `.softmax(dim=1)` of those 3 logits: (classes, probabilities).

    Shapes: (N, 1000) -> (N, 3) ints, (N, 3) floats (each row sums to 1).
    """
    ids = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    chosen = np.take_along_axis(logits, ids, axis=1)
    return ids, np.asarray(jax.nn.softmax(chosen, axis=1))


def run(ctx: Context) -> dict[str, float]:
    photos = ctx.load()["train"]["x"]                          # (2, 427, 640, 3) in [0, 1]: china, flower
    model = models.create("convnext_base", seed=ctx.seed)
    n_params = count_params(model)
    try:
        weights.pretrained("convnext_base", model, progress=ctx.progress)
        real = True
        ctx.print(f"ConvNeXt-base: {n_params:,} parameters, ImageNet weights from "
                  f"{weights.find_file(weights.PRETRAINED.get('convnext_base').file)}")
    except weights.WeightsNotFoundError as e:
        real = False
        ctx.print(f"ConvNeXt-base: {n_params:,} parameters, RANDOM weights ({e})")
    resize, size = (232, 224) if real or not ctx.quick else (66, 64)
    batch = preprocess(photos, resize, size)                   # (2, size, size, 3)
    ctx.print(f"preprocess: 2 photos 427x640 -> resize {resize}, center crop {size}, ImageNet normalisation -> "
              f"batch {tuple(batch.shape)} (NHWC)")

    model.eval()                                               # stochastic depth off
    graphdef, state = nnx.split(model)
    logits = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, batch))   # (2, 1000)
    ids, probs = top3(logits)
    labels = data.imagenet_classes()
    ctx.print(f"argmax: {ids[:, 0].tolist()} {[labels[i] for i in ids[:, 0]]}   (book: [698, 985] "
              f"['palace', 'daisy'])")
    for i, name in enumerate(PHOTOS):
        ours = ", ".join(f"{labels[c]} {p:.4f}" for c, p in zip(ids[i], probs[i]))
        book = ", ".join(f"{c} {p:.4f}" for c, p in zip(BOOK_TOP3[i], BOOK_PROBS[i]))
        ctx.print(f"  {name}: {ours}   (book: {book})")
    if not real:
        ctx.print("(random weights: these classes and probabilities are noise, not comparable with the book's; "
                  "put convnext_base-6075fbad.pth where the line above says to see the book's result)")
    metrics = {"imagenet_weights": float(real), "convnext_base_params": n_params,
               "china_top1_class": int(ids[0, 0]), "flower_top1_class": int(ids[1, 0])}
    for i, name in enumerate(PHOTOS):
        for k in range(3):
            metrics[f"{name}_top3_p{k + 1}"] = float(probs[i, k])
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
