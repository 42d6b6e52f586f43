"""California housing: an MLP regressor and four Wide & Deep networks (Géron, Hands-On ML, ch. 10).

The book's recipe (ch. 10, Implementing a Regression MLP, then Building Nonsequential
Models Using Custom Modules): standardise the 8 features with the training set's mean and std;
an 8-50-40-1 ReLU MLP, SGD lr 0.02, mini-batches of 32 (shuffled), 20 epochs, MSE; its validation RMSE
over the whole set is 0.6388 (the mean of per-batch RMSEs, 0.5668, is the book's cautionary mistake).
Then Wide & Deep networks (Cheng et al., 2016), SGD lr 0.002:

* ``wide_deep``: all features through both paths, ``concat([X, deep(X)]) -> Linear(48, 1)``;
* ``wide_deep_subsets``: features 0-4 wide, 2-7 deep (the book's WideAndDeepV2);
* ``two_inputs``: the same network fed two named inputs ``{"X_wide", "X_deep"}`` (WideAndDeepV3);
* ``aux_head``: plus an auxiliary output on the deep stack, trained on ``0.8 * main + 0.2 * aux`` MSE
  and evaluated on the main output (WideAndDeepV4).

All five train with ``dlcore.Trainer``. The two-input models get a dict of inputs under a batch's
``x``, which the Trainer passes as keyword arguments, ``model(X_wide=..., X_deep=...)``, as the book's
training loop does; with the same batches, ``two_inputs`` retraces ``wide_deep_subsets`` exactly. The
auxiliary model returns ``(B, 2)`` = main and auxiliary predictions, so one per-example loss covers
both heads, and its RMSE is scored on the main one. The
validation set is 25% of the training split (the book's ``train_test_split(random_state=42)``, here
drawn by NumPy). Without the census data it runs on scikit-learn's diabetes set (442 patients, 10
features), with the target standardised too (RMSE in target standard deviations). A plot of the
validation RMSE per epoch is saved when matplotlib is installed.

Run: `dlcore run california_housing` or `python examples/california_housing.py`.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, plot
from dlcore.nn.layers import Linear
from dlcore.metrics import RMSE
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="california_housing",
    title="8-50-40-1 MLP regressor and Wide & Deep networks with two inputs and an auxiliary head",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 10, Building Neural Networks with PyTorch, Implementing a Regression MLP; "
             "Building Nonsequential Models Using Custom Modules"),
    source="Figures 10-1 to 10-3 (Wide & Deep, multiple inputs, multiple outputs)",
    data="california_housing",
    standin="diabetes",
    book_figures={"mlp_val_rmse": 0.6388},
)


class WideAndDeep(nnx.Module):
    """Wide & Deep with an optional auxiliary head.

    ``wide``/``deep`` select the columns of each path from a single input ``(N, F)``; with
    ``two_inputs`` the model takes ``{"X_wide": (N, Fw), "X_deep": (N, Fd)}`` instead. Outputs:
    ``(N, 1)``, or ``(N, 2)`` = (main, auxiliary) predictions with ``aux_head``.
    """

    def __init__(self, n_wide: int, n_deep: int, *, wide=None, deep=None, two_inputs: bool = False,
                 aux_head: bool = False, rngs: nnx.Rngs):
        self.wide, self.deep, self.two_inputs = wide, deep, two_inputs
        self.hidden1 = Linear(n_deep, 50, rngs=rngs)
        self.hidden2 = Linear(50, 40, rngs=rngs)
        self.output_layer = Linear(40 + n_wide, 1, rngs=rngs)
        self.aux_output_layer = Linear(40, 1, rngs=rngs) if aux_head else nnx.data(None)

    def __call__(self, x=None, *, X_wide=None, X_deep=None):  # noqa: N803 (the book's names)
        if self.two_inputs:
            x_wide, x_deep = X_wide, X_deep
        else:
            x_wide = x if self.wide is None else x[:, self.wide[0]:self.wide[1]]
            x_deep = x if self.deep is None else x[:, self.deep[0]:self.deep[1]]
        deep_output = jax.nn.relu(self.hidden2(jax.nn.relu(self.hidden1(x_deep))))
        main = self.output_layer(jnp.concatenate([x_wide, deep_output], axis=1))
        if self.aux_output_layer is None:
            return main
        return jnp.concatenate([main, self.aux_output_layer(deep_output)], axis=1)


def main_and_aux_loss(outputs, targets):
    """0.8 * MSE of the main output + 0.2 * MSE of the auxiliary one, per example. (B, 2), (B, 1) -> (B,)."""
    return 0.8 * losses.mse(outputs[:, :1], targets) + 0.2 * losses.mse(outputs[:, 1:], targets)


class MainRMSE(RMSE):
    """The RMSE of the main output (column 0) of a (B, 2) main-and-auxiliary prediction."""

    def values(self, outputs, targets):
        return super().values(outputs[:, :1], targets)


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    x, y = splits["train"]["x"], splits["train"]["y"]
    perm = np.random.default_rng(42).permutation(len(x))
    n_val = len(x) // 4
    tr, va = perm[n_val:], perm[:n_val]
    mean, std = x[tr].mean(axis=0), x[tr].std(axis=0, ddof=1)
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    y_mean, y_std = 0.0, 1.0
    if ctx.dataset != EXAMPLE.data:  # the stand-in's target (~150 +- 77) would make SGD diverge
        y_mean, y_std = y[tr].mean(), y[tr].std(ddof=1)
        ctx.print("the stand-in's target is standardised: RMSE in target standard deviations")
    target = lambda a: ((a - y_mean) / y_std).astype(np.float32)  # noqa: E731
    train, val = {"x": scale(x[tr]), "y": target(y[tr])}, {"x": scale(x[va]), "y": target(y[va])}
    test = {"x": scale(splits["test"]["x"]), "y": target(splits["test"]["y"])}
    if ctx.quick:
        train = {k: v[:512] for k, v in train.items()}
    epochs = ctx.n_epochs(20, quick=1)
    n_features = train["x"].shape[1]
    wide, deep = (0, 5), (2, n_features)  # the book's X[:, :5] and X[:, 2:]

    curves, metrics = {}, {}
    # 1. the MLP, then 2-3. Wide & Deep on one input, all with the Trainer
    single = {
        "mlp": (dlcore.models.create("mlp", sizes=(n_features, 50, 40, 1), seed=ctx.seed), 0.02),
        "wide_deep": (WideAndDeep(n_features, n_features, rngs=nnx.Rngs(ctx.seed)), 0.002),
        "wide_deep_subsets": (WideAndDeep(5, n_features - 2, wide=wide, deep=deep, rngs=nnx.Rngs(ctx.seed)), 0.002),
    }
    for name, (model, lr) in single.items():
        trainer = dlcore.Trainer(model, optim.sgd(lr), losses.mse, metrics=["rmse"], batch_size=32,
                                 **ctx.trainer_kwargs({"model": name, "lr": lr, "epochs": epochs}, tag=name))
        curves[name] = trainer.fit(train, epochs=epochs, validation=val)["val_rmse"]
        if name == "mlp":
            metrics["mlp_test_rmse"] = trainer.evaluate(test)["rmse"]

    # 4-5. two named inputs, and the auxiliary head
    def two(split):
        return {"x": {"X_wide": split["x"][:, wide[0]:wide[1]], "X_deep": split["x"][:, deep[0]:deep[1]]},
                "y": split["y"]}

    for name, aux in (("two_inputs", False), ("aux_head", True)):
        model = WideAndDeep(5, n_features - 2, two_inputs=True, aux_head=aux, rngs=nnx.Rngs(ctx.seed))
        trainer = dlcore.Trainer(model, optim.sgd(0.002), main_and_aux_loss if aux else losses.mse,
                                 metrics=[MainRMSE()], batch_size=32,
                                 **ctx.trainer_kwargs({"model": name, "lr": 0.002, "epochs": epochs}, tag=name))
        curves[name] = trainer.fit(two(train), epochs=epochs, validation=two(val))["val_rmse"]

    ctx.print(f"{'model':<18} {'val RMSE (first epoch)':>22} {'val RMSE (last)':>16}")
    for name, curve in curves.items():
        ctx.print(f"{name:<18} {curve[0]:>22.4f} {curve[-1]:>16.4f}")
        metrics[f"{name}_val_rmse"] = curve[-1]

    ctx.save_plot(EXAMPLE.name, lambda plt: plot.learning_curves(
        plt, curves, ylabel="validation RMSE", title="California housing"))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
