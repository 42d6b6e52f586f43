"""GoogLeNet (Inception v1) with its two auxiliary classifiers, NHWC, torchvision's names.

References: Szegedy et al., "Going Deeper with Convolutions" (2015), Table 1 and Figure 3;
Géron, Hands-On ML ch. 12 "GoogLeNet" (Figures 12-14, 12-15: the auxiliary losses are scaled by
0.3, "scaled down by 70%"); Subramanian, Deep Learning with PyTorch, ch. 8 (Inception).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn.init import InitKeys
from dlcore.nn.blocks import BasicConv2d, InceptionModule
from dlcore.nn.conv import LocalResponseNorm, MaxPool2d, adaptive_avg_pool2d, avg_pool2d
from dlcore.nn.layers import Identity, Linear, flatten

# (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): the paper's Table 1
_MODULES = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs of `GoogLeNet` with auxiliary heads (torchvision's order)."""

    logits: jax.Array
    aux_logits2: jax.Array
    aux_logits1: jax.Array


class InceptionAux(nnx.Module):
    """Auxiliary classifier: 4x4 average pool -> 1x1 conv 128 -> 2048-1024 ReLU -> dropout -> classes.

    The pool is adaptive (torchvision), or the paper's 5x5/3 average pool when `batch_norm=False`
    (which maps the 14x14 maps of 4a/4d to 4x4; other sizes are then brought to 4x4 adaptively).

    Shapes: (N, H, W, in_channels) -> (N, num_classes).
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7, batch_norm: bool = True, *,
                 rngs: nnx.Rngs):
        self.paper_pool = not batch_norm
        self.conv = BasicConv2d(in_channels, 128, 1, batch_norm=batch_norm, rngs=rngs)
        self.fc1 = Linear(2048, 1024, rngs=rngs)
        self.fc2 = Linear(1024, num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs.dropout)
        self.torch_flatten = (("fc1", (128, 4, 4)),)  # dlcore.weights: torch flattens (C, H, W)

    def __call__(self, x):
        if self.paper_pool and min(x.shape[1:3]) >= 5:
            x = avg_pool2d(x, 5, 3)
        x = self.conv(adaptive_avg_pool2d(x, 4))                 # (N, 4, 4, 128)
        x = self.dropout(jax.nn.relu(self.fc1(flatten(x))))      # (N, 1024)
        return self.fc2(x)


class GoogLeNet(nnx.Module):
    """GoogLeNet: stem, nine inception modules, global average pool, dropout, linear.

    Two auxiliary classifiers sit on inception 4a and 4d. In training mode (`model.train()`, the
    state a new module is in) with `aux_logits=True` the model returns
    `GoogLeNetOutputs(logits, aux_logits2, aux_logits1)`; in eval mode only the logits. Train
    with `googlenet_loss(loss_fn)`, which adds 0.3 x each auxiliary loss as the paper does.

    Args:
        num_classes: outputs.
        aux_logits: build the auxiliary classifiers.
        in_channels: image channels.
        batch_norm: conv -> BN -> ReLU everywhere (torchvision) or conv+bias -> ReLU (the paper).
        kernel5: kernel of the inception modules' "5x5" branch: 3 in torchvision's layout (and its
            ImageNet weights), 5 in the paper.
        lrn: local response norm after the first pool and after conv3 (the paper).
        dropout: before the final linear layer (torchvision 0.2, paper 0.4).
        dropout_aux: inside the auxiliary classifiers (0.7).
        rngs: NNX random streams.

    `googlenet(paper=True)` gives the paper's settings. Parameters at 1000 classes, torchvision
    layout: 6,624,904 without auxiliary heads, 13,004,888 with.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 31 (224 in the paper).
    """

    min_size = 31

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True, in_channels: int = 3,
                 batch_norm: bool = True, kernel5: int = 3, lrn: bool = False, dropout: float = 0.2,
                 dropout_aux: float = 0.7, *, rngs: nnx.Rngs):
        rngs = InitKeys(rngs)
        bn = dict(batch_norm=batch_norm, rngs=rngs)
        self.in_channels = in_channels
        self.conv1 = BasicConv2d(in_channels, 64, 7, 2, 3, **bn)
        self.maxpool1 = MaxPool2d(3, 2, ceil_mode=True)
        self.lrn1 = LocalResponseNorm(5, 1e-4, 0.75, 1.0) if lrn else Identity()
        self.conv2 = BasicConv2d(64, 64, 1, **bn)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, **bn)
        self.lrn2 = LocalResponseNorm(5, 1e-4, 0.75, 1.0) if lrn else Identity()
        self.maxpool2 = MaxPool2d(3, 2, ceil_mode=True)
        for name, widths in _MODULES.items():
            setattr(self, name, InceptionModule(*widths, kernel5=kernel5, **bn))
        self.maxpool3 = MaxPool2d(3, 2, ceil_mode=True)
        self.maxpool4 = MaxPool2d(2, 2, ceil_mode=True)
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout_aux, **bn)
            self.aux2 = InceptionAux(528, num_classes, dropout_aux, **bn)
        else:
            self.aux1 = self.aux2 = nnx.data(None)
        self.dropout = nnx.Dropout(dropout, rngs=rngs.dropout)
        self.fc = Linear(1024, num_classes, rngs=rngs)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="GoogLeNet")
        x = self.lrn1(self.maxpool1(self.conv1(x)))              # (N, 56, 56, 64) at 224
        x = self.maxpool2(self.lrn2(self.conv3(self.conv2(x))))  # (N, 28, 28, 192)
        x = self.maxpool3(self.inception3b(self.inception3a(x)))  # (N, 14, 14, 480)
        x = self.inception4a(x)                                  # (N, 14, 14, 512)
        training = self.aux_logits and not self.dropout.deterministic
        aux1 = self.aux1(x) if training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))  # (N, 14, 14, 528)
        aux2 = self.aux2(x) if training else None
        x = self.maxpool4(self.inception4e(x))                   # (N, 7, 7, 832)
        x = self.inception5b(self.inception5a(x))                # (N, 7, 7, 1024)
        x = self.fc(self.dropout(x.mean(axis=(1, 2))))           # (N, num_classes)
        return GoogLeNetOutputs(x, aux2, aux1) if training else x


def googlenet_loss(loss_fn, aux_weight: float = 0.3):
    """Wrap a per-example loss so it also scores GoogLeNet's auxiliary heads (Géron, ch. 12).

    Args:
        loss_fn: `(logits, targets) -> (B,)`.
        aux_weight: weight of each auxiliary loss (0.3 in the paper).

    Returns:
        `(outputs, targets) -> (B,)`: loss(main) + aux_weight * (loss(aux1) + loss(aux2)) for
        training-mode `GoogLeNetOutputs`, loss(outputs) for plain logits (eval mode).
    """

    def loss(outputs, targets):
        if isinstance(outputs, GoogLeNetOutputs):
            return (loss_fn(outputs.logits, targets)
                    + aux_weight * (loss_fn(outputs.aux_logits1, targets) + loss_fn(outputs.aux_logits2, targets)))
        return loss_fn(outputs, targets)

    return loss


@register("googlenet")
def googlenet(num_classes: int = 1000, aux_logits: bool = True, in_channels: int = 3, paper: bool = False, *,
              rngs: nnx.Rngs) -> GoogLeNet:
    """GoogLeNet in torchvision's layout (BN, 3x3 "5x5" branch, dropout 0.2), or the paper's with `paper=True`."""
    if paper:
        return GoogLeNet(num_classes, aux_logits, in_channels, batch_norm=False, kernel5=5, lrn=True,
                         dropout=0.4, rngs=rngs)
    return GoogLeNet(num_classes, aux_logits, in_channels, rngs=rngs)


__all__ = ["GoogLeNet", "GoogLeNetOutputs", "InceptionAux", "googlenet", "googlenet_loss"]
