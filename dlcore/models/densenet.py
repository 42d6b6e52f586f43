"""DenseNet-121/161/169/201 (DenseNet-BC), NHWC, torchvision's parameter names.

References: Huang et al., "Densely Connected Convolutional Networks" (2017), Table 1; Hands-On ML
ch. 12 "DenseNet"; Subramanian, Deep Learning with PyTorch, ch. 8 (DenseNet-121 features for
transfer learning).
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.blocks import DenseBlock, Transition, batch_norm2d
from dlcore.nn.conv import Conv2d, MaxPool2d
from dlcore.nn.layers import Activation, Linear, Sequential


class DenseNet(nnx.Module):
    """DenseNet-BC: 7x7/2 stem + 3x3/2 pool, dense blocks joined by halving transitions, BN, GAP, linear.

    Args:
        growth_rate: k, channels each dense layer adds (32).
        block_config: layers per dense block, (6, 12, 24, 16) for DenseNet-121.
        num_init_features: stem width (64).
        bn_size: bottleneck factor of the 1x1 convs (4).
        drop_rate: dropout after each dense layer.
        num_classes: outputs.
        in_channels: image channels.
        rngs: NNX random streams.

    Init: He normal (fan_in) convs, BN 1/0, zero classifier bias (torchvision).

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 29 (224 in the paper).
    Submodules: features (conv0, norm0, relu0, pool0, denseblock1, transition1, ..., norm5), classifier.
    """

    min_size = 29

    def __init__(self, growth_rate: int = 32, block_config: Sequence[int] = (6, 12, 24, 16),
                 num_init_features: int = 64, bn_size: int = 4, drop_rate: float = 0.0,
                 num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs):
        rngs = init.InitKeys(rngs)
        kinit = init.he_normal()
        layers = {"conv0": Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False, kernel_init=kinit,
                                  rngs=rngs),
                  "norm0": batch_norm2d(num_init_features, rngs=rngs), "relu0": Activation("relu"),
                  "pool0": MaxPool2d(3, 2, 1)}
        c = num_init_features
        for i, n in enumerate(block_config):
            block = DenseBlock(n, c, bn_size, growth_rate, drop_rate, kernel_init=kinit, rngs=rngs)
            layers[f"denseblock{i + 1}"] = block
            c = block.out_channels
            if i != len(block_config) - 1:
                layers[f"transition{i + 1}"] = Transition(c, c // 2, kernel_init=kinit, rngs=rngs)
                c //= 2
        layers["norm5"] = batch_norm2d(c, rngs=rngs)
        self.in_channels, self.num_features = in_channels, c
        self.features = Sequential(layers)
        self.classifier = Linear(c, num_classes, bias_init=init.zeros(), rngs=rngs)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="DenseNet")
        x = jax.nn.relu(self.features(x))                       # (N, H/32, W/32, C)
        return self.classifier(x.mean(axis=(1, 2)))


def _densenet(name, growth, blocks, init_features, count):
    def factory(num_classes: int = 1000, in_channels: int = 3, drop_rate: float = 0.0, *,
                rngs: nnx.Rngs) -> DenseNet:
        return DenseNet(growth, blocks, init_features, 4, drop_rate, num_classes, in_channels, rngs=rngs)

    factory.__name__ = name
    factory.__doc__ = (f"{name}: growth {growth}, blocks {blocks}, stem {init_features}; "
                       f"{count} parameters at 1000 classes.")
    return register(name)(factory)


densenet121 = _densenet("densenet121", 32, (6, 12, 24, 16), 64, "7,978,856")
densenet161 = _densenet("densenet161", 48, (6, 12, 36, 24), 96, "28,681,000")
densenet169 = _densenet("densenet169", 32, (6, 12, 32, 32), 64, "14,149,480")
densenet201 = _densenet("densenet201", 32, (6, 12, 48, 32), 64, "20,013,928")
