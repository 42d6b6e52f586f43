"""AlexNet, VGG-11/13/16/19 (with and without batch norm) and LeNet-5, NHWC, torchvision's names.

References: Krizhevsky et al. (2012) and Géron, Hands-On ML Table 12-2 for AlexNet (torchvision's
single-GPU variant: 64-192-384-256-256 filters, no LRN); Simonyan & Zisserman, "Very Deep
Convolutional Networks" (2015), configurations A/B/D/E, used in Ketkar & Moolayil, Deep Learning with Python,
ch. 6 (transfer learning, Listing 6-15) and Subramanian, Deep Learning with PyTorch, ch. 3 and 7 (style
transfer reads `features`); LeCun et al. (1998) and Géron, ch. 12, LeNet-5 (Table 12-1) for LeNet-5.
"""

from __future__ import annotations

import jax
from flax import nnx

from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.blocks import batch_norm2d
from dlcore.nn.conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from dlcore.nn.layers import Activation, Linear, Sequential, flatten

# numbers are 3x3 conv widths, "M" a 2x2 max pool (Simonyan & Zisserman, Table 1)
CFGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}


class VGG(nnx.Module):
    """VGG: stacks of 3x3 convs (+BN) + ReLU with 2x2 max pools, 7x7 adaptive pool, 3 dense layers.

    Args:
        cfg: conv widths and "M" pools, e.g. `CFGS["vgg16"]`.
        batch_norm: conv -> BN -> ReLU (the `_bn` variants) instead of conv -> ReLU.
        num_classes: outputs.
        in_channels: image channels.
        dropout: rate of the two dropout layers of the classifier.
        hidden: width of the two hidden dense layers (4096 in the paper).
        rngs: NNX random streams (init and dropout).

    Init as the paper's successors and torchvision: He normal (fan_out) convs with zero bias,
    N(0, 0.01) dense weights with zero bias.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 32 (five 2x2 pools). `features`
    gives the conv stack's map (N, H/32, W/32, 512); `classifier.0` sees a flattened 7x7x512 map.

    Submodules: features ("0", "1", ... as torchvision counts them), avgpool, classifier ("0", "3", "6").
    """

    def __init__(self, cfg=CFGS["vgg16"], batch_norm: bool = False, num_classes: int = 1000,
                 in_channels: int = 3, dropout: float = 0.5, hidden: int = 4096, *, rngs: nnx.Rngs):
        rngs = init.InitKeys(rngs)
        kinit, zero = init.he_normal(mode="fan_out"), init.zeros()
        layers, c = [], in_channels
        for v in cfg:
            if v == "M":
                layers.append(MaxPool2d(2, 2))
                continue
            layers.append(Conv2d(c, v, 3, padding=1, kernel_init=kinit, bias_init=zero, rngs=rngs))
            if batch_norm:
                layers.append(batch_norm2d(v, rngs=rngs))
            layers.append(Activation("relu"))
            c = v
        self.in_channels, self.min_size = in_channels, 2 ** cfg.count("M")
        self.name = f"VGG{sum(isinstance(v, int) for v in cfg) + 3}{'_bn' if batch_norm else ''}"
        self.features = Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(7)
        linit = init.normal(0.01)
        self.classifier = Sequential(
            Linear(c * 7 * 7, hidden, kernel_init=linit, bias_init=zero, rngs=rngs), Activation("relu"),
            nnx.Dropout(dropout, rngs=rngs.dropout),
            Linear(hidden, hidden, kernel_init=linit, bias_init=zero, rngs=rngs), Activation("relu"),
            nnx.Dropout(dropout, rngs=rngs.dropout),
            Linear(hidden, num_classes, kernel_init=linit, bias_init=zero, rngs=rngs))
        # torch flattens (C, 7, 7); dlcore.weights permutes classifier.0 to NHWC's (7, 7, C) order
        self.torch_flatten = (("classifier.0", (c, 7, 7)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model=self.name)
        x = self.avgpool(self.features(x))                        # (N, 7, 7, 512)
        return self.classifier(flatten(x))                        # (N, 25088) -> (N, num_classes)


def _vgg(name: str, bn: bool):
    def factory(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5, *,
                rngs: nnx.Rngs) -> VGG:
        return VGG(CFGS[name], bn, num_classes, in_channels, dropout, rngs=rngs)

    factory.__name__ = name + ("_bn" if bn else "")
    factory.__doc__ = (f"{name.upper()}{' with batch norm' if bn else ''} (Simonyan & Zisserman 2015, "
                       f"configuration {dict(vgg11='A', vgg13='B', vgg16='D', vgg19='E')[name]}).")
    return register(factory.__name__)(factory)


vgg11, vgg11_bn = _vgg("vgg11", False), _vgg("vgg11", True)
vgg13, vgg13_bn = _vgg("vgg13", False), _vgg("vgg13", True)
vgg16, vgg16_bn = _vgg("vgg16", False), _vgg("vgg16", True)
vgg19, vgg19_bn = _vgg("vgg19", False), _vgg("vgg19", True)


@register("alexnet")
class AlexNet(nnx.Module):
    """AlexNet as torchvision builds it (Krizhevsky 2012 / Krizhevsky 2014 "one weird trick"; Géron, Table 12-2).

    conv 11x11/4 64 p2 -> pool 3/2 -> conv 5x5 192 p2 -> pool 3/2 -> conv 3x3 384, 256, 256 ->
    pool 3/2 -> adaptive 6x6 -> dropout, 9216-4096, ReLU, dropout, 4096-4096, ReLU, 4096-classes.
    61,100,840 parameters at 1000 classes. The original's LRN layers are left out, as in torchvision;
    `dlcore.nn.LocalResponseNorm` has them.

    Args:
        num_classes: outputs.
        in_channels: image channels.
        dropout: rate of the classifier's dropout layers.
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 63 (224 in the paper).
    """

    min_size = 63

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5, *,
                 rngs: nnx.Rngs):
        rngs = init.InitKeys(rngs)
        relu = lambda: Activation("relu")  # noqa: E731
        self.in_channels = in_channels
        self.features = Sequential(
            Conv2d(in_channels, 64, 11, 4, 2, rngs=rngs), relu(), MaxPool2d(3, 2),
            Conv2d(64, 192, 5, padding=2, rngs=rngs), relu(), MaxPool2d(3, 2),
            Conv2d(192, 384, 3, padding=1, rngs=rngs), relu(),
            Conv2d(384, 256, 3, padding=1, rngs=rngs), relu(),
            Conv2d(256, 256, 3, padding=1, rngs=rngs), relu(), MaxPool2d(3, 2))
        self.avgpool = AdaptiveAvgPool2d(6)
        self.classifier = Sequential(
            nnx.Dropout(dropout, rngs=rngs.dropout), Linear(256 * 6 * 6, 4096, rngs=rngs), relu(),
            nnx.Dropout(dropout, rngs=rngs.dropout), Linear(4096, 4096, rngs=rngs), relu(),
            Linear(4096, num_classes, rngs=rngs))
        self.torch_flatten = (("classifier.1", (256, 6, 6)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="AlexNet")
        x = self.avgpool(self.features(x))                        # (N, 6, 6, 256)
        return self.classifier(flatten(x))


@register("lenet5")
class LeNet5(nnx.Module):
    """LeNet-5 as Hands-On ML's Table 12-1 lists it (LeCun et al. 1998), NHWC.

    C1 conv 5x5 6 maps (tanh) -> S2 avg pool 2/2 (tanh) -> C3 conv 5x5 16 (tanh) -> S4 avg pool
    (tanh) -> C5 conv 5x5 120 (tanh) -> F6 dense 84 (tanh) -> Out dense 10. The table's activations
    are applied where it lists them; the output is logits (softmax instead of the RBF layer, and
    C3 fully connected to S2, the simplifications 003 suggests). 61,706 parameters.

    Args:
        num_classes: outputs (10).
        in_channels: image channels (1).
        padding: zero padding of C1; 0 for the 32x32 input of the table, 2 for 28x28 MNIST.
        rngs: NNX random streams.

    Shapes: (N, 32 - 2*padding, same, in_channels) -> (N, num_classes).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, padding: int = 0, *, rngs: nnx.Rngs):
        self.in_channels, self.padding = in_channels, padding
        self.c1 = Conv2d(in_channels, 6, 5, padding=padding, rngs=rngs)
        self.s2 = AvgPool2d(2, 2)
        self.c3 = Conv2d(6, 16, 5, rngs=rngs)
        self.s4 = AvgPool2d(2, 2)
        self.c5 = Conv2d(16, 120, 5, rngs=rngs)
        self.f6 = Linear(120, 84, rngs=rngs)
        self.out = Linear(84, num_classes, rngs=rngs)

    def __call__(self, x):
        side = 32 - 2 * self.padding
        check_image(x, channels=self.in_channels, min_size=side, model="LeNet5")
        if x.shape[1:3] != (side, side):
            raise ValueError(f"LeNet5 with padding={self.padding} expects {side}x{side} images, "
                             f"got {x.shape[1]}x{x.shape[2]}")
        t = jax.numpy.tanh
        x = t(self.s2(t(self.c1(x))))                 # (N, 14, 14, 6)
        x = t(self.s4(t(self.c3(x))))                 # (N, 5, 5, 16)
        x = t(self.c5(x))                             # (N, 1, 1, 120)
        x = t(self.f6(flatten(x)))                    # (N, 84)
        return self.out(x)                            # (N, num_classes) logits
