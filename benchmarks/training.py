"""Training throughput: an epoch of the books' MNIST ConvNet and Fashion-MNIST MLP, dlcore vs PyTorch.

The ConvNet is the one of Jha, Mastering PyTorch, ch. 1 (Training a neural network using PyTorch);
the MLP the 784-300-100-10 classifier of Géron, Hands-On Machine Learning with Scikit-Learn and
PyTorch, ch. 10 (Building an Image Classifier with PyTorch). Both sides train the same architecture
with the same optimizer, batch size and number of examples on the same random MNIST-shaped arrays, on
this machine's CPU, in one run. Each side runs one untimed warm-up epoch (dlcore's compiles the step),
then the same number of timed epochs: dlcore counts the optimizer steps its timed `fit` ran
(`TrainState.step`), and PyTorch runs that many epochs of its `DataLoader`. PyTorch runs eagerly, as the
books do. Figures are seconds per epoch; ratio = torch / dlcore; each case's note says how many epochs
and steps each side timed.

Run: `dlcore bench training [--quick] [--json FILE]`.
"""

from __future__ import annotations

import time

import numpy as np

import dlcore
from dlcore import losses, optim
from dlcore.bench import BenchContext, Benchmark, Result

BENCHMARK = Benchmark(name="training", title="one training epoch of Mastering PyTorch's ConvNet and Géron's MLP",
                      peer="torch")


def _data(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, 28, 28, 1), np.float32), "y": rng.integers(0, 10, n).astype(np.int32)}


def _dlcore_epochs(name: str, tx, loss, data: dict, **model_kw) -> tuple[float, int, int]:
    """Seconds of the timed epochs, how many epochs were timed, and the steps in one epoch."""
    model = dlcore.models.create(name, **model_kw)
    trainer = dlcore.Trainer(model, tx, loss, batch_size=32, progress=False)
    trainer.fit(data, epochs=1)  # the warm-up epoch compiles the step
    per_epoch = int(trainer.state.step)
    t0 = time.perf_counter()
    # Epoch 2 with the compiled step. Whether `fit` counts the epoch already done or starts its count
    # again, the steps it ran say how many epochs were timed.
    trainer.fit(data, epochs=2)
    seconds = time.perf_counter() - t0
    steps = int(trainer.state.step) - per_epoch
    if steps <= 0 or steps % per_epoch:
        raise RuntimeError(f"the timed fit ran {steps} steps, not whole epochs of {per_epoch}")
    return seconds, steps // per_epoch, per_epoch


def _torch_epochs(kind: str, data: dict, epochs: int) -> tuple[float, int] | None:
    """Seconds of `epochs` timed epochs after a warm-up one, and the steps in one epoch."""
    try:
        import torch
        from torch import nn
        import torch.nn.functional as F
    except ImportError:
        return None

    class ConvNet(nn.Module):  # Mastering PyTorch's ConvNet class, NCHW
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
    for _ in range(epochs):
        epoch()
    return time.perf_counter() - t0, len(loader)


def run(ctx: BenchContext) -> list[Result]:
    n = 256 if ctx.quick else 10_000
    data = _data(n)
    results = []
    cases = (("convnet", f"mnist_convnet epoch, {n} images", "mnist_convnet", optim.adadelta(lr=0.5),
              losses.nll, {}),
             ("mlp", f"784-300-100-10 MLP epoch, {n} images", "mlp", optim.sgd(lr=0.1), losses.cross_entropy,
              {"sizes": (784, 300, 100, 10)}))
    for kind, case, name, tx, loss, model_kw in cases:
        seconds, epochs, steps = _dlcore_epochs(name, tx, loss, data, **model_kw)
        note = f"timed: dlcore {epochs} epoch(s) x {steps} steps"
        peer = _torch_epochs(kind, data, epochs)
        if peer is not None:
            note += f", torch {epochs} epoch(s) x {peer[1]} steps"
        results.append(Result(case, "s", seconds / epochs, None if peer is None else peer[0] / epochs, note=note))
    return results
