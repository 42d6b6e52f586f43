"""The rest of the transfer-learning family: ResNet-18 fine-tuned with StepLR, VGG-16 frozen then tuned and on
features computed once, and a three-backbone ensemble (Subramanian, Deep Learning with PyTorch, ch. 3, 5, 8).

All three chapters classify Dogs vs Cats with torchvision's ImageNet models:

1. ch. 3, Diving Deep into Neural Networks, Building the network architecture and Training the model:
   `resnet18(pretrained=True)`, `fc` replaced by `Linear(512, 2)`, every layer fine-tuned with SGD (lr 0.001,
   momentum 0.9) and `StepLR(step_size=7, gamma=0.1)`, the best epoch kept: "a validation accuracy of 87%".
   Here `transfer.replace_head`, `optim.injectable("sgd", ...)` and `LRScheduler(schedules.step_lr(0.001, 7,
   0.1))`: epoch e trains at 0.001 * 0.1 ** ((e - 1) // 7), PyTorch's rates (epochs 1-7 at 1e-3, 8-14 at 1e-4,
   15 at 1e-5, printed); the best epoch's validation accuracy is reported. The seed's digits are lost: 25
   epochs, batch 32 here (15 epochs, batch 8 under --quick, enough to pass both decays).
2. ch. 5, Deep Learning for Computer Vision, Freezing the layers, Fine-tuning VGG16, Training the VGG16 model,
   Calculating pre-convoluted features: `vgg16(pretrained=True)`, `features` frozen, the last classifier layer
   made two-way, only `vgg.classifier` trained (SGD lr 1e-4, momentum 0.5): 98.45% validation accuracy. Then the
   classifier's dropout changed from 0.5 to 0.2 and training continued on augmented images (RandomHorizontalFlip,
   RandomRotation(0.2): up to 0.2 degrees), "a slight improvement". Last, `vgg.features` run once over the
   images and a fresh classifier trained on the stored maps for many epochs, each in seconds. The seed's digits
   are lost; 9, 2 and 19 epochs here, as the chapter's companion code, batch 32 (64 on the stored maps). (The
   book writes
   `vgg.classifier[6].out_features = 2`, which leaves the 1000-row weight in place; here `classifier.6` is
   replaced by a new `Linear(4096, 2)`.) `transfer.trainable(model, "^classifier\\.")` freezes the rest: the
   frozen convolutions get no update and no optimizer state, which the run checks (their largest change is
   printed: 0).
3. ch. 8, Modern Network Architectures, ResNet, Inception, DenseNet and Model ensembling: ResNet-34,
   Inception-v3 and DenseNet-121 as frozen feature extractors, their features computed once, a linear layer
   trained on each (train/validation 98/97%, 99/97.8%, 99/99%; Adam lr 1e-3, batch 64, 10 epochs here), then
   the book's `EnsembleModel` on all three:
   dropout, one `Linear(d_i, 512)` per backbone summed, dropout, `Linear(512, 2)` (Adam lr 0.01, batch 64, 9
   epochs): 99.6% train / 99.3% validation. A sum of linear maps of the three feature vectors is one linear map
   of their concatenation, so `EnsembleHead` is that: one `Linear(d_1 + d_2 + d_3, 512)` (the same function;
   only the initialisation's scale differs). The book flattens the unpooled maps of 299x299 images (8192,
   131072 and 82944 values); here each backbone's penultimate, globally pooled features (512, 2048, 1024), the
   vector its own classifier reads, so the ensemble reads 3584. Inception-v3 runs without its auxiliary head, as
   the book's (`aux_logits = False`); with the published weights, which hold one, it is built and ignored.

Weights and data: with torchvision's published files on this machine (`dlcore.weights.pretrained(name, model,
download=False)`: `$DLCORE_WEIGHTS` or dlcore's cache) the backbones load them; otherwise they are randomly
initialised and the run says so (the book's figures are then not comparable), and the features computed once
from a random backbone are standardised with the training split's mean and std before a head sees them (their
scale is no use: about 1e6 for Inception-v3, whose batch norms' running statistics were never fitted). Without
the Kaggle images it runs on `photo_patches` (crops of two photos, temple vs flower). Sizes for a CPU: images
at 32x32 (Inception-v3 gets them resized to 75x75, its smallest input), 8 train / 8 validation images and an
ensemble of ResNet-34 and Inception-v3 only under --quick, 256 / 128 and all three in the full run (the stand-in has 90 validation images); with random weights VGG-16's
hidden classifier layers are 512 wide instead of 4096 (its 4096-wide 25088-input layer alone takes seconds a
step on a CPU), with the published weights torchvision's full VGG-16.

Run: `dlcore run transfer_family` or `python examples/transfer_family.py`.
"""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, optim, schedules, transfer
from dlcore.data import imagenet_normalize
from dlcore.data import transforms as T
from dlcore.models.vgg import CFGS, VGG
from dlcore.nn.layers import Identity, Linear, Sequential
from dlcore.runner import Context, Example
from dlcore.train import LRScheduler

