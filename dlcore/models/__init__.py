"""Models, each registered by name: `create(name, **kw)`, `names()`, `count_params(model)`."""

from dlcore.models import (books, convnext, densenet, inception, inception_v3, language, mnist1d, mobilenet, resnet,
                           sentiment, seq2seq, sequence, vgg, vision, xception)
from dlcore.models.books import CatsDogsCNN, FashionCNN, MNISTBatchNormCNN, MNISTCNN001
from dlcore.models.convnext import ConvNeXt
from dlcore.models.densenet import DenseNet
from dlcore.models import gan  # noqa: E402  dcgan_generator, dcgan_discriminator, cyclegan_generator
from dlcore.models.inception import GoogLeNet, GoogLeNetOutputs, googlenet_loss
from dlcore.models.inception_v3 import Inception3, InceptionOutputs, inception_v3_loss
from dlcore.models.mobilenet import MobileNetV2
from dlcore.models.registry import count_params, create, names, register
from dlcore.models.resnet import ResNet
from dlcore.models.text_classifiers import EmbNet, IMDBCnn, IMDBRnn
from dlcore.models.vgg import VGG, AlexNet, LeNet5
from dlcore.models.vision import MNISTConvNet
from dlcore.models.xception import Xception

__all__ = [
    "AlexNet", "CatsDogsCNN", "ConvNeXt", "DenseNet", "EmbNet", "FashionCNN", "GoogLeNet", "GoogLeNetOutputs",
    "IMDBCnn", "IMDBRnn", "Inception3", "InceptionOutputs", "LeNet5",
    "MNISTBatchNormCNN", "MNISTCNN001", "MNISTConvNet", "MobileNetV2", "ResNet", "VGG", "Xception",
    "books", "convnext", "count_params", "create", "densenet", "gan", "googlenet_loss", "inception", "inception_v3",
    "inception_v3_loss", "language",
    "mnist1d", "mobilenet", "names",
    "register", "resnet", "sentiment", "seq2seq", "sequence", "vgg", "vision", "xception",
]
