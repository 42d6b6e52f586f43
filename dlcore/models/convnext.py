"""ConvNeXt-Tiny and ConvNeXt-Base, NHWC, torchvision's parameter names and counts.

A ConvNeXt is a ResNet modernised step by step towards a vision transformer: a 4x4/4 "patchify" stem, four
stages of blocks (7x7 depthwise conv, LayerNorm, an inverted 4x MLP with GELU, a learned per-channel layer
scale, stochastic depth on the residual branch), LayerNorm + 2x2/2 conv between stages, and a LayerNorm +
Linear head on the globally pooled map.

References: Liu et al., "A ConvNet for the 2020s" (2022), Section 3 and Figure 4; Géron, Hands-On Machine
Learning with Scikit-Learn and PyTorch, ch. 12, CNN Architectures (ConvNeXt) and Using Pretrained Models
from TorchVision (ConvNeXt-base on two sample photos).

torchvision keeps its maps NCHW and permutes to channels-last around each block's LayerNorm and Linear
layers; dlcore's maps are channels-last already, so those permutes are `Identity` layers kept only for the
child numbering (`features.1.0.block.2` is the LayerNorm in both), and torchvision's LayerNorm2d is a
plain LayerNorm over the last axis. A torchvision state dict loads with `dlcore.weights.load_state_dict`.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from dlcore.checks import check_float, check_int
from dlcore.models._common import check_image
from dlcore.models.registry import register
from dlcore.nn import init
from dlcore.nn.conv import Conv2d, DepthwiseConv2d
from dlcore.nn.layers import Activation, Flatten, Identity, Linear, Sequential
from dlcore.nn.norm import LayerNorm
from dlcore.nn.regularization import StochasticDepth

__all__ = ["CNBlock", "ConvNeXt", "convnext_base", "convnext_tiny"]

_EPS = 1e-6  # torchvision's LayerNorm eps throughout ConvNeXt


def _inits():
    # torchvision: trunc_normal_(std=0.02) for every Conv2d/Linear weight, with torch's default bounds of
    # +-2 (absolute), 100 standard deviations out: the truncation never bites, so a plain normal draw.
    return dict(kernel_init=init.normal(0.02), bias_init=init.zeros())


class CNBlock(nnx.Module):
    """One ConvNeXt block: x + StochasticDepth(gamma * MLP(LayerNorm(DWConv7x7(x)))).

    Args:
        dim: channels C.
        layer_scale: initial value of the per-channel scale gamma (1e-6).
        stochastic_depth_prob: probability of skipping the branch for a sample in training.
        rngs: NNX random streams (params, dropout).

    Children (torchvision's names): `block` (0 depthwise conv, 1 permute (identity here), 2 LayerNorm,
    3 Linear C -> 4C, 4 GELU (exact, erf), 5 Linear 4C -> C, 6 permute), `layer_scale` of torch's shape
    (C, 1, 1), `stochastic_depth`. Parameters: 8C^2 + 58C (depthwise conv 49C + C, LayerNorm 2C, MLP
    8C^2 + 5C, layer scale C).

    Shapes: (N, H, W, C) -> (N, H, W, C).
    """

    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float, *, rngs):
        kw = _inits()
        self.block = Sequential(
            DepthwiseConv2d(dim, 7, padding=3, rngs=rngs, **kw),
            Identity(),
            LayerNorm(dim, eps=_EPS),
            Linear(dim, 4 * dim, rngs=rngs, **kw),
            Activation("gelu"),
            Linear(4 * dim, dim, rngs=rngs, **kw),
            Identity(),
        )
        # torch's (C, 1, 1), which broadcasts over an NCHW map; kept in that shape so the state dict loads
        self.layer_scale = nnx.Param(jnp.full((dim, 1, 1), layer_scale, jnp.float32))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row", rngs=rngs.dropout)

    def __call__(self, x):
        gamma = self.layer_scale[...].reshape(-1)                # (C,): the channel axis is last here
        return x + self.stochastic_depth(gamma * self.block(x))


class ConvNeXt(nnx.Module):
    """ConvNeXt: 4x4/4 stem + LayerNorm, stages of `CNBlock`s with LayerNorm + 2x2/2 downsampling, head.

    Args:
        block_setting: one `(input_channels, out_channels, num_layers)` per stage; `out_channels` is the
            width after the downsampling that follows the stage, None for the last stage.
        stochastic_depth_prob: the last block's drop probability; block i of n drops with
            `stochastic_depth_prob * i / (n - 1)`, rising linearly from 0 (torchvision's rule).
        layer_scale: initial value of every block's layer scale.
        num_classes: outputs.
        in_channels: image channels.
        rngs: NNX random streams (params, dropout).

    Init (torchvision): N(0, 0.02) conv and linear weights, zero biases, LayerNorms 1/0.

    Children (torchvision's names): `features` (0 stem: 0 conv, 1 LayerNorm; then stage, downsampling
    (0 LayerNorm, 1 conv), stage, ..., each stage a `Sequential` of `CNBlock`s), `classifier` (0 LayerNorm,
    1 Flatten, 2 Linear). The global average pool has no parameters.

    Shapes: (N, H, W, in_channels) -> (N, num_classes); H, W >= 32 (224 in the paper).
    """

    min_size = 32

    def __init__(self, block_setting: Sequence[tuple[int, int | None, int]], stochastic_depth_prob: float = 0.0,
                 layer_scale: float = 1e-6, num_classes: int = 1000, in_channels: int = 3, *, rngs: nnx.Rngs):
        who = "ConvNeXt"
        if not block_setting:
            raise ValueError("ConvNeXt: block_setting is empty; give one (input_channels, out_channels, "
                             "num_layers) per stage")
        setting = []
        for i, stage in enumerate(block_setting):
            if not (isinstance(stage, (tuple, list)) and len(stage) == 3):
                raise ValueError(f"ConvNeXt: block_setting[{i}] must be (input_channels, out_channels, "
                                 f"num_layers), got {stage!r}")
            cin, cout, n = stage
            check_int(cin, f"block_setting[{i}] input_channels", low=1, who=who)
            if cout is not None:
                check_int(cout, f"block_setting[{i}] out_channels", low=1, who=who)
            check_int(n, f"block_setting[{i}] num_layers", low=1, who=who)
            setting.append((cin, cout, n))
        for (_, cout, _), (cin, _, _) in zip(setting, setting[1:]):
            if cout != cin:
                raise ValueError(f"ConvNeXt: a stage's out_channels ({cout}) must be the next stage's "
                                 f"input_channels ({cin})")
        check_float(stochastic_depth_prob, "stochastic_depth_prob", low=0, high=1, who=who)
        check_float(layer_scale, "layer_scale", who=who)
        check_int(num_classes, "num_classes", low=1, who=who)
        check_int(in_channels, "in_channels", low=1, who=who)
        rngs = init.InitKeys(rngs)
        kw = _inits()
        self.in_channels = in_channels
        first = setting[0][0]
        layers = [Sequential(Conv2d(in_channels, first, 4, 4, rngs=rngs, **kw), LayerNorm(first, eps=_EPS))]
        total = sum(n for _, _, n in setting)
        index = 0
        for cin, cout, n in setting:
            blocks = []
            for _ in range(n):
                # torchvision's linear rule (the first block never drops); one block alone: no division by 0
                p = stochastic_depth_prob * index / (total - 1.0) if total > 1 else 0.0
                blocks.append(CNBlock(cin, layer_scale, p, rngs=rngs))
                index += 1
            layers.append(Sequential(*blocks))
            if cout is not None:
                layers.append(Sequential(LayerNorm(cin, eps=_EPS), Conv2d(cin, cout, 2, 2, rngs=rngs, **kw)))
        last = setting[-1][1] or setting[-1][0]
        self.num_features = last
        self.features = Sequential(*layers)
        self.classifier = Sequential(LayerNorm(last, eps=_EPS), Flatten(), Linear(last, num_classes, rngs=rngs,
                                                                                  **kw))

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=self.min_size, model="ConvNeXt")
        x = self.features(x)                                     # (N, H/32, W/32, C_last)
        return self.classifier(x.mean(axis=(1, 2)))              # (N, C_last) -> (N, num_classes)


_TINY = ((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3))
_BASE = ((128, 256, 3), (256, 512, 3), (512, 1024, 27), (1024, None, 3))


@register("convnext_tiny")
def convnext_tiny(num_classes: int = 1000, in_channels: int = 3, stochastic_depth_prob: float = 0.1, *,
                  rngs: nnx.Rngs) -> ConvNeXt:
    """ConvNeXt-T: widths 96-192-384-768, blocks 3-3-9-3, stochastic depth 0.1; 28,589,128 parameters at 1000
    classes (torchvision's `convnext_tiny`)."""
    return ConvNeXt(_TINY, stochastic_depth_prob, 1e-6, num_classes, in_channels, rngs=rngs)


@register("convnext_base")
def convnext_base(num_classes: int = 1000, in_channels: int = 3, stochastic_depth_prob: float = 0.5, *,
                  rngs: nnx.Rngs) -> ConvNeXt:
    """ConvNeXt-B: widths 128-256-512-1024, blocks 3-3-27-3, stochastic depth 0.5; 88,591,464 parameters at
    1000 classes (torchvision's `convnext_base`, the model of Géron's ch. 12 pretrained example)."""
    return ConvNeXt(_BASE, stochastic_depth_prob, 1e-6, num_classes, in_channels, rngs=rngs)
