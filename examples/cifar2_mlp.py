"""Birds vs airplanes with fully connected networks, Deep Learning with PyTorch, 2nd ed., ch. 7.

Recipe: CIFAR-10 images of airplanes (label 0) and birds (label 2) relabelled 0/1 ("cifar2"), each
channel normalised with the training set's mean and std, flattened to 3072 numbers. First model:
Linear 3072-512, Tanh, Linear 512-2, LogSoftmax with the NLL loss; SGD lr 1e-2, batch 64, 100
epochs: validation accuracy 0.794, 1,574,402 parameters. Deeper model: 3072-1024-512-128-2 with Tanh,
cross-entropy on logits, same training: 0.8055, 3,737,474 parameters. The parameter counts are exact
and reproduced; the accuracies are comparable only on CIFAR-10.

Stand-in: without CIFAR-10 on this machine it uses scikit-learn's real digits of the same two labels
(0 and 2), resized to 28x28 then bilinearly to 32x32 and repeated over three channels, so the
networks have CIFAR's exact 3072-wide input and the book's parameter counts (about 290 train / 70
validation images; the task is much easier than birds vs airplanes: both models reach 100%).

Run: `dlcore run cifar2_mlp` or `python examples/cifar2_mlp.py`.
"""

from __future__ import annotations

import jax
import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.data import transforms
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="cifar2_mlp",
    title="Birds vs airplanes: 3072-512-2 and 3072-1024-512-128-2 Tanh MLPs",
    book="Antiga, Stevens, Huang & Viehmann, Deep Learning with PyTorch, 2nd ed.",
    section=("ch. 7, Telling birds from airplanes: Learning from images, "
             "7.2 Distinguishing birds from airplanes"),
    source="sections 7.2.2 A fully connected model to 7.2.6 The limits of going fully connected",
    data="cifar10",
    standin="digits",
    book_figures={"val_accuracy": 0.794, "deep_val_accuracy": 0.8055, "params": 1574402,
                  "deep_params": 3737474},
)

LABEL_MAP = {0: 0, 2: 1}  # airplane -> 0, bird -> 1


def _cifar2(split: dict) -> dict:
    keep = np.isin(split["y"], list(LABEL_MAP))
    x, y = split["x"][keep], split["y"][keep]
    if x.shape[-1] == 1:  # stand-in digits: 28x28 grey -> 32x32 with three channels
        x = np.repeat(np.asarray(transforms.resize(x, 32)), 3, axis=-1)
    return {"x": x, "y": np.vectorize(LABEL_MAP.get)(y).astype(np.int32)}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    train, val = _cifar2(splits["train"]), _cifar2(splits["test"])
    if ctx.quick:
        train = {k: v[:128] for k, v in train.items()}
    mean, std = train["x"].mean(axis=(0, 1, 2)), train["x"].std(axis=(0, 1, 2))
    ctx.print(f"cifar2: {len(train['y'])} train / {len(val['y'])} validation images; channel mean "
              f"{[round(float(m), 4) for m in mean]} std {[round(float(s), 4) for s in std]}")
    prep = lambda s: {"x": ((s["x"] - mean) / std).reshape(len(s["x"]), -1).astype(np.float32),  # noqa: E731
                      "y": s["y"]}
    train, val = prep(train), prep(val)

    epochs = ctx.n_epochs(100, quick=1)
    out = {}
    for key, sizes, loss in (("", (3072, 512, 2), "nll"), ("deep_", (3072, 1024, 512, 128, 2), "ce")):
        model = dlcore.models.create("mlp", sizes=sizes, activation="tanh", seed=ctx.seed)
        n_params = sum(v.size for _, v in optim.named_leaves(model))
        if loss == "nll":  # the first model ends in LogSoftmax and trains with NLLLoss
            fn = lambda z, y: losses.nll(jax.nn.log_softmax(z), y)  # noqa: E731
        else:
            fn = losses.cross_entropy
        trainer = dlcore.Trainer(model, optim.sgd(lr=1e-2), fn, metrics=["accuracy"], batch_size=64,
                                 **ctx.trainer_kwargs(dict(model="-".join(map(str, sizes)), optimizer="sgd", lr=1e-2,
                                                           batch_size=64, epochs=epochs), tag=key + "mlp"))
        history = trainer.fit(train, epochs=epochs, validation=val)
        ctx.print(f"{'-'.join(map(str, sizes))}: {n_params:,} parameters; final training loss "
                  f"{history['loss'][-1]:.6f}; validation accuracy {history['val_accuracy'][-1]:.4f}")
        out[f"{key}val_accuracy"] = history["val_accuracy"][-1]
        out[f"{key}params"] = float(n_params)
        out[f"{key}train_loss"] = history["loss"][-1]
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
