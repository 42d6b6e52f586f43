"""Adam vs RMSprop vs SGD on a toy binary problem (Ketkar & Moolayil, Deep Learning with Python, ch. 3).

The book's recipe (ch. 3, Practical Implementation with PyTorch, Listings 3-1 to 3-5): make_blobs(5000,
centers=2, n_features=64, cluster_std=10), the first 80% for training; a 64-256-1024-1 ReLU MLP with a
sigmoid output and BCE; batches of 16 in order (no shuffling), 10 epochs, each optimizer from a fresh
model:

* RMSprop(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.1, centered=True),
* Adam(lr=0.001),
* SGD(lr=0.01, momentum=0.9).

The book prints each epoch's "loss" as the sum of batch-mean losses times the batch size (about the
total loss over the 4000 training rows): its last epoch reads RMSprop 1058.16, Adam 0.0007, SGD 248.27.
dlcore reports the same quantity (mean loss x rows). dlcore's blobs are drawn by its own generator with
the same parameters, so the figures agree in kind (Adam falls to ~0, RMSprop with weight decay 0.1 and
SGD stay high), not digit for digit. The sigmoid + BCELoss pair is computed as BCE on logits
(numerically the same, without the overflow). A plot of the three loss curves is saved when matplotlib
is installed.

Run: `dlcore run optimizer_comparison` or `python examples/optimizer_comparison.py`.
"""

from __future__ import annotations


import numpy as np

import dlcore
from dlcore import losses, optim, plot
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="optimizer_comparison",
    title="Adam, RMSprop and SGD training a 64-256-1024-1 MLP on Gaussian blobs",
    book="Ketkar & Moolayil, Deep Learning with Python, 2nd ed.",
    section="ch. 3, Feed-Forward Neural Networks, Practical Implementation with PyTorch",
    source="Listings 3-1 to 3-5",
    data="",
    standin="blobs",
    book_figures={"rmsprop_last_epoch_loss": 1058.1581, "adam_last_epoch_loss": 0.0007,
                  "sgd_last_epoch_loss": 248.2684},
)

OPTIMIZERS = {
    "rmsprop": dict(lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.1, centered=True),
    "adam": dict(lr=0.001),
    "sgd": dict(lr=0.01, momentum=0.9),
}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options=dict(n_samples=5000, centers=2, n_features=64, cluster_std=10.0, seed=2020))
    train = {"x": splits["train"]["x"], "y": splits["train"]["y"].astype(np.float32)[:, None]}
    test = {"x": splits["test"]["x"], "y": splits["test"]["y"].astype(np.float32)[:, None]}
    if ctx.quick:
        train = {k: v[:512] for k, v in train.items()}
    n = len(train["x"])
    epochs = ctx.n_epochs(10, quick=1)

    curves, metrics = {}, {}
    ctx.print(f"{'optimizer':<10} {'first epoch':>12} {'last epoch':>12} {'test accuracy':>14}   (loss x {n} rows)")
    for name, kwargs in OPTIMIZERS.items():
        model = dlcore.models.create("mlp", sizes=(64, 256, 1024, 1), seed=ctx.seed)  # fresh model each time
        trainer = dlcore.Trainer(model, optim.create(name, **kwargs), losses.binary_cross_entropy_with_logits,
                                 metrics=["accuracy"], batch_size=16, shuffle=False,
                                 **ctx.trainer_kwargs({"optimizer": name, **kwargs, "epochs": epochs}, tag=name))
        history = trainer.fit(train, epochs=epochs)
        curves[name] = [loss * n for loss in history["loss"]]
        accuracy = trainer.evaluate(test)["accuracy"]
        ctx.print(f"{name:<10} {curves[name][0]:>12.4f} {curves[name][-1]:>12.4f} {accuracy:>14.4f}")
        metrics[f"{name}_last_epoch_loss"] = curves[name][-1]
        metrics[f"{name}_test_accuracy"] = accuracy

    ctx.save_plot(EXAMPLE.name, lambda plt: plot.learning_curves(
        plt, curves, ylabel=f"loss x {n} rows", title="Loss across epochs for different optimizers", log=True))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
