"""The CNN building blocks of the books' model zoo, NHWC, with torchvision's submodule names.

Submodule names follow torchvision's (`conv1`, `bn1`, `downsample.0`, `branch2.1`, `denselayer3`,
`norm1`, ...), so a torchvision state dict maps onto these blocks key for key (`dlcore.weights`).

References: Géron, Hands-On ML ch. 12 (residual units, inception module, SE block, DenseNet,
Xception); He et al. 2016 (ResNet); Szegedy et al. 2015 (GoogLeNet); Huang et al. 2017
(DenseNet); Hu et al. 2018 (SENet); Sandler et al. 2018 (MobileNetV2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_int
from dlcore.nn.conv import AvgPool2d, Conv2d, MaxPool2d
from dlcore.nn.layers import Activation, Linear, Sequential


def batch_norm2d(num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 rngs: nnx.Rngs) -> nnx.BatchNorm:
    """`torch.nn.BatchNorm2d(num_features, eps, momentum)` on NHWC (normalises the last axis).

    `momentum` is torch's (weight of the new batch); Flax's is 1 - momentum. Uses
    `dlcore.nn.norm.BatchNorm2d` when it is a Flax `BatchNorm` (same parameter names), else Flax's.
    """
    try:
        from dlcore.nn.norm import BatchNorm2d  # PyTorch running-variance semantics, when available
    except ImportError:
        BatchNorm2d = None
    if BatchNorm2d is not None and isinstance(BatchNorm2d, type) and issubclass(BatchNorm2d, nnx.BatchNorm):
        try:
            return BatchNorm2d(num_features, eps=eps, momentum=momentum, rngs=rngs)
        except TypeError:
            pass
    # BN's initial scale (1) and bias (0) are constants: no random key is drawn for them, which keeps
    # abstract construction (`nnx.eval_shape`, `dlcore list`) fast for nets with hundreds of BNs
    return nnx.BatchNorm(num_features, momentum=1.0 - momentum, epsilon=eps, rngs=_NO_KEYS)


class _NoKeys:
    """Stands in for `nnx.Rngs` where an initializer ignores its key (constant inits)."""

    def params(self):
        return None


_NO_KEYS = _NoKeys()


class ConvBNAct(Sequential):
    """Conv2d (no bias) -> BatchNorm -> activation: torchvision's `Conv2dNormActivation`.

    Children "0" (conv), "1" (BN), "2" (activation, stateless). Padding defaults to
    (kernel_size - 1)//2 * dilation, which keeps H and W at stride 1.

    Args:
        in_channels, out_channels, kernel_size, stride, groups, dilation: of the convolution.
        activation: 'relu', 'relu6' or None (no activation: a linear bottleneck).
        eps: BN epsilon.
        kernel_init: conv kernel initializer (PyTorch's default when None).
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H/stride, W/stride, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, dilation: int = 1, activation: str | None = "relu",
                 eps: float = 1e-5, *, kernel_init=None, rngs: nnx.Rngs):
        pad = (kernel_size - 1) // 2 * dilation
        layers = [Conv2d(in_channels, out_channels, kernel_size, stride, pad, dilation, groups, bias=False,
                         kernel_init=kernel_init, rngs=rngs),
                  batch_norm2d(out_channels, eps, rngs=rngs)]
        if activation is not None:
            layers.append(Activation(activation))
        super().__init__(*layers)


