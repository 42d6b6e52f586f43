"""ImageNet inference with pretrained AlexNet and ResNet-101, Antiga et al., Deep Learning with PyTorch, 2nd ed., ch. 2.

Recipe (section 2.1, A pretrained network that recognizes the subject of an image): `models.AlexNet()` (random
weights: "garbage" until trained) and `models.resnet101(weights=ResNet101_Weights.DEFAULT)`, ImageNet's
pretrained weights, "44.5 million parameters"; the photo of Bobby goes through `Resize(256)`, `CenterCrop(224)`,
`ToTensor()` and `Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])`; the model in eval mode
gives 1,000 scores, softmax * 100 gives percentages, the labels file names the classes: ('golden retriever',
96.57) as the top class and the top 5 of `torch.sort`: golden retriever 96.29, Labrador retriever 2.81, cocker
spaniel 0.28, redbone 0.21, tennis ball 0.12 (the book's two cells disagree on the first figure).

dlcore: `models.create("alexnet")`, `models.create("resnet101")`; `weights.pretrained("resnet101", model)`
loads torchvision's `resnet101-63fe2227.pth` (found in `$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights`, or
downloaded with its checksum when the network allows; torchvision's current IMAGENET1K_V1 file, not
necessarily the one the book's figures came from); `data.read_image(photo, resize=256, size=224)` +
`data.imagenet_normalize` is the book's `preprocess`; `data.imagenet_classes()` its labels file (short
names: "cocker spaniel"). The photo is the book's `bobby.jpg` when it is in `$DLCORE_DATA/p1ch2/`
(`~/.cache/dlcore/p1ch2/bobby.jpg`), else scikit-learn's sample photo of a temple. Without the weights
the network keeps its random initialisation and the run says so: the top 5 are then noise, and the book's
96.57% is not reported beside them. The parameter counts are exact either way: ResNet-101 44,549,160
(the book's 44.5M), AlexNet 61,100,840. Under --quick with random weights the photo is cropped to 64
pixels (resize 73) instead of 224, which changes nothing the run reports but the noise.

Run: `dlcore run imagenet_inference` or `python examples/imagenet_inference.py`.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from dlcore import data, models, weights
from dlcore.models.registry import count_params
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="imagenet_inference",
    title="ImageNet inference: pretrained ResNet-101, Resize 256 / CenterCrop 224 / Normalize, top-5 classes",
    book="Antiga et al., Deep Learning with PyTorch, 2nd ed.",
    section="ch. 2, Pretrained networks, 2.1 A pretrained network that recognizes the subject of an image",
    source="sections 2.1.2 to 2.1.5 (In[3] to In[16])",
    data="",
    standin="sample_photos",
    book_figures={"resnet101_params_millions": 44.5, "top1_percent": 96.57},
)

BOOK_PHOTO = "p1ch2/bobby.jpg"   # the book's ../data/p1ch2/bobby.jpg, under dlcore's data cache


def _photo(ctx: Context) -> tuple[np.ndarray | str, str]:
    """The book's photo when present, else the first sample photo (uint8 HWC)."""
    path = data.cache_dir() / BOOK_PHOTO
    if path.is_file() and ctx.data != EXAMPLE.standin:
        ctx.dataset = f"inline: {path} (the book's photo)"
        ctx.print(f"data: {path} (the book's photo)")
        return str(path), "bobby.jpg"
    photos = ctx.load()["train"]["x"]                         # (2, 427, 640, 3) in [0, 1]: temple, flower
    ctx.print(f"({path} not found: the photo is scikit-learn's china.jpg, a temple)")
    return np.round(photos[0] * 255).astype(np.uint8), "china.jpg"


def _with_weights(ctx: Context, name: str, model: nnx.Module) -> bool:
    try:
        weights.pretrained(name, model, progress=ctx.progress)
    except weights.WeightsNotFoundError as e:
        ctx.print(f"{name}: random weights ({e})")
        return False
    ctx.print(f"{name}: ImageNet weights from {weights.find_file(weights.PRETRAINED.get(name).file)}")
    return True


def run(ctx: Context) -> dict[str, float]:
    photo, photo_name = _photo(ctx)
    # In[3]: the AlexNet class, untrained; its size is all the book shows of it (no weights are drawn)
    alexnet_params = count_params(nnx.eval_shape(lambda: models.create("alexnet", seed=ctx.seed)))
    ctx.print(f"AlexNet: {alexnet_params:,} parameters (random weights: garbage until trained)")

    resnet = models.create("resnet101", seed=ctx.seed)       # In[4]
    n_params = count_params(resnet)
    ctx.print(f"ResNet-101: {n_params:,} parameters ({n_params / 1e6:.1f}M; the book: 44.5 million)")
    real = _with_weights(ctx, "resnet101", resnet)
    resize, size = (256, 224) if real or not ctx.quick else (73, 64)

    # In[6]-In[10]: preprocess to a batch of one, NHWC
    img = data.read_image(photo, resize=resize, size=size, dtype="uint8")
    batch = data.imagenet_normalize(img)[None]                # (1, size, size, 3)
    ctx.print(f"preprocess: {photo_name} -> resize {resize}, center crop {size} -> batch {batch.shape} (NHWC)")

    resnet.eval()                                             # In[11]: batch norm on running averages
    graphdef, state = nnx.split(resnet)
    out = np.asarray(jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, batch))   # In[12]: (1, 1000)
    percentage = np.asarray(jax.nn.softmax(out, axis=1)[0]) * 100                      # In[15]
    labels = data.imagenet_classes()
    top5 = np.argsort(-out[0], kind="stable")[:5]                                       # In[16]
    ctx.print(f"top class: {labels[top5[0]]!r} {percentage[top5[0]]:.2f}%   (book: 'golden retriever' 96.57%)")
    for rank, idx in enumerate(top5, 1):
        ctx.print(f"  {rank}. {labels[idx]:<28s} {percentage[idx]:6.2f}%   (index {idx})")
    if not real:
        ctx.print("(random weights: these classes are noise; put resnet101-63fe2227.pth where the line above says "
                  "to see the book's result)")
    metrics = {"resnet101_params": n_params, "resnet101_params_millions": round(n_params / 1e6, 1),
               "alexnet_params": alexnet_params, "top1_index": int(top5[0])}
    if real:
        metrics["top1_percent"] = float(percentage[top5[0]])
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
