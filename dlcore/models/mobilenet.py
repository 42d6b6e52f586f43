"""MobileNetV2, NHWC, torchvision's parameter names.

References: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018),
Table 2; Géron, Hands-On ML ch. 12 "MobileNet" (depthwise separable convolutions).
"""

from __future__ import annotations

from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.blocks import ConvBNAct, InvertedResidual
from dlcore.nn.layers import Linear, Sequential

# (expansion t, channels c, repeats n, stride s): the paper's Table 2
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
             (6, 320, 1, 1))


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a width to a multiple of `divisor`, never more than 10% below `v` (the paper's rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class MobileNetV2(nnx.Module):
    """MobileNetV2: 3x3/2 conv 32, 17 inverted residual blocks, 1x1 conv 1280, GAP, dropout, linear.

    Args:
        num_classes: outputs.
        width_mult: width multiplier alpha (channels rounded to multiples of 8).
        in_channels: image channels.
        dropout: before the classifier (0.2).
        rngs: NNX random streams.

    Init (torchvision): He normal (fan_out) convs, BN 1/0, N(0, 0.01) classifier with zero bias.
    3,504,872 parameters at width 1 and 1000 classes.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); any H, W >= 1 (224 in the paper).
    Submodules: features ("0" stem, "1".."17" blocks, "18" last conv), classifier ("1" linear).
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.2, *, rngs: nnx.Rngs):
        rngs = init.InitKeys(rngs)
        kinit = init.he_normal(mode="fan_out")
        c = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        layers = [ConvBNAct(in_channels, c, 3, 2, activation="relu6", kernel_init=kinit, rngs=rngs)]
        for t, ch, n, s in _SETTINGS:
            out = make_divisible(ch * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t, kernel_init=kinit, rngs=rngs))
                c = out
        layers.append(ConvBNAct(c, last, 1, activation="relu6", kernel_init=kinit, rngs=rngs))
        self.in_channels, self.num_features = in_channels, last
        self.features = Sequential(*layers)
        self.classifier = Sequential(nnx.Dropout(dropout, rngs=rngs.dropout),
                                     Linear(last, num_classes, kernel_init=init.normal(0.01),
                                            bias_init=init.zeros(), rngs=rngs))

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=1, model="MobileNetV2")
        x = self.features(x).mean(axis=(1, 2))                  # (N, 1280)
        return self.classifier(x)


@register("mobilenet_v2")
def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3, *,
                 rngs: nnx.Rngs) -> MobileNetV2:
    """MobileNetV2 (Sandler et al. 2018); 3,504,872 parameters at width 1.0 and 1000 classes."""
    return MobileNetV2(num_classes, width_mult, in_channels, rngs=rngs)
