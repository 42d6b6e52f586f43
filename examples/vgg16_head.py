"""VGG-16 with a new binary head, the rest frozen, Ketkar & Moolayil, Deep Learning with Python, 2nd ed., ch. 6.

Recipe (Transfer learning, Listings 6-15 to 6-17): `models.vgg16(pretrained=True)`, every parameter frozen
(`requires_grad = False`), then `classifier[6]` (Linear 4096-1000) replaced by `Sequential(Linear(4096, 256),
ReLU(), Dropout(0.4), Linear(256, 1), Sigmoid())`; the book prints "135,309,633 total parameters" and
"1,049,089 training parameters", then trains for 10 epochs with `BCELoss` and Adam (lr 0.001) on dogs vs cats
(batches of 32, 625 batches an epoch, 5,000 validation images): 98.66% validation accuracy after the first
epoch, 98.60% after the tenth.

dlcore: `models.create("vgg16")` (torchvision's `vgg16-397923af.pth` loaded by `weights.pretrained` when it is in
`$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights` or can be downloaded), `transfer.replace_head(model,
"classifier.6", ...)` and `transfer.trainable(..., r"^6\\.", "adam", lr=1e-3)`: every parameter but the new
head's gets a zero update and no Adam state; the counts are those of the book, exactly, with or without the
weights. The Sigmoid + BCELoss pair is one `binary_cross_entropy_with_logits` (the same loss, stable for large
logits; a Sigmoid has no parameters, so the counts are unchanged). The frozen convolutional part gives the same
features every epoch and has no dropout, so it runs once over the images (`transfer.precompute_features`, as
Subramanian, Deep Learning with PyTorch, ch. 5, Calculating pre-convoluted features, does) and the classifier,
frozen layers, dropout and all, trains on its (7, 7, 512) maps: the book's computation, without 10 passes of
the convolutions. A last forward pass of the whole model on the validation images checks that the trained head
sits in VGG-16 and gives the same accuracy.

Data: dogs vs cats (`cats_vs_dogs`) at 64x64 when it is here, else `photo_patches` (temple vs flower crops
of scikit-learn's photos, 420 train / 90 valid) at 32x32; ImageNet's normalisation. Under --quick: 32 train /
32 validation images, one epoch. Without the ImageNet weights the backbone is random and the accuracy says
little; the parameter counts are the figures to compare. Measured offline (random backbone, photo_patches,
10 epochs, 132 s on two busy CPU cores): validation accuracy 94.4% after the tenth epoch (it wanders between
51% and 97% on the way: 90 validation crops), the whole network in eval mode the same 94.4%.

Run: `dlcore run vgg16_head` or `python examples/vgg16_head.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import dlcore
from dlcore import data, losses, models, optim, transfer, weights
from dlcore.models.registry import count_params
from dlcore.nn.layers import Activation, Linear, Sequential
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="vgg16_head",
    title="VGG-16 transfer learning: classifier[6] replaced by 4096-256-ReLU-Dropout(0.4)-1, the rest frozen",
    book="Ketkar & Moolayil, Deep Learning with Python, 2nd ed.",
    section="ch. 6, Convolutional Neural Networks, Transfer Learning",
    source="Listings 6-15, 6-16 and 6-17",
    data="cats_vs_dogs",
    standin="photo_patches",
    book_figures={"total_params": 135_309_633, "trainable_params": 1_049_089, "val_accuracy": 0.986},
)

HEAD = r"^classifier\.6\."


def new_head(rngs: nnx.Rngs) -> Sequential:
    """Listing 6-16's head without its Sigmoid (folded into the loss): 4096-256, ReLU, Dropout(0.4), 256-1."""
    return Sequential(Linear(4096, 256, rngs=rngs), Activation("relu"), nnx.Dropout(0.4, rngs=rngs),
                      Linear(256, 1, rngs=rngs))


def _prep(split: dict, n: int | None) -> dict:
    x = np.asarray(split["x"][:n], np.float32)
    return {"x": data.imagenet_normalize(x), "y": np.asarray(split["y"][:n], np.int32)}


def run(ctx: Context) -> dict[str, float]:
    splits = ctx.load(image_size=64, standin_options={"image_size": 32})
    n_train, n_val = (32, 32) if ctx.quick else (None, None)
    train, val = _prep(splits["train"], n_train), _prep(splits.get("valid", splits.get("test")), n_val)
    size = train["x"].shape[1]
    ctx.print(f"{len(train['y'])} train / {len(val['y'])} validation images at {size}x{size}")

    model = models.create("vgg16", seed=ctx.seed)            # Listing 6-15
    try:
        weights.pretrained("vgg16", model, progress=ctx.progress)
        ctx.print("VGG-16: ImageNet weights (vgg16-397923af.pth)")
    except weights.WeightsNotFoundError as e:
        ctx.print(f"VGG-16: random weights ({e})")
    transfer.replace_head(model, "classifier.6", new_head(nnx.Rngs(ctx.seed + 1)))       # Listing 6-16
    total = count_params(model)
    trainable = sum(int(np.prod(v.shape)) for p, v in optim.named_leaves(model)
                    if p in set(transfer.frozen_paths(model, HEAD)))
    ctx.print(f"{total:,} total parameters.")
    ctx.print(f"{trainable:,} training parameters.")

    # the frozen convolutions once: (N, H, W, 3) -> (N, 7, 7, 512) -> (N, 25088), NHWC order as classifier.0 reads
    graphdef, state = nnx.split(model)
    run_conv = jax.jit(lambda s, x: (lambda m: m.avgpool(m.features(x)))(nnx.merge(graphdef, s)))
    conv = lambda x: run_conv(state, x)                      # noqa: E731  (the weights as an argument, not constants)
    feats_train = transfer.precompute_features(conv, train, batch_size=32)   # one batch shape, one compilation
    feats_val = transfer.precompute_features(conv, val, batch_size=32)
    ctx.print(f"features computed once: {feats_train['x'].shape[1]} per image")

    epochs = ctx.n_epochs(10, quick=1)                       # Listing 6-17
    bce = lambda z, y: losses.binary_cross_entropy_with_logits(z[:, 0], y.astype(jnp.float32))  # noqa: E731
    tx = transfer.trainable(model.classifier, r"^6\.", "adam", lr=1e-3)
    trainer = dlcore.Trainer(model.classifier, tx, bce, metrics=["accuracy"], batch_size=32,
                             **ctx.trainer_kwargs(dict(lr=1e-3, epochs=epochs, batch_size=32)))
    h = trainer.fit(feats_train, epochs=epochs, validation=feats_val, resume=ctx.resume)
    for e in range(len(h["loss"])):
        ctx.print(f"Epoch [{e + 1}/{epochs}], Loss: {h['loss'][e]:.4f}  Val Accuracy: {h['val_accuracy'][e]:.2%}")

    # the whole network, new head in place, in eval mode: the same predictions as the head on the features
    model.eval()
    graphdef, state = nnx.split(model)
    logits = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, val["x"]))
    end_to_end = float(np.mean((logits[:, 0] > 0) == (val["y"] == 1)))
    ctx.print(f"VGG-16 with the new head, end to end: val accuracy {end_to_end:.2%}")
    return {"total_params": total, "trainable_params": trainable, "val_accuracy": h["val_accuracy"][-1],
            "end_to_end_val_accuracy": end_to_end}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
