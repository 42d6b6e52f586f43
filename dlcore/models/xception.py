"""Xception: entry, middle and exit flows of depthwise separable convolutions, NHWC.

References: Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions" (2017),
Figure 5; Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch, ch. 12, "Xception"
(Figure 12-20). torchvision has no Xception; the layout
(and 22,855,952 parameters at 1000 classes, Keras's trainable count) follows the paper: separable
convolutions without bias and without an activation between depthwise and pointwise parts, BN
after each, 3x3/2 max pools with padding 1 ("same"), and 1x1/2 projection shortcuts with BN.
"""

from __future__ import annotations

import jax
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn.init import InitKeys
from dlcore.nn.blocks import batch_norm2d
from dlcore.nn.conv import Conv2d, MaxPool2d, SeparableConv2d
from dlcore.nn.layers import Activation, Identity, Linear, Sequential


class XceptionBlock(nnx.Module):
    """[ReLU -> SeparableConv 3x3 -> BN] x reps (+ 3x3/2 max pool), plus a shortcut.

    Args:
        in_channels, out_channels: widths.
        reps: separable convolutions in the block (2 in entry/exit flows, 3 in the middle flow).
        stride: 2 ends the block with a max pool, and the shortcut is a 1x1/2 conv + BN.
        start_with_relu: False for the first block, which follows a ReLU already.
        grow_first: widen at the first separable conv (entry) or at the last (exit flow).
        rngs: NNX random streams.

    Children: `rep` (a Sequential: "0" ReLU, "1" SeparableConv2d, "2" BN, ...), `skip`, `skipbn`.
    Shapes: (N, H, W, in_channels) -> (N, ceil(H/stride), ceil(W/stride), out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, reps: int, stride: int = 1,
                 start_with_relu: bool = True, grow_first: bool = True, *, rngs: nnx.Rngs):
        widths = ([out_channels] * reps if grow_first else [in_channels] * (reps - 1) + [out_channels])
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            layers.append(Activation("relu") if (i > 0 or start_with_relu) else Identity())
            layers += [SeparableConv2d(c, w, 3, 1, 1, bias=False, rngs=rngs), batch_norm2d(w, rngs=rngs)]
            c = w
        if stride != 1:
            layers.append(MaxPool2d(3, stride, 1))
        self.rep = Sequential(*layers)
        if out_channels != in_channels or stride != 1:
            self.skip = Conv2d(in_channels, out_channels, 1, stride, bias=False, rngs=rngs)
            self.skipbn = batch_norm2d(out_channels, rngs=rngs)
        else:
            self.skip = self.skipbn = nnx.data(None)

    def __call__(self, x):
        skip = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + skip


class Xception(nnx.Module):
    """Xception (Chollet 2017): 2 convs, 12 separable-conv blocks, 2 separable convs, GAP, linear.

    Args:
        num_classes: outputs.
        in_channels: image channels.
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 7 (299 in the paper, which gives
    a 10x10x2048 map before pooling).
    Submodules: conv1, bn1, conv2, bn2, block1..block12, conv3, bn3, conv4, bn4, fc.
    """

    min_size = 7

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs):
        rngs = InitKeys(rngs)
        self.in_channels = in_channels
        self.conv1 = Conv2d(in_channels, 32, 3, 2, bias=False, rngs=rngs)       # entry flow
        self.bn1 = batch_norm2d(32, rngs=rngs)
        self.conv2 = Conv2d(32, 64, 3, bias=False, rngs=rngs)
        self.bn2 = batch_norm2d(64, rngs=rngs)
        self.block1 = XceptionBlock(64, 128, 2, 2, start_with_relu=False, rngs=rngs)
        self.block2 = XceptionBlock(128, 256, 2, 2, rngs=rngs)
        self.block3 = XceptionBlock(256, 728, 2, 2, rngs=rngs)
        for i in range(4, 12):                                                   # middle flow, 8x
            setattr(self, f"block{i}", XceptionBlock(728, 728, 3, 1, rngs=rngs))
        self.block12 = XceptionBlock(728, 1024, 2, 2, grow_first=False, rngs=rngs)  # exit flow
        self.conv3 = SeparableConv2d(1024, 1536, 3, 1, 1, bias=False, rngs=rngs)
        self.bn3 = batch_norm2d(1536, rngs=rngs)
        self.conv4 = SeparableConv2d(1536, 2048, 3, 1, 1, bias=False, rngs=rngs)
        self.bn4 = batch_norm2d(2048, rngs=rngs)
        self.fc = Linear(2048, num_classes, rngs=rngs)

    def features(self, x):
        """(N, H, W, C) -> (N, H', W', 2048), the map before global pooling."""
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="Xception")
        x = jax.nn.relu(self.bn1(self.conv1(x)))                 # (N, 149, 149, 32) at 299
        x = jax.nn.relu(self.bn2(self.conv2(x)))                 # (N, 147, 147, 64)
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)                    # (N, 19, 19, 728) .. (N, 10, 10, 1024)
        x = jax.nn.relu(self.bn3(self.conv3(x)))
        return jax.nn.relu(self.bn4(self.conv4(x)))              # (N, 10, 10, 2048)

    def __call__(self, x):
        return self.fc(self.features(x).mean(axis=(1, 2)))


@register("xception")
def xception(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> Xception:
    """Xception (Chollet 2017; Géron, ch. 12); 22,855,952 parameters at 1000 classes."""
    return Xception(num_classes, in_channels, rngs=rngs)
