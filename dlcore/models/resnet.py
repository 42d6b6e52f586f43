"""ResNet-18/34/50/101/152 and SE-ResNet-50, NHWC, laid out as torchvision's (same parameter names).

References: He et al., "Deep Residual Learning for Image Recognition" (2016); Géron, Hands-On ML
with Scikit-Learn and PyTorch, ch. 12, "ResNet" and "Implementing a ResNet-34 CNN Using PyTorch"; Hu et al.,
"Squeeze-and-Excitation Networks" (2018) for SE-ResNet; Subramanian, Deep Learning with PyTorch, ch. 8.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.blocks import BasicBlock, Bottleneck, batch_norm2d
from dlcore.nn.conv import Conv2d, MaxPool2d
from dlcore.nn.layers import Linear, Sequential

_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nnx.Module):
    """A residual network: 7x7/2 stem + 3x3/2 max pool, four stages of residual units, GAP, linear.

    Args:
        block: 'basic' (two 3x3 convs; ResNet-18/34) or 'bottleneck' (1x1-3x3-1x1, x4; ResNet-50+).
        layers: units per stage, e.g. (3, 4, 6, 3) for ResNet-34/50.
        num_classes: outputs of `fc`.
        in_channels: image channels.
        groups, width_per_group: ResNeXt cardinality and width (bottleneck only).
        se_reduction: squeeze-excitation ratio in every unit (16 for SE-ResNet), None for none.
        rngs: NNX random streams.

    Init follows the paper (and torchvision): He normal (fan_out) conv kernels, BN scale 1 and
    bias 0, PyTorch's default for `fc`.

    Shapes: (N, H, W, in_channels) -> (N, num_classes) logits. Stages halve H and W after the
    first; any H, W >= 1 works (224 -> 7x7 before pooling).

    Submodules: conv1, bn1, maxpool, layer1..layer4 (each a `Sequential` of units "0", "1", ...), fc.
    """

    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), num_classes: int = 1000,
                 in_channels: int = 3, groups: int = 1, width_per_group: int = 64,
                 se_reduction: int | None = None, *, rngs: nnx.Rngs):
        if block not in _BLOCKS:
            raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 stage depths, got {tuple(layers)}")
        unit = _BLOCKS[block]
        rngs = init.InitKeys(rngs)
        kinit = init.he_normal(mode="fan_out")
        self.in_channels, self.name = in_channels, f"ResNet({block}, {tuple(layers)})"
        self.conv1 = Conv2d(in_channels, 64, 7, 2, 3, bias=False, kernel_init=kinit, rngs=rngs)
        self.bn1 = batch_norm2d(64, rngs=rngs)
        self.maxpool = MaxPool2d(3, 2, 1)
        c = 64
        extra = dict(groups=groups, base_width=width_per_group) if block == "bottleneck" else {}
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            units = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                units.append(unit(c, width, stride, se_reduction=se_reduction, kernel_init=kinit,
                                  rngs=rngs, **extra))
                c = width * unit.expansion
            setattr(self, f"layer{i + 1}", Sequential(*units))
        self.fc = Linear(c, num_classes, rngs=rngs)
        self.num_features = c

    def features(self, x):
        """(N, H, W, C) -> (N, H/32, W/32, num_features), the map before global pooling."""
        check_image(x, channels=self.in_channels, min_size=1, model=self.name)
        x = self.maxpool(jax.nn.relu(self.bn1(self.conv1(x))))   # (N, H/4, W/4, 64)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def __call__(self, x):
        x = self.features(x).mean(axis=(1, 2))                    # global average pool: (N, C)
        return self.fc(x)


@register("resnet18")
def resnet18(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNet-18: basic units (2, 2, 2, 2); 11,689,512 parameters at 1000 classes."""
    return ResNet("basic", (2, 2, 2, 2), num_classes, in_channels, rngs=rngs)


@register("resnet34")
def resnet34(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNet-34: basic units (3, 4, 6, 3) (Géron, ch. 12, Figure 12-18); 21,797,672 parameters."""
    return ResNet("basic", (3, 4, 6, 3), num_classes, in_channels, rngs=rngs)


@register("resnet50")
def resnet50(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNet-50: bottleneck units (3, 4, 6, 3); 25,557,032 parameters."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, rngs=rngs)


@register("resnet101")
def resnet101(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNet-101: bottleneck units (3, 4, 23, 3); 44,549,160 parameters (Antiga et al., ch. 2)."""
    return ResNet("bottleneck", (3, 4, 23, 3), num_classes, in_channels, rngs=rngs)


@register("resnet152")
def resnet152(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNet-152: bottleneck units (3, 8, 36, 3); 60,192,808 parameters."""
    return ResNet("bottleneck", (3, 8, 36, 3), num_classes, in_channels, rngs=rngs)


@register("resnext50_32x4d")
def resnext50_32x4d(num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017; Géron, ch. 12): grouped 3x3 convs; 25,028,904 parameters."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, groups=32, width_per_group=4,
                  rngs=rngs)


@register("se_resnet50")
def se_resnet50(num_classes: int = 1000, in_channels: int = 3, reduction: int = 16, *,
                rngs: nnx.Rngs) -> ResNet:
    """SE-ResNet-50 (Hu et al. 2018; Géron, ch. 12 "SENet"): ResNet-50 with an SE block (ratio 16)
    after the last BN of every unit, before the addition; 28,088,024 parameters."""
    return ResNet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, se_reduction=reduction, rngs=rngs)
