"""Building blocks Flax does not have, with PyTorch's names, defaults and initialisation."""

from dlcore.nn.init import torch_uniform
from dlcore.nn.layers import MLP, Conv2d, Dropout2d, Linear, activation, flatten, max_pool2d

__all__ = ["MLP", "Conv2d", "Dropout2d", "Linear", "activation", "flatten", "max_pool2d", "torch_uniform"]
