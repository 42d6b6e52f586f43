"""Scikit-Learn's Perceptron, MLPRegressor and MLPClassifier as dlcore models (Géron, Hands-On ML, ch. 9).

The book's recipes (ch. 9, Introduction to Artificial Neural Networks), each reproduced with a dlcore model
and `Trainer`, scikit-learn's own estimator run beside it as the reference:

1. **The Perceptron** on iris: petal length and width, Iris setosa or not; ``Perceptron(random_state=42)``
   predicts True and False for the flowers [2, 0.5] and [3, 1]. dlcore's perceptron is a linear unit
   started at zero, trained one flower at a time (SGD, learning rate 1, shuffled) on the perceptron loss
   ``max(0, -s z)`` with ``s = +-1`` (the perceptron learning rule), stopped when the epoch loss has not
   fallen by 1e-3 for 5 epochs, and predicts with the Heaviside step ``z >= 0``: scikit-learn's defaults.
2. **Regression MLP** on California housing: ``StandardScaler`` then ``MLPRegressor(hidden_layer_sizes=[50,
   50, 50], early_stopping=True)``: 45 epochs, best validation R² 0.7915, test RMSE 0.5328.
3. **Classification MLP** on Fashion-MNIST: ``MinMaxScaler`` then ``MLPClassifier(hidden_layer_sizes=[300,
   100], early_stopping=True)``: best validation accuracy 89.7%, test accuracy 87.1%.

dlcore's MLPs follow scikit-learn's defaults: ReLU hidden layers, weights and biases drawn from
U(+-sqrt(6 / (fan_in + fan_out))), Adam (learning rate 1e-3) on mini-batches of 200, an L2 penalty
``alpha / (2 * batch) * sum(W^2)`` on the weights (alpha 1e-4; the logged loss leaves it out), the
half-MSE loss for regression and cross-entropy for classification, and early stopping on 10% of the
training set held out: stop when the validation score (R², `dlcore.metrics.R2Score`, or accuracy) has
not improved by 1e-4 for 11 epochs, at most 200 epochs, and keep the best epoch's weights. The random
draws (weights, shuffling, the held-out rows) are dlcore's, so the figures are close to the book's, not
equal. On the stand-ins (offline, seed 0, 30 s on two busy CPU cores): the perceptron's True, False in 7
epochs as scikit-learn's; the regressor 49 epochs, best validation R² 0.510, test RMSE 0.704 (scikit-learn:
39 epochs, 0.270, 0.730); the classifier 51 epochs, 0.972 and 0.986 (scikit-learn: 24, 0.965, 0.975).

Offline, the regressor runs on scikit-learn's diabetes data (442 patients; the target standardised too,
so its RMSE is in target standard deviations) and the classifier on the 8x8 digits; figures then are
not the book's. Iris ships with scikit-learn.

Run: `dlcore run sklearn_mlp` or `python examples/sklearn_mlp.py`.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="sklearn_mlp",
    title="the Perceptron on iris, an MLP regressor and an MLP classifier, scikit-learn's recipes in dlcore",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 9, Introduction to Artificial Neural Networks: The Perceptron; Regression MLPs; "
             "Classification MLPs"),
    source="the Perceptron on iris, MLPRegressor on California housing (Figure 9-9), MLPClassifier on "
           "Fashion-MNIST",
    data="california_housing",
    standin="diabetes",
    book_figures={"perceptron_flower_1": 1.0, "perceptron_flower_2": 0.0,
                  "reg_epochs": 45.0, "reg_best_val_r2": 0.791536125425778, "reg_test_rmse": 0.5327699946812925,
                  "clf_best_val_accuracy": 0.897, "clf_test_accuracy": 0.871},
)

BOOK_FLOWERS = np.array([[2.0, 0.5], [3.0, 1.0]], np.float32)  # petal length and width (cm)
ALPHA = 1e-4        # scikit-learn's L2 strength
BATCH = 200         # its batch_size="auto": min(200, n)
MAX_EPOCHS = 200    # max_iter
PATIENCE = 10       # n_iter_no_change: stops after 11 epochs without an improvement of tol
TOL = 1e-4


# --- 1. the perceptron ----------------------------------------------------------------------------


class Perceptron(nnx.Module):
    """One threshold logic unit per output, started at zero as scikit-learn's: ``z = x W + b``.

    Shapes: ``(N, F) -> (N, K)`` scores; the prediction is the Heaviside step ``z >= 0``.
    """

    def __init__(self, in_features: int, out_features: int = 1):
        self.w = nnx.Param(jnp.zeros((in_features, out_features)))
        self.b = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x):
        return x @ self.w + self.b


def perceptron_loss(z, y):
    """``max(0, -s z)`` per example, ``s = 2 y - 1``; its gradient is the perceptron rule's update, also at
    ``z = 0`` (a zero-started unit must move). Shapes ``(B, K)``, 0/1 targets ``(B, K)`` -> ``(B,)``."""
    margin = (2.0 * y - 1.0) * z
    return jnp.sum(jnp.where(margin <= 0, -margin, 0.0), axis=-1)


def heaviside(z) -> np.ndarray:
    """Equation 9-1: 1 where ``z >= 0``, else 0."""
    return (np.asarray(z) >= 0).astype(np.float32)


def _perceptron(ctx: Context) -> dict[str, float]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import Perceptron as SkPerceptron

    iris = load_iris()
    x = iris.data[:, 2:4].astype(np.float32)           # (150, 2) petal length, petal width
    y = (iris.target == 0).astype(np.float32)[:, None]  # (150, 1) Iris setosa
    ctx.print("iris: scikit-learn's load_iris, 150 flowers (petal length and width), setosa or not")
    model = Perceptron(2)
    stop = dlcore.EarlyStopping("loss", patience=5, min_delta=1e-3, mode="min", restore_best_weights=False)
    epochs = ctx.n_epochs(1000, quick=100)
    kwargs = ctx.trainer_kwargs({"model": "perceptron", "lr": 1.0, "epochs": epochs}, tag="perceptron")
    kwargs["callbacks"] = [*kwargs["callbacks"], stop]
    trainer = dlcore.Trainer(model, optim.sgd(1.0), perceptron_loss, batch_size=1, **kwargs)
    history = trainer.fit({"x": x, "y": y}, epochs=epochs, resume=ctx.resume)
    flowers = heaviside(trainer.predict(BOOK_FLOWERS))[:, 0]
    accuracy = float(np.mean(heaviside(trainer.predict(x)) == y))

    sk = SkPerceptron(random_state=42).fit(x, y[:, 0].astype(bool))
    sk_flowers = sk.predict(BOOK_FLOWERS).astype(np.float32)
    ctx.print(f"perceptron: {len(history['loss'])} epochs, training accuracy {accuracy:.4f}; flowers [2, 0.5] "
              f"and [3, 1]: {flowers.astype(bool).tolist()} (book and scikit-learn's: "
              f"{sk_flowers.astype(bool).tolist()}, in {sk.n_iter_} epochs)")
    return {"perceptron_flower_1": flowers[0], "perceptron_flower_2": flowers[1],
            "perceptron_train_accuracy": accuracy,
            "sklearn_perceptron_flower_1": sk_flowers[0], "sklearn_perceptron_flower_2": sk_flowers[1]}


# --- 2 and 3. scikit-learn's MLPs -----------------------------------------------------------------


class SklearnMLP(nnx.Module):
    """``MLPRegressor``/``MLPClassifier``'s network: ReLU hidden layers, a linear output (logits for the
    classifier), every weight and bias drawn from U(+-sqrt(6 / (fan_in + fan_out))) as scikit-learn's
    (with NumPy's generator, as scikit-learn: no compilation per layer).

    Shapes: ``(N, sizes[0]) -> (N, sizes[-1])``; ``kernels[i]`` is ``(sizes[i], sizes[i + 1])``.
    """

    def __init__(self, sizes: tuple[int, ...], *, seed: int = 0):
        rng = np.random.default_rng(seed)
        kernels, biases = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            bound = math.sqrt(6.0 / (n_in + n_out))
            kernels.append(nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (n_in, n_out)), jnp.float32)))
            biases.append(nnx.Param(jnp.asarray(rng.uniform(-bound, bound, (n_out,)), jnp.float32)))
        self.kernels, self.biases = nnx.List(kernels), nnx.List(biases)

    def __call__(self, x):
        for kernel, bias in zip(self.kernels[:-1], self.biases[:-1]):
            x = jax.nn.relu(x @ kernel + bias)
        return x @ self.kernels[-1] + self.biases[-1]


def half_mse(predictions, targets):
    """scikit-learn's squared loss, half the MSE, per example: ``(B, D), (B, D) -> (B,)``."""
    return 0.5 * losses.mse(predictions, targets)


def _held_out(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows kept for training and the 10% held out for early stopping (validation_fraction=0.1)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(0.1 * n)))
    return perm[n_val:], perm[:n_val]


