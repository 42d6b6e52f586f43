"""Thermometer calibration: fit t_c = w * t_u + b to 11 readings (Antiga et al., ch. 5-6).

The book's recipe (sections 5.4.3-5.5.3, 6.2.2 and 6.3):
  1. gradient descent, lr 1e-2, on the rescaled input 0.1 * t_u, 5000 epochs, from w=1, b=0:
     loss 2.927648, w 5.3671, b -17.3012 (w is for 0.1*t_u);
  2. Adam, lr 0.1, on the raw t_u, 2000 epochs: loss 2.927646, w 0.5367, b -17.3021;
  3. `nn.Linear(1, 1)` on an 80/20 split, SGD 1e-2, 3000 epochs (book: w 5.4319, b -17.9693);
  4. a 1-8-1 tanh MLP on the same split, SGD 1e-3, 5000 epochs (book: train 2.1141, val 2.0215).
Variants 3 and 4 depend on the book's random split and initial weights, which dlcore draws with its
own generator; only 1 and 2 are exact.

Run: `dlcore run thermometer [--json out.json]` or `python examples/thermometer.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="thermometer",
    title="linear regression by gradient descent, Adam, nn.Linear and a 1-8-1 MLP",
    book="Antiga, Stevens, Huang & Viehmann, Deep Learning with PyTorch, 2nd ed.",
    section="ch. 5, The mechanics of learning; ch. 6, Using a neural network to fit the data",
    source=("sections 5.4.4 Normalizing inputs, 5.5.2 Optimizers a la carte, 5.5.3 Training, validation, "
            "and overfitting, 6.2.2 Returning to the linear model, 6.3 Finally a neural network"),
    data="",
    standin="thermometer",
    book_figures={"gd_loss": 2.927648, "gd_w": 5.3671, "gd_b": -17.3012,
                  "adam_loss": 2.927646, "adam_w": 0.5367, "adam_b": -17.3021,
                  "linear_w": 5.4319, "linear_b": -17.9693,
                  "mlp_train_loss": 2.1141, "mlp_val_loss": 2.0215},
)


class LinearModel(nnx.Module):
    """t_p = w * t_u + b with the book's starting point w = 1, b = 0. Shapes: (N, 1) -> (N, 1)."""

    def __init__(self):
        self.w = nnx.Param(jnp.ones(()))
        self.b = nnx.Param(jnp.zeros(()))

    def __call__(self, t_u):
        return self.w * t_u + self.b


def _fit(model, tx, x, y, epochs, ctx, validation=None):
    """Full-batch training, as the book's loops: one step per epoch on all rows."""
    trainer = dlcore.Trainer(model, tx, losses.mse, batch_size=None, shuffle=False,
                             progress=False, seed=ctx.seed)
    history = trainer.fit({"x": x, "y": y}, epochs=epochs, validation=validation)
    return trainer, history


def run(ctx: Context) -> dict[str, float]:
    d = ctx.load()["train"]
    t_u, t_c = d["x"], d["y"]  # (11, 1) each
    # Full-batch steps on 11 points take microseconds, so --quick keeps the book's epochs;
    # --epochs N sets every variant to N.
    n_gd, n_adam, n_lin, n_mlp = (5000, 2000, 3000, 5000) if ctx.epochs is None else (ctx.epochs,) * 4

    m1 = LinearModel()
    _, h1 = _fit(m1, optim.sgd(1e-2), 0.1 * t_u, t_c, n_gd, ctx)
    ctx.print(f"gradient descent on 0.1*t_u, {n_gd} epochs: loss {h1['loss'][-1]:.6f}, "
              f"w {float(m1.w[...]):.4f}, b {float(m1.b[...]):.4f}")

    m2 = LinearModel()
    _, h2 = _fit(m2, optim.adam(1e-1), t_u, t_c, n_adam, ctx)
    ctx.print(f"Adam on t_u, {n_adam} epochs: loss {h2['loss'][-1]:.6f}, "
              f"w {float(m2.w[...]):.4f}, b {float(m2.b[...]):.4f}")

    # The book's 80/20 split: a shuffled permutation, the last 20% (2 points) for validation.
    perm = np.random.default_rng(ctx.seed).permutation(len(t_u))
    n_val = int(0.2 * len(t_u))
    tr, va = perm[:-n_val], perm[-n_val:]
    train = {"x": 0.1 * t_u[tr], "y": t_c[tr]}
    val = {"x": 0.1 * t_u[va], "y": t_c[va]}

    lin = dlcore.models.create("linear", seed=ctx.seed)
    _, h3 = _fit(lin, optim.sgd(1e-2), train["x"], train["y"], n_lin, ctx, validation=val)
    ctx.print(f"nn.Linear(1, 1), {n_lin} epochs: train {h3['loss'][-1]:.4f}, val {h3['val_loss'][-1]:.4f}, "
              f"w {float(lin.kernel[0, 0]):.4f}, b {float(lin.bias[0]):.4f}")

    mlp = dlcore.models.create("mlp", sizes=(1, 8, 1), activation="tanh", seed=ctx.seed)
    _, h4 = _fit(mlp, optim.sgd(1e-3), train["x"], train["y"], n_mlp, ctx, validation=val)
    ctx.print(f"1-8-1 tanh MLP, {n_mlp} epochs: train {h4['loss'][-1]:.4f}, val {h4['val_loss'][-1]:.4f}")

    return {"gd_loss": h1["loss"][-1], "gd_w": float(m1.w[...]), "gd_b": float(m1.b[...]),
            "adam_loss": h2["loss"][-1], "adam_w": float(m2.w[...]), "adam_b": float(m2.b[...]),
            "linear_w": float(lin.kernel[0, 0]), "linear_b": float(lin.bias[0]),
            "linear_train_loss": h3["loss"][-1], "linear_val_loss": h3["val_loss"][-1],
            "mlp_train_loss": h4["loss"][-1], "mlp_val_loss": h4["val_loss"][-1]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
