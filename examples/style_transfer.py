"""Neural style transfer, Subramanian, Deep Learning with PyTorch, ch. 7, Generative Networks.

Recipe (section Neural style transfer, after Gatys, Ecker & Bethge, "A Neural Algorithm of Artistic Style"
(2015) and Gatys' PyTorch code): the content image and the style image are resized (shorter side 512),
turned to BGR, the mean [0.408, 0.458, 0.485] subtracted and multiplied by 255 (the book's `prep`, made
for the Caffe VGG weights of Gatys' code); the image being optimised starts as the content image. The
losses come from VGG-19's `features`: style layers 1, 6, 11, 20, 25 (MSE between Gram matrices, each
divided by H*W; weights 1e3 / n^2 with n = 64, 128, 256, 512, 512 the layers' channels) and content layer
21 (MSE of the features, weight 1). `optim.LBFGS([opt_img])` (lr 1, 20 iterations per step, no line
search) runs until 500 loss evaluations, printing the loss every 50; the image is post-processed (the
book's `postp`: back to RGB in [0, 1]) and saved. The book prints no loss values, only the image.

The layer indices, mapped to dlcore's `vgg19` (whose `features` are numbered as torchvision's: conv at 0,
2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, ..., ReLU right after each, max pools at 4, 9, 18, 27, 36): 1, 6,
11 and 20 are ReLUs (relu1_1, relu2_1, relu3_1, relu4_1) and are read as they are. 21 and 25 are convs
(conv4_2, conv4_4): the book registers its forward hook on them, but torchvision's next layer is
`ReLU(inplace=True)`, which overwrites the hooked tensor in place before the loss reads it, so the book's
losses see relu4_2 and relu4_4; dlcore reads the outputs of layers 22 and 26, the same numbers. An index
outside VGG-19's 37 feature layers is a one-line error.

dlcore: `dlcore.losses.gram_matrix`, `style_loss`, `content_loss`; `dlcore.optim.LBFGS` with PyTorch's
iteration, stepped on the image's pixels (one jitted loss-and-gradient per evaluation). VGG-19's ImageNet
weights (torchvision's `vgg19-dcbb9e9d.pth`) are loaded with `dlcore.weights` when the file is in
`$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights`; offline they are not, and the run says so and uses random
weights (He init; the losses still fall, the picture is no painting). Images: the book's photos are not
in dlcore; the two scikit-learn sample photos stand in (the temple as content, the flower as style), at
a shorter side of 512 on an accelerator and 256 on a CPU (the book: "if you are running on a CPU, try
reducing the size of the image"); under --quick 48 pixels and 60 evaluations. Measured offline (random
weights, 256x383, 520 evaluations as the book's loop makes them: 469 s on two busy CPU cores): the total
loss falls from 27,840 (all style: the image starts as the content image) to 7.27 (style 1.30, content
5.97), 3,829x; the temple keeps its shapes in the flower's orange and teal. Under --quick: 25,523 to 7.57.

Run: `dlcore run style_transfer` or `python examples/style_transfer.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dlcore import losses, optim, weights
from dlcore.data import transforms as T
from dlcore.models import vgg
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="style_transfer",
    title="Neural style transfer: VGG-19 Gram-matrix style and feature content losses, L-BFGS on the pixels",
    book="Subramanian, Deep Learning with PyTorch",
    section="ch. 7, Generative Networks, Neural style transfer",
    source="Loading the data, Content loss, Style loss, Extracting the losses, Creating the optimizer, Training",
    data="",
    standin="sample_photos",
    book_figures={},
)

STYLE_LAYERS, CONTENT_LAYERS = (1, 6, 11, 20, 25), (21,)
CONTENT_WEIGHT, MAX_ITER, SHOW_ITER = 1.0, 500, 50
MEAN_BGR = np.array([0.40760392, 0.45795686, 0.48501961], np.float32)
VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG-19


def _kinds(cfg=vgg.CFGS["vgg19"]) -> list[str]:
    """What each layer of vgg19.features is: "conv", "relu" or "pool" (37 layers)."""
    kinds = []
    for v in cfg:
        kinds += ["pool"] if v == "M" else ["conv", "relu"]
    return kinds


def feature_layers(indices) -> list[int]:
    """The book's indices into vgg19.features -> the dlcore layers whose outputs hold the same numbers.

    A conv's output is read after the ReLU that follows it (torch's in-place ReLU overwrote the hooked
    tensor; see the module docstring). Raises ValueError for an index outside the features.
    """
    kinds = _kinds()
    out = []
    for i in indices:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < len(kinds):
            raise ValueError(f"layer index {i!r} is outside VGG-19's features (layers 0 to {len(kinds) - 1})")
        out.append(i + 1 if kinds[i] == "conv" else i)
    return out


def prep(images: np.ndarray, size: int) -> jax.Array:
    """RGB (N, H, W, 3) in [0, 1] -> the book's VGG input: shorter side `size`, BGR, mean removed, x255."""
    x = T.resize(images, size)
    return (x[..., ::-1] - MEAN_BGR) * 255.0


def postp(x: jax.Array) -> np.ndarray:
    """The book's postpa + postpb: /255, mean added back, BGR -> RGB, clipped to [0, 1]."""
    return np.clip(np.asarray(x / 255.0 + MEAN_BGR)[..., ::-1], 0.0, 1.0)