def _fit_mlp(ctx: Context, tag: str, sizes, loss, metrics, monitor, train, epochs):
    """scikit-learn's stochastic fit: Adam 1e-3 + L2 on weights, batches of 200, early stopping (best kept)."""
    fit_rows, val_rows = _held_out(len(train["y"]), ctx.seed)
    fit = {k: v[fit_rows] for k, v in train.items()}
    val = {k: v[val_rows] for k, v in train.items()}
    batch = min(BATCH, len(fit["y"]))
    model = SklearnMLP(sizes, seed=ctx.seed)
    tx = optax.chain(optim.add_l2(ALPHA / (2 * batch)), optim.adam(1e-3))
    stop = dlcore.EarlyStopping(monitor, patience=PATIENCE + 1, min_delta=TOL, mode="max")
    kwargs = ctx.trainer_kwargs({"model": tag, "sizes": list(sizes), "epochs": epochs}, tag=tag)
    kwargs["callbacks"] = [*kwargs["callbacks"], stop]
    trainer = dlcore.Trainer(model, tx, loss, metrics=metrics, batch_size=batch, **kwargs)
    history = trainer.fit(fit, epochs=epochs, validation=val, resume=ctx.resume)
    n = len(history["loss"])
    for e in sorted({*range(0, n, max(1, n // 4)), n - 1}):
        ctx.print(f"  epoch {e + 1}/{n}: loss {history['loss'][e]:.6f}, validation score "
                  f"{history[monitor][e]:.6f}")
    return trainer, n, stop.best


def _regressor(ctx: Context, splits) -> dict[str, float]:
    from sklearn.metrics import root_mean_squared_error
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = splits["train"]["x"], splits["train"]["y"]
    x_test, y_test = splits["test"]["x"], splits["test"]["y"]
    if ctx.dataset != EXAMPLE.data:  # diabetes' target (~150 +- 77) is standardised, as in california_housing
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
        ctx.print("regressor: the stand-in's target is standardised, RMSE in target standard deviations")
    if ctx.quick:
        x_train, y_train = x_train[:1000], y_train[:1000]
    epochs = ctx.n_epochs(MAX_EPOCHS, quick=3)
    scaler = StandardScaler().fit(x_train)  # the book's pipeline: the scaler sees the whole training set
    train = {"x": scaler.transform(x_train).astype(np.float32), "y": y_train.astype(np.float32)}
    test = {"x": scaler.transform(x_test).astype(np.float32), "y": y_test.astype(np.float32)}
    ctx.print(f"regressor: {train['x'].shape[1]}-50-50-50-1 MLP on {len(train['y'])} training rows, at most "
              f"{epochs} epochs")
    trainer, n, best = _fit_mlp(ctx, "regressor", (train["x"].shape[1], 50, 50, 50, 1), half_mse,
                                ["r2", "rmse"], "val_r2", train, epochs)
    rmse = trainer.evaluate(test)["rmse"]

    sk = MLPRegressor(hidden_layer_sizes=[50, 50, 50], early_stopping=True, random_state=42, max_iter=epochs)
    pipeline = make_pipeline(StandardScaler(), sk)
    with warnings.catch_warnings():  # --quick stops it before it converges, as asked
        warnings.simplefilter("ignore")
        pipeline.fit(x_train, y_train[:, 0])
    sk_rmse = root_mean_squared_error(y_test[:, 0], pipeline.predict(x_test))
    ctx.print(f"regressor: {n} epochs, best validation R² {best:.4f}, test RMSE {rmse:.4f} (scikit-learn: "
              f"{sk.n_iter_} epochs, {sk.best_validation_score_:.4f}, {sk_rmse:.4f})")
    return {"reg_epochs": n, "reg_best_val_r2": best, "reg_test_rmse": rmse,
            "sklearn_reg_epochs": sk.n_iter_, "sklearn_reg_best_val_r2": sk.best_validation_score_,
            "sklearn_reg_test_rmse": sk_rmse}


def _classifier(ctx: Context) -> dict[str, float]:
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    from dlcore import data

    if ctx.dataset == EXAMPLE.standin:  # a forced stand-in run uses the classifier's stand-in too
        splits, used = data.load("digits", flatten=True), "digits"
    else:
        splits, used = data.load_or_standin("fashion_mnist", "digits", flatten=True,
                                            standin_options={"flatten": True})
    note = "" if used == "fashion_mnist" else " (embedded stand-in for fashion_mnist: not the book's figures)"
    ctx.print(f"classifier data: {used}{note}")
    x_train, y_train = splits["train"]["x"], splits["train"]["y"]
    x_test, y_test = splits["test"]["x"], splits["test"]["y"]
    if ctx.quick:
        x_train, y_train = x_train[:600], y_train[:600]
    epochs = ctx.n_epochs(MAX_EPOCHS, quick=2)
    scaler = MinMaxScaler().fit(x_train)
    train = {"x": scaler.transform(x_train).astype(np.float32), "y": y_train}
    test = {"x": scaler.transform(x_test).astype(np.float32), "y": y_test}
    n_classes = int(y_train.max()) + 1
    ctx.print(f"classifier: {train['x'].shape[1]}-300-100-{n_classes} MLP on {len(y_train)} training images, "
              f"at most {epochs} epochs")
    trainer, n, best = _fit_mlp(ctx, "classifier", (train["x"].shape[1], 300, 100, n_classes),
                                losses.cross_entropy, ["accuracy"], "val_accuracy", train, epochs)
    accuracy = trainer.evaluate(test)["accuracy"]

    sk = MLPClassifier(hidden_layer_sizes=[300, 100], early_stopping=True, random_state=42, max_iter=epochs)
    pipeline = make_pipeline(MinMaxScaler(), sk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.fit(x_train, y_train)
    sk_accuracy = pipeline.score(x_test, y_test)
    ctx.print(f"classifier: {n} epochs, best validation accuracy {best:.4f}, test accuracy {accuracy:.4f} "
              f"(scikit-learn: {sk.n_iter_} epochs, {sk.best_validation_score_:.4f}, {sk_accuracy:.4f})")
    return {"clf_epochs": n, "clf_best_val_accuracy": best, "clf_test_accuracy": accuracy,
            "sklearn_clf_epochs": sk.n_iter_, "sklearn_clf_best_val_accuracy": sk.best_validation_score_,
            "sklearn_clf_test_accuracy": sk_accuracy}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()  # the regressor's data, first: the run's first line says which
    metrics = _perceptron(ctx)
    metrics.update(_regressor(ctx, splits))
    metrics.update(_classifier(ctx))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
