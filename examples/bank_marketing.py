"""Regularising a tabular classifier: none, L1, L2, dropout, all three (Ketkar & Moolayil, ch. 5).

The book's recipe (ch. 5, A Practical Implementation in PyTorch, Listings 5-1 to 5-15): the bank
marketing data (48 one-hot and numeric columns, unscaled, 80/20 split), a 48-96-192-384-1 ReLU MLP with
a sigmoid output and BCE, Adam lr 1e-3, batches of 128 in order, 500 epochs; five runs:

* no regularisation;
* L1: ``loss + 1e-4 * sum(|p|)`` over every parameter (dlcore: ``optim.add_l1(1e-4, where=".*")``
  chained before Adam: the same gradient, the penalty left out of the printed loss);
* L2: Adam's ``weight_decay=1e-3`` (coupled, as PyTorch's Adam);
* dropout 0.1 on the input and after every hidden layer;
* all three.

It reports accuracy, precision, recall (threshold 0.5 on the probability) and ROC-AUC on the training
and validation sets; the book's validation figures are in the table. Without the bank data it runs on
scikit-learn's breast-cancer set (569 tumours, 30 features, also unscaled), so the figures differ in
value, not in what they show. A plot of the five loss curves is saved when matplotlib is installed.

Run: `dlcore run bank_marketing` or `python examples/bank_marketing.py`.
"""

from __future__ import annotations


import jax
import numpy as np
import optax
from flax import nnx

import dlcore
from dlcore import losses, optim, plot
from dlcore.metrics import precision, recall, roc_auc
from dlcore.nn.layers import Linear
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="bank_marketing",
    title="a 48-96-192-384-1 MLP with no regularisation, L1, L2, dropout and all three",
    book="Ketkar & Moolayil, Deep Learning with Python, 2nd ed.",
    section="ch. 5, Training Deep Learning Models, A Practical Implementation in PyTorch",
    source="Listings 5-1 to 5-15 (regularisation: Listings 5-12 to 5-15)",
    data="bank_marketing",
    standin="breast_cancer",
    book_figures={
        "none_val_accuracy": 0.801, "none_val_precision": 0.757, "none_val_recall": 0.827, "none_val_roc_auc": 0.869,
        "l1_val_accuracy": 0.813, "l1_val_precision": 0.732, "l1_val_recall": 0.928, "l1_val_roc_auc": 0.894,
        "l2_val_accuracy": 0.82, "l2_val_precision": 0.77, "l2_val_recall": 0.861, "l2_val_roc_auc": 0.9,
        "dropout_val_accuracy": 0.802, "dropout_val_precision": 0.74, "dropout_val_recall": 0.867,
        "dropout_val_roc_auc": 0.882,
        "all_val_accuracy": 0.807, "all_val_precision": 0.758, "all_val_recall": 0.843, "all_val_roc_auc": 0.884,
    },
)

# variant: (lambda_L1, weight_decay, dropout), the book's listings 5-11 to 5-15
VARIANTS = {"none": (0.0, 0.0, 0.0), "l1": (1e-4, 0.0, 0.0), "l2": (0.0, 1e-3, 0.0), "dropout": (0.0, 0.0, 0.1),
            "all": (1e-4, 1e-3, 0.1)}


class BankNet(nnx.Module):
    """The book's network: in-96-192-384-1 ReLU, dropout on the input and after each hidden layer.

    Shapes: (N, in_features) -> (N, 1) logits (the book's sigmoid is folded into the loss).
    """

    def __init__(self, in_features: int, dropout: float, *, rngs: nnx.Rngs):
        sizes = (in_features, 96, 192, 384)
        self.hidden = nnx.List([Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = Linear(384, 1, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, x):
        x = self.drop(x)
        for layer in self.hidden:
            x = self.drop(jax.nn.relu(layer(x)))
        return self.out(x)


def _scores(trainer, split) -> dict[str, float]:
    logits = trainer.predict(split["x"])[:, 0]
    y = split["y"]
    return {"accuracy": float(np.mean((logits > 0) == (y > 0.5))),
            "precision": float(precision(logits, y)),
            "recall": float(recall(logits, y)),
            "roc_auc": roc_auc(logits, y)}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load()
    train = {"x": splits["train"]["x"], "y": splits["train"]["y"].astype(np.float32)}
    val = {"x": splits["test"]["x"], "y": splits["test"]["y"].astype(np.float32)}
    if ctx.quick:
        train = {k: v[:256] for k, v in train.items()}
    epochs = ctx.n_epochs(500, quick=2)
    fit_train = {"x": train["x"], "y": train["y"][:, None]}

    metrics, curves = {}, {}
    header = f"{'variant':<8} {'set':<6} {'accuracy':>9} {'precision':>9} {'recall':>7} {'roc_auc':>8}"
    rows = []
    for name, (l1, wd, dropout) in VARIANTS.items():
        model = BankNet(train["x"].shape[1], dropout, rngs=nnx.Rngs(ctx.seed))
        tx = optim.adam(1e-3, weight_decay=wd)
        if l1:
            tx = optax.chain(optim.add_l1(l1, where=".*"), tx)  # the book penalises every parameter
        trainer = dlcore.Trainer(model, tx, losses.binary_cross_entropy_with_logits, batch_size=128, shuffle=False,
                                 **ctx.trainer_kwargs({"variant": name, "l1": l1, "weight_decay": wd,
                                                       "dropout": dropout, "epochs": epochs}, tag=name))
        curves[name] = trainer.fit(fit_train, epochs=epochs)["loss"]
        for set_name, split in (("train", train), ("val", val)):
            s = _scores(trainer, split)
            rows.append(f"{name:<8} {set_name:<6} {s['accuracy']:>9.3f} {s['precision']:>9.3f} {s['recall']:>7.3f} "
                        f"{s['roc_auc']:>8.3f}")
            if set_name == "val":
                metrics.update({f"{name}_val_{k}": v for k, v in s.items()})
    ctx.print(header)
    for row in rows:
        ctx.print(row)

    ctx.save_plot(EXAMPLE.name, lambda plt: plot.learning_curves(
        plt, curves, ylabel="training loss (BCE)", title="Loss across epochs", log=True))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