def make_loss(features, style_at, content_at, style_targets, content_targets, style_weights):
    """The book's closure body as a pure function: image (1, H, W, 3) -> (total, (style losses, content losses))."""
    last = max(style_at + content_at)

    def loss(img):
        outs, x = {}, img
        for i in range(last + 1):
            x = features[i](x)
            outs[i] = x
        style = jnp.stack([jnp.mean(losses.style_loss(outs[i], g)) for i, g in zip(style_at, style_targets)])
        content = jnp.stack([jnp.mean(losses.content_loss(outs[i], t)) for i, t in zip(content_at, content_targets)])
        total = jnp.sum(jnp.asarray(style_weights) * style) + CONTENT_WEIGHT * jnp.sum(content)
        return total, (style, content)

    return loss


def run(ctx: Context) -> dict[str, float]:
    style_at, content_at = feature_layers(STYLE_LAYERS), feature_layers(CONTENT_LAYERS)  # bad indices: now
    photos = ctx.load()["train"]["x"]                          # (2, 427, 640, 3) in [0, 1]: temple, flower
    quick = ctx.quick
    size = 48 if quick else (256 if jax.default_backend() == "cpu" else 512)
    max_iter = 60 if quick else MAX_ITER
    path = weights.find_file(VGG19_FILE)
    if path is not None:
        model = weights.load(vgg.vgg19(rngs=nnx.Rngs(ctx.seed)), path)
        ctx.print(f"VGG-19: ImageNet weights from {path}")
    else:  # only features 0-26 are read: random weights for those alone (the same layer numbering)
        cfg = vgg.CFGS["vgg19"][:15]                           # up to conv4_4 / relu4_4 (layers 0-26)
        model = vgg.VGG(cfg, hidden=8, num_classes=8, rngs=nnx.Rngs(ctx.seed))
        ctx.print(f"VGG-19: random weights ({VGG19_FILE} not found in $DLCORE_WEIGHTS or ~/.cache/dlcore/weights; "
                  f"offline, the losses fall but the image is no painting)")
    model.eval()
    features = model.features
    content_img, style_img = prep(photos[0:1], size), prep(photos[1:2], size)   # (1, h, w, 3)
    ctx.print(f"content {content_img.shape[1]}x{content_img.shape[2]}, style {style_img.shape[1]}x"
              f"{style_img.shape[2]}; style layers {list(STYLE_LAYERS)} -> dlcore {style_at}, content "
              f"{list(CONTENT_LAYERS)} -> dlcore {content_at}")

    @jax.jit
    def targets(style_img, content_img):                       # the book's extract_layers on S and C, detached
        outs, x = {}, style_img
        for i in range(max(style_at) + 1):
            x = features[i](x)
            outs[i] = x
        grams = [losses.gram_matrix(outs[i]) for i in style_at]
        x = content_img
        for i in range(max(content_at) + 1):
            x = features[i](x)
            outs[i] = x
        return grams, [outs[i] for i in content_at]

    style_targets, content_targets = targets(style_img, content_img)
    channels = [int(g.shape[-1]) for g in style_targets]
    style_weights = [1e3 / n ** 2 for n in channels]             # 1e3 / n^2, n = 64, 128, 256, 512, 512
    loss = make_loss(features, style_at, content_at, style_targets, content_targets, style_weights)
    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))

    n_iter, history = [0], []

    def closure(img):                                          # the book's closure: one evaluation
        (total, (style, content)), grad = value_and_grad(img)
        n_iter[0] += 1
        history.append(float(total))
        if n_iter[0] % SHOW_ITER == 0 or n_iter[0] == 1:
            weighted = float(jnp.sum(jnp.asarray(style_weights) * style))
            ctx.print(f"Iteration: {n_iter[0]}, loss: {float(total):.6g} (style {weighted:.6g}, "
                      f"content {float(CONTENT_WEIGHT * jnp.sum(content)):.6g})")
        return total, grad

    opt = optim.LBFGS()                                        # optim.LBFGS([opt_img]): lr 1, max_iter 20
    img = content_img                                          # opt_img = content_img.clone()
    while n_iter[0] <= max_iter:
        img, _ = opt.step(None, img, value_and_grad=closure)
    (total, (style, content)), _ = value_and_grad(img)     # the final image scored by the compiled loss
    ctx.print(f"{n_iter[0]} evaluations: loss {history[0]:.6g} -> {float(total):.6g} "
              f"({history[0] / float(total):.1f}x lower)")
    out = postp(img)[0]                                        # (h, w, 3) RGB in [0, 1]

    def draw(plt):
        fig = plt.figure(figsize=(out.shape[1] / 100, out.shape[0] / 100))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(out)
        ax.axis("off")
        return fig

    ctx.save_plot("style_transfer", draw)
    return {"initial_loss": history[0], "final_loss": float(total), "loss_ratio": history[0] / float(total),
            "style_loss": float(jnp.sum(jnp.asarray(style_weights) * style)),
            "content_loss": float(CONTENT_WEIGHT * jnp.sum(content)), "evaluations": float(n_iter[0])}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
