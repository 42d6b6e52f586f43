"""ResNet-34 from scratch, Géron, Hands-On ML, ch. 12, Implementing a ResNet-34 CNN Using PyTorch.

Recipe: a 7x7/2 conv, BN, ReLU, 3x3/2 max pool, then residual units of two 3x3 convs with batch norm
(3 x 64, 4 x 128, 6 x 256, 3 x 512 filters; a 1x1/2 conv + BN on the skip path when the stride is 2),
global average pooling and a Linear head (`dlcore.models.create("resnet34")`). The book builds it and
stops ("you could now train this model on ImageNet"); its one checkable figure is the size:
21,797,672 parameters at 1000 classes, reproduced exactly here.

To show it trains, dlcore fits a 10-class ResNet-34 from scratch for 5 epochs (Adam lr 1e-3, batch
32) on a small subset: 512 CIFAR-10 training images, scored on 256 test images, because a 21-million
parameter network is slow on a CPU. Without CIFAR-10 the stand-in is scikit-learn's real digits,
resized to 32x32 and repeated over three channels. The accuracy after 5 epochs on 512 images is a
smoke figure, not a result to compare with anything.

Run: `dlcore run resnet34` or `python examples/resnet34.py`.
"""

from __future__ import annotations

import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.data import transforms
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="resnet34",
    title="ResNet-34 built from residual units, trained from scratch",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 12, Deep Computer Vision Using Convolutional Neural Networks, "
             "Implementing a ResNet-34 CNN Using PyTorch"),
    source="the architecture of Figures 12-18 and 12-19 (section ResNet)",
    data="cifar10",
    standin="digits",
    book_figures={"params": 21797672},
)


def _rgb32(split: dict, n: int) -> dict:
    x, y = split["x"][:n], split["y"][:n]
    if x.shape[-1] == 1:  # stand-in digits: 28x28 grey -> 32x32 RGB
        x = np.repeat(np.asarray(transforms.resize(x, 32)), 3, axis=-1)
    return {"x": x.astype(np.float32), "y": y}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    n_train, n_test = (32, 32) if ctx.quick else (512, 256)
    train, test = _rgb32(splits["train"], n_train), _rgb32(splits["test"], n_test)
    mean, std = train["x"].mean(axis=(0, 1, 2)), train["x"].std(axis=(0, 1, 2)) + 1e-6
    train = {"x": (train["x"] - mean) / std, "y": train["y"]}
    test = {"x": (test["x"] - mean) / std, "y": test["y"]}

    params_1000 = sum(v.size for _, v in optim.named_leaves(dlcore.models.create("resnet34", seed=ctx.seed)))
    model = dlcore.models.create("resnet34", num_classes=10, seed=ctx.seed)
    params_10 = sum(v.size for _, v in optim.named_leaves(model))
    ctx.print(f"ResNet-34: {params_1000:,} parameters at 1000 classes, {params_10:,} at 10; training on "
              f"{len(train['y'])} images of {train['x'].shape[1:]}")

    epochs = ctx.n_epochs(5, quick=1)
    trainer = dlcore.Trainer(model, optim.adam(lr=1e-3), losses.cross_entropy, metrics=["accuracy"],
                             batch_size=32, drop_last=True,
                             **ctx.trainer_kwargs({"optimizer": "adam", "lr": 1e-3, "batch_size": 32,
                                                   "epochs": epochs}))
    # quick mode: one training step and no evaluation pass (compiling ResNet-34 dominates the time)
    history = trainer.fit(train, epochs=epochs, validation=None if ctx.quick else test, resume=ctx.resume)
    out = {"params": float(params_1000), "params_10_classes": float(params_10), "train_loss": history["loss"][-1]}
    for e, l in enumerate(history["loss"], 1):
        va = history.get("val_accuracy", [None] * e)[e - 1]
        ctx.print(f"epoch {e}: train loss {l:.4f}" + ("" if va is None else f", test accuracy {va:.4f}"))
    if not ctx.quick:
        out["test_accuracy"] = history["val_accuracy"][-1]
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
