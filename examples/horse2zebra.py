"""A horse turned into a zebra by CycleGAN's generator, Stevens, Antiga & Viehmann, Deep Learning with PyTorch, ch. 2.

Recipe (section 2.2.3, A network that turns horses into zebras): `netG = ResNetGenerator()` (reflection
padding, instance norm, two stride-2 downsamplings, nine residual blocks, two transposed-conv
upsamplings with output_padding=1, tanh; `dlcore.models.gan.cyclegan_generator`), the published
horse2zebra weights loaded (`horse2zebra_0.4.0.pth`), eval mode; the photo is resized so that its
shorter side is 256 (`transforms.Resize(256)`) and turned into a [0, 1] tensor (`ToTensor`); the
generator's output, `(out + 1) / 2`, is the zebra picture (the book's figure 2.8, 316x256 pixels from its
horse photo). The book prints no figure beyond the image's size.

dlcore: the weights file is read with `dlcore.weights.load` (torch's state-dict names, converted to
NHWC) when it is in `$DLCORE_WEIGHTS` or `~/.cache/dlcore/weights`; the book's horse photo is not in
dlcore, so the first scikit-learn sample photo (the temple, 427x640 -> 256x383) stands in. Offline,
without the weights, the generator keeps its random initial weights and the run says so: the picture
is then a random filter of the photo, not a zebra (256x383 in, 384x256 out, W x H, in 5 s on a CPU).
Under --quick the shorter side is 64.

Run: `dlcore run horse2zebra` or `python examples/horse2zebra.py`.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from dlcore import models, weights
from dlcore.data import transforms as T
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="horse2zebra",
    title="CycleGAN's ResNet generator: a photo through the horse-to-zebra network",
    book="Stevens, Antiga & Viehmann, Deep Learning with PyTorch",
    section="ch. 2, Pretrained networks, 2.2.3 A network that turns horses into zebras",
    source="ResNetGenerator, horse2zebra_0.4.0.pth, Resize(256) + ToTensor, (out + 1) / 2 (figure 2.8)",
    data="",
    standin="sample_photos",
    book_figures={},
)

WEIGHTS_FILE = "horse2zebra_0.4.0.pth"
SIZE = 256


def run(ctx: Context) -> dict[str, float]:
    photo = ctx.load()["train"]["x"][0:1]                     # (1, 427, 640, 3) in [0, 1]
    size = 64 if ctx.quick else SIZE
    net_g = models.create("cyclegan_generator", seed=ctx.seed)  # netG = ResNetGenerator()
    path = weights.find_file(WEIGHTS_FILE)
    if path is not None:
        weights.load(net_g, path)                            # netG.load_state_dict(torch.load(model_path))
        ctx.print(f"weights: {path}")
    else:
        ctx.print(f"weights: random ({WEIGHTS_FILE} not found in $DLCORE_WEIGHTS or ~/.cache/dlcore/weights; "
                  f"the output is a random filter of the photo, not a zebra)")
    net_g.eval()
    batch_t = T.resize(photo, size)                            # Resize(256) + ToTensor, NHWC: (1, 256, 383, 3)
    batch_out = nnx.jit(lambda m, x: m(x))(net_g, batch_t)    # (1, 256, 384, 3) in [-1, 1]
    out = np.asarray((batch_out[0] + 1.0) / 2.0)               # out_t = (batch_out.squeeze() + 1) / 2
    h, w = out.shape[:2]
    ctx.print(f"input {batch_t.shape[1]}x{batch_t.shape[2]} (H x W) -> output image of size {w}x{h} (W x H; "
              f"the book's: 316x256 from its horse photo)")

    def draw(plt):
        fig = plt.figure(figsize=(w / 100, h / 100))
        ax = fig.add_axes((0, 0, 1, 1))
        ax.imshow(np.clip(out, 0, 1))
        ax.axis("off")
        return fig

    ctx.save_plot("horse2zebra", draw)
    return {"output_height": float(h), "output_width": float(w), "output_mean": float(out.mean()),
            "pretrained": float(path is not None)}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
