"""The Fashion-MNIST MLP of Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 10.

Recipe: Flatten, Linear 784-300, ReLU, Linear 300-100, ReLU, Linear 100-10, cross-entropy on
logits, SGD, batch 32, training set split 55,000 / 5,000. The book reports 92.8% train and 87.2%
validation accuracy. Its text does not print the learning rate and epochs; dlcore uses lr 0.1 and
20 epochs. Without Fashion-MNIST on this machine it runs on scikit-learn's 8x8 digits resized to
28x28, with 10% of the training split held out for validation.

Run: `dlcore run fashion_mlp` or `python examples/fashion_mlp.py`.
"""

from __future__ import annotations

import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="fashion_mlp",
    title="784-300-100-10 ReLU classifier trained with SGD",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 10, Building Neural Networks with PyTorch, Building an Image Classifier with PyTorch",
    source="its subsections Using TorchVision to Load the Dataset and Building the Classifier",
    data="fashion_mnist",
    standin="digits",
    book_figures={"train_accuracy": 0.928, "val_accuracy": 0.872},
)


SIZES, LR, BATCH_SIZE, EPOCHS = (784, 300, 100, 10), 0.1, 32, 20  # dlcore's lr and epochs (not printed)


def splits(ctx: Context) -> tuple[dict, dict]:
    """The training split cut into train and validation as the book does (55,000 / 5,000), or 90/10."""
    full = ctx.load(standin_options={"image_size": 28})["train"]
    n = len(full["x"])
    n_val = 5000 if n == 60000 else n // 10  # the book's 55k/5k, or 10% of a stand-in
    perm = np.random.default_rng(42).permutation(n)
    train = {k: v[perm[n_val:]] for k, v in full.items()}
    val = {k: v[perm[:n_val]] for k, v in full.items()}
    if ctx.quick:
        train = {k: v[:512] for k, v in train.items()}
    return train, val


def run(ctx: Context) -> dict[str, float]:
    train, val = splits(ctx)
    epochs = ctx.n_epochs(EPOCHS, quick=1)
    model = dlcore.models.create("mlp", sizes=SIZES, seed=ctx.seed)
    trainer, figures = ctx.fit_classifier(model, optim.sgd(lr=LR), losses.cross_entropy, train, val,
                                          epochs=epochs, batch_size=BATCH_SIZE,
                                          hyperparameters={"optimizer": "sgd", "lr": LR})
    train_eval = trainer.evaluate(train)  # accuracy of the final weights, as the book measures it
    return {"train_accuracy": train_eval["accuracy"], "val_accuracy": figures["val_accuracy"],
            "val_loss": figures["val_loss"]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
