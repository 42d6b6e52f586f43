"""Models, each registered by name."""

from dlcore.models import vision
from dlcore.models.registry import count_params, create, names, register
from dlcore.models.vision import MNISTConvNet

__all__ = ["MNISTConvNet", "count_params", "create", "names", "register", "vision"]
