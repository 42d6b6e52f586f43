"""Generative image models: the DCGAN generator and discriminator, and CycleGAN's ResNet generator, NHWC.

- `dcgan_generator`: z (N, 100) -> (N, 64, 64, 3); Subramanian, Deep Learning with PyTorch, ch. 7,
  Generative adversarial networks, Deep convolutional GAN, Defining the generator network.
- `dcgan_discriminator`: (N, 64, 64, 3) -> (N,) logits; the same section, Defining the discriminator network.
- `cyclegan_generator`: (N, H, W, 3) -> (N, 4*ceil(H/4), 4*ceil(W/4), 3); Stevens, Antiga & Viehmann, Deep
  Learning with PyTorch, ch. 2, 2.2.3 A network that turns horses into zebras.

Each keeps torch's submodule names (`main.0`, `model.10.conv_block.1`, ...), so `dlcore.weights`
loads the books' state dicts (the published `horse2zebra_0.4.0.pth` into `cyclegan_generator`).
References: Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
GANs" (2015); Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (2017); Johnson, Alahi & Fei-Fei (2016) for the residual generator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.conv import Conv2d, ConvTranspose2d
from dlcore.nn.layers import Activation, Sequential
from dlcore.nn.norm import BatchNorm2d, InstanceNorm2d
from dlcore.nn.padding import ReflectionPad2d

__all__ = ["DCGANDiscriminator", "DCGANGenerator", "ResNetBlock", "ResNetGenerator", "cyclegan_generator",
           "dcgan_discriminator", "dcgan_generator"]


def _bn(num_features: int, key: jax.Array) -> BatchNorm2d:
    """BatchNorm2d with DCGAN's init: weight N(1, 0.02), bias 0 (the book's `weights_init`)."""
    bn = BatchNorm2d(num_features)
    bn.scale[...] = init.normal(0.02, mean=1.0)(key, (num_features,))
    return bn


@register("dcgan_generator")
class DCGANGenerator(nnx.Module):
    """DCGAN's generator: z of `nz` -> a `nc`-channel 64x64 image in [-1, 1] (Subramanian, ch. 7).

    Subramanian, Deep Learning with PyTorch, ch. 7, Generative adversarial networks, Deep convolutional
    GAN, Defining the generator network (after the PyTorch examples' `dcgan`, Radford et al. 2015):
    ConvTranspose2d(nz, 8g, 4, 1, 0) -> BN -> ReLU (4x4), then 8g-4g-2g-g, each ConvTranspose2d(4, 2, 1)
    -> BN -> ReLU (8, 16, 32), then ConvTranspose2d(g, nc, 4, 2, 1) -> tanh (64x64); no biases.
    3,576,704 parameters at the defaults. Initialisation as the book's `weights_init`: conv weights
    N(0, 0.02), batch-norm weights N(1, 0.02) and biases 0.

    Args:
        nz: length of the noise vector z.
        ngf: g, the width of the last hidden layer.
        nc: channels of the image.
        rngs: NNX random streams.

    Shapes: z (N, nz) or (N, 1, 1, nz) (torch's (N, nz, 1, 1) in NHWC) -> (N, 64, 64, nc).
    Submodules: `main.0` ... `main.12`, as the book's `nn.Sequential` (`main.13` is the tanh).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, *, rngs: nnx.Rngs):
        keys = init.InitKeys(rngs)
        w = init.normal(0.02)
        layers, c = [], nz
        for i, out in enumerate((ngf * 8, ngf * 4, ngf * 2, ngf)):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [ConvTranspose2d(c, out, 4, stride, pad, bias=False, kernel_init=w, rngs=keys),
                       _bn(out, keys.params()), Activation("relu")]
            c = out
        layers += [ConvTranspose2d(c, nc, 4, 2, 1, bias=False, kernel_init=w, rngs=keys), Activation("tanh")]
        self.main = Sequential(*layers)
        self.nz, self.nc = nz, nc

    def __call__(self, z: jax.Array) -> jax.Array:
        z = jnp.asarray(z)
        if z.ndim == 2:
            z = z[:, None, None, :]                              # (N, nz) -> (N, 1, 1, nz)
        if z.ndim != 4 or z.shape[1:] != (1, 1, self.nz):
            raise ValueError(f"dcgan_generator expects noise of shape (N, {self.nz}) or (N, 1, 1, {self.nz}), "
                             f"got {tuple(z.shape)}")
        return self.main(z)                                      # (N, 64, 64, nc)


@register("dcgan_discriminator")
class DCGANDiscriminator(nnx.Module):
    """DCGAN's discriminator: a 64x64 image -> one logit per image, real > 0 > fake (Subramanian, ch. 7).

    Subramanian, Deep Learning with PyTorch, ch. 7, Deep convolutional GAN, Defining the discriminator
    network: Conv2d(nc, d, 4, 2, 1) -> LeakyReLU(0.2) (32x32), then d-2d-4d-8d, each Conv2d(4, 2, 1) ->
    BN -> LeakyReLU(0.2) (16, 8, 4), then Conv2d(8d, 1, 4, 1, 0) (1x1); no biases. 2,765,568
    parameters at the defaults; initialised as the generator. The book ends in `nn.Sigmoid()` and
    `nn.BCELoss`; dlcore returns the logit and trains with BCE on logits (`sigmoid(logit)` is the
    book's output, and the loss is the same function, computed without overflow).

    Args:
        nc: channels of the image.
        ndf: d, the width of the first layer.
        rngs: NNX random streams.

    Shapes: (N, 64, 64, nc) -> (N,) logits (the book's `output.view(-1, 1).squeeze(1)`).
    Submodules: `main.0` ... `main.11` as the book's `nn.Sequential` (`main.12` was the sigmoid).
    """

    def __init__(self, nc: int = 3, ndf: int = 64, *, rngs: nnx.Rngs):
        keys = init.InitKeys(rngs)
        w = init.normal(0.02)
        leaky = lambda: Activation("leaky_relu", negative_slope=0.2)  # noqa: E731
        layers = [Conv2d(nc, ndf, 4, 2, 1, bias=False, kernel_init=w, rngs=keys), leaky()]
        c = ndf
        for out in (ndf * 2, ndf * 4, ndf * 8):
            layers += [Conv2d(c, out, 4, 2, 1, bias=False, kernel_init=w, rngs=keys), _bn(out, keys.params()),
                       leaky()]
            c = out
        layers.append(Conv2d(c, 1, 4, 1, 0, bias=False, kernel_init=w, rngs=keys))
        self.main = Sequential(*layers)
        self.nc = nc

    def __call__(self, x: jax.Array) -> jax.Array:
        check_image(x, channels=self.nc, min_size=64, model="dcgan_discriminator")
        if x.shape[1:3] != (64, 64):
            raise ValueError(f"dcgan_discriminator expects 64x64 images (its last conv sees a 4x4 map), got "
                             f"{x.shape[1]}x{x.shape[2]}: resize them to 64x64")
        return self.main(x).reshape(-1)                          # (N, 1, 1, 1) -> (N,)


dcgan_generator = DCGANGenerator
dcgan_discriminator = DCGANDiscriminator


# --------------------------------------------------------------------------------------------------
# CycleGAN's ResNet generator (Stevens, Antiga & Viehmann, ch. 2, 2.2.3)
# --------------------------------------------------------------------------------------------------


class ResNetBlock(nnx.Module):
    """x + [reflect-pad 1, conv 3x3, instance norm, ReLU, reflect-pad 1, conv 3x3, instance norm](x).

    Args:
        dim: channels in and out.
        rngs: NNX random streams.

    Shapes: (N, H, W, dim) -> (N, H, W, dim), H, W >= 2 (reflection padding needs 2 pixels).
    Submodules: `conv_block.0` ... `conv_block.6`, torch's names (convs at 1 and 5).
    """

    def __init__(self, dim: int, *, rngs):
        self.conv_block = Sequential(
            ReflectionPad2d(1), Conv2d(dim, dim, 3, rngs=rngs), InstanceNorm2d(dim), Activation("relu"),
            ReflectionPad2d(1), Conv2d(dim, dim, 3, rngs=rngs), InstanceNorm2d(dim))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv_block(x)


@register("cyclegan_generator")
class ResNetGenerator(nnx.Module):
    """CycleGAN's ResNet generator (horse2zebra), as Stevens et al., ch. 2, 2.2.3 runs it.

    Stevens, Antiga & Viehmann, Deep Learning with PyTorch, ch. 2, Pretrained models that fake it until
    they make it, 2.2.3 A network that turns horses into zebras (`ResNetGenerator`, notebook
    `3_cyclegan.ipynb`; Zhu et al. 2017): reflect-pad 3, conv 7x7 in-g, instance norm, ReLU; two
    downsamplings conv 3x3 stride 2 (g-2g-4g) with instance norm and ReLU; `n_blocks` residual blocks at
    4g channels; two upsamplings ConvTranspose2d(3, stride 2, padding 1, output_padding=1) (4g-2g-g)
    with instance norm and ReLU; reflect-pad 3, conv 7x7 g-out, tanh. Instance norm has no affine
    weights and no running statistics (torch's defaults), so it normalises each image in train and
    eval mode alike. 11,378,179 parameters at the defaults.

    Args:
        input_nc: channels of the input image.
        output_nc: channels of the output image.
        ngf: g, the width of the first conv.
        n_blocks: residual blocks (9 for 256x256 images).
        rngs: NNX random streams (torch's default init for convs).

    Shapes: (N, H, W, input_nc) in [0, 1] (the book feeds ToTensor's output) -> (N, 4*ceil(H/4), 4*ceil(W/4),
    output_nc) in [-1, 1]; `(y + 1) / 2` is the image. H, W >= 5: the residual blocks' reflection
    padding needs 2 pixels after the two downsamplings.
    Submodules: `model.0` ... `model.27`, torch's names (convs at 1, 4, 7, 26; blocks at 10-18;
    transposed convs at 19, 22), so `horse2zebra_0.4.0.pth` loads through `dlcore.weights.load`.
    """

    min_size = 5

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9, *,
                 rngs: nnx.Rngs):
        keys = init.InitKeys(rngs)
        relu = lambda: Activation("relu")  # noqa: E731
        layers = [ReflectionPad2d(3), Conv2d(input_nc, ngf, 7, rngs=keys), InstanceNorm2d(ngf), relu()]
        c = ngf
        for _ in range(2):                                        # H -> ceil(H/2) -> ceil(H/4)
            layers += [Conv2d(c, c * 2, 3, 2, 1, rngs=keys), InstanceNorm2d(c * 2), relu()]
            c *= 2
        layers += [ResNetBlock(c, rngs=keys) for _ in range(n_blocks)]
        for _ in range(2):                                        # h -> 2h -> 4h
            layers += [ConvTranspose2d(c, c // 2, 3, 2, 1, output_padding=1, rngs=keys), InstanceNorm2d(c // 2),
                       relu()]
            c //= 2
        layers += [ReflectionPad2d(3), Conv2d(c, output_nc, 7, rngs=keys), Activation("tanh")]
        self.model = Sequential(*layers)
        self.input_nc = input_nc

    def __call__(self, x: jax.Array) -> jax.Array:
        check_image(x, channels=self.input_nc, min_size=1, model="cyclegan_generator")
        if min(x.shape[1], x.shape[2]) < self.min_size:
            raise ValueError(f"cyclegan_generator needs images of at least {self.min_size}x{self.min_size}: its two "
                             f"stride-2 downsamplings must leave a 2x2 map for the residual blocks' reflection "
                             f"padding; got {x.shape[1]}x{x.shape[2]}")
        return self.model(x)


cyclegan_generator = ResNetGenerator
