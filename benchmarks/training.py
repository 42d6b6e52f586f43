"""Training throughput: an epoch of the books' MNIST ConvNet and Fashion-MNIST MLP, dlcore vs PyTorch.

The ConvNet is the one of Jha, Mastering PyTorch, ch. 1 (Training a neural network using PyTorch);
the MLP the 784-300-100-10 classifier of Géron, Hands-On Machine Learning with Scikit-Learn and
PyTorch, ch. 10 (Building an Image Classifier with PyTorch). Both sides train the same architecture
with the same optimizer, batch size and number of examples on the same random MNIST-shaped arrays, on
this machine's CPU, in one run. Each side runs one untimed warm-up epoch (dlcore's compiles the step),
then one timed epoch at a time, the two sides alternated, three times; the figure is each side's best
epoch. dlcore's epoch is one more epoch of `Trainer.fit` (its epochs count on), PyTorch's one pass of its
`DataLoader`; each case's note gives the steps each side ran. PyTorch runs eagerly, as the books do.
Figures are seconds per epoch; ratio = torch / dlcore.

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


def _dlcore_epoch(name: str, tx, loss, data: dict, **model_kw):
    """A function that trains one more epoch through `Trainer.fit` (epochs count on, as Keras's
    `initial_epoch`) and returns the optimizer steps it ran; the first call compiles."""
    trainer = dlcore.Trainer(dlcore.models.create(name, **model_kw), tx, loss, batch_size=32, progress=False)

    def epoch() -> int:
        before = int(trainer.state.step)
        trainer.fit(data, epochs=trainer.epoch + 1)
        return int(trainer.state.step) - before

    return epoch


def _torch_epoch(kind: str, data: dict):
    """A function that trains one epoch in eager PyTorch and returns its steps; None without torch."""
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

    def epoch() -> int:
        model.train()
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        return len(loader)

    return epoch


def _timed(epoch) -> tuple[float, int]:
    t0 = time.perf_counter()
    steps = epoch()
    return time.perf_counter() - t0, steps


def run(ctx: BenchContext) -> list[Result]:
    n = 256 if ctx.quick else 10_000
    data = _data(n)
    results = []
    cases = (("convnet", f"mnist_convnet epoch, {n} images", "mnist_convnet", optim.adadelta(lr=0.5),
              losses.nll, {}),
             ("mlp", f"784-300-100-10 MLP epoch, {n} images", "mlp", optim.sgd(lr=0.1), losses.cross_entropy,
              {"sizes": (784, 300, 100, 10)}))
    repeats = 2 if ctx.quick else 3
    for kind, case, name, tx, loss, model_kw in cases:
        ours, theirs = _dlcore_epoch(name, tx, loss, data, **model_kw), _torch_epoch(kind, data)
        ours()  # warm-up epochs: dlcore's compiles the step
        if theirs is not None:
            theirs()
        best, peer_best = None, None
        for _ in range(repeats):  # alternated, best of each
            t, steps = _timed(ours)
            best = t if best is None else min(best, t)
            if theirs is not None:
                pt, peer_steps = _timed(theirs)
                peer_best = pt if peer_best is None else min(peer_best, pt)
        note = f"one epoch each, best of {repeats} alternated: dlcore {steps} steps"
        if theirs is not None:
            note += f", torch {peer_steps} steps"
        results.append(Result(case, "s", best, peer_best, note=note))
    return results
