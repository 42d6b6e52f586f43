"""Training throughput: an epoch of the books' MNIST ConvNet and Fashion-MNIST MLP, dlcore vs PyTorch.

Both sides train the same architecture with the same optimizer, batch size and number of
examples on the same random MNIST-shaped arrays, on this machine's CPU, in one run. dlcore's
epoch is timed after a first epoch has compiled it (`Trainer.fit` again reuses the compiled code);
PyTorch runs eagerly, as the books do. Figures are seconds per epoch; ratio = torch / dlcore.

Run: `dlcore bench training [--quick] [--json FILE]`.
"""

from __future__ import annotations

import time

import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.bench import BenchContext, Benchmark, Result

BENCHMARK = Benchmark(name="training", title="one training epoch of the ConvNet (004) and the MLP (003)", peer="torch")


def _data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 28, 28, 1), np.float32), "y": rng.integers(0, 10, n).astype(np.int32)}


def _dlcore_epoch(name: str, tx, loss, data: dict, **model_kw) -> float:
    model = dlcore.models.create(name, **model_kw)
    trainer = dlcore.Trainer(model, tx, loss, batch_size=32, progress=False)
    trainer.fit(data, epochs=1)  # compiles
    t0 = time.perf_counter()
    trainer.fit(data, epochs=2)  # one more epoch with the compiled step
    return time.perf_counter() - t0


def _torch_epoch(kind: str, data: dict) -> float | None:
    try:
        import torch
        from torch import nn
        import torch.nn.functional as F
    except ImportError:
        return None

    class ConvNet(nn.Module):  # 004 L446, NCHW
        def __init__(self):
            super().__init__()
            self.cn1, self.cn2 = nn.Conv2d(1, 16, 3, 1), nn.Conv2d(16, 32, 3, 1)
            self.dp1, self.dp2 = nn.Dropout2d(0.10), nn.Dropout(0.25)
            self.fc1, self.fc2 = nn.Linear(4608, 64), nn.Linear(64, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.cn2(F.relu(self.cn1(x)))), 2)
            x = torch.flatten(self.dp1(x), 1)
            return F.log_softmax(self.fc2(self.dp2(F.relu(self.fc1(x)))), dim=1)

    torch.manual_seed(0)
    if kind == "convnet":
        model, opt_fn, loss_fn = ConvNet(), lambda p: torch.optim.Adadelta(p, lr=0.5), F.nll_loss
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                              nn.Linear(100, 10))
        opt_fn, loss_fn = (lambda p: torch.optim.SGD(p, lr=0.1)), F.cross_entropy
    opt = opt_fn(model.parameters())
    x = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data["y"]).long()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)

    def epoch():
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()

    epoch()  # warm-up, as dlcore's first epoch
    t0 = time.perf_counter()
    epoch()
    return time.perf_counter() - t0


def run(ctx: BenchContext) -> list[Result]:
    n = 256 if ctx.quick else 10_000
    data = _data(n)
    results = []
    t = _dlcore_epoch("mnist_convnet", optim.adadelta(lr=0.5), losses.nll, data)
    results.append(Result(f"mnist_convnet epoch, {n} images", "s", t, _torch_epoch("convnet", data)))
    t = _dlcore_epoch("mlp", optim.sgd(lr=0.1), losses.cross_entropy, data, sizes=(784, 300, 100, 10))
    results.append(Result(f"784-300-100-10 MLP epoch, {n} images", "s", t, _torch_epoch("mlp", data)))
    return results
