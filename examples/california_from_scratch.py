"""California housing from scratch: linear regression with autodiff, then with a Linear layer and an optimizer,
then a full-batch MLP (Géron, Hands-On ML, ch. 10).

The book's recipe (ch. 10, Implementing Linear Regression; Linear Regression Using Tensors and Autograd;
Linear Regression Using PyTorch's High-Level API; Implementing a Regression MLP), all batch gradient
descent (the whole training set each step), MSE, 20 epochs, features standardised with the training set's
mean and std:

1. parameters by hand: w ~ N(0, 1) of shape (8, 1), b = 0, `y_pred = X @ w + b`, gradients by autodiff
   (`jax.value_and_grad` for `loss.backward()`), the update written out `p - lr * grad`, lr 0.4.
   Book: epoch 1 loss 16.158456802368164, epoch 20 0.5684100389480591;
2. `nn.Linear(8, 1)` (PyTorch's default init), `SGD(lr=0.4)`, `MSELoss`, the book's `train_bgd`: here
   `dlcore.Trainer` with `batch_size=None` (one full-batch step per epoch). Book: epoch 1 4.3378496170043945,
   epoch 20 0.5374288558959961;
3. the 8-50-40-1 ReLU MLP, SGD lr 0.1, the same loop. Book: epoch 1 5.045480251312256, epoch 20
   0.565444827079773.

The losses are the training MSE at the start of each epoch (before its step), as the book prints them; the
validation RMSE after the last epoch is reported too. The book's starting weights come from
`torch.manual_seed(42)`, which dlcore cannot draw: its figures are close to the book's (batch gradient
descent on a convex loss forgets most of its start in 20 epochs), not equal. The validation set is 25% of
the training split (the book's second `train_test_split(random_state=42)`, here drawn by NumPy, as in the
`california_housing` example).

Offline, without the census data, it runs on scikit-learn's diabetes set (442 patients, 10 features) with
the target standardised too (losses in target variances): the book's learning rates assume
California's scale. Its features are more collinear than California's: batch gradient descent with the
book's lr 0.4 diverges there (stable only below 1 / the largest eigenvalue of their covariance, about
0.25), so its two linear models use lr 0.1, and the run says so. The figures are then not comparable to the book's.

Run: `dlcore run california_from_scratch` or `python examples/california_from_scratch.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.checks import check_float, check_int
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="california_from_scratch",
    title="linear regression with autodiff, then a Linear layer and SGD, then a full-batch 8-50-40-1 MLP",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section=("ch. 10, Building Neural Networks with PyTorch, Implementing Linear Regression; "
             "Implementing a Regression MLP"),
    source=("Linear Regression Using Tensors and Autograd; Linear Regression Using PyTorch's High-Level API; "
            "Implementing a Regression MLP (batch gradient descent)"),
    data="california_housing",
    standin="diabetes",
    book_figures={"autograd_epoch1_loss": 16.158456802368164, "autograd_loss": 0.5684100389480591,
                  "linear_epoch1_loss": 4.3378496170043945, "linear_loss": 0.5374288558959961,
                  "mlp_epoch1_loss": 5.045480251312256, "mlp_loss": 0.565444827079773},
)


def init_linear_regression(n_features: int, key) -> dict:
    """The book's hand-made parameters: w ~ N(0, 1) of shape (n_features, 1), b = 0."""
    return {"w": jax.random.normal(key, (n_features, 1)), "b": jnp.zeros(())}


def predict(params: dict, X):
    """y_pred = X @ w + b. Shapes: (N, F) -> (N, 1)."""
    return X @ params["w"] + params["b"]


def mse(params: dict, X, y):
    """((y_pred - y) ** 2).mean(). Shapes: (N, F), (N, 1) -> ()."""
    return jnp.mean((predict(params, X) - y) ** 2)


@jax.jit
def gd_step(params: dict, X, y, learning_rate):
    """One batch-gradient-descent step: the loss before it and the updated parameters.

    `jax.value_and_grad` is the book's `loss.backward()`; the update is written out, as the book's
    `w -= learning_rate * w.grad` inside `torch.no_grad()` (JAX arrays are values: nothing to zero).
    """
    loss, grads = jax.value_and_grad(mse)(params, X, y)
    return loss, jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)