EXAMPLE = Example(
    name="transfer_family",
    title="ResNet-18 fine-tuned with StepLR; VGG-16 frozen, tuned, on features computed once; a 3-backbone ensemble",
    book="Subramanian, Deep Learning with PyTorch (Packt, 2018)",
    section=("ch. 3, Diving Deep into Neural Networks, Building the network architecture, Training the model; "
             "ch. 5, Deep Learning for Computer Vision, Classifying dogs and cats using transfer learning; "
             "ch. 8, Modern Network Architectures, ResNet, Inception, DenseNet, Model ensembling"),
    source=("Freezing the layers, Fine-tuning VGG16, Training the VGG16 model, Calculating pre-convoluted "
            "features; Creating an ensembling model"),
    data="cats_vs_dogs",
    standin="photo_patches",
    book_figures={"resnet18_best_val_accuracy": 0.87, "vgg16_frozen_val_accuracy": 0.9845,
                  "resnet34_train_accuracy": 0.98, "resnet34_val_accuracy": 0.97,
                  "inception_v3_train_accuracy": 0.99, "inception_v3_val_accuracy": 0.978,
                  "densenet121_train_accuracy": 0.99, "densenet121_val_accuracy": 0.99,
                  "ensemble_train_accuracy": 0.996, "ensemble_val_accuracy": 0.993},
)

# the epochs whose StepLR rate the run reports: either side of each of the first two decays
LR_EPOCHS = (1, 7, 8, 14, 15)
# where each backbone's classifier sits (replaced by an identity to read the penultimate features)
HEADS = {"resnet18": "fc", "resnet34": "fc", "inception_v3": "fc", "densenet121": "classifier"}


