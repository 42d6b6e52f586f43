"""Fine-tuning a pretrained network on Flowers102 with augmentation, Géron, Hands-On ML, ch. 12.

Recipe: replace the pretrained model's output layer by a Linear layer with one output per flower
species (`model.classifier[2] = nn.Linear(1024, 102)`; here `transfer.replace_head(model,
"fc", ...)` on ResNet-18), freeze everything but the head (`transfer.trainable`: the
frozen parameters get no optimizer state), train the head, then unfreeze the whole model and go on at
a learning rate 10 times lower. Training images are augmented: random horizontal flip, rotation up to
30 degrees, random resized crop (scale 0.8-1.0) and colour jitter (0.2, 0.2, 0.2, 0.1), then
ImageNet normalisation (`dlcore.data.transforms`, a fresh draw every epoch). The book (ConvNeXt-base
pretrained on ImageNet) reaches "about 90% accuracy just by training the new head".

dlcore: ResNet-18 (the book's ConvNeXt is not in dlcore), Adam lr 1e-3 for the head (batch 32, 3
epochs), then Adam lr 1e-4 for everything (2 epochs). Offline there are no ImageNet weights, so the
backbone is randomly initialised (load torchvision weights with `dlcore.weights` to reproduce the book's
setting); a randomly initialised MobileNetV2 is no use here, its eval-mode features vanish (about 1e-10)
because its batch-norm running statistics were never fitted. Without Flowers102 it runs on
`photo_patches` (two classes, temple vs flower crops; 420 train / 90 valid / 90 test) at 32x32 so it
takes a minute or two on a CPU; with the real data it uses 64x64 images. The figures are not comparable
with the book's.

Run: `dlcore run flowers_finetune` or `python examples/flowers_finetune.py`.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, transfer
from dlcore.data import transforms as T
from dlcore.nn.layers import Linear
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="flowers_finetune",
    title="Freeze, train a new head, unfreeze at lr/10, with data augmentation",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 12, Deep Computer Vision Using Convolutional Neural Networks, "
             "Pretrained Models for Transfer Learning"),
    source="the Flowers102 fine-tuning of a pretrained ConvNeXt",
    data="flowers102",
    standin="photo_patches",
    book_figures={"head_val_accuracy": 0.90},
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LR = 1e-3


def _float(split: dict, n: int | None) -> dict:
    x = np.asarray(split["x"][:n])
    x = np.asarray(T.to_float(x)) if x.dtype == np.uint8 else x.astype(np.float32)
    return {"x": x, "y": np.asarray(split["y"][:n]).astype(np.int32)}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(image_size=64, standin_options={"image_size": 32})
    n = 64 if ctx.quick else None
    train, val, test = (_float(splits[s], n) for s in ("train", "valid", "test"))
    size = train["x"].shape[1]
    n_classes = int(max(train["y"].max(), val["y"].max(), test["y"].max())) + 1
    ctx.print(f"{len(train['y'])} train / {len(val['y'])} valid / {len(test['y'])} test images at "
              f"{size}x{size}, {n_classes} classes")

    augment = jax.jit(T.compose(partial(T.random_flip, p=0.5), partial(T.random_rotation, degrees=30),
                                partial(T.random_resized_crop, size=size, scale=(0.8, 1.0)),
                                partial(T.color_jitter, brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1)))
    normalise = lambda x: np.asarray(T.normalize(x, MEAN, STD))  # noqa: E731
    val_n, test_n = {**val, "x": normalise(val["x"])}, {**test, "x": normalise(test["x"])}
    key = jax.random.PRNGKey(ctx.seed)

    model = dlcore.models.create("resnet18", seed=ctx.seed)
    transfer.replace_head(model, "fc", Linear(model.num_features, n_classes, rngs=nnx.Rngs(ctx.seed + 1)))

    def train_phase(tx, epochs: int, tag: str) -> dict:
        nonlocal key
        trainer = dlcore.Trainer(model, tx, losses.cross_entropy, metrics=["accuracy"], batch_size=32,
                                 **ctx.trainer_kwargs(dict(phase=tag, optimizer="adam", epochs=epochs),
                                                      tag=tag.split()[0]))
        for e in range(epochs):  # a fresh augmentation of the training set each epoch
            key, sub = jax.random.split(key)
            h = trainer.fit({"x": normalise(augment(sub, train["x"])), "y": train["y"]}, epochs=e + 1,
                            validation=val_n)
            ctx.print(f"{tag} epoch {e + 1}: train loss {h['loss'][-1]:.4f}, val accuracy {h['val_accuracy'][-1]:.4f}")
        return trainer

    e1, e2 = (1, 1) if ctx.quick else (3, 2)
    head_tx = transfer.trainable(model, r"^fc\.", "adam", lr=LR)
    t1 = train_phase(head_tx, ctx.n_epochs(e1, quick=1), "head only (backbone frozen)")
    head_acc = t1.history["val_accuracy"][-1]
    t2 = train_phase(optim.adam(lr=LR / 10), ctx.n_epochs(e2, quick=1), "all layers at lr/10")
    return {"head_val_accuracy": head_acc, "finetune_val_accuracy": t2.history["val_accuracy"][-1],
            "test_accuracy": t2.evaluate(test_n)["accuracy"]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
