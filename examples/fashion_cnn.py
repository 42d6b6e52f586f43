"""The Fashion-MNIST CNN of Géron, Hands-On Machine Learning, ch. 12, CNN Architectures.

Recipe (model `fashion_cnn`): conv 64 k7 -> pool -> 2 x conv 128 -> pool -> 2 x conv 256 -> pool ->
128 -> dropout .5 -> 64 -> dropout .5 -> 10 logits, cross-entropy. The book says it "should reach
close to 92% accuracy on the test set" without printing the optimizer and epochs at this point;
dlcore uses NAdam lr 1e-3, batch 32, 10 epochs. Without Fashion-MNIST on this machine it runs on
scikit-learn's real 8x8 digits resized to 28x28 (1437 train / 360 test images); not comparable.

Run: `dlcore run fashion_cnn` or `python examples/fashion_cnn.py`.
"""

from __future__ import annotations

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="fashion_cnn",
    title="Deep CNN (64-128-256 filters) with dropout on Fashion-MNIST",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 12, Deep Computer Vision Using Convolutional Neural Networks, CNN Architectures",
    source="the basic Fashion MNIST CNN after Figure 12-12",
    data="fashion_mnist",
    standin="digits",
    book_figures={"test_accuracy": 0.92},
)


def run(ctx: Context) -> dict[str, float]:
    train, test = ctx.image_splits(quick=(128, 64))
    epochs = ctx.n_epochs(10, quick=1)
    model = dlcore.models.create("fashion_cnn", seed=ctx.seed)
    _, figures = ctx.fit_classifier(model, optim.nadam(lr=1e-3), losses.cross_entropy, train, test,
                                    epochs=epochs, batch_size=32, held_out_name="test",
                                    hyperparameters={"optimizer": "nadam", "lr": 1e-3})
    return figures


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
