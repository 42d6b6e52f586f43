"""The MNIST ConvNet of Jha, Mastering PyTorch, ch. 1, Training a neural network using PyTorch.

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
    book="Jha, Mastering PyTorch",
    section="ch. 1, Overview of Deep Learning using PyTorch, Training a neural network using PyTorch",
    source="the ConvNet class, its train and test functions",
    data="mnist",
    standin="digits",
    book_figures={"test_accuracy": 0.985},
)

MEAN, STD = 0.1302, 0.3069  # the book's MNIST pixel statistics


def run(ctx: Context) -> dict[str, float]:
    train, test = ctx.image_splits(quick=(512, 256), mean=MEAN, std=STD)
    epochs = ctx.n_epochs(2, quick=1)
    model = dlcore.models.create("mnist_convnet", seed=ctx.seed)
    _, figures = ctx.fit_classifier(model, optim.adadelta(lr=0.5), losses.nll, train, test, epochs=epochs,
                                    batch_size=32, eval_batch_size=500, held_out_name="test",
                                    hyperparameters={"optimizer": "adadelta", "lr": 0.5})
    return figures


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