class BasicConv2d(nnx.Module):
    """Conv -> BN -> ReLU with children `conv` and `bn`: torchvision's GoogLeNet/Inception unit.

    Args:
        in_channels, out_channels: channels.
        kernel_size, stride, padding: of the convolution.
        batch_norm: with BN (torchvision; conv without bias, BN eps 1e-3) or without (the 2014
            paper's conv with bias -> ReLU).
        rngs: NNX random streams.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 batch_norm: bool = True, *, kernel_init=None, rngs: nnx.Rngs):
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=not batch_norm,
                           kernel_init=kernel_init, rngs=rngs)
        self.bn = batch_norm2d(out_channels, 1e-3, rngs=rngs) if batch_norm else nnx.data(None)

    def __call__(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return jax.nn.relu(x)


class SqueezeExcitation(nnx.Module):
    """Squeeze-and-excitation block (Hu et al. 2018; Géron, ch. 12, Figure 12-22).

    Global average pool -> Linear(C, C/r) -> ReLU -> Linear(C/r, C) -> sigmoid, and the feature
    maps are multiplied by the resulting per-channel weights.

    Args:
        channels: C.
        reduction: r (16 in the paper), or give `squeeze_channels` directly.
        squeeze_channels: width of the hidden layer (overrides `reduction`).
        rngs: NNX random streams.

    Shapes: (N, H, W, C) -> (N, H, W, C). Parameters: 2*C*C/r + C/r + C.
    """

    def __init__(self, channels: int, reduction: int = 16, squeeze_channels: int | None = None, *,
                 rngs: nnx.Rngs):
        hidden = squeeze_channels or max(channels // reduction, 1)
        self.channels = channels
        self.fc1 = Linear(channels, hidden, rngs=rngs)
        self.fc2 = Linear(hidden, channels, rngs=rngs)

    def __call__(self, x):
        s = x.mean(axis=(-3, -2))                                   # (N, C) squeeze
        s = jax.nn.sigmoid(self.fc2(jax.nn.relu(self.fc1(s))))      # (N, C) excitation
        return x * s[..., None, None, :]


def _downsample(in_channels, out_channels, stride, kernel_init, rngs):
    return Sequential(Conv2d(in_channels, out_channels, 1, stride, bias=False, kernel_init=kernel_init,
                             rngs=rngs),
                      batch_norm2d(out_channels, rngs=rngs))


class BasicBlock(nnx.Module):
    """Residual unit of ResNet-18/34 (He et al. 2016; Géron, ch. 12, Implementing a ResNet-34 CNN, `ResidualUnit`).

    relu(bn2(conv2(relu(bn1(conv1(x))))) + skip(x)), 3x3 convs without bias; the skip is the
    identity, or a strided 1x1 conv + BN (`downsample`) when the shape changes.

    Args:
        in_channels: input channels.
        channels: output channels (expansion 1).
        stride: of conv1 and of the skip.
        downsample: force (True) or forbid (False) the projection skip; None decides from shapes.
        se_reduction: add a squeeze-excitation block (`se`) before the addition (SE-ResNet).
        kernel_init: conv kernel initializer (PyTorch's default when None).
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H/stride, W/stride, channels).
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: bool | None = None,
                 se_reduction: int | None = None, *, kernel_init=None, rngs: nnx.Rngs):
        out = channels * self.expansion
        self.conv1 = Conv2d(in_channels, channels, 3, stride, 1, bias=False, kernel_init=kernel_init, rngs=rngs)
        self.bn1 = batch_norm2d(channels, rngs=rngs)
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False, kernel_init=kernel_init, rngs=rngs)
        self.bn2 = batch_norm2d(channels, rngs=rngs)
        self.se = SqueezeExcitation(out, se_reduction, rngs=rngs) if se_reduction else nnx.data(None)
        if downsample is None:
            downsample = stride != 1 or in_channels != out
        self.downsample = (_downsample(in_channels, out, stride, kernel_init, rngs) if downsample
                           else nnx.data(None))

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.se is not None:
            y = self.se(y)
        skip = x if self.downsample is None else self.downsample(x)
        return jax.nn.relu(y + skip)