class EnsembleHead(nnx.Module):
    """The book's `EnsembleModel` on the concatenated features of several backbones.

    Subramanian, Deep Learning with PyTorch, ch. 8, Creating an ensembling model: dropout on each backbone's
    features, a `Linear(d_i, hidden)` on each, the outputs summed, dropout, `Linear(hidden, num_classes)`. The
    sum of the per-backbone linear maps is one linear map of the concatenated features, so this holds one
    `Linear(sum(widths), hidden)`.

    Args:
        widths: the feature width of each backbone, in the order they are concatenated.
        num_classes: outputs.
        hidden: width of the summed layer (512 in the book).
        dropout: rate of both dropout layers (F.dropout's default, 0.5, in the book).
        rngs: NNX random streams (params, dropout).

    Shapes: (N, sum(widths)) -> (N, num_classes).
    """

    def __init__(self, widths, num_classes: int, hidden: int = 512, dropout: float = 0.5, *, rngs: nnx.Rngs):
        self.widths = tuple(int(w) for w in widths)
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"EnsembleHead: widths must be positive feature widths, got {widths!r}")
        self.in_features = sum(self.widths)
        self.drop_in = nnx.Dropout(dropout, rngs=rngs)
        self.fc = Linear(self.in_features, hidden, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = Linear(hidden, num_classes, rngs=rngs)

    def __call__(self, x):
        if x.shape[-1] != self.in_features:
            parts = " + ".join(map(str, self.widths))
            raise ValueError(f"EnsembleHead expects {self.in_features} features per row ({parts}), got shape "
                             f"{tuple(x.shape)}")
        return self.out(self.drop(self.fc(self.drop_in(x))))       # (N, sum(widths)) -> (N, 512) -> (N, C)


def _split(split: dict, n: int) -> dict:
    """The first `n` images, ImageNet-normalised as torchvision's pretrained models expect."""
    return {"x": imagenet_normalize(split["x"][:n]), "y": np.asarray(split["y"][:n]).astype(np.int32)}


def _published(ctx: Context, name: str) -> bool:
    """Whether torchvision's published weights for `name` are on this machine (nothing is downloaded); says so."""
    try:
        dlcore.weights.pretrained(name, download=False)
    except dlcore.weights.WeightsNotFoundError as e:
        ctx.print(f"{name}: random initialisation, so the book's figures are not comparable "
                  f"({str(e).split(': ', 1)[-1]})")
        return False
    ctx.print(f"{name}: torchvision's ImageNet weights")
    return True


def _backbone(ctx: Context, name: str, seed: int, **random_only) -> tuple[nnx.Module, bool]:
    """Model `name` with torchvision's ImageNet weights when their file is here, else randomly initialised (and
    built with `random_only` options, which the published file would not fit)."""
    if not _published(ctx, name):
        return dlcore.models.create(name, seed=seed, **random_only), False
    return dlcore.weights.pretrained(name, dlcore.models.create(name, seed=seed), download=False), True


def _trainer(ctx: Context, model, tx, tag: str, hyper: dict, *, batch_size: int, callbacks=()):
    kw = ctx.trainer_kwargs(hyper, tag=tag)
    kw["callbacks"] = [*callbacks, *kw["callbacks"]]
    return dlcore.Trainer(model, tx, losses.cross_entropy, metrics=["accuracy"], batch_size=batch_size, **kw)


def _features(backbone, train: dict, val: dict, *, standardise: bool = False) -> list[dict]:
    """`backbone`'s outputs for both splits, computed once in one pass (one compilation), as two {"x", "y"}.

    With `standardise`, each feature is centred and scaled by the training split's mean and standard deviation:
    randomly initialised backbones give features of no useful scale (about 1e6 for Inception-v3, whose batch norms'
    running statistics were never fitted; about 0.04 for VGG-16), on which the book's learning rates do nothing or
    diverge. Pretrained features are used as they come, as in the book.
    """
    both = {"x": np.concatenate([train["x"], val["x"]]), "y": np.concatenate([train["y"], val["y"]])}
    feats, n = transfer.precompute_features(backbone, both, batch_size=64)["x"], len(train["y"])
    if standardise:
        mean, std = feats[:n].mean(0), feats[:n].std(0)
        feats = (feats - mean) / np.where(std > 0, std, 1.0)
    return [{"x": feats[:n], "y": train["y"]}, {"x": feats[n:], "y": val["y"]}]


def _snapshot(model: nnx.Module, prefix: str) -> dict[str, np.ndarray]:
    return {p: np.array(v) for p, v in optim.named_leaves(model) if p.startswith(prefix)}


def _max_change(before: dict[str, np.ndarray], model: nnx.Module) -> float:
    after = dict(optim.named_leaves(model))
    return max(float(np.max(np.abs(np.asarray(after[p]) - v))) for p, v in before.items())


def resnet18_steplr(ctx: Context, train: dict, val: dict, n_classes: int) -> dict[str, float]:
    """Part 1 (ch. 3): ResNet-18, new `fc`, all layers fine-tuned with SGD and StepLR(7, 0.1)."""
    model, pretrained = _backbone(ctx, "resnet18", ctx.seed)
    transfer.replace_head(model, "fc", Linear(model.num_features, n_classes, rngs=nnx.Rngs(ctx.seed + 1)))
    epochs = ctx.n_epochs(25, quick=max(LR_EPOCHS))
    lr, step_size, gamma = 1e-3, 7, 0.1
    t = _trainer(ctx, model, optim.injectable("sgd", lr=lr, momentum=0.9), "resnet18",
                 dict(lr=lr, momentum=0.9, step_size=step_size, gamma=gamma, pretrained=pretrained),
                 batch_size=8 if ctx.quick else 32,
                 callbacks=[LRScheduler(schedules.step_lr(lr, step_size=step_size, gamma=gamma))])
    h = t.fit(train, epochs=epochs, validation=val, resume=ctx.resume)
    for e in sorted({1, *(e for e in LR_EPOCHS if e <= len(h["lr"])), len(h["lr"])}):
        ctx.print(f"resnet18 epoch {e:2d}: lr {h['lr'][e - 1]:.0e}, train loss {h['loss'][e - 1]:.4f}, "
                  f"val accuracy {h['val_accuracy'][e - 1]:.4f}")
    best = int(np.argmax(h["val_accuracy"]))
    ctx.print(f"resnet18: best val accuracy {h['val_accuracy'][best]:.4f} at epoch {best + 1} (book: 87%)")
    out = {"resnet18_best_val_accuracy": h["val_accuracy"][best], "resnet18_val_accuracy": h["val_accuracy"][-1]}
    out.update({f"resnet18_lr_epoch_{e}": h["lr"][e - 1] for e in LR_EPOCHS if e <= len(h["lr"])})
    return out


def vgg16_frozen(ctx: Context, train: dict, val: dict, n_classes: int) -> dict[str, float]:
    """Part 2 (ch. 5): VGG-16 with frozen features: classifier trained, then dropout 0.2 with augmentation,
    then the classifier on features computed once."""
    if _published(ctx, "vgg16"):
        model = dlcore.weights.pretrained("vgg16", dlcore.models.create("vgg16", seed=ctx.seed), download=False)
    else:  # random weights: a narrower classifier keeps it to seconds
        model = VGG(CFGS["vgg16"], hidden=512, rngs=nnx.Rngs(ctx.seed))
        ctx.print("vgg16: VGG-16's convolutions with 512-wide hidden classifier layers (4096 with the published "
                  "weights); random convolutions give features about 0.04 in size, on which the book's lr 1e-4 "
                  "barely moves the classifier (expect chance accuracy until the precomputed features, which are "
                  "standardised)")
    hidden = model.classifier[6].in_features
    transfer.replace_head(model, "classifier.6", Linear(hidden, n_classes, rngs=nnx.Rngs(ctx.seed + 2)))
    frozen, trained = _snapshot(model, "features."), _snapshot(model, "classifier.")
    lr, momentum, bs = 1e-4, 0.5, 8 if ctx.quick else 32

    def classifier_only():
        return transfer.trainable(model, r"^classifier\.", "sgd", lr=lr, momentum=momentum)

    # (a) features frozen, the classifier trained
    epochs = ctx.n_epochs(9, quick=1)
    t = _trainer(ctx, model, classifier_only(), "vgg16_frozen", dict(lr=lr, momentum=momentum, epochs=epochs),
                 batch_size=bs)
    h = t.fit(train, epochs=epochs, validation=val, resume=ctx.resume)
    out = {"vgg16_frozen_val_accuracy": h["val_accuracy"][-1]}
    ctx.print(f"vgg16 frozen features, classifier trained {epochs} epoch(s): val accuracy {h['val_accuracy'][-1]:.4f} "
              f"(book: 98.45%)")

    # (b) the classifier's dropout 0.5 -> 0.2, trained on flipped and slightly rotated images (a new draw each epoch)
    for layer in model.classifier:
        if isinstance(layer, nnx.Dropout):
            layer.rate = 0.2
    augment = jax.jit(T.compose(partial(T.random_flip, p=0.5), partial(T.random_rotation, degrees=0.2)))
    key = jax.random.PRNGKey(ctx.seed + 3)

    epochs = ctx.n_epochs(2, quick=1)
    t = _trainer(ctx, model, classifier_only(), "vgg16_augmented",
                 dict(lr=lr, momentum=momentum, dropout=0.2, epochs=epochs), batch_size=bs)
    for e in range(epochs):  # a fresh draw of flips and rotations each epoch
        if e and e < t.epoch:  # done before a --resume (the first fit restored them)
            continue
        x = np.asarray(augment(jax.random.fold_in(key, e), train["x"]))
        h = t.fit({"x": x, "y": train["y"]}, epochs=e + 1, validation=val, resume=ctx.resume and e == 0)
    out["vgg16_augmented_val_accuracy"] = h["val_accuracy"][-1]
    out["vgg16_frozen_max_abs_change"] = _max_change(frozen, model)
    out["vgg16_classifier_max_abs_change"] = _max_change(trained, model)
    ctx.print(f"vgg16 dropout 0.2 + augmentation, {epochs} more epoch(s): val accuracy {h['val_accuracy'][-1]:.4f}; "
              f"largest change of the {len(frozen)} frozen feature arrays: {out['vgg16_frozen_max_abs_change']:g} "
              f"(of the {len(trained)} classifier arrays: {out['vgg16_classifier_max_abs_change']:.3g})")

    # (c) `features` (and the pool) run once; a fresh copy of the classifier trained on the stored maps
    backbone = Sequential(model.features, model.avgpool)  # the same (frozen) layers: (N, H, W, 3) -> (N, 7, 7, 512)
    feats = _features(backbone, train, val, standardise=hidden != 4096)
    fresh = dlcore.models.create("vgg16", seed=ctx.seed) if hidden == 4096 else \
        VGG(CFGS["vgg16"], hidden=512, rngs=nnx.Rngs(ctx.seed))
    if hidden == 4096:
        dlcore.weights.pretrained("vgg16", fresh, download=False)
    classifier = transfer.replace_head(fresh.classifier, "6", Linear(hidden, n_classes, rngs=nnx.Rngs(ctx.seed + 4)))
    epochs = ctx.n_epochs(19, quick=2)
    t = _trainer(ctx, classifier, optim.sgd(lr=lr, momentum=momentum), "vgg16_precomputed",
                 dict(lr=lr, momentum=momentum, epochs=epochs), batch_size=64)
    h = t.fit(feats[0], epochs=epochs, validation=feats[1], resume=ctx.resume)
    out["vgg16_precomputed_val_accuracy"] = h["val_accuracy"][-1]
    ctx.print(f"vgg16 features computed once {feats[0]['x'].shape[1:]}, classifier trained {epochs} epoch(s) on them: "
              f"val accuracy {h['val_accuracy'][-1]:.4f}")
    return out


def ensemble(ctx: Context, train: dict, val: dict, n_classes: int) -> dict[str, float]:
    """Part 3 (ch. 8): frozen ResNet-34, Inception-v3 and DenseNet-121 features, a linear layer on each, and the
    ensemble on the three concatenated."""
    names = ["resnet34", "inception_v3", "densenet121"]
    if ctx.quick:  # a smoke run's time is mostly compiling, DenseNet-121's 121 layers the longest
        names.remove("densenet121")
        ctx.print("densenet121: left out under --quick (the ensemble reads two backbones; the full run all three)")
    if "inception_v3" not in dlcore.models.names():
        names.remove("inception_v3")
        ctx.print("inception_v3: skipped (no model of that name in dlcore.models); the ensemble uses two backbones")
    out, feats = {}, {}
    for i, name in enumerate(names):
        # the book turns Inception-v3's auxiliary head off (`aux_logits = False`); its published file holds one
        model, pretrained = _backbone(ctx, name, ctx.seed + 10 + i,
                                      **({"aux_logits": False} if name == "inception_v3" else {}))
        if pretrained and name == "inception_v3":
            model.transform_input = True  # Google's weights expect [-1, 1] inputs, as torchvision converts them
        transfer.replace_head(model, HEADS[name], Identity())
        size = max(train["x"].shape[1], 75 if name == "inception_v3" else 1)  # Inception-v3's smallest input
        splits = [s if s["x"].shape[1] == size else {**s, "x": np.asarray(T.resize(s["x"], (size, size)))}
                  for s in (train, val)]
        feats[name] = _features(model, *splits, standardise=not pretrained)
        width = feats[name][0]["x"].shape[1]
        if not pretrained:
            ctx.print(f"{name}: random weights, so its features are standardised with the training split's mean and "
                      f"std before any head sees them")
        out[f"{name}_feature_width"] = width
        epochs = ctx.n_epochs(10, quick=3)
        head = Linear(width, n_classes, rngs=nnx.Rngs(ctx.seed + 20 + i))
        t = _trainer(ctx, head, optim.adam(lr=1e-3), f"{name}_head", dict(lr=1e-3, epochs=epochs), batch_size=64)
        h = t.fit(feats[name][0], epochs=epochs, validation=feats[name][1], resume=ctx.resume)
        out[f"{name}_train_accuracy"], out[f"{name}_val_accuracy"] = h["accuracy"][-1], h["val_accuracy"][-1]
        ctx.print(f"{name} features {width} at {size}x{size}, linear layer {epochs} epochs: train accuracy "
                  f"{h['accuracy'][-1]:.4f}, val accuracy {h['val_accuracy'][-1]:.4f}")

    both = [{"x": np.concatenate([feats[n][j]["x"] for n in names], axis=1), "y": feats[names[0]][j]["y"]}
            for j in (0, 1)]
    widths = [feats[n][0]["x"].shape[1] for n in names]
    head = EnsembleHead(widths, n_classes, rngs=nnx.Rngs(ctx.seed + 30))
    epochs = ctx.n_epochs(9, quick=3)
    t = _trainer(ctx, head, optim.adam(lr=0.01), "ensemble", dict(lr=0.01, epochs=epochs, widths=widths),
                 batch_size=64)
    h = t.fit(both[0], epochs=epochs, validation=both[1], resume=ctx.resume)
    out.update(ensemble_feature_width=both[0]["x"].shape[1], ensemble_train_accuracy=h["accuracy"][-1],
               ensemble_val_accuracy=h["val_accuracy"][-1])
    ctx.print(f"ensemble of {' + '.join(names)} on {' + '.join(map(str, widths))} = {both[0]['x'].shape[1]} features,"
              f" {epochs} epochs: train accuracy {h['accuracy'][-1]:.4f}, val accuracy {h['val_accuracy'][-1]:.4f} "
              f"(book: 99.6% / 99.3%)")
    return out


def run(ctx: Context) -> dict[str, float]:
    size = 32  # the books' 224 and 299 take hours on a CPU; Inception-v3 gets its smallest input, 75
    splits = ctx.load(image_size=size, standin_options={"image_size": size})
    val_split = splits.get("valid", splits.get("test"))
    n_train, n_val = (8, 8) if ctx.quick else (256, 128)
    train, val = _split(splits["train"], n_train), _split(val_split, n_val)
    n_classes = int(max(train["y"].max(), val["y"].max())) + 1
    ctx.print(f"{len(train['y'])} train / {len(val['y'])} validation images at {size}x{size}, {n_classes} classes")
    if ctx.dataset != EXAMPLE.data:
        ctx.print(f"the book's figures are for pretrained backbones on Dogs vs Cats at 224x224 and 299x299: not "
                  f"comparable with this run on {ctx.dataset}")
    out = resnet18_steplr(ctx, train, val, n_classes)
    out.update(vgg16_frozen(ctx, train, val, n_classes))
    out.update(ensemble(ctx, train, val, n_classes))
    return out


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
