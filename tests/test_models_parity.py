"""The model zoo against PyTorch: torch reference modules built by hand with torchvision's parameter
names, random weights loaded through `dlcore.weights`, outputs compared (eval mode, and training
mode where it is deterministic), plus gradient parity for the blocks.

The references are written here from the papers (torchvision is not installed); they share
torchvision's module names, so the same state dicts would load a torchvision model.
"""

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore import models, weights
from dlcore.models.densenet import DenseNet
from dlcore.models.vgg import VGG
from dlcore.nn import blocks

torch = pytest.importorskip("torch")
tnn = torch.nn
F = torch.nn.functional


# ------------------------------------------------------------------------------------------------
# torch references
# ------------------------------------------------------------------------------------------------

class TSE(tnn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.fc1, self.fc2 = tnn.Linear(c, c // r), tnn.Linear(c // r, c)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


def _tdown(cin, cout, stride):
    return tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))


class TBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, cin, c, stride=1, se=None):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, c, 3, stride, 1, bias=False), tnn.BatchNorm2d(c)
        self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, 1, 1, bias=False), tnn.BatchNorm2d(c)
        self.se = TSE(c, se) if se else None
        self.downsample = _tdown(cin, c, stride) if (stride != 1 or cin != c) else None

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.se is not None:
            y = self.se(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, cin, c, stride=1, se=None):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(cin, c, 1, bias=False), tnn.BatchNorm2d(c)
        self.conv2, self.bn2 = tnn.Conv2d(c, c, 3, stride, 1, bias=False), tnn.BatchNorm2d(c)
        self.conv3, self.bn3 = tnn.Conv2d(c, 4 * c, 1, bias=False), tnn.BatchNorm2d(4 * c)
        self.se = TSE(4 * c, se) if se else None
        self.downsample = _tdown(cin, 4 * c, stride) if (stride != 1 or cin != 4 * c) else None

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.se is not None:
            y = self.se(y)
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000, se=None):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False), tnn.BatchNorm2d(64)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        c = 64
        for i, (n, w) in enumerate(zip(layers, (64, 128, 256, 512))):
            units = []
            for j in range(n):
                units.append(block(c, w, 2 if (i and not j) else 1, se))
                c = w * block.expansion
            setattr(self, f"layer{i + 1}", tnn.Sequential(*units))
        self.fc = tnn.Linear(c, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean((2, 3)))


