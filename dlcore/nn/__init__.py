"""Building blocks Flax does not have, with PyTorch's names, defaults and initialisation."""

from dlcore.nn import (activations, attention, blocks, conv, embedding, init, layers, norm, padding, recurrent,
                       regularization, resample)
from dlcore.nn.blocks import (BasicBlock, BasicConv2d, Bottleneck, ConvBNAct, DenseBlock, DenseLayer,
                              InceptionModule, InvertedResidual, SqueezeExcitation, Transition, batch_norm2d)
from dlcore.nn.conv import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool1d, AvgPool2d, AvgPool3d,
                            CausalConv1d, Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
                            ConvTranspose3d, DepthMaxPool, DepthwiseConv2d, GlobalAvgPool2d,
                            GlobalMaxPool2d, LocalResponseNorm, MaxPool1d, MaxPool2d, MaxPool3d,
                            SeparableConv2d, adaptive_avg_pool1d, adaptive_avg_pool2d,
                            adaptive_max_pool1d, adaptive_max_pool2d, avg_pool1d, avg_pool2d,
                            avg_pool3d, depth_max_pool, global_avg_pool2d, global_max_pool2d,
                            local_response_norm, max_pool1d, max_pool2d, max_pool3d)
from dlcore.nn.embedding import Embedding, Frozen
from dlcore.nn.init import torch_uniform
from dlcore.nn.layers import (MLP, Activation, Dropout2d, Flatten, Identity, Linear, Sequential,
                              activation, flatten)
from dlcore.nn.activations import GLU, PReLU, RReLU, SwiGLU, Swish
from dlcore.nn.norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, InstanceNorm1d, InstanceNorm2d, LayerNorm
from dlcore.nn.padding import (ConstantPad1d, ConstantPad2d, ReflectionPad1d, ReflectionPad2d, ReplicationPad1d,
                               ReplicationPad2d, ZeroPad1d, ZeroPad2d)
from dlcore.nn.resample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d, interpolate
from dlcore.nn.attention import AdditiveScore, GeneralScore, MultiheadAttention
from dlcore.nn.recurrent import GRU, LSTM, RNN, GRUCell, LayerNormRNNCell, LSTMCell, Recurrence, RNNCell
from dlcore.nn.regularization import AlphaDropout, MCDropout, StochasticDepth, mc_predict

__all__ = [
    "BasicBlock", "BasicConv2d", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Bottleneck", "ConvBNAct",
    "DenseBlock", "DenseLayer", "InceptionModule", "InvertedResidual", "LayerNorm", "SqueezeExcitation",
    "Transition", "activations", "batch_norm2d", "blocks", "conv", "layers", "norm", "regularization",
    "MLP", "Activation", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "AvgPool1d", "AvgPool2d",
    "AvgPool3d", "CausalConv1d", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
    "ConvTranspose3d", "DepthMaxPool", "DepthwiseConv2d", "Dropout2d", "Flatten", "GlobalAvgPool2d",
    "GlobalMaxPool2d", "Identity", "Linear", "LocalResponseNorm", "MaxPool1d", "MaxPool2d",
    "MaxPool3d", "SeparableConv2d", "Sequential", "activation", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "depth_max_pool", "flatten", "global_avg_pool2d", "global_max_pool2d", "init",
    "local_response_norm", "max_pool1d", "max_pool2d", "max_pool3d", "torch_uniform",
    "AlphaDropout", "GLU", "MCDropout", "PReLU", "RReLU", "StochasticDepth", "SwiGLU", "Swish", "mc_predict",
    "Embedding", "Frozen", "GRU", "GRUCell", "LSTM", "LSTMCell", "LayerNormRNNCell", "RNN", "RNNCell",
    "Recurrence", "embedding", "recurrent",
    "AdditiveScore", "GeneralScore", "MultiheadAttention", "attention",
    "InstanceNorm1d", "InstanceNorm2d", "ConstantPad1d", "ConstantPad2d", "ReflectionPad1d", "ReflectionPad2d",
    "ReplicationPad1d", "ReplicationPad2d", "ZeroPad1d", "ZeroPad2d", "padding",
    "Upsample", "UpsamplingBilinear2d", "UpsamplingNearest2d", "interpolate", "resample",
]