def train_linear_regression(X, y, *, learning_rate: float, n_epochs: int, key):
    """Section 1: linear regression from scratch. Returns (params, per-epoch losses)."""
    who = "train_linear_regression"
    check_int(n_epochs, "n_epochs", low=1, who=who)
    check_float(learning_rate, "learning_rate", low=0, who=who)
    if X.ndim != 2 or y.shape != (X.shape[0], 1) or X.shape[0] == 0:
        raise ValueError(f"{who}: X must be (N, F) and y (N, 1) with N > 0, got shapes {X.shape} and {y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError(f"{who}: X or y holds NaN or infinite values; drop or fill them first")
    params = init_linear_regression(X.shape[1], key)
    history = []
    for _ in range(n_epochs):
        loss, params = gd_step(params, X, y, learning_rate)
        history.append(float(loss))
    return params, history


def _standardise(splits, ctx):
    x, y = splits["train"]["x"], splits["train"]["y"]
    perm = np.random.default_rng(42).permutation(len(x))
    n_val = len(x) // 4
    tr, va = perm[n_val:], perm[:n_val]
    means, stds = x[tr].mean(axis=0, keepdims=True), x[tr].std(axis=0, ddof=1, keepdims=True)  # torch's std
    y_mean, y_std = 0.0, 1.0
    if ctx.dataset != EXAMPLE.data:
        y_mean, y_std = y[tr].mean(), y[tr].std(ddof=1)
        ctx.print("the stand-in's target is standardised: losses in target variances, not comparable to the book's")

    def split(xs, ys):
        return {"x": ((xs - means) / stds).astype(np.float32), "y": ((ys - y_mean) / y_std).astype(np.float32)}

    return split(x[tr], y[tr]), split(x[va], y[va]), split(splits["test"]["x"], splits["test"]["y"])


def run(ctx: Context) -> dict[str, float]:
    train, val, test = _standardise(ctx.load(), ctx)
    n_epochs = ctx.n_epochs(20, quick=20)  # 20 full-batch steps take well under a second
    X, y = jnp.asarray(train["x"]), jnp.asarray(train["y"])
    n_features = X.shape[1]
    figures = {}
    lr_linear = 0.4
    if ctx.dataset != EXAMPLE.data:
        # Batch gradient descent on the MSE is stable for lr < 1 / (the largest eigenvalue of the standardised
        # features' covariance): California's allows the book's 0.4, the stand-in's collinear serum columns not.
        top = float(np.linalg.eigvalsh(np.cov(train["x"].T))[-1])
        lr_linear = 0.1
        ctx.print(f"the stand-in's features have a covariance eigenvalue of {top:.2f}: lr 0.4 would diverge "
                  f"(it needs lr < {1 / top:.3f}), so its linear models use lr {lr_linear}")

    def report(name, history, val_rmse, preds):
        ctx.print(f"{name}: epoch 1/{n_epochs} loss {history[0]:.6f}, epoch {n_epochs}/{n_epochs} loss "
                  f"{history[-1]:.6f}, validation RMSE {val_rmse:.4f}; first three test predictions "
                  "[" + ", ".join(f"{v:.4f}" for v in np.asarray(preds).ravel()) + "]")
        figures.update({f"{name}_epoch1_loss": history[0], f"{name}_loss": history[-1],
                        f"{name}_val_rmse": val_rmse})

    # 1. tensors and autodiff, the update by hand
    params, history = train_linear_regression(X, y, learning_rate=lr_linear, n_epochs=n_epochs,
                                              key=jax.random.key(ctx.seed))
    val_rmse = float(jnp.sqrt(mse(params, jnp.asarray(val["x"]), jnp.asarray(val["y"]))))
    report("autograd", history, val_rmse, predict(params, jnp.asarray(test["x"][:3])))

    # 2-3. a Linear layer, then the MLP, with an optimizer: the Trainer with one full batch per epoch
    linear = dlcore.models.create("linear", in_features=n_features, out_features=1, seed=ctx.seed)
    models = {"linear": (linear, lr_linear),
              "mlp": (dlcore.models.create("mlp", sizes=(n_features, 50, 40, 1), seed=ctx.seed), 0.1)}
    for name, (model, lr) in models.items():
        trainer = dlcore.Trainer(model, optim.sgd(lr), losses.mse, metrics=["rmse"], batch_size=None,
                                 shuffle=False, **ctx.trainer_kwargs({"model": name, "lr": lr, "epochs": n_epochs},
                                                                     tag=name))
        h = trainer.fit(train, epochs=n_epochs, validation=val, resume=ctx.resume)
        report(name, h["loss"], h["val_rmse"][-1], model(jnp.asarray(test["x"][:3])))
    return {k: float(v) for k, v in figures.items()}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
