"""The MNIST CNN of Deep Learning with PyTorch (001 ch. 5), after PyTorch's MNIST example.

Recipe (model `mnist_cnn_001`): conv 10 k5 -> pool -> ReLU -> conv 20 k5 -> Dropout2d -> pool -> ReLU
-> Linear 320-50 -> ReLU -> dropout -> Linear 50-10 -> log_softmax, NLL loss; SGD lr 0.01 momentum
0.5; batch 32; 20 epochs; inputs normalised with MNIST's mean 0.1307 and std 0.3081. The book
reports 98.9% validation accuracy on MNIST. Without MNIST on this machine it runs on scikit-learn's
real 8x8 digits resized to 28x28 (1437 train / 360 validation images); not comparable.

Run: `dlcore run mnist_cnn` or `python examples/mnist_cnn.py`.
"""

from __future__ import annotations

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="mnist_cnn",
    title="Small CNN with Dropout2d trained with SGD + momentum",
    book="Deep Learning with PyTorch (Subramanian)",
    section="ch. 5, Deep learning for computer vision",
    source="001 ch. 5",
    data="mnist",
    standin="digits",
    book_figures={"val_accuracy": 0.989},
)

MEAN, STD = 0.1307, 0.3081


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    train, val = splits["train"], splits["test"]
    if ctx.quick:
        train = {k: v[:256] for k, v in train.items()}
        val = {k: v[:128] for k, v in val.items()}
    normalise = lambda s: {"x": (s["x"] - MEAN) / STD, "y": s["y"]}  # noqa: E731
    train, val = normalise(train), normalise(val)
    epochs = ctx.n_epochs(20, quick=1)
    model = dlcore.models.create("mnist_cnn_001", seed=ctx.seed)
    trainer = dlcore.Trainer(model, optim.sgd(lr=0.01, momentum=0.5), losses.nll, metrics=["accuracy"],
                             batch_size=32,
                             **ctx.trainer_kwargs({"optimizer": "sgd", "lr": 0.01, "momentum": 0.5,
                                                   "batch_size": 32, "epochs": epochs}))
    history = trainer.fit(train, epochs=epochs, validation=val, resume=ctx.resume)
    for e in range(0, epochs, max(1, epochs // 5)):
        ctx.print(f"epoch {e + 1}: training loss {history['loss'][e]:.4f}, validation accuracy "
                  f"{history['val_accuracy'][e]:.4f}")
    return {"val_accuracy": history["val_accuracy"][-1], "val_loss": history["val_loss"][-1],
            "train_loss": history["loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
