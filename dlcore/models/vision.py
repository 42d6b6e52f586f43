"""The books' own small CNNs and MLPs for 28x28 images (NHWC)."""

from __future__ import annotations

import jax
from flax import nnx

from dlcore.models.registry import register
from dlcore.nn import MLP, Conv2d, Dropout2d, Linear, flatten, max_pool2d


@register("mnist_convnet")
class MNISTConvNet(nnx.Module):
    """The MNIST ConvNet of Jha, Mastering PyTorch, ch. 1 (its `ConvNet` class), in NHWC.

    conv 1->16 k3 (VALID) -> ReLU -> conv 16->32 k3 -> ReLU -> maxpool 2 -> Dropout2d(0.1)
    -> flatten 12*12*32 = 4608 -> Linear 64 -> ReLU -> dropout(0.25) -> Linear 10 -> log_softmax.

    The book's second `Dropout2d(0.25)` acts on a (N, 64) tensor, where PyTorch drops single
    features, so it is plain element dropout here.

    Args:
        num_classes: output classes (10).
        in_channels: input channels (1).
        image_size: input height and width (28); sets fc1's fan-in.
        rngs: NNX random streams (init and dropout).

    Shapes: (N, image_size, image_size, in_channels) -> (N, num_classes) log-probabilities.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, *,
                 rngs: nnx.Rngs):
        self.cn1 = Conv2d(in_channels, 16, 3, 1, rngs=rngs)
        self.cn2 = Conv2d(16, 32, 3, 1, rngs=rngs)
        self.dp1 = Dropout2d(0.10, rngs=rngs)
        self.dp2 = nnx.Dropout(0.25, rngs=rngs)
        side = (image_size - 4) // 2
        self.fc1 = Linear(side * side * 32, 64, rngs=rngs)  # 4608 = 12 x 12 x 32 at 28x28
        self.fc2 = Linear(64, num_classes, rngs=rngs)
        self.torch_flatten = (("fc1", (32, side, side)),)  # dlcore.weights: torch flattens (C, H, W)

    def __call__(self, x):
        x = jax.nn.relu(self.cn1(x))             # (N, 26, 26, 16)
        x = jax.nn.relu(self.cn2(x))             # (N, 24, 24, 32)
        x = self.dp1(max_pool2d(x, 2))           # (N, 12, 12, 32)
        x = flatten(x)                           # (N, 4608), (H, W, C) order
        x = self.dp2(jax.nn.relu(self.fc1(x)))   # (N, 64)
        return jax.nn.log_softmax(self.fc2(x))   # (N, 10)


@register("mlp")
def mlp(sizes=(784, 300, 100, 10), activation: str = "relu", *, rngs: nnx.Rngs) -> MLP:
    """A fully connected classifier or regressor, e.g. Géron's 784-300-100-10 (ch. 10, Building the Classifier)."""
    return MLP(sizes, activation, rngs=rngs)


@register("linear")
def linear(in_features: int = 1, out_features: int = 1, *, rngs: nnx.Rngs) -> Linear:
    """`nn.Linear(in_features, out_features)` with PyTorch's init (Antiga et al., ch. 6)."""
    return Linear(in_features, out_features, rngs=rngs)
