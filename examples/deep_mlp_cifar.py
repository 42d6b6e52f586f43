"""A 20-layer MLP on CIFAR-10: Swish + He init + NAdam, batch norm, SELU, alpha and MC dropout, 1cycle.

Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 11, Exercises, exercise 8: a DNN of
20 hidden layers of 100 neurons, He initialisation and the Swish activation (``nn.SiLU``), trained with
NAdam and early stopping, "searching for the right learning rate each time you change the model"; then

* ``batch_norm``: batch norm before every activation (the linear layers lose their bias);
* ``selu``: SELU with LeCun-normal init on standardised inputs (self-normalising);
* ``alpha_dropout``: the SELU net with alpha dropout (rate 0.1) before the output layer;
* ``mc_dropout``: that trained net, unchanged, predicting with dropout on: the mean of 100
  softmax samples (ch. 11, Monte Carlo Dropout);
* ``one_cycle``: the alpha-dropout net retrained with 1cycle (learning rate up to the finder's rate
  and back down, NAdam's beta1 cycled 0.95 -> 0.85 -> 0.95) for a fixed number of epochs.

Every variant's learning rate comes from ``dlcore.train.lr_find`` (an exponential sweep from 1e-5; a
tenth of the rate at the lowest loss; ch. 9, Hyperparameter Tuning Guidelines, Learning Rate). Early
stopping watches the validation loss (patience 10, best weights restored); the validation set is 20% of
the training split, the accuracy is on the test split. The book prints no figures for this exercise.
Without CIFAR-10 it runs on scikit-learn's 8x8 digits (64 inputs). A plot of the validation losses is
saved when matplotlib is installed.

Run: `dlcore run deep_mlp_cifar` or `python examples/deep_mlp_cifar.py`.
"""

from __future__ import annotations

import math
import time

import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, plot, schedules
from dlcore.nn import activations, init, norm, regularization
from dlcore.nn.layers import Linear
from dlcore.runner import Context, Example
from dlcore.train.lr import lr_find

EXAMPLE = Example(
    name="deep_mlp_cifar",
    title="20x100 Swish MLP with NAdam and early stopping; batch norm, SELU, alpha and MC dropout, 1cycle",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 11, Training Deep Neural Networks, Exercises",
    source="exercise 8 (a-g)",
    data="cifar10",
    standin="digits",
)


