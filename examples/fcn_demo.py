"""Fully convolutional networks: a dense head made a convolution, and a small segmentation net, Géron, ch. 12.

Part 1, Fully Convolutional Networks (Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch,
ch. 12): a classifier whose bottleneck outputs 7 x 7 feature maps for a 224 x 224 image (five stride-2
stages: 224 / 2^5 = 7) and whose dense output layer gives 107 numbers (102 class logits, 1 objectness
logit, 4 box numbers). Its dense layer becomes a convolution with 107 filters of 7 x 7 and "valid" padding,
weights copied (`dlcore.transfer.dense_to_conv`), no retraining. On the 224 image the FCN gives one
prediction (a 1 x 1 map) equal to the classifier's; on a 448 image the bottleneck is 14 x 14 and the output
an 8 x 8 grid (14 - 7 + 1 = 8), "exactly like taking the original CNN and sliding it across the image using
8 steps per row and 8 steps per column" (the window moves 32 pixels a step). The book's figures (7, 14, 8,
107) are printed beside dlcore's, with the largest difference between the grid and the classifier run on
each of the 64 windows. The stages here are patchify convolutions (kernel = stride, as ConvNeXt's stem and
downsampling layers), so a bottleneck cell sees exactly its 32 x 32 patch and the sliding is exact; with
"same" padding a window's border would see zeros alone and the image's neighbours inside the FCN.
The classifier is randomly initialised: the equality holds for any weights.

Part 2, Semantic Segmentation: an FCN with a transposed-convolution upsampling and skip connections from
lower layers (Long et al., 2015; the book: "upsample x2, add the output of a lower layer (of the appropriate
scale), upsample x2, add the output of an even lower layer, and finally upsample x8"), scaled down: a 32 x 32
image, three stride-2 stages (x1/8), then upsample x2 + the 1/4-scale scores, x2 + the 1/2-scale scores, and
x2 to full size (`ConvTranspose2d(k=4, s=2, p=1)`), against the same net upsampling x8 at once with no skips.
The task is synthetic (offline): squares and discs on a noisy background, each pixel labelled background,
square or disc. Per-pixel cross-entropy, Adam lr 3e-3, batch 32, 600 training images, 40 epochs (2 and 96
images under --quick). Reported: pixel accuracy and the mean IoU over the three classes on 200 test images;
a full run (seed 0, CPU) gave 0.9731 / 0.8583 with the skips and 0.9179 / 0.6326 without: the coarse x8
upsampling cannot draw the shapes' edges. The book prints no figures for this part.

Run: `dlcore run fcn_demo` or `python examples/fcn_demo.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, transfer
from dlcore.nn.conv import Conv2d, ConvTranspose2d
from dlcore.nn.layers import Linear
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="fcn_demo",
    title="A dense head converted to a convolution (one prediction at 224, an 8x8 grid at 448); FCN segmentation",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 12, Deep Computer Vision Using Convolutional Neural Networks, Fully Convolutional Networks "
             "and Semantic Segmentation"),
    source="Figure 12-26 (a 224 image gives a 7x7 bottleneck, a 448 image an 8x8 grid of 107 outputs) and "
           "Figure 12-29 (skip layers)",
    data="",
    standin="shapes_segmentation",
    book_figures={"bottleneck_side_224": 7, "bottleneck_side_448": 14, "grid_side_448": 8, "outputs_per_cell": 107},
)

N_OUT = 107   # 102 class logits + 1 objectness logit + 4 box numbers (the book's flower detector)
STRIDE = 32


class Backbone(nnx.Module):
    """Five stride-2 stages to 1/32 of the input, ReLU between them: (B, H, W, 3) -> (B, H/32, W/32, C).

    The first stage is a 4 x 4 stride-4 patchify convolution (two of the five halvings), the next three
    2 x 2 stride 2: kernel = stride, so each output cell depends on its 32 x 32 input patch alone.
    """

    def __init__(self, width: int = 8, *, rngs: nnx.Rngs):
        chans = (3, width, 2 * width, 2 * width, 4 * width)
        kernels = (4, 2, 2, 2)
        self.stages = nnx.List([Conv2d(chans[i], chans[i + 1], k, stride=k, rngs=rngs) for i, k in enumerate(kernels)])
        self.channels = chans[-1]

    def __call__(self, x: jax.Array) -> jax.Array:
        for stage in self.stages:
            x = jax.nn.relu(stage(x))
        return x


class Classifier(nnx.Module):
    """The backbone, then a dense layer on the flattened 7 x 7 bottleneck: (B, 224, 224, 3) -> (B, 107)."""

    def __init__(self, width: int = 8, *, rngs: nnx.Rngs):
        self.backbone = Backbone(width, rngs=rngs)
        self.side = 224 // STRIDE
        self.head = Linear(self.side * self.side * self.backbone.channels, N_OUT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        f = self.backbone(x)                          # (B, 7, 7, C) at 224
        return self.head(f.reshape(f.shape[0], -1))   # channels-last flatten: (B, 7 * 7 * C)


class FCN(nnx.Module):
    """The same backbone with the dense head as a 7 x 7 valid convolution.

    Shapes: (B, H, W, 3) -> (B, H/32 - 6, W/32 - 6, 107).
    """

    def __init__(self, classifier: Classifier):
        self.backbone = classifier.backbone
        f = classifier.side
        self.head = transfer.dense_to_conv(classifier.head, (f, f, classifier.backbone.channels))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.backbone(x))


def sliding_windows(classifier: Classifier, image: jax.Array, grid: int) -> np.ndarray:
    """The classifier run on every 224 x 224 window of ``image`` (1, H, W, 3), 32 pixels apart: (grid, grid, 107)."""
    windows = jnp.stack([image[0, i * STRIDE:i * STRIDE + 224, j * STRIDE:j * STRIDE + 224]
                         for i in range(grid) for j in range(grid)])
    return np.asarray(classifier(windows)).reshape(grid, grid, N_OUT)


# -- part 2: segmentation -----------------------------------------------------------------------------


def shapes_segmentation(n: int, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Images of one to three squares and discs on a noisy background, and their pixel labels.

    Returns:
        ``{"x": float32 (n, size, size, 3) centred at 0, "y": int32 (n, size, size)}``: 0 background,
        1 square, 2 disc (a later shape covers an earlier one).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = (rng.uniform(0.2, 0.5, (n, 1, 1, 3)) + rng.normal(0, 0.08, (n, size, size, 3))).astype(np.float32)
    y = np.zeros((n, size, size), np.int32)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 3))
            r = int(rng.integers(3, size // 4 + 1))
            cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
            mask = ((np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)) if kind == 1 else \
                ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
            x[i][mask] = rng.uniform(0.6, 1.0, 3)
            y[i][mask] = kind
    return {"x": x - 0.5, "y": y}


class SegmentationFCN(nnx.Module):
    """An FCN for 3 classes: three stride-2 conv stages, class scores at each scale, transposed-conv upsampling.

    With ``skips`` (FCN-8s, scaled down): scores at 1/8, upsample x2 + scores at 1/4, upsample x2 + scores at
    1/2, upsample x2 to full size. Without: the 1/8 scores upsampled x8 at once (FCN-32s's single layer).

    Shapes: (B, H, W, 3) -> (B, H, W, num_classes) logits; H and W multiples of 8.
    """

    def __init__(self, num_classes: int = 3, width: int = 16, skips: bool = True, *, rngs: nnx.Rngs):
        chans = (3, width, 2 * width, 4 * width)
        self.skips = skips
        self.down = nnx.List([Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, rngs=rngs) for i in range(3)])
        self.score = nnx.List([Conv2d(c, num_classes, 1, rngs=rngs) for c in chans[1:]])  # 1/2, 1/4, 1/8
        if skips:
            self.up = nnx.List([ConvTranspose2d(num_classes, num_classes, 4, stride=2, padding=1, rngs=rngs)
                                for _ in range(3)])
        else:
            self.up = nnx.List([ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, rngs=rngs)])

    def __call__(self, x: jax.Array) -> jax.Array:
        feats = []
        for conv in self.down:
            x = jax.nn.relu(conv(x))
            feats.append(x)                            # (B, H/2, ...), (B, H/4, ...), (B, H/8, ...)
        s = self.score[2](feats[2])                    # (B, H/8, W/8, K)
        if not self.skips:
            return self.up[0](s)                       # x8 at once
        s = self.up[0](s) + self.score[1](feats[1])    # x2, + the 1/4-scale scores
        s = self.up[1](s) + self.score[0](feats[0])    # x2, + the 1/2-scale scores
        return self.up[2](s)                           # x2: full size


def pixel_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per image: the mean over its pixels of the cross-entropy, (B, H, W, K) and (B, H, W) -> (B,)."""
    return jnp.mean(losses.cross_entropy(logits, labels), axis=(1, 2))


def segmentation_scores(pred: np.ndarray, labels: np.ndarray, k: int = 3) -> dict[str, float]:
    """Pixel accuracy and the mean over classes of |pred ∩ true| / |pred ∪ true| (segmentation IoU)."""
    ious = []
    for c in range(k):
        p, t = pred == c, labels == c
        union = np.sum(p | t)
        if union:
            ious.append(np.sum(p & t) / union)
    return {"pixel_accuracy": float(np.mean(pred == labels)), "mean_iou": float(np.mean(ious))}


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("shapes_segmentation")
    # part 1: dense -> conv
    key = jax.random.PRNGKey(ctx.seed)
    classifier = Classifier(width=4 if ctx.quick else 8, rngs=nnx.Rngs(ctx.seed))
    fcn = FCN(classifier)
    small, large = (jax.random.uniform(k, (1, s, s, 3)) for k, s in zip(jax.random.split(key), (224, 448)))
    dense_out, fcn_small = np.asarray(classifier(small)), np.asarray(fcn(small))
    side_224, side_448 = classifier.backbone(small).shape[1], classifier.backbone(large).shape[1]
    grid = np.asarray(fcn(large))                      # (1, 8, 8, 107)
    windows = sliding_windows(classifier, large, grid.shape[1])
    diff_224 = float(np.abs(fcn_small[:, 0, 0] - dense_out).max())
    diff_448 = float(np.abs(grid[0] - windows).max())
    ctx.print("                        book   dlcore")
    ctx.print(f"bottleneck at 224        7x7    {side_224}x{side_224}")
    ctx.print(f"bottleneck at 448      14x14    {side_448}x{side_448}")
    ctx.print(f"FCN output at 224        1x1    {fcn_small.shape[1]}x{fcn_small.shape[2]} x {fcn_small.shape[3]}")
    ctx.print(f"FCN output at 448   8x8 x 107    {grid.shape[1]}x{grid.shape[2]} x {grid.shape[3]}")
    ctx.print(f"|FCN(224) - classifier(224)| max {diff_224:.2e}; |FCN(448) grid - classifier on its 64 windows| "
              f"max {diff_448:.2e}")

    # part 2: segmentation with and without skip connections
    n_train, epochs = (96 if ctx.quick else 600), ctx.n_epochs(40, quick=2)
    train = shapes_segmentation(n_train, seed=ctx.seed)
    test = shapes_segmentation(64 if ctx.quick else 200, seed=ctx.seed + 1)
    ctx.print(f"segmentation: {n_train} train / {len(test['y'])} test 32x32 images, 3 classes "
              f"(background {np.mean(test['y'] == 0):.0%} of the test pixels)")
    out = {}
    for skips in ((True,) if ctx.quick else (True, False)):
        tag = "skips" if skips else "no_skips"
        model = SegmentationFCN(skips=skips, width=8 if ctx.quick else 16, rngs=nnx.Rngs(ctx.seed + 1))
        trainer = dlcore.Trainer(model, optim.adam(lr=3e-3), pixel_loss, batch_size=32,
                                 **ctx.trainer_kwargs(dict(optimizer="adam", lr=3e-3, epochs=epochs, skips=skips),
                                                      tag=tag))
        h = trainer.fit(train, epochs=epochs, resume=ctx.resume)
        s = segmentation_scores(trainer.predict(test["x"]).argmax(-1), test["y"])
        ctx.print(f"{'with' if skips else 'without'} skip connections: train loss {h['loss'][-1]:.4f}, test pixel "
                  f"accuracy {s['pixel_accuracy']:.4f}, mean IoU {s['mean_iou']:.4f}")
        out.update({f"{tag}_pixel_accuracy": s["pixel_accuracy"], f"{tag}_mean_iou": s["mean_iou"]})
    return {"bottleneck_side_224": side_224, "bottleneck_side_448": side_448, "grid_side_448": grid.shape[1],
            "outputs_per_cell": grid.shape[3], "fcn_224_max_diff": diff_224, "fcn_448_window_max_diff": diff_448,
            **out}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
