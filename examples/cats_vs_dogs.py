"""Cats vs dogs: a CNN from scratch, then transfer learning on precomputed features, then an ensemble.

Ketkar & Moolayil, Deep Learning with Python, 2nd ed., ch. 6, Implementing a larger CNN in PyTorch
(Listings 6-8 to 6-14): four conv blocks (16-32-64-128, ReLU, max pool) and Linear 25088-128-1
(`cats_dogs_cnn`), BCE, Adam lr 1e-3, batch 32, 10 epochs, images resized to 224: about 85% validation
accuracy (85.42% after epoch 10). Subramanian, Deep Learning with PyTorch (ch. 5, Calculating
pre-convoluted features; ch. 8, Model ensembling): freeze a pretrained backbone, compute its
"pre-convoluted" features once, train only a small head on them, and average several such models'
softmax probabilities (an ensemble: 99.3% there).

dlcore: (1) `cats_dogs_cnn` from scratch with the book's recipe; (2) ResNet-18 and ResNet-34
backbones with their `fc` replaced by an identity (`transfer.replace_head`), features computed once
(`transfer.precompute_features`), a Linear 512-2 head trained on them (Adam lr 1e-3, batch 32,
20 epochs), then put back on its backbone; (3) `transfer.ensemble_predict` over the two transfer
models and the scratch CNN. Offline there are no ImageNet weights, so the backbones are randomly
initialised (load torchvision weights with `dlcore.weights` to reproduce the book's transfer
figures); random convolutional features are still a usable representation on an easy task.

Stand-in and size: without the Kaggle data it runs on `photo_patches` (crops of two photos, temple vs
flower; 420 train / 90 valid images) at 32x32, so the whole run takes a minute on a CPU; with the
real data it uses 1000 training and 500 validation images at 64x64. Figures are not comparable.

Run: `dlcore run cats_vs_dogs` or `python examples/cats_vs_dogs.py`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, transfer
from dlcore.data import transforms
from dlcore.nn.layers import Identity, Linear
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="cats_vs_dogs",
    title="Cats vs dogs: CNN from scratch, precomputed-feature transfer, ensemble",
    book=("Ketkar & Moolayil, Deep Learning with Python, 2nd ed.; Subramanian, "
          "Deep Learning with PyTorch (Packt, 2018)"),
    section=("Ketkar & Moolayil ch. 6, Convolutional Neural Networks, Implementing a larger CNN in PyTorch; "
             "Subramanian ch. 5, Deep Learning for Computer Vision, Calculating pre-convoluted features, "
             "and ch. 8, Modern Network Architectures, Model ensembling"),
    source="Listings 6-8 to 6-14; Creating an ensembling model",
    data="cats_vs_dogs",
    standin="photo_patches",
    book_figures={"scratch_val_accuracy": 0.8542, "ensemble_val_accuracy": 0.993},
)

MEAN, STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def _prep(split: dict, n: int) -> dict:
    x = np.asarray(split["x"][:n])
    x = np.asarray(transforms.to_float(x)) if x.dtype == np.uint8 else x.astype(np.float32)
    return {"x": (x - MEAN) / STD, "y": np.asarray(split["y"][:n]).astype(np.int32)}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(image_size=64, standin_options={"image_size": 32})
    val_split = splits.get("valid", splits.get("test"))
    n_train, n_val = (64, 32) if ctx.quick else (1000, 500)
    train, val = _prep(splits["train"], n_train), _prep(val_split, n_val)
    size = train["x"].shape[1]
    ctx.print(f"{len(train['y'])} train / {len(val['y'])} validation images at {size}x{size}")

    # (1) the book's CNN from scratch, one logit and BCE
    epochs = ctx.n_epochs(10, quick=1)
    bce = lambda z, y: losses.binary_cross_entropy_with_logits(z[:, 0], y.astype(jnp.float32))  # noqa: E731
    scratch = dlcore.models.create("cats_dogs_cnn", image_size=size, seed=ctx.seed)
    t = dlcore.Trainer(scratch, optim.adam(lr=1e-3), bce, metrics=["accuracy"], batch_size=32,
                       **ctx.trainer_kwargs(dict(model="cats_dogs_cnn", lr=1e-3, epochs=epochs), tag="scratch"))
    h = t.fit(train, epochs=epochs, validation=val)
    ctx.print(f"from scratch: val accuracy {h['val_accuracy'][-1]:.4f} after {epochs} epochs")
    out = {"scratch_val_accuracy": h["val_accuracy"][-1]}

    # (2) frozen backbones: features once, a head trained on them, the head put back
    head_epochs = ctx.n_epochs(20, quick=1)
    members = []
    names = ("resnet18",) if ctx.quick else ("resnet18", "resnet34")  # quick: one backbone
    for i, name in enumerate(names):
        backbone = transfer.replace_head(dlcore.models.create(name, seed=ctx.seed + i), "fc", Identity())
        feats_train = transfer.precompute_features(backbone, train, batch_size=64)
        feats_val = transfer.precompute_features(backbone, val, batch_size=64)
        head = Linear(feats_train["x"].shape[1], 2, rngs=nnx.Rngs(ctx.seed + 10 + i))
        th = dlcore.Trainer(head, optim.adam(lr=1e-3), losses.cross_entropy, metrics=["accuracy"],
                            batch_size=32, **ctx.trainer_kwargs(dict(epochs=head_epochs), tag=f"{name}_head"))
        hh = th.fit(feats_train, epochs=head_epochs, validation=feats_val)
        ctx.print(f"{name} features {feats_train['x'].shape[1:]}, head val accuracy {hh['val_accuracy'][-1]:.4f}")
        out[f"{name}_val_accuracy"] = hh["val_accuracy"][-1]
        members.append(transfer.replace_head(backbone, "fc", head))

    # (3) the ensemble: mean softmax probabilities; the scratch CNN's logit z as two-class logits [0, z]
    eval_scratch = nnx.merge(*nnx.split(scratch), copy=True)
    eval_scratch.eval()
    members.append(lambda x: jnp.concatenate([jnp.zeros_like(z := eval_scratch(x)), z], axis=-1))
    probs = transfer.ensemble_predict(members, val["x"], batch_size=64)
    out["ensemble_val_accuracy"] = float((probs.argmax(-1) == val["y"]).mean())
    ctx.print(f"ensemble of {len(members)} models: val accuracy {out['ensemble_val_accuracy']:.4f}")
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
