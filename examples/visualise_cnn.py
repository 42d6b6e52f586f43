"""Visualising a CNN: VGG-16's activations on one image and its first layer's filters, Subramanian, ch. 5.

Recipe (Deep Learning with PyTorch, Packt 2018, ch. 5, Deep Learning for Computer Vision, Visualizing the
outputs from intermediate layers, and Visualizing weights of the CNN layer): a pretrained `vgg16`; a
`LayerActivations` class registers a forward hook on `vgg.features[layer_num]` that stores the layer's output;
one image of the dogs-vs-cats validation set goes through the network and the activations of the first
convolution, of a convolution of the second block and of the last convolution are drawn as grids of images
(then the output of the ReLU after the first convolution); "the early layers detect lines and edges, and the
last layers tend to learn higher-level features and are less interpretable". Last, the weights of the first
convolution, `vgg.state_dict()['features.0.weight']`, are drawn one filter per tile. The book's code is printed
letter-shifted with its digits lost; the layers read here are `features.0` (conv1_1), `features.1` (its ReLU),
`features.5` (conv2_1) and `features.28` (conv5_3, the last convolution), which fit its description.

dlcore: `dlcore.inspect.activations(model, x, ["features.0", ...])` records the named layers' outputs (the
forward hooks); `inspect.image_grid` and `inspect.filter_grid` tile them, and each grid is written as a PNG
(Pillow; no matplotlib needed) to the plot folder (`$DLCORE_PLOTS` or ./plots). The image is resized to
224 x 224 and normalised with ImageNet's statistics, as the book's transforms do. With torchvision's
`vgg16-397923af.pth` in `$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights` (or downloadable) the network is the
book's; without it the convolutions keep their random He initialisation (and the classifier, which no figure
uses, is left small), which the run says: the filters are then noise and the maps mere blurred copies of the
image. Data: the first test image of `cats_vs_dogs` when it is here, else scikit-learn's temple photo.
The metrics are the activation shapes (NHWC): (1, 224, 224, 64) for conv1_1, (1, 112, 112, 128) for conv2_1,
(1, 14, 14, 512) for conv5_3, and the filters' (3, 3, 3, 64). Under --quick the image is 64 x 64, so the maps
are 64, 32 and 4 pixels wide.

Run: `dlcore run visualise_cnn` or `python examples/visualise_cnn.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from dlcore import data, inspect, models, weights
from dlcore.models import vgg
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="visualise_cnn",
    title="VGG-16's intermediate activations on one image and its first-layer filters, saved as image grids",
    book="Subramanian, Deep Learning with PyTorch",
    section="ch. 5, Deep Learning for Computer Vision, Visualizing the outputs from intermediate layers",
    source="Visualizing the outputs from intermediate layers; Visualizing weights of the CNN layer",
    data="cats_vs_dogs",
    standin="sample_photos",
    book_figures={},
)

LAYERS = {"features.0": "conv1_1", "features.1": "conv1_1 ReLU", "features.5": "conv2_1", "features.28": "conv5_3"}


def _model(ctx: Context) -> tuple[nnx.Module, bool]:
    try:
        path = weights.pretrained("vgg16", progress=ctx.progress)
    except weights.WeightsNotFoundError as e:
        ctx.print(f"VGG-16: random weights ({e})")
        # the same convolutions; a small classifier, which no figure reads, saves drawing 120M numbers
        return vgg.VGG(vgg.CFGS["vgg16"], hidden=8, num_classes=8, rngs=nnx.Rngs(ctx.seed)), False
    ctx.print(f"VGG-16: ImageNet weights from {path}")
    return weights.load(models.create("vgg16", seed=ctx.seed), path), True


def _image(ctx: Context, size: int) -> np.ndarray:
    splits = ctx.load(image_size=size) if ctx.data != EXAMPLE.standin else ctx.load()
    # cats_vs_dogs: the first held-out image (the book's is from its validation folder); sample_photos: the temple
    held_out = splits.get("valid") or splits.get("test") or splits["train"]
    img = np.asarray(held_out["x"][0])
    pixels = img if img.dtype == np.uint8 else np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return data.read_image(pixels, size=size, resize=size, dtype="uint8")


def _save(ctx: Context, name: str, grid: np.ndarray, zoom: int = 1) -> None:
    from PIL import Image

    a = np.round(np.clip(grid, 0, 1) * 255).astype(np.uint8)
    a = a.repeat(zoom, axis=0).repeat(zoom, axis=1)            # nearest-neighbour zoom: 3 x 3 filters become visible
    path = ctx.plot_dir() / f"{name}.png"
    try:
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)
    except OSError as exc:                                     # a grid that cannot be written costs the picture
        ctx.print(f"plot: not saved ({exc.strerror or type(exc).__name__}: {path})")
        return
    ctx.print(f"plot: {path}")


def run(ctx: Context) -> dict[str, float]:
    size = 64 if ctx.quick else 224
    img = _image(ctx, size)                                    # (size, size, 3) uint8
    model, real = _model(ctx)
    model.eval()
    x = data.imagenet_normalize(img)[None]                     # (1, size, size, 3)
    acts = inspect.activations(model, x, list(LAYERS))
    metrics = {}
    for layer, what in LAYERS.items():
        a = np.asarray(acts[layer])                            # (1, H, W, C)
        ctx.print(f"{layer} ({what}): activations {a.shape}")
        maps = np.transpose(a[0], (2, 0, 1))[:64]              # the first 64 channels as (64, H, W) images
        _save(ctx, f"visualise_cnn_{layer.replace('.', '_')}", inspect.image_grid(maps, ncols=8))
        key = layer.replace(".", "")
        metrics[f"{key}_height"], metrics[f"{key}_channels"] = a.shape[1], a.shape[3]
    kernel = np.asarray(model.features[0].kernel[...])          # (3, 3, 3, 64): torch's features.0.weight (64, 3, 3, 3)
    ctx.print(f"features.0 filters: kernel {kernel.shape} (kh, kw, in, out){'' if real else ', random'}")
    _save(ctx, "visualise_cnn_filters", inspect.filter_grid(kernel, ncols=8), zoom=16)
    metrics["filters"] = kernel.shape[-1]
    metrics["filter_size"] = kernel.shape[0]
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