class Bottleneck(nnx.Module):
    """Bottleneck residual unit of ResNet-50/101/152: 1x1 reduce, 3x3, 1x1 expand (x4).

    The stride sits on the 3x3 conv (torchvision's "ResNet v1.5"); `groups` and `base_width` give
    ResNeXt / wide variants (width = channels * base_width/64 * groups).

    Args:
        in_channels: input channels.
        channels: bottleneck width; the output has 4*channels.
        stride: of conv2 and of the skip.
        downsample: as `BasicBlock`.
        groups, base_width: ResNeXt cardinality and width per group.
        se_reduction: add a squeeze-excitation block (`se`) after bn3 (SE-ResNet-50, Hu et al.).
        kernel_init: conv kernel initializer.
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H/stride, W/stride, 4*channels).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: bool | None = None,
                 groups: int = 1, base_width: int = 64, se_reduction: int | None = None, *,
                 kernel_init=None, rngs: nnx.Rngs):
        width = int(channels * (base_width / 64.0)) * groups
        out = channels * self.expansion
        self.conv1 = Conv2d(in_channels, width, 1, bias=False, kernel_init=kernel_init, rngs=rngs)
        self.bn1 = batch_norm2d(width, rngs=rngs)
        self.conv2 = Conv2d(width, width, 3, stride, 1, groups=groups, bias=False, kernel_init=kernel_init,
                            rngs=rngs)
        self.bn2 = batch_norm2d(width, rngs=rngs)
        self.conv3 = Conv2d(width, out, 1, bias=False, kernel_init=kernel_init, rngs=rngs)
        self.bn3 = batch_norm2d(out, rngs=rngs)
        self.se = SqueezeExcitation(out, se_reduction, rngs=rngs) if se_reduction else nnx.data(None)
        if downsample is None:
            downsample = stride != 1 or in_channels != out
        self.downsample = (_downsample(in_channels, out, stride, kernel_init, rngs) if downsample
                           else nnx.data(None))

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        skip = x if self.downsample is None else self.downsample(x)
        return jax.nn.relu(y + skip)


class InceptionModule(nnx.Module):
    """The 4-branch inception module (Szegedy et al. 2015; Géron, ch. 12, Figure 12-14).

    branch1: 1x1; branch2: 1x1 reduce -> 3x3; branch3: 1x1 reduce -> k5 x k5; branch4: 3x3 max pool
    (stride 1, "same") -> 1x1 projection. Outputs are concatenated on the channel axis.

    Args:
        in_channels: input channels.
        ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj: the six widths of Figure 12-15.
        kernel5: kernel of the "5x5" branch. The paper uses 5; torchvision's GoogLeNet (and its
            ImageNet weights) use 3.
        batch_norm: each conv is conv -> BN -> ReLU (torchvision) or conv+bias -> ReLU (the paper).
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H, W, ch1x1 + ch3x3 + ch5x5 + pool_proj).
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, kernel5: int = 5, batch_norm: bool = True, *,
                 kernel_init=None, rngs: nnx.Rngs):
        kw = dict(batch_norm=batch_norm, kernel_init=kernel_init, rngs=rngs)
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, **kw)
        self.branch2 = Sequential(BasicConv2d(in_channels, ch3x3red, 1, **kw),
                                  BasicConv2d(ch3x3red, ch3x3, 3, padding=1, **kw))
        self.branch3 = Sequential(BasicConv2d(in_channels, ch5x5red, 1, **kw),
                                  BasicConv2d(ch5x5red, ch5x5, kernel5, padding=kernel5 // 2, **kw))
        self.branch4 = Sequential(MaxPool2d(3, 1, 1, ceil_mode=True),
                                  BasicConv2d(in_channels, pool_proj, 1, **kw))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def __call__(self, x):
        return jnp.concatenate([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], axis=-1)


class DenseLayer(nnx.Module):
    """DenseNet-BC layer: BN-ReLU-1x1 conv (bn_size*growth) -> BN-ReLU-3x3 conv (growth) (Huang et al.).

    Args:
        in_channels: channels of the concatenated inputs.
        growth_rate: k, the channels this layer adds.
        bn_size: bottleneck factor (4).
        drop_rate: dropout after the layer (0 in DenseNet-121 on ImageNet).
        rngs: NNX random streams.

    Shapes: (N, H, W, in_channels) -> (N, H, W, growth_rate) (the new features only).
    """

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0, *,
                 kernel_init=None, rngs: nnx.Rngs):
        self.norm1 = batch_norm2d(in_channels, rngs=rngs)
        self.relu1 = Activation("relu")
        self.conv1 = Conv2d(in_channels, bn_size * growth_rate, 1, bias=False, kernel_init=kernel_init, rngs=rngs)
        self.norm2 = batch_norm2d(bn_size * growth_rate, rngs=rngs)
        self.relu2 = Activation("relu")
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False, kernel_init=kernel_init,
                            rngs=rngs)
        self.dropout = nnx.Dropout(drop_rate, rngs=rngs.dropout) if drop_rate > 0 else nnx.data(None)

    def __call__(self, x):
        y = self.conv1(self.relu1(self.norm1(x)))
        y = self.conv2(self.relu2(self.norm2(y)))
        return y if self.dropout is None else self.dropout(y)