class DeepMLP(nnx.Module):
    """``depth`` hidden layers of ``width`` units, then a linear output.

    Swish (SiLU) with He-normal init, or SELU with LeCun-normal init; optional batch norm before each
    activation (linear layers then without bias) and alpha dropout before the output layer.
    Shapes: (N, in_features) -> (N, n_classes) logits.
    """

    def __init__(self, in_features: int, n_classes: int, *, depth: int = 20, width: int = 100,
                 activation: str = "silu", batch_norm: bool = False, alpha_dropout: float = 0.0, rngs: nnx.Rngs):
        kernel_init = init.lecun_normal() if activation == "selu" else init.he_normal()
        sizes = [in_features] + [width] * depth
        self.hidden = nnx.List([Linear(a, b, bias=not batch_norm, kernel_init=kernel_init, bias_init=init.zeros(),
                                       rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.norms = nnx.List([norm.BatchNorm1d(width) for _ in range(depth)]) if batch_norm else nnx.data(None)
        self.activation = activation
        self.dropout = regularization.AlphaDropout(alpha_dropout, rngs=rngs) if alpha_dropout else nnx.data(None)
        self.out = Linear(width, n_classes, rngs=rngs)

    def __call__(self, x):
        act = activations.get(self.activation)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = act(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.out(x)


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(flatten=True, standin_options={"flatten": True})
    x, y = splits["train"]["x"], splits["train"]["y"]
    perm = np.random.default_rng(42).permutation(len(x))
    n_val = len(x) // 5
    raw = {"train": {"x": x[perm[n_val:]], "y": y[perm[n_val:]]}, "val": {"x": x[perm[:n_val]], "y": y[perm[:n_val]]},
           "test": splits["test"]}
    if ctx.quick:
        raw["train"] = {k: v[:256] for k, v in raw["train"].items()}
    mean, std = raw["train"]["x"].mean(axis=0), raw["train"]["x"].std(axis=0) + 1e-6  # for SELU (exercise e)
    standard = {k: {"x": ((s["x"] - mean) / std).astype(np.float32), "y": s["y"]} for k, s in raw.items()}
    n_in, n_classes = raw["train"]["x"].shape[1], int(y.max()) + 1
    max_epochs = ctx.n_epochs(100, quick=1)
    finder_steps = 20 if ctx.quick else 200
    steps_per_epoch = math.ceil(len(raw["train"]["x"]) / 32)

    depth = 4 if ctx.quick else 20  # --quick: a shallower net compiles in a fraction of the time

    def model_for(variant):
        kw = {"base": {}, "batch_norm": {"batch_norm": True}, "selu": {"activation": "selu"},
              "alpha_dropout": {"activation": "selu", "alpha_dropout": 0.1}}[variant]
        return DeepMLP(n_in, n_classes, depth=depth, rngs=nnx.Rngs(ctx.seed), **kw)

    rows, curves, metrics = [], {}, {}

    def fit(name, arch, data, tx, epochs, callbacks, lr):
        model = model_for(arch)
        kwargs = ctx.trainer_kwargs({"variant": name, "lr": lr, "epochs": epochs}, tag=name)
        kwargs["callbacks"] = kwargs["callbacks"] + callbacks
        trainer = dlcore.Trainer(model, tx, losses.cross_entropy, metrics=["accuracy"], batch_size=32, **kwargs)
        t0 = time.perf_counter()
        history = trainer.fit(data["train"], epochs=epochs, validation=data["val"])
        seconds = time.perf_counter() - t0
        accuracy = trainer.evaluate(data["test"])["accuracy"]
        curves[name] = history["val_loss"]
        rows.append((name, lr, len(history["val_loss"]), min(history["val_loss"]), accuracy, seconds))
        metrics[f"{name}_test_accuracy"] = accuracy
        return model

    lrs, trained = {}, {}
    for variant in ("base", "batch_norm", "selu", "alpha_dropout"):
        data = standard if variant in ("selu", "alpha_dropout") else raw
        if ctx.quick and lrs:  # --quick: one sweep (each compiles a training scan), reused
            lrs[variant] = lrs["base"]
        else:
            lrs[variant] = lr_find(model_for(variant), "nadam", losses.cross_entropy, data["train"], start_lr=1e-5,
                                   end_lr=1.0, steps=finder_steps, batch_size=32, seed=ctx.seed).suggestion
        stop = dlcore.EarlyStopping("val_loss", patience=10, restore_best_weights=True)
        trained[variant] = fit(variant, variant, data, optim.nadam(lrs[variant]), max_epochs, [stop], lrs[variant])

    # MC dropout: the alpha-dropout model as trained, 100 stochastic predictions averaged
    t0 = time.perf_counter()
    probs, _ = regularization.mc_predict(trained["alpha_dropout"], standard["test"]["x"], n_samples=100,
                                         seed=ctx.seed)
    accuracy = float(np.mean(np.argmax(np.asarray(probs), axis=-1) == standard["test"]["y"]))
    rows.append(("mc_dropout", lrs["alpha_dropout"], 0, math.nan, accuracy, time.perf_counter() - t0))
    metrics["mc_dropout_test_accuracy"] = accuracy

    # 1cycle on the alpha-dropout architecture, for as many epochs as early stopping used there
    epochs = len(curves["alpha_dropout"]) if ctx.epochs is None else ctx.epochs
    total = max(4, epochs * steps_per_epoch)  # 1cycle needs a few steps in each phase
    max_lr = lrs["alpha_dropout"]  # the book: the finder's rate as the peak, a tenth of it at the start
    tx = optim.nadam(schedules.one_cycle_lr(max_lr, total, div_factor=10.0),
                     betas=(schedules.one_cycle_momentum(total), 0.999))
    fit("one_cycle", "alpha_dropout", standard, tx, epochs, [], max_lr)

    ctx.print(f"{'variant':<14} {'lr':>9} {'epochs':>6} {'best val loss':>13} {'test accuracy':>13} {'seconds':>8}")
    for name, lr, ep, best, acc, sec in rows:
        trained_here = f"{ep:>6} {best:>13.4f}" if ep else f"{'-':>6} {'-':>13}"
        ctx.print(f"{name:<14} {lr:>9.2e} {trained_here} {acc:>13.4f} {sec:>8.1f}")
    for name, _, ep, *_ in rows:
        if ep:
            metrics[f"{name}_epochs"] = ep

    ctx.save_plot(EXAMPLE.name, lambda plt: plot.learning_curves(
        plt, curves, ylabel="validation loss", title="20x100 MLP variants", log=True))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
