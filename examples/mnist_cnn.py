"""The MNIST CNN of Subramanian, Deep Learning with PyTorch, ch. 5, after PyTorch's MNIST example.

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
    book="Subramanian, Deep Learning with PyTorch (Packt, 2018)",
    section="ch. 5, Deep Learning for Computer Vision, Building a CNN model from scratch",
    source="its subsection Training the model",
    data="mnist",
    standin="digits",
    book_figures={"val_accuracy": 0.989},
)

MEAN, STD = 0.1307, 0.3081


def run(ctx: Context) -> dict[str, float]:
    train, val = ctx.image_splits(quick=(256, 128), mean=MEAN, std=STD)
    epochs = ctx.n_epochs(20, quick=1)
    model = dlcore.models.create("mnist_cnn_001", seed=ctx.seed)
    _, figures = ctx.fit_classifier(model, optim.sgd(lr=0.01, momentum=0.5), losses.nll, train, val,
                                    epochs=epochs, batch_size=32,
                                    hyperparameters={"optimizer": "sgd", "lr": 0.01, "momentum": 0.5})
    return figures


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
