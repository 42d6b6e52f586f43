"""Reusing a pretrained network's layers, Géron, Hands-On ML, ch. 11, Transfer Learning with PyTorch.

Recipe: model A, Flatten -> 3 x (Linear 100, ReLU) -> Linear 8, is trained on the eight classes other
than 0 and 2 (Fashion-MNIST's T-shirt/top and Pullover). Task B is binary (class 2 vs class 0) with
only a handful of labelled images (20 here). `model_B_on_A` is a deep copy of A with a new Linear
100-1 head (`transfer.replace_head`), trained with BCE on logits: first with the reused layers frozen
(`transfer.trainable(model, head)`: they get no update and no optimizer state), then unfrozen at a
lower learning rate. The book reports 71.6% test accuracy for B trained from scratch and 92.5% with
the reused layers (and warns it "tortured the data" to get that gap). It does not print its
optimizer or epochs: dlcore trains A with SGD lr 0.1 momentum 0.9 for 10 epochs (batch 32), and B
full-batch with SGD momentum 0.9: 50 epochs at lr 0.01 (from scratch: 100 epochs), then 50 at 0.001.

Stand-in: without Fashion-MNIST on this machine it uses scikit-learn's real digits at 28x28 (the
same class numbers 0 and 2 form task B); task B's test set is every held-out 0 and 2.

Run: `dlcore run transfer_a_to_b` or `python examples/transfer_a_to_b.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, transfer
from dlcore.nn.layers import Linear
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="transfer_a_to_b",
    title="Transfer learning: reuse model A's layers for a 20-image binary task B",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 11, Training Deep Neural Networks, Reusing Pretrained Layers, Transfer Learning with PyTorch",
    source="Figure 11-5",
    data="fashion_mnist",
    standin="digits",
    book_figures={"model_a_accuracy": 0.92, "b_scratch_accuracy": 0.716, "b_on_a_accuracy": 0.925},
)

B_CLASSES = (0, 2)      # T-shirt/top and Pullover in Fashion-MNIST
N_B_TRAIN = 20
SIZES_A = (784, 100, 100, 100, 8)


def _task_a(split):
    keep = ~np.isin(split["y"], B_CLASSES)
    others = np.array([c for c in range(10) if c not in B_CLASSES])
    remap = np.zeros(10, np.int32)
    remap[others] = np.arange(8)
    return {"x": split["x"][keep], "y": remap[split["y"][keep]]}


def _task_b(split):
    keep = np.isin(split["y"], B_CLASSES)
    return {"x": split["x"][keep], "y": (split["y"][keep] == B_CLASSES[1]).astype(np.float32)}


def _bce(logits, y):
    return losses.binary_cross_entropy_with_logits(logits[:, 0], y)


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(standin_options={"image_size": 28})
    train_a, test_a = _task_a(splits["train"]), _task_a(splits["test"])
    b_all, test_b = _task_b(splits["train"]), _task_b(splits["test"])
    pick = np.random.default_rng(42).permutation(len(b_all["y"]))[:N_B_TRAIN]
    train_b = {k: v[pick] for k, v in b_all.items()}
    if ctx.quick:
        train_a = {k: v[:256] for k, v in train_a.items()}
    ctx.print(f"task A: {len(train_a['y'])} train / {len(test_a['y'])} test images of 8 classes; task B: "
              f"{len(train_b['y'])} train / {len(test_b['y'])} test images of classes {B_CLASSES}")

    # model A on the eight other classes
    epochs_a = ctx.n_epochs(10, quick=1)
    model_a = dlcore.models.create("mlp", sizes=SIZES_A, seed=ctx.seed)
    trainer_a = dlcore.Trainer(model_a, optim.sgd(lr=0.1, momentum=0.9), losses.cross_entropy,
                               metrics=["accuracy"], batch_size=32,
                               **ctx.trainer_kwargs(dict(model="A", optimizer="sgd", lr=0.1, momentum=0.9,
                                                         epochs=epochs_a), tag="model_a"))
    trainer_a.fit(train_a, epochs=epochs_a)
    acc_a = trainer_a.evaluate(test_a)["accuracy"]
    ctx.print(f"model A: test accuracy {acc_a:.4f} on the 8 classes")

    e1, e2 = (1, 1) if ctx.quick else (50, 50)

    # model B from scratch: same architecture, one output
    model_b = dlcore.models.create("mlp", sizes=SIZES_A[:-1] + (1,), seed=ctx.seed + 1)
    trainer_b = dlcore.Trainer(model_b, optim.sgd(lr=0.01, momentum=0.9), _bce, metrics=["accuracy"],
                               batch_size=None,
                               **ctx.trainer_kwargs(dict(model="B", lr=0.01, epochs=e1 + e2), tag="model_b"))
    trainer_b.fit(train_b, epochs=e1 + e2)
    acc_scratch = trainer_b.evaluate(test_b)["accuracy"]
    ctx.print(f"model B from scratch: test accuracy {acc_scratch:.4f}")

    # model B on A: a deep copy of A with a new head; reused layers frozen, then unfrozen at lr/10
    graphdef, state = nnx.split(model_a)
    b_on_a = transfer.replace_head(nnx.merge(graphdef, state, copy=True), "layers.3",
                                   Linear(100, 1, rngs=nnx.Rngs(ctx.seed + 2)))
    frozen = dlcore.Trainer(b_on_a, transfer.trainable(b_on_a, r"^layers\.3\.", "sgd", lr=0.01, momentum=0.9),
                            _bce, metrics=["accuracy"], batch_size=None,
                            **ctx.trainer_kwargs(dict(model="B_on_A", phase="frozen"), tag="b_on_a_frozen"))
    frozen.fit(train_b, epochs=e1)
    acc_frozen = frozen.evaluate(test_b)["accuracy"]
    tuned = dlcore.Trainer(b_on_a, optim.sgd(lr=0.001, momentum=0.9), _bce, metrics=["accuracy"],
                           batch_size=None,
                           **ctx.trainer_kwargs(dict(model="B_on_A", phase="unfrozen"), tag="b_on_a_unfrozen"))
    tuned.fit(train_b, epochs=e2)
    acc_b_on_a = tuned.evaluate(test_b)["accuracy"]
    ctx.print(f"model B on A: test accuracy {acc_frozen:.4f} with the reused layers frozen, "
              f"{acc_b_on_a:.4f} after fine-tuning them")
    return {"model_a_accuracy": acc_a, "b_scratch_accuracy": acc_scratch, "b_on_a_frozen_accuracy": acc_frozen,
            "b_on_a_accuracy": acc_b_on_a}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