class DenseBlock(nnx.Module):
    """`num_layers` dense layers, each fed the concatenation of the block input and all earlier outputs.

    Children `denselayer1` ... `denselayerN` (torchvision's names).

    Shapes: (N, H, W, C) -> (N, H, W, C + num_layers * growth_rate).
    """

    def __init__(self, num_layers: int, in_channels: int, bn_size: int = 4, growth_rate: int = 32,
                 drop_rate: float = 0.0, *, kernel_init=None, rngs: nnx.Rngs):
        self.num_layers = num_layers
        for i in range(num_layers):
            setattr(self, f"denselayer{i + 1}",
                    DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate,
                               kernel_init=kernel_init, rngs=rngs))
        self.out_channels = in_channels + num_layers * growth_rate

    def __call__(self, x):
        features = [x]
        for i in range(self.num_layers):
            features.append(getattr(self, f"denselayer{i + 1}")(jnp.concatenate(features, axis=-1)))
        return jnp.concatenate(features, axis=-1)


class Transition(Sequential):
    """DenseNet transition: BN -> ReLU -> 1x1 conv (compression) -> 2x2 average pool, stride 2.

    Children `norm`, `relu`, `conv`, `pool`. Shapes: (N, H, W, C) -> (N, H/2, W/2, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_init=None, rngs: nnx.Rngs):
        super().__init__(norm=batch_norm2d(in_channels, rngs=rngs), relu=Activation("relu"),
                         conv=Conv2d(in_channels, out_channels, 1, bias=False, kernel_init=kernel_init,
                                     rngs=rngs),
                         pool=AvgPool2d(2, 2))


class InvertedResidual(nnx.Module):
    """MobileNetV2's inverted residual with linear bottleneck (Sandler et al. 2018).

    1x1 expand (x expand_ratio, BN, ReLU6) -> 3x3 depthwise (stride, BN, ReLU6) -> 1x1 project (BN,
    no activation); the input is added back when stride is 1 and the widths match. Child `conv` is
    a `Sequential` laid out as torchvision's (`conv.0.0` expand conv, ..., `conv.2` project conv,
    `conv.3` its BN; without expansion `conv.0` is the depthwise unit).

    Shapes: (N, H, W, in_channels) -> (N, H/stride, W/stride, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int, *,
                 kernel_init=None, rngs: nnx.Rngs):
        stride = check_int(stride, "stride", low=1, high=2, who="InvertedResidual")
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, 1, activation="relu6", kernel_init=kernel_init, rngs=rngs))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation="relu6",
                             kernel_init=kernel_init, rngs=rngs),
                   Conv2d(hidden, out_channels, 1, bias=False, kernel_init=kernel_init, rngs=rngs),
                   batch_norm2d(out_channels, rngs=rngs)]
        self.conv = Sequential(*layers)

    def __call__(self, x):
        y = self.conv(x)
        return x + y if self.use_res_connect else y


__all__ = ["BasicBlock", "BasicConv2d", "Bottleneck", "ConvBNAct", "DenseBlock", "DenseLayer",
           "InceptionModule", "InvertedResidual", "SqueezeExcitation", "Transition",
           "batch_norm2d"]
