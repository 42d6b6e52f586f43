"""Inception-v3 with its auxiliary classifier, NHWC, torchvision's names and parameter count.

The network of Szegedy et al.'s "Rethinking the Inception Architecture for Computer Vision" (2016): a stem of
plain 3x3 convolutions, three 35x35 `InceptionA` modules, a grid reduction (`InceptionB`), four 17x17
`InceptionC` modules whose 7x7 convolutions are factorised into 1x7 and 7x1, a second reduction
(`InceptionD`), two 8x8 `InceptionE` modules with expanded 1x3 / 3x1 branches, global average pool,
dropout 0.5 and a linear layer; an auxiliary classifier on the 17x17 map adds a second loss in training.
Every convolution is conv -> batch norm (eps 0.001) -> ReLU (`dlcore.nn.BasicConv2d`).

References: Szegedy et al. (2016), Figures 5-7 and Table 1; Subramanian, Deep Learning with PyTorch, ch. 8,
Modern Network Architectures, Inception (Creating an Inception model: a pretrained Inception-v3 with
`aux_logits=False` as a feature extractor, 299 x 299 inputs); Géron, Hands-On ML ch. 12, CNN Architectures
(GoogLeNet, whose successor this is).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_choice, check_float, check_int
from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.blocks import BasicConv2d
from dlcore.nn.conv import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from dlcore.nn.layers import Linear, flatten

__all__ = ["Inception3", "InceptionA", "InceptionAux", "InceptionB", "InceptionC", "InceptionD", "InceptionE",
           "InceptionOutputs", "inception_v3", "inception_v3_loss"]

# torchvision draws every conv and linear weight from trunc_normal_(std=stddev, a=-2, b=2): bounds 20 (and
# more) standard deviations out, so a plain normal draw; 0.1 by default, 0.01 / 0.001 in the auxiliary head.
_STD = 0.1


def _conv(cin, cout, kernel_size, stride=1, padding=0, std=_STD, *, rngs):
    return BasicConv2d(cin, cout, kernel_size, stride, padding, kernel_init=init.normal(std), rngs=rngs)


def _pool3x3_same(x):
    return avg_pool2d(x, 3, 1, 1)            # torch's count_include_pad=True: borders averaged with zeros


class InceptionOutputs(NamedTuple):
    """Training-mode outputs of `Inception3` with its auxiliary head (torchvision's `InceptionOutputs`)."""

    logits: jax.Array
    aux_logits: jax.Array


class InceptionA(nnx.Module):
    """35x35 module: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1 (Szegedy et al. 2016, Figure 5).

    Shapes: (N, H, W, in_channels) -> (N, H, W, 224 + pool_features).
    """

    def __init__(self, in_channels: int, pool_features: int, *, rngs):
        self.branch1x1 = _conv(in_channels, 64, 1, rngs=rngs)
        self.branch5x5_1 = _conv(in_channels, 48, 1, rngs=rngs)
        self.branch5x5_2 = _conv(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _conv(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = _conv(in_channels, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_pool3x3_same(x)),
        ], axis=-1)


class InceptionB(nnx.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max pool 3x3/2 (Szegedy et al. 2016, Figure 10).

    Shapes: (N, H, W, in_channels) -> (N, (H-3)//2+1, (W-3)//2+1, 480 + in_channels).
    """

    def __init__(self, in_channels: int, *, rngs):
        self.branch3x3 = _conv(in_channels, 384, 3, 2, rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _conv(96, 96, 3, 2, rngs=rngs)

    def __call__(self, x):
        return jnp.concatenate([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            max_pool2d(x, 3, 2),
        ], axis=-1)


class InceptionC(nnx.Module):
    """17x17 module with 7x7 convolutions factorised into 1x7 and 7x1 (Szegedy et al. 2016, Figure 6).

    Shapes: (N, H, W, in_channels) -> (N, H, W, 768).
    """

    def __init__(self, in_channels: int, channels_7x7: int, *, rngs):
        c7 = channels_7x7
        self.branch1x1 = _conv(in_channels, 192, 1, rngs=rngs)
        self.branch7x7_1 = _conv(in_channels, c7, 1, rngs=rngs)
        self.branch7x7_2 = _conv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = _conv(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = _conv(in_channels, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = _conv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = _conv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = _conv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = _conv(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = _conv(in_channels, 192, 1, rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return jnp.concatenate([self.branch1x1(x), b7, d, self.branch_pool(_pool3x3_same(x))], axis=-1)


class InceptionD(nnx.Module):
    """Grid reduction 17 -> 8: 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max pool 3x3/2.

    Shapes: (N, H, W, in_channels) -> (N, (H-3)//2+1, (W-3)//2+1, 512 + in_channels).
    """

    def __init__(self, in_channels: int, *, rngs):
        self.branch3x3_1 = _conv(in_channels, 192, 1, rngs=rngs)
        self.branch3x3_2 = _conv(192, 320, 3, 2, rngs=rngs)
        self.branch7x7x3_1 = _conv(in_channels, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = _conv(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = _conv(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = _conv(192, 192, 3, 2, rngs=rngs)

    def __call__(self, x):
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7, max_pool2d(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
    """8x8 module whose 3x3 branches end in parallel 1x3 and 3x1 convolutions (Szegedy et al. 2016, Figure 7).

    Shapes: (N, H, W, in_channels) -> (N, H, W, 2048).
    """

    def __init__(self, in_channels: int, *, rngs):
        self.branch1x1 = _conv(in_channels, 320, 1, rngs=rngs)
        self.branch3x3_1 = _conv(in_channels, 384, 1, rngs=rngs)
        self.branch3x3_2a = _conv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = _conv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = _conv(in_channels, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = _conv(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = _conv(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = _conv(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = _conv(in_channels, 192, 1, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(_pool3x3_same(x)),
        ], axis=-1)


class InceptionAux(nnx.Module):
    """Auxiliary classifier on the 17x17 map: avg pool 5x5/3 -> 1x1 conv 128 -> 5x5 conv 768 -> GAP -> linear.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 17 (the 5x5 conv needs a 5x5 pooled map).
    """

    def __init__(self, in_channels: int, num_classes: int, *, rngs):
        self.conv0 = _conv(in_channels, 128, 1, rngs=rngs)
        self.conv1 = _conv(128, 768, 5, std=0.01, rngs=rngs)
        self.fc = Linear(768, num_classes, kernel_init=init.normal(0.001), rngs=rngs)

    def __call__(self, x):
        x = self.conv1(self.conv0(avg_pool2d(x, 5, 3)))          # (N, 1, 1, 768) on a 17x17 map
        return self.fc(flatten(adaptive_avg_pool2d(x, 1)))       # (N, num_classes)


def _feature_size(s: int) -> tuple[int, int]:
    """Side of the map Mixed_6e and Mixed_7a leave of an input of side `s` (17 and 8 at 299)."""
    s = (s - 3) // 2 + 1 - 2            # Conv2d_1a_3x3 (stride 2), Conv2d_2a_3x3; 2b keeps the size
    s = (s - 3) // 2 + 1 - 2            # maxpool1, Conv2d_4a_3x3 (3b is 1x1)
    s = (s - 3) // 2 + 1                # maxpool2; the Mixed_5 modules keep the size
    s6 = (s - 3) // 2 + 1               # Mixed_6a
    return s6, (s6 - 3) // 2 + 1        # Mixed_7a


class Inception3(nnx.Module):
    """Inception-v3 (torchvision's `Inception3`): stem, Mixed_5b..7c, global average pool, dropout, linear.

    In training mode (`model.train()`, the state a new module is in) with `aux_logits=True` it returns
    `InceptionOutputs(logits, aux_logits)`, the auxiliary head's logits computed on Mixed_6e's map; in eval
    mode (`model.eval()`) the logits alone. Train with `inception_v3_loss(loss_fn)`.

    Args:
        num_classes: outputs.
        aux_logits: build the auxiliary classifier (`AuxLogits`).
        transform_input: re-normalise inputs given with ImageNet's mean and std to the [-1, 1] scaling
            (mean 0.5, std 0.5) Google's original weights were trained with, as torchvision does
            (`inception_v3(weights=...)` turns it on).
        dropout: before the final linear layer (0.5).
        in_channels: image channels (3 with `transform_input`).
        rngs: NNX random streams (params, dropout).

    Init (torchvision): N(0, 0.1) conv and linear weights (0.01 and 0.001 in the auxiliary head), batch
    norm 1/0, torch's default Linear biases. Parameters at 1000 classes: 27,161,264 with the auxiliary
    head, 23,834,568 without.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 75 (299 in the paper), and >= 299 in
    training mode with the auxiliary head (its 5x5 conv needs Mixed_6e's map at 17x17 or more).
    """

    min_size = 75

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 dropout: float = 0.5, in_channels: int = 3, *, rngs: nnx.Rngs):
        who = "Inception3"
        check_int(num_classes, "num_classes", low=1, who=who)
        check_choice(aux_logits, "aux_logits", (True, False), who=who)
        check_choice(transform_input, "transform_input", (True, False), who=who)
        check_float(dropout, "dropout", low=0, high=1, who=who)
        check_int(in_channels, "in_channels", low=1, who=who)
        if transform_input and in_channels != 3:
            raise ValueError(f"Inception3: transform_input re-normalises 3 RGB channels, got in_channels={in_channels}")
        rngs = init.InitKeys(rngs)
        self.in_channels, self.aux_logits, self.transform_input = in_channels, aux_logits, transform_input
        self.Conv2d_1a_3x3 = _conv(in_channels, 32, 3, 2, rngs=rngs)
        self.Conv2d_2a_3x3 = _conv(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = _conv(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = _conv(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = _conv(80, 192, 3, rngs=rngs)
        self.Mixed_5b = InceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = InceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = InceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = InceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = InceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = InceptionC(768, 192, rngs=rngs)
        self.AuxLogits = InceptionAux(768, num_classes, rngs=rngs) if aux_logits else nnx.data(None)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = InceptionE(1280, rngs=rngs)
        self.Mixed_7c = InceptionE(2048, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs.dropout)
        self.fc = Linear(2048, num_classes, kernel_init=init.normal(_STD), rngs=rngs)
        self.num_features = 2048

    def _transform(self, x):
        # x * std / 0.5 + (mean - 0.5) / 0.5 per channel: ImageNet normalisation -> Google's [-1, 1] scaling
        std = jnp.asarray((0.229, 0.224, 0.225), x.dtype)
        mean = jnp.asarray((0.485, 0.456, 0.406), x.dtype)
        return x * (std / 0.5) + (mean - 0.5) / 0.5

    def forward_features(self, x):
        """The 2048 pooled features the final linear layer reads (what transfer learning keeps).

        Shapes: (N, H, W, in_channels) -> (N, 2048).
        """
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="Inception3")
        return self._forward(x, aux=False)[0]

    def _forward(self, x, aux: bool):
        if self.transform_input:
            x = self._transform(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 147, 147, 64) at 299
        x = max_pool2d(x, 3, 2)                                            # (N, 73, 73, 64)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))                      # (N, 71, 71, 192)
        x = max_pool2d(x, 3, 2)                                            # (N, 35, 35, 192)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))                 # (N, 35, 35, 288)
        x = self.Mixed_6a(x)                                               # (N, 17, 17, 768)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))  # (N, 17, 17, 768)
        aux_out = self.AuxLogits(x) if aux else None                       # (N, num_classes)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))                 # (N, 8, 8, 2048)
        return x.mean(axis=(1, 2)), aux_out                                # (N, 2048)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="Inception3")
        training = self.aux_logits and not self.dropout.deterministic
        if training and min(_feature_size(x.shape[1])[0], _feature_size(x.shape[2])[0]) < 17:
            raise ValueError(f"Inception3 in training mode with its auxiliary head needs images of at least "
                             f"299x299 (the head's 5x5 conv needs a 17x17 Mixed_6e map); got {x.shape[1]}x"
                             f"{x.shape[2]}: resize them, call model.eval(), or build it with aux_logits=False")
        feats, aux = self._forward(x, training)
        logits = self.fc(self.dropout(feats))                              # (N, num_classes)
        return InceptionOutputs(logits, aux) if training else logits


def inception_v3_loss(loss_fn, aux_weight: float = 0.4):
    """Wrap a per-example loss so it also scores Inception-v3's auxiliary head.

    Args:
        loss_fn: `(logits, targets) -> (B,)`.
        aux_weight: weight of the auxiliary loss (0.4, as PyTorch's "Finetuning Torchvision Models" tutorial
            trains Inception-v3: `loss1 + 0.4 * loss2`).

    Returns:
        `(outputs, targets) -> (B,)`: loss(logits) + aux_weight * loss(aux_logits) for training-mode
        `InceptionOutputs`, loss(outputs) for plain logits (eval mode, or no auxiliary head).
    """
    check_float(aux_weight, "aux_weight", low=0, who="inception_v3_loss")

    def loss(outputs, targets):
        if isinstance(outputs, InceptionOutputs):
            return loss_fn(outputs.logits, targets) + aux_weight * loss_fn(outputs.aux_logits, targets)
        return loss_fn(outputs, targets)

    return loss


@register("inception_v3")
def inception_v3(num_classes: int = 1000, aux_logits: bool = True, transform_input: bool = False,
                 dropout: float = 0.5, in_channels: int = 3, *, rngs: nnx.Rngs) -> Inception3:
    """Inception-v3 in torchvision's layout, with its auxiliary head: 27,161,264 parameters at 1000 classes."""
    return Inception3(num_classes, aux_logits, transform_input, dropout, in_channels, rngs=rngs)
