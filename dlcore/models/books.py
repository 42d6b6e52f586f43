"""The books' own small CNNs, NHWC, with the books' layer names (so their state dicts load).

`mnist_convnet` (Mastering PyTorch ch. 1) lives in `vision.py`; LeNet-5 (Géron, Table 12-1) in `vgg.py`.
"""

from __future__ import annotations

import jax
from flax import nnx

from dlcore.models._common import check_image, check_map
from dlcore.models.registry import register
from dlcore.nn.blocks import batch_norm2d
from dlcore.nn.conv import Conv2d, MaxPool2d, max_pool2d
from dlcore.nn.layers import Activation, Dropout2d, Flatten, Linear, Sequential, flatten


def _unit(cin: int, cout: int, bn: bool, rngs: nnx.Rngs) -> Sequential:
    """conv k3 p1 [-> BN] -> ReLU -> max pool 2/2, the books' "convolutional unit" (Ketkar & Moolayil, ch. 6)."""
    layers = [Conv2d(cin, cout, 3, 1, 1, rngs=rngs)]
    if bn:
        layers.append(batch_norm2d(cout, rngs=rngs))
    return Sequential(*layers, Activation("relu"), MaxPool2d(2, 2))


@register("mnist_bn_cnn")
class MNISTBatchNormCNN(nnx.Module):
    """The MNIST CNN with batch norm of Ketkar & Moolayil, Deep Learning with Python, ch. 6, Listing 6-4.

    2 x [conv k3 p1 (16, 32), BN, ReLU, max pool 2] -> flatten 7*7*32 = 1568 -> Linear 128 ->
    Linear 10 -> log_softmax. As in the book there is no activation between fc1 and fc2.
    207,018 parameters.

    Args:
        num_classes: outputs (10).
        in_channels: image channels (1).
        image_size: input height and width (28); sets fc1's fan-in.
        rngs: NNX random streams.

    Shapes: (N, image_size, image_size, in_channels) -> (N, num_classes) log-probabilities.
    Submodules: conv_unit_1, conv_unit_2 ("0" conv, "1" BN), fc1, fc2.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, *, rngs: nnx.Rngs):
        self.in_channels, self.image_size = in_channels, image_size
        self.conv_unit_1 = _unit(in_channels, 16, True, rngs)
        self.conv_unit_2 = _unit(16, 32, True, rngs)
        side = image_size // 2 // 2
        self.fc1 = Linear(side * side * 32, 128, rngs=rngs)      # 1568 = 7 x 7 x 32 at 28x28
        self.fc2 = Linear(128, num_classes, rngs=rngs)
        self.torch_flatten = (("fc1", (32, side, side)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=4, model="mnist_bn_cnn")
        side = self.image_size // 4
        check_map(x, (x.shape[1] // 4, x.shape[2] // 4), (side, side), model="mnist_bn_cnn",
                  image_size=self.image_size)
        x = self.conv_unit_2(self.conv_unit_1(x))               # (N, 7, 7, 32)
        x = self.fc2(self.fc1(flatten(x)))                      # (N, 10)
        return jax.nn.log_softmax(x)


@register("cats_dogs_cnn")
class CatsDogsCNN(nnx.Module):
    """The cats-vs-dogs CNN of Ketkar & Moolayil, Deep Learning with Python, ch. 6, Listings 6-8 to 6-14.

    4 x [conv k3 p1 (16, 32, 64, 128), ReLU, max pool 2] -> flatten 14*14*128 = 25088 -> Linear 128
    -> Linear 1. The book ends with `nn.Sigmoid()` and `BCELoss`; this returns the logit, to train
    with BCE on logits (the same loss, computed stably); apply `jax.nn.sigmoid` for probabilities.
    3,308,961 parameters at 224x224.

    Args:
        num_classes: outputs (1, a binary logit).
        in_channels: image channels (3).
        image_size: input height and width (224); sets fc1's fan-in.
        rngs: NNX random streams.

    Shapes: (N, image_size, image_size, in_channels) -> (N, num_classes) logits.
    Submodules: conv_unit_1..conv_unit_4 ("0" conv), fc1, fc2.
    """

    def __init__(self, num_classes: int = 1, in_channels: int = 3, image_size: int = 224, *, rngs: nnx.Rngs):
        self.in_channels, self.image_size = in_channels, image_size
        widths = (in_channels, 16, 32, 64, 128)
        for i in range(4):
            setattr(self, f"conv_unit_{i + 1}", _unit(widths[i], widths[i + 1], False, rngs))
        side = image_size // 16
        self.fc1 = Linear(side * side * 128, 128, rngs=rngs)    # 25088 = 14 x 14 x 128 at 224
        self.fc2 = Linear(128, num_classes, rngs=rngs)
        self.torch_flatten = (("fc1", (128, side, side)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=16, model="cats_dogs_cnn")
        side = self.image_size // 16
        check_map(x, (x.shape[1] // 16, x.shape[2] // 16), (side, side), model="cats_dogs_cnn",
                  image_size=self.image_size)
        for i in range(4):
            x = getattr(self, f"conv_unit_{i + 1}")(x)          # (N, 14, 14, 128) at 224
        return self.fc2(self.fc1(flatten(x)))


@register("mnist_cnn_001")
class MNISTCNN001(nnx.Module):
    """The MNIST CNN of Subramanian, Deep Learning with PyTorch, ch. 5, after PyTorch's MNIST example.

    conv 1-10 k5 -> max pool 2 -> ReLU -> conv 10-20 k5 -> Dropout2d(0.5) -> max pool 2 -> ReLU ->
    flatten 4*4*20 = 320 -> Linear 50 -> ReLU -> dropout(0.5) -> Linear 10 -> log_softmax.
    21,840 parameters.

    Args:
        num_classes: outputs (10).
        in_channels: image channels (1).
        rngs: NNX random streams (init and dropout).

    Shapes: (N, 28, 28, in_channels) -> (N, num_classes) log-probabilities.
    Submodules: conv1, conv2, conv2_drop, fc1, fc2.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, rngs: nnx.Rngs):
        self.in_channels = in_channels
        self.conv1 = Conv2d(in_channels, 10, 5, rngs=rngs)
        self.conv2 = Conv2d(10, 20, 5, rngs=rngs)
        self.conv2_drop = Dropout2d(0.5, rngs=rngs)
        self.fc1 = Linear(320, 50, rngs=rngs)
        self.fc2 = Linear(50, num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.torch_flatten = (("fc1", (20, 4, 4)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=28, model="mnist_cnn_001")
        got = tuple(((d - 4) // 2 - 4) // 2 for d in x.shape[1:3])
        check_map(x, got, (4, 4), model="mnist_cnn_001", image_size=28)
        x = jax.nn.relu(max_pool2d(self.conv1(x), 2))                    # (N, 12, 12, 10)
        x = jax.nn.relu(max_pool2d(self.conv2_drop(self.conv2(x)), 2))   # (N, 4, 4, 20)
        x = self.dropout(jax.nn.relu(self.fc1(flatten(x))))              # (N, 50)
        return jax.nn.log_softmax(self.fc2(x))


@register("fashion_cnn")
class FashionCNN(Sequential):
    """The Fashion-MNIST CNN of Géron, Hands-On ML, ch. 12, CNN Architectures, an `nn.Sequential` there and here.

    conv 64 k7 'same' -> pool 2 -> 2 x conv 128 k3 'same' -> pool 2 -> 2 x conv 256 -> pool 2 ->
    flatten 3*3*256 = 2304 -> 128 ReLU -> dropout .5 -> 64 ReLU -> dropout .5 -> 10 logits.
    ReLU after every conv. 1,413,834 parameters. Children keep the book's indices ("0" the first
    conv, "14" the first Linear), so the book's state dict loads as is.

    Args:
        num_classes: outputs (10).
        in_channels: image channels (1).
        image_size: input height and width (28); sets the first Linear's fan-in.
        rngs: NNX random streams.

    Shapes: (N, image_size, image_size, in_channels) -> (N, num_classes) logits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, *, rngs: nnx.Rngs):
        relu = lambda: Activation("relu")  # noqa: E731
        conv = lambda i, o, k=3: Conv2d(i, o, k, padding="same", rngs=rngs)  # noqa: E731
        side = image_size // 2 // 2 // 2
        super().__init__(
            conv(in_channels, 64, 7), relu(), MaxPool2d(2),
            conv(64, 128), relu(), conv(128, 128), relu(), MaxPool2d(2),
            conv(128, 256), relu(), conv(256, 256), relu(), MaxPool2d(2),
            Flatten(),
            Linear(side * side * 256, 128, rngs=rngs), relu(), nnx.Dropout(0.5, rngs=rngs),
            Linear(128, 64, rngs=rngs), relu(), nnx.Dropout(0.5, rngs=rngs),
            Linear(64, num_classes, rngs=rngs))
        self.in_channels, self.image_size = in_channels, image_size
        self.torch_flatten = (("14", (256, side, side)),)

    def __call__(self, x):
        check_image(x, channels=self.in_channels, min_size=8, model="fashion_cnn")
        side = self.image_size // 8
        check_map(x, (x.shape[1] // 8, x.shape[2] // 8), (side, side), model="fashion_cnn",
                  image_size=self.image_size)
        return super().__call__(x)
