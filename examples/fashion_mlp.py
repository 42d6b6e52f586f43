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


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    full = splits["train"]
    n = len(full["x"])
    n_val = 5000 if n == 60000 else n // 10  # the book's 55k/5k, or 10% of a stand-in
    perm = np.random.default_rng(42).permutation(n)
    train = {k: v[perm[n_val:]] for k, v in full.items()}
    val = {k: v[perm[:n_val]] for k, v in full.items()}
    if ctx.quick:
        train = {k: v[:512] for k, v in train.items()}

    epochs = ctx.n_epochs(20, quick=1)
    model = dlcore.models.create("mlp", sizes=(784, 300, 100, 10), seed=ctx.seed)
    trainer = dlcore.Trainer(model, optim.sgd(lr=0.1), losses.cross_entropy, metrics=["accuracy"],
                             batch_size=32,
                             **ctx.trainer_kwargs({"optimizer": "sgd", "lr": 0.1, "batch_size": 32,
                                                   "epochs": epochs}))
    history = trainer.fit(train, epochs=epochs, validation=val, resume=ctx.resume)
    train_eval = trainer.evaluate(train)  # accuracy of the final weights, as the book measures it
    ctx.print(f"after {epochs} epochs: train accuracy {train_eval['accuracy']:.4f}, "
              f"validation accuracy {history['val_accuracy'][-1]:.4f}")
    return {"train_accuracy": train_eval["accuracy"], "val_accuracy": history["val_accuracy"][-1],
            "val_loss": history["val_loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
