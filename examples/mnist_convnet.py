"""The MNIST ConvNet of Mastering PyTorch, ch. 1 (004 L422-544).

Recipe: two VALID 3x3 convs (16, 32 channels), max-pool 2, Dropout2d(0.1), Linear 4608-64, dropout
0.25, Linear 64-10, log_softmax with the NLL loss; Adadelta lr 0.5; batch 32; 2 epochs; inputs
normalised with mean 0.1302 and std 0.3069; test batches of 500. The book reports about 98.5% test
accuracy on MNIST. Without MNIST on this machine it runs on scikit-learn's real 8x8 digits resized
to MNIST's 28x28 layout (1437 train / 360 test images), where the figure is not comparable.

Run: `dlcore run mnist_convnet [--checkpoint DIR [--resume]]` or `python examples/mnist_convnet.py`.
"""

from __future__ import annotations

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="mnist_convnet",
    title="ConvNet with Dropout2d, log_softmax + NLL and Adadelta",
    book="Mastering PyTorch",
    section="ch. 1, Training a neural network using PyTorch",
    source="004 L422-544",
    data="mnist",
    standin="digits",
    book_figures={"test_accuracy": 0.985},
)

MEAN, STD = 0.1302, 0.3069  # the book's MNIST pixel statistics


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    train, test = splits["train"], splits["test"]
    if ctx.quick:  # a subset: seconds, not minutes
        train = {k: v[:512] for k, v in train.items()}
        test = {k: v[:256] for k, v in test.items()}
    normalise = lambda s: {"x": (s["x"] - MEAN) / STD, "y": s["y"]}  # noqa: E731
    train, test = normalise(train), normalise(test)

    epochs = ctx.n_epochs(2, quick=1)
    model = dlcore.models.create("mnist_convnet", seed=ctx.seed)
    trainer = dlcore.Trainer(model, optim.adadelta(lr=0.5), losses.nll, metrics=["accuracy"],
                             batch_size=32, eval_batch_size=500,
                             **ctx.trainer_kwargs({"optimizer": "adadelta", "lr": 0.5, "batch_size": 32,
                                                   "epochs": epochs}))
    history = trainer.fit(train, epochs=epochs, validation=test, resume=ctx.resume)
    for e, (l, a, vl, va) in enumerate(zip(history["loss"], history["accuracy"],
                                           history["val_loss"], history["val_accuracy"]), 1):
        ctx.print(f"epoch {e}: train loss {l:.4f} acc {a:.4f} | test loss {vl:.4f} acc {va:.4f}")
    return {"test_accuracy": history["val_accuracy"][-1], "test_loss": history["val_loss"][-1],
            "train_loss": history["loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
