"""Monte Carlo dropout, Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 11.

Recipe: the Fashion-MNIST MLP with `nn.Dropout(p=0.2)` before each of its four Linear layers
(784-100-100-100-10, ReLU), trained with cross-entropy; at prediction time the model is put in eval
mode with its dropout layers switched back on, 100 stochastic predictions are made per image, their
softmax probabilities averaged (`dlcore.nn.regularization.mc_predict`), and the per-class standard
deviation read as the model's uncertainty. For the first test image the book prints a top
probability of 0.99 with a standard deviation of 0.02. The book does not print this model's training
settings here; dlcore uses NAdam lr 1e-3, batch 32, 10 epochs.

Stand-in: without Fashion-MNIST it uses scikit-learn's real digits at 28x28 (1437 train / 360 test).

Run: `dlcore run mc_dropout` or `python examples/mc_dropout.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.nn.layers import Activation, Flatten, Linear, Sequential
from dlcore.nn.regularization import mc_predict
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="mc_dropout",
    title="MC dropout: 100 stochastic predictions, their mean and std",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 11, Training Deep Neural Networks, Monte Carlo Dropout",
    source="the 100 dropout predictions of the first test images",
    data="fashion_mnist",
    standin="digits",
    book_figures={"first_top_proba": 0.99, "first_top_std": 0.02},
)

N_SAMPLES = 100


def dropout_mlp(seed: int) -> Sequential:
    rngs = nnx.Rngs(seed)
    layers = [Flatten()]
    for i, (a, b) in enumerate(zip((784, 100, 100, 100), (100, 100, 100, 10))):
        layers += [nnx.Dropout(0.2, rngs=rngs), Linear(a, b, rngs=rngs)]
        if i < 3:
            layers.append(Activation("relu"))
    return Sequential(*layers)


def run(ctx: Context) -> dict[str, float]:
    train, test = ctx.image_splits(quick=(256, 128))
    epochs = ctx.n_epochs(10, quick=1)
    model = dropout_mlp(ctx.seed)
    trainer = dlcore.Trainer(model, optim.nadam(lr=1e-3), losses.cross_entropy, metrics=["accuracy"],
                             batch_size=32,
                             **ctx.trainer_kwargs({"optimizer": "nadam", "lr": 1e-3, "epochs": epochs}))
    trainer.fit(train, epochs=epochs)
    plain = trainer.evaluate(test)["accuracy"]

    mean, std = mc_predict(model, test["x"], n_samples=N_SAMPLES, seed=42)
    mean, std = np.asarray(mean), np.asarray(std)
    mc_acc = float((mean.argmax(-1) == test["y"]).mean())
    ctx.print(f"first 3 test images ({N_SAMPLES} samples each), mean probabilities:\n{mean[:3].round(2)}")
    ctx.print(f"their standard deviations:\n{std[:3].round(2)}")
    top = int(mean[0].argmax())
    ctx.print(f"test accuracy: {plain:.4f} with dropout off, {mc_acc:.4f} with MC dropout")
    return {"first_top_proba": float(mean[0, top]), "first_top_std": float(std[0, top]),
            "test_accuracy": plain, "mc_test_accuracy": mc_acc,
            "mean_top_std": float(std[np.arange(len(std)), mean.argmax(-1)].mean())}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