def t_vgg(cfg, bn, hidden, num_classes):
    class TVGG(tnn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v == "M":
                    layers.append(tnn.MaxPool2d(2, 2))
                    continue
                layers.append(tnn.Conv2d(c, v, 3, padding=1))
                if bn:
                    layers.append(tnn.BatchNorm2d(v))
                layers.append(tnn.ReLU())
                c = v
            self.features = tnn.Sequential(*layers)
            self.avgpool = tnn.AdaptiveAvgPool2d(7)
            self.classifier = tnn.Sequential(tnn.Linear(c * 49, hidden), tnn.ReLU(), tnn.Dropout(),
                                             tnn.Linear(hidden, hidden), tnn.ReLU(), tnn.Dropout(),
                                             tnn.Linear(hidden, num_classes))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    return TVGG()


class TDenseLayer(tnn.Module):
    def __init__(self, cin, growth, bn_size):
        super().__init__()
        self.norm1, self.relu1 = tnn.BatchNorm2d(cin), tnn.ReLU()
        self.conv1 = tnn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = tnn.BatchNorm2d(bn_size * growth), tnn.ReLU()
        self.conv2 = tnn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TDenseBlock(tnn.ModuleDict):
    def __init__(self, n, cin, bn_size, growth):
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", TDenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class TDenseNet(tnn.Module):
    def __init__(self, growth, blocks_, init_features, bn_size, num_classes):
        super().__init__()
        d = OrderedDict(conv0=tnn.Conv2d(3, init_features, 7, 2, 3, bias=False),
                        norm0=tnn.BatchNorm2d(init_features), relu0=tnn.ReLU(), pool0=tnn.MaxPool2d(3, 2, 1))
        c = init_features
        for i, n in enumerate(blocks_):
            d[f"denseblock{i + 1}"] = TDenseBlock(n, c, bn_size, growth)
            c += n * growth
            if i != len(blocks_) - 1:
                d[f"transition{i + 1}"] = tnn.Sequential(OrderedDict(
                    norm=tnn.BatchNorm2d(c), relu=tnn.ReLU(), conv=tnn.Conv2d(c, c // 2, 1, bias=False),
                    pool=tnn.AvgPool2d(2, 2)))
                c //= 2
        d["norm5"] = tnn.BatchNorm2d(c)
        self.features = tnn.Sequential(d)
        self.classifier = tnn.Linear(c, num_classes)

    def forward(self, x):
        return self.classifier(F.relu(self.features(x)).mean((2, 3)))


class TBasicConv2d(tnn.Module):
    def __init__(self, cin, cout, k, stride=1, padding=0):
        super().__init__()
        self.conv = tnn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class TInception(tnn.Module):
    def __init__(self, cin, c1, c3r, c3, c5r, c5, pp):
        super().__init__()
        self.branch1 = TBasicConv2d(cin, c1, 1)
        self.branch2 = tnn.Sequential(TBasicConv2d(cin, c3r, 1), TBasicConv2d(c3r, c3, 3, padding=1))
        self.branch3 = tnn.Sequential(TBasicConv2d(cin, c5r, 1), TBasicConv2d(c5r, c5, 3, padding=1))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True), TBasicConv2d(cin, pp, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TAux(tnn.Module):
    def __init__(self, cin, num_classes):
        super().__init__()
        self.conv = TBasicConv2d(cin, 128, 1)
        self.fc1, self.fc2 = tnn.Linear(2048, 1024), tnn.Linear(1024, num_classes)

    def forward(self, x):
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(F.relu(self.fc1(x)))


class TGoogLeNet(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        from dlcore.models.inception import _MODULES
        self.conv1 = TBasicConv2d(3, 64, 7, 2, 3)
        self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.conv3 = TBasicConv2d(64, 64, 1), TBasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        for name, w in _MODULES.items():
            setattr(self, name, TInception(*w))
        self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
        self.maxpool4 = tnn.MaxPool2d(2, 2, ceil_mode=True)
        self.aux1, self.aux2 = TAux(512, num_classes), TAux(528, num_classes)
        self.fc = tnn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.inception4a(self.maxpool3(self.inception3b(self.inception3a(x))))
        a1 = self.aux1(x) if self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        a2 = self.aux2(x) if self.training else None
        x = self.inception5b(self.inception5a(self.maxpool4(self.inception4e(x))))
        x = self.fc(x.mean((2, 3)))
        return (x, a2, a1) if self.training else x


def _tcna(cin, cout, k=3, stride=1, groups=1):
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6())


class TInvertedResidual(tnn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hidden = cin * t
        self.use_res = stride == 1 and cin == cout
        layers = [_tcna(cin, hidden, 1)] if t != 1 else []
        layers += [_tcna(hidden, hidden, 3, stride, hidden), tnn.Conv2d(hidden, cout, 1, bias=False),
                   tnn.BatchNorm2d(cout)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class TMobileNetV2(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        from dlcore.models.mobilenet import _SETTINGS
        layers, c = [_tcna(3, 32, 3, 2)], 32
        for t, ch, n, s in _SETTINGS:
            for i in range(n):
                layers.append(TInvertedResidual(c, ch, s if i == 0 else 1, t))
                c = ch
        layers.append(_tcna(c, 1280, 1))
        self.features = tnn.Sequential(*layers)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class TSeparable(tnn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = tnn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pointwise = tnn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class TXBlock(tnn.Module):
    def __init__(self, cin, cout, reps, stride, start_with_relu=True, grow_first=True):
        super().__init__()
        widths = [cout] * reps if grow_first else [cin] * (reps - 1) + [cout]
        layers, c = [], cin
        for i, w in enumerate(widths):
            layers.append(tnn.ReLU() if (i or start_with_relu) else tnn.Identity())
            layers += [TSeparable(c, w), tnn.BatchNorm2d(w)]
            c = w
        if stride != 1:
            layers.append(tnn.MaxPool2d(3, stride, 1))
        self.rep = tnn.Sequential(*layers)
        if cout != cin or stride != 1:
            self.skip = tnn.Conv2d(cin, cout, 1, stride, bias=False)
            self.skipbn = tnn.BatchNorm2d(cout)
        else:
            self.skip = None

    def forward(self, x):
        return self.rep(x) + (x if self.skip is None else self.skipbn(self.skip(x)))


class TXception(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.bn1 = tnn.Conv2d(3, 32, 3, 2, bias=False), tnn.BatchNorm2d(32)
        self.conv2, self.bn2 = tnn.Conv2d(32, 64, 3, bias=False), tnn.BatchNorm2d(64)
        self.block1 = TXBlock(64, 128, 2, 2, start_with_relu=False)
        self.block2, self.block3 = TXBlock(128, 256, 2, 2), TXBlock(256, 728, 2, 2)
        for i in range(4, 12):
            setattr(self, f"block{i}", TXBlock(728, 728, 3, 1))
        self.block12 = TXBlock(728, 1024, 2, 2, grow_first=False)
        self.conv3, self.bn3 = TSeparable(1024, 1536), tnn.BatchNorm2d(1536)
        self.conv4, self.bn4 = TSeparable(1536, 2048), tnn.BatchNorm2d(2048)
        self.fc = tnn.Linear(2048, num_classes)

    def forward(self, x):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        for i in range(1, 13):
            x = getattr(self, f"block{i}")(x)
        x = F.relu(self.bn4(self.conv4(F.relu(self.bn3(self.conv3(x))))))
        return self.fc(x.mean((2, 3)))


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _images(n, size, c=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, size, size)).astype(np.float32)


def _calibrate(tmodel, x):
    """Random BN affine parameters, and running statistics set to those of `x`, so every BN sees
    unit-scale activations in eval mode (deep nets with torch's default init otherwise fade out)."""
    torch.manual_seed(1)
    bns = [m for m in tmodel.modules() if isinstance(m, tnn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
            m.momentum = 1.0
        tmodel.train()
        tmodel(torch.from_numpy(x))
    for m in bns:
        m.momentum = 0.1
    tmodel.eval()


def _forward(model, x_nhwc):
    return np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(x_nhwc)))


def _assert_close(got, want, tol=1e-4, floor=1e-2):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)
    assert np.abs(want).max() > floor  # the comparison is not between two vanishing signals


def _check_model(jmodel, tmodel, x, tol=1e-4):
    _calibrate(tmodel, x)
    weights.load_state_dict(jmodel, tmodel.state_dict())
    jmodel.eval()
    with torch.no_grad():
        want = tmodel(torch.from_numpy(x)).numpy()
    _assert_close(_forward(jmodel, np.moveaxis(x, 1, -1)), want, tol)


# ------------------------------------------------------------------------------------------------
# one model of each family
# ------------------------------------------------------------------------------------------------

def test_resnet18_matches_torch_and_exports_back():
    torch.manual_seed(0)
    t, j = TResNet(TBasicBlock, (2, 2, 2, 2), 10), models.create("resnet18", num_classes=10)
    x = _images(2, 32)
    _check_model(j, t, x)
    exported = weights.state_dict(j)
    ref = t.state_dict()
    assert set(exported) == set(ref)
    for k, v in ref.items():
        np.testing.assert_allclose(exported[k], v.numpy(), rtol=1e-6, err_msg=k)
    t.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in exported.items()}, strict=True)


def test_vgg_bn_matches_torch_with_flatten_permutation():
    torch.manual_seed(0)
    cfg = (8, "M", 16, 16, "M", 32, "M")       # 56x56 -> 7x7x32 before the classifier: no pooling tricks
    t, j = t_vgg(cfg, True, 64, 10), VGG(cfg, True, 10, hidden=64, rngs=nnx.Rngs(0))
    _check_model(j, t, _images(2, 56))


def test_densenet_matches_torch():
    torch.manual_seed(0)
    t, j = TDenseNet(8, (2, 3, 2, 2), 16, 4, 10), DenseNet(8, (2, 3, 2, 2), 16, 4, num_classes=10, rngs=nnx.Rngs(0))
    _check_model(j, t, _images(2, 32))


def test_googlenet_matches_torch():
    torch.manual_seed(0)
    t = TGoogLeNet(10)
    j = models.create("googlenet", num_classes=10)
    x = _images(2, 32)
    _check_model(j, t, x)
    # training mode returns the two auxiliary outputs as well (shapes only: tracing, no compilation)
    j.train()
    out = nnx.eval_shape(lambda m, x: m(x), j, jnp.zeros((2, 32, 32, 3)))
    assert isinstance(out, models.GoogLeNetOutputs) and all(o.shape == (2, 10) for o in out)


def test_googlenet_aux_head_and_loss():
    torch.manual_seed(0)
    j, t = models.inception.InceptionAux(16, 5, dropout=0.0, rngs=nnx.Rngs(0)), TAux(16, 5)
    _check_block_grads(j, t, _images(2, 7, 16))   # 7x7 maps pooled adaptively to 4x4
    logits, aux2, aux1 = (jnp.asarray(np.random.default_rng(i).standard_normal((3, 5)), jnp.float32)
                          for i in range(3))
    base = lambda o, y: -jax.nn.log_softmax(o)[jnp.arange(3), y]  # noqa: E731
    y = jnp.array([0, 3, 4])
    loss = models.googlenet_loss(base)(models.GoogLeNetOutputs(logits, aux2, aux1), y)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(base(logits, y) + 0.3 * (base(aux1, y) + base(aux2, y))),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(models.googlenet_loss(base)(logits, y)), np.asarray(base(logits, y)))


def test_mobilenet_v2_matches_torch():
    torch.manual_seed(0)
    t, j = TMobileNetV2(10), models.create("mobilenet_v2", num_classes=10)
    _check_model(j, t, _images(2, 64))  # 2x2 maps at the end: BN statistics of a 1x1 map are degenerate


def test_xception_matches_torch():
    torch.manual_seed(0)
    t, j = TXception(10), models.create("xception", num_classes=10)
    _check_model(j, t, _images(2, 64))


# ------------------------------------------------------------------------------------------------
# the books' CNNs (names and flatten order as in the books' code)
# ------------------------------------------------------------------------------------------------

class TMNISTBN(tnn.Module):  # 000 Listing 6-4
    def __init__(self):
        super().__init__()
        unit = lambda i, o: tnn.Sequential(tnn.Conv2d(i, o, 3, 1, 1), tnn.BatchNorm2d(o), tnn.ReLU(),  # noqa: E731
                                           tnn.MaxPool2d(2, 2))
        self.conv_unit_1, self.conv_unit_2 = unit(1, 16), unit(16, 32)
        self.fc1, self.fc2 = tnn.Linear(7 * 7 * 32, 128), tnn.Linear(128, 10)

    def forward(self, x):
        x = self.conv_unit_2(self.conv_unit_1(x))
        return F.log_softmax(self.fc2(self.fc1(x.view(x.size(0), -1))), dim=1)


class TMNIST001(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = tnn.Conv2d(1, 10, 5), tnn.Conv2d(10, 20, 5)
        self.conv2_drop = tnn.Dropout2d()
        self.fc1, self.fc2 = tnn.Linear(320, 50), tnn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.dropout(F.relu(self.fc1(x.view(-1, 320))), training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def t_fashion():  # Géron, ch. 12, CNN Architectures
    conv = lambda i, o, k=3: tnn.Conv2d(i, o, k, padding="same")  # noqa: E731
    return tnn.Sequential(
        conv(1, 64, 7), tnn.ReLU(), tnn.MaxPool2d(2),
        conv(64, 128), tnn.ReLU(), conv(128, 128), tnn.ReLU(), tnn.MaxPool2d(2),
        conv(128, 256), tnn.ReLU(), conv(256, 256), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Flatten(), tnn.Linear(2304, 128), tnn.ReLU(), tnn.Dropout(0.5),
        tnn.Linear(128, 64), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(64, 10))


@pytest.mark.parametrize("name,ref", [("mnist_bn_cnn", TMNISTBN), ("mnist_cnn_001", TMNIST001),
                                      ("fashion_cnn", t_fashion)])
def test_book_cnns_match_torch(name, ref):
    torch.manual_seed(0)
    _check_model(models.create(name), ref(), _images(2, 28, 1))


# ------------------------------------------------------------------------------------------------
# blocks: forward and gradients in training mode (batch statistics)
# ------------------------------------------------------------------------------------------------

def _check_block_grads(jblock, tblock, x):
    torch.manual_seed(1)
    weights.load_state_dict(jblock, tblock.state_dict())
    tblock.train()
    jblock.train()
    xt = torch.tensor(x, requires_grad=True)
    yt = tblock(xt)
    g = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    (yt * torch.from_numpy(g)).sum().backward()
    graphdef, params, rest = nnx.split(jblock, nnx.Param, ...)

    def f(p, x):
        return nnx.merge(graphdef, p, rest, copy=True)(x)

    yj, vjp = jax.vjp(f, params, jnp.asarray(np.moveaxis(x, 1, -1)))
    _assert_close(np.asarray(yj), np.moveaxis(yt.detach().numpy(), 1, -1))
    gp, gx = vjp(jnp.asarray(np.moveaxis(g, 1, -1)))
    _assert_close(np.asarray(gx), np.moveaxis(xt.grad.numpy(), 1, -1), 2e-4, floor=1e-5)
    nnx.update(jblock, gp)
    exported = weights.state_dict(jblock)
    for name, p in tblock.named_parameters():
        _assert_close(exported[name], p.grad.numpy(), 2e-4, floor=1e-5)


@pytest.mark.parametrize("kind", ["basic", "bottleneck_se", "inception", "dense", "transition",
                                  "inverted_residual", "se"])
def test_block_gradients_match_torch(kind):
    torch.manual_seed(0)
    r = nnx.Rngs(0)
    x = _images(4, 8, 16)
    if kind == "basic":
        j, t = blocks.BasicBlock(16, 32, 2, rngs=r), TBasicBlock(16, 32, 2)
    elif kind == "bottleneck_se":
        j, t = blocks.Bottleneck(16, 8, 1, se_reduction=4, rngs=r), TBottleneck(16, 8, 1, se=4)
    elif kind == "inception":
        j = blocks.InceptionModule(16, 4, 4, 8, 2, 4, 4, kernel5=3, rngs=r)
        t = TInception(16, 4, 4, 8, 2, 4, 4)
    elif kind == "dense":
        j, t = blocks.DenseBlock(3, 16, 2, 4, rngs=r), TDenseBlock(3, 16, 2, 4)
    elif kind == "transition":
        j = blocks.Transition(16, 8, rngs=r)
        t = tnn.Sequential(OrderedDict(norm=tnn.BatchNorm2d(16), relu=tnn.ReLU(),
                                       conv=tnn.Conv2d(16, 8, 1, bias=False), pool=tnn.AvgPool2d(2, 2)))
    elif kind == "inverted_residual":
        j, t = blocks.InvertedResidual(16, 16, 1, 6, rngs=r), TInvertedResidual(16, 16, 1, 6)
    else:
        j, t = blocks.SqueezeExcitation(16, 4, rngs=r), TSE(16, 4)
    _check_block_grads(j, t, x)
