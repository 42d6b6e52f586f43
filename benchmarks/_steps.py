"""What the step and epoch benchmarks share: the books' networks on both sides, each side's epoch, the timing.

A `Spec` names a dlcore model (its registry name and arguments), the book's optimizer and loss, and one
example's shape. `dlcore_side` builds dlcore's side as a user runs it: a `Trainer` whose every call trains one
more epoch through `Trainer.fit` (the same compiled step, or scanned epoch, as any fit). `torch_side` builds the
same architecture in PyTorch (written here, NCHW; torchvision is not needed) with the same optimizer, and an
epoch of the books' eager loop (zero_grad, forward, loss, backward, step) over the same arrays in a fresh random
order, optionally with the network wrapped in `torch.compile`. `measure` times the sides alternated and
`result` turns the times into a `dlcore.bench.Result` with compile times, examples/s, FLOP/s and share of peak.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import math
import os
import pickle
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx

import dlcore
from dlcore import losses, memory, optim
from dlcore.bench import CPU_PEAK_FLOPS, Result, step_flops
from dlcore.nn import conv_tuning

# dlcore's optimizer factories and PyTorch's classes, by the books' names (PyTorch semantics on both sides)
_OPTIMIZERS = {"sgd": (optim.sgd, "SGD"), "adadelta": (optim.adadelta, "Adadelta"), "adam": (optim.adam, "Adam"),
               "nadam": (optim.nadam, "NAdam")}
_LOSSES = {"nll": losses.nll, "cross_entropy": losses.cross_entropy}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One network of a book with its training recipe.

    Args:
        model: dlcore's registry name (`dlcore.models.create`).
        kwargs: the model's arguments, as pairs.
        shape: one example's shape, NHWC without the batch axis.
        classes: number of target classes.
        loss: "nll" (the network ends in log_softmax) or "cross_entropy" (logits).
        optimizer: "sgd", "adadelta", "adam" or "nadam"; `opt_kwargs` its arguments (PyTorch's names).
        batch: the book's batch size.
        source: where the recipe comes from (book, chapter).
    """

    model: str
    kwargs: tuple = ()
    shape: tuple = (28, 28, 1)
    classes: int = 10
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    opt_kwargs: tuple = ()
    batch: int = 32
    source: str = ""

    def recipe(self) -> str:
        opts = ", ".join(f"{k} {v:g}" for k, v in self.opt_kwargs)
        return f"{_OPTIMIZERS[self.optimizer][1]} {opts}, {self.loss}"


SPECS = {
    "mlp": Spec("mlp", (("sizes", (784, 300, 100, 10)),), optimizer="sgd", opt_kwargs=(("lr", 0.1),), batch=32,
                source="Géron, Hands-On ML, ch. 10"),
    "mnist_convnet": Spec("mnist_convnet", loss="nll", optimizer="adadelta", opt_kwargs=(("lr", 0.5),), batch=32,
                          source="Jha, Mastering PyTorch, ch. 1"),
    "mnist_bn_cnn": Spec("mnist_bn_cnn", loss="nll", optimizer="adam", opt_kwargs=(("lr", 1e-3),), batch=64,
                         source="Ketkar & Moolayil, ch. 6, Listing 6-4"),
    "mnist_cnn_001": Spec("mnist_cnn_001", loss="nll", optimizer="sgd", opt_kwargs=(("lr", 0.01), ("momentum", 0.5)),
                          batch=32, source="Subramanian, Deep Learning with PyTorch, ch. 5"),
    "fashion_cnn": Spec("fashion_cnn", optimizer="nadam", opt_kwargs=(("lr", 1e-3),), batch=32,
                        source="Géron, Hands-On ML, ch. 12"),
    # Géron ch. 12 trains ResNet-34 without printing a recipe; SGD with momentum 0.9 is the paper's (He et al. 2016)
    "resnet18": Spec("resnet18", (("num_classes", 10),), shape=(32, 32, 3), optimizer="sgd",
                     opt_kwargs=(("lr", 0.1), ("momentum", 0.9)), batch=64, source="He et al. 2016; Géron, ch. 12"),
}


def data(spec: Spec, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """`n` random examples of `spec`'s shape in [0, 1) and random labels: {"x": (n, H, W, C), "y": (n,)}."""
    rng = np.random.default_rng(seed)
    return {"x": rng.random((n, *spec.shape), np.float32), "y": rng.integers(0, spec.classes, n).astype(np.int32)}


def dlcore_model(spec: Spec, seed: int = 0):
    return dlcore.models.create(spec.model, seed=seed, **dict(spec.kwargs))


def dlcore_side(spec: Spec, arrays: dict, batch: int, precision: str | None = None) -> tuple[Callable[[], int], Any]:
    """`(epoch, trainer)`: `epoch()` trains one more epoch of `arrays` through `Trainer.fit` (the epochs count
    on) and returns the optimizer steps it ran; its first call compiles."""
    make, _ = _OPTIMIZERS[spec.optimizer]
    trainer = dlcore.Trainer(dlcore_model(spec), make(**dict(spec.opt_kwargs)), _LOSSES[spec.loss], batch_size=batch,
                             progress=False, precision=precision)

    def epoch() -> int:
        before = int(trainer.state.step)
        trainer.fit(arrays, epochs=trainer.epoch + 1)
        return int(trainer.state.step) - before

    return epoch, trainer


def dlcore_parameters(spec: Spec) -> int:
    """Trainable parameters of dlcore's network (`nnx.Param` leaves; batch-norm statistics excluded)."""
    model = nnx.eval_shape(lambda: dlcore_model(spec))                 # shapes only: nothing is initialised
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def torch_net(spec: Spec):
    """The same architecture as dlcore's `spec.model`, in PyTorch (NCHW). Raises ImportError without torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    if spec.model == "mlp":
        sizes = dict(spec.kwargs)["sizes"]
        layers: list = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
        return nn.Sequential(*layers)

    if spec.model == "mnist_convnet":
        class ConvNet(nn.Module):  # Jha's ConvNet class
            def __init__(self):
                super().__init__()
                self.cn1, self.cn2 = nn.Conv2d(1, 16, 3, 1), nn.Conv2d(16, 32, 3, 1)
                self.dp1, self.dp2 = nn.Dropout2d(0.10), nn.Dropout(0.25)
                self.fc1, self.fc2 = nn.Linear(4608, 64), nn.Linear(64, 10)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.cn2(F.relu(self.cn1(x)))), 2)
                x = torch.flatten(self.dp1(x), 1)
                return F.log_softmax(self.fc2(self.dp2(F.relu(self.fc1(x)))), dim=1)

        return ConvNet()

    if spec.model == "mnist_bn_cnn":
        def unit(cin, cout):  # Ketkar & Moolayil's convolutional unit
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2, 2))

        return nn.Sequential(unit(1, 16), unit(16, 32), nn.Flatten(), nn.Linear(1568, 128), nn.Linear(128, 10),
                             nn.LogSoftmax(dim=1))

    if spec.model == "mnist_cnn_001":
        class Net(nn.Module):  # Subramanian's (PyTorch's MNIST example) Net
            def __init__(self):
                super().__init__()
                self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
                self.conv2_drop = nn.Dropout2d(0.5)
                self.fc1, self.fc2 = nn.Linear(320, 50), nn.Linear(50, 10)

            def forward(self, x):
                x = F.relu(F.max_pool2d(self.conv1(x), 2))
                x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
                x = F.dropout(F.relu(self.fc1(torch.flatten(x, 1))), 0.5, training=self.training)
                return F.log_softmax(self.fc2(x), dim=1)

        return Net()

    if spec.model == "fashion_cnn":
        def conv(i, o, k=3):
            return nn.Conv2d(i, o, k, padding="same")

        return nn.Sequential(conv(1, 64, 7), nn.ReLU(), nn.MaxPool2d(2),
                             conv(64, 128), nn.ReLU(), conv(128, 128), nn.ReLU(), nn.MaxPool2d(2),
                             conv(128, 256), nn.ReLU(), conv(256, 256), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(2304, 128), nn.ReLU(), nn.Dropout(0.5),
                             nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    if spec.model == "resnet18":
        class BasicBlock(nn.Module):  # torchvision's layout: 3x3 convs without bias, BN, projection skip
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
                self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
                self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                                   if stride != 1 or cin != cout else None)

            def forward(self, x):
                y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
                return F.relu(y + (x if self.downsample is None else self.downsample(x)))

        class ResNet18(nn.Module):  # dlcore's (and torchvision's) ImageNet stem, also at 32x32: 8x8 after it
            def __init__(self, num_classes):
                super().__init__()
                self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
                self.maxpool = nn.MaxPool2d(3, 2, 1)
                units, c = [], 64
                for i, width in enumerate((64, 128, 256, 512)):
                    for j in range(2):
                        units.append(BasicBlock(c, width, 2 if i > 0 and j == 0 else 1))
                        c = width
                self.layers = nn.Sequential(*units)
                self.fc = nn.Linear(512, num_classes)

            def forward(self, x):
                x = self.layers(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
                return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

        return ResNet18(dict(spec.kwargs)["num_classes"])
    raise ValueError(f"no PyTorch network written for {spec.model!r}; known: {', '.join(SPECS)}")


def torch_parameters(spec: Spec) -> int:
    return sum(p.numel() for p in torch_net(spec).parameters())


def torch_side(spec: Spec, arrays: dict, batch: int, *, compile: bool = False,
               loader: bool = False) -> Callable[[], int] | None:
    """An epoch of the books' eager PyTorch loop over `arrays` (NHWC, permuted to NCHW once) in a fresh random
    order, returning its steps; None without torch. With `compile`, the network is `torch.compile`d (its forward
    and, through AOTAutograd, its backward; the optimizer step stays eager), which compiles on the first call.
    With `loader`, the batches come from a shuffling `DataLoader` over a `TensorDataset`, as in the books;
    else each step indexes the tensors with its slice of a permutation (as dlcore's step gathers its batch)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.manual_seed(0)
    net = torch_net(spec)
    opt = getattr(torch.optim, _OPTIMIZERS[spec.optimizer][1])(net.parameters(), **dict(spec.opt_kwargs))
    loss_fn = F.nll_loss if spec.loss == "nll" else F.cross_entropy
    forward = torch.compile(net) if compile else net
    x = torch.from_numpy(arrays["x"]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(arrays["y"]).long()
    n = len(y)

    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch,
                                          shuffle=True) if loader else None

    def epoch() -> int:
        net.train()
        if batches is None:
            order = torch.randperm(n)
            pairs = ((x[idx], y[idx]) for idx in (order[i:i + batch] for i in range(0, n, batch)))
        else:
            pairs = iter(batches)
        for xb, yb in pairs:
            opt.zero_grad()
            loss_fn(forward(xb), yb).backward()
            opt.step()
        return math.ceil(n / batch)

    return epoch


@dataclasses.dataclass
class Timing:
    """A side's figures over its calls (one call = one epoch): `first` seconds (compiles), `times` of the
    steady calls, `steps` a call."""

    first: float
    times: list
    steps: int

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def compile_s(self) -> float:
        return max(self.first - self.best, 0.0)


def measure(sides: dict[str, Callable[[], int] | None], *, repeats: int, warmup: int = 1,
            failed: dict[str, str] | None = None, may_fail: tuple[str, ...] = ()) -> dict[str, Timing]:
    """Time each side's calls: a first call (it compiles), `warmup` untimed calls, then `repeats` rounds in
    which every side runs one timed call, the sides alternated so that a change of load touches all of them.
    A side of `may_fail` whose first call raises is dropped, its reason (the error's first line) put in
    `failed`; any other side's error propagates."""
    out, live = {}, {k: f for k, f in sides.items() if f is not None}
    for name, fn in list(live.items()):
        t0 = time.perf_counter()
        try:
            steps = fn()
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
            if failed is None or name not in may_fail:
                raise
            failed[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            del live[name]
            continue
        out[name] = Timing(time.perf_counter() - t0, [], steps)
    for _ in range(warmup):
        for fn in live.values():
            fn()
    for _ in range(repeats):
        for name, fn in live.items():
            t0 = time.perf_counter()
            fn()
            out[name].times.append(time.perf_counter() - t0)
    return out


def result(case: str, timings: dict[str, Timing], *, flops: float, examples: int, unit: str, note: str) -> Result:
    """A `Result` from the timings of "dlcore", "torch" and optionally "torch.compile": each side's figure is
    its best call in `unit` ("ms" a step or "s" an epoch), with compile time, examples/s, FLOP/s (`flops`
    a step, dlcore's count, for every side) and share of `CPU_PEAK_FLOPS`."""
    def figure(t: Timing) -> float:
        return 1e3 * t.best / t.steps if unit == "ms" else t.best

    def rates(t: Timing | None):
        if t is None:
            return None, None, None, None, None
        fps = flops * t.steps / t.best
        return figure(t), t.compile_s, examples / t.best, fps, fps / CPU_PEAK_FLOPS

    ours, peer, peer2 = (rates(timings.get(k)) for k in ("dlcore", "torch", "torch.compile"))
    return Result(case, unit, ours[0], peer[0], note=note, compile_s=ours[1], examples_per_s=ours[2],
                  flops_per_s=ours[3], peak_share=ours[4], peer_compile_s=peer[1], peer_examples_per_s=peer[2],
                  peer_flops_per_s=peer[3], peer_peak_share=peer[4], peer2=peer2[0],
                  peer2_name="torch.compile" if peer2[0] is not None else None, peer2_compile_s=peer2[1],
                  peer2_examples_per_s=peer2[2], peer2_flops_per_s=peer2[3], peer2_peak_share=peer2[4], flops=flops)


def _torch_worker(conn) -> None:
    """The body of `TorchProcess`'s child: ("setup", spec, n, batch, loader, compile) builds the PyTorch sides
    of a case; ("epoch", name) runs an epoch of one; None ends it."""
    sides: dict = {}
    while (msg := conn.recv()) is not None:
        try:
            if msg[0] == "setup":
                spec, n, batch, loader, compile = msg[1:]
                arrays = data(spec, n)
                sides = {"torch": torch_side(spec, arrays, batch, loader=loader)}
                if sides["torch"] is None:
                    conn.send(("ready", ({"torch": False}, 0)))
                    continue
                if compile:
                    sides["torch.compile"] = torch_side(spec, arrays, batch, compile=True, loader=loader)
                import torch

                conn.send(("ready", ({k: v is not None for k, v in sides.items()}, torch.get_num_threads())))
            else:
                conn.send(("ok", sides[msg[1]]()))
        except Exception as exc:  # noqa: BLE001 - raised in the parent, where `measure` decides
            conn.send(("error", f"{type(exc).__name__}: {str(exc).strip()}"))


class _Pipe:
    """Pickled messages over a pair of byte streams (a child process's stdin and stdout)."""

    def __init__(self, inp, out):
        self._in, self._out = inp, out

    def send(self, obj) -> None:
        pickle.dump(obj, self._out)
        self._out.flush()

    def recv(self):
        return pickle.load(self._in)


def _torch_serve() -> None:
    """`TorchProcess`'s child: the protocol keeps the real stdout; whatever the libraries print goes to stderr."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _torch_worker(_Pipe(sys.stdin.buffer, out))


class TorchProcess:
    """PyTorch's sides of the cases in a process of their own, each epoch run on request; one process serves
    every case of a run (`shared`), set up for each by `setup`.

    Why: PyTorch and oneDNN (dlcore's CPU convolution kernels) load one OpenMP runtime under one name, so in one
    process they share it. Once oneDNN has run its threads from XLA's, the runtime manages more threads than the
    CPU has cores and stops letting idle threads spin: measured on the MLP epoch, PyTorch's time then rose from
    0.24 to 0.41 s and dlcore's fell from 0.12 to 0.065 s. Apart, each library runs as its users get it: the
    child also starts with glibc's default allocator settings, without the huge pages the `dlcore` command
    starts with (`dlcore.memory`). Each epoch call costs a pipe round trip (about 0.1 ms) on top of the epoch.
    """

    _shared: "TorchProcess | None" = None

    def __init__(self):
        self._proc = subprocess.Popen(  # glibc's defaults, as PyTorch's users get them
            [sys.executable, "-c", "from dlcore.benchmarks._steps import _torch_serve; _torch_serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=memory.plain_environment())
        self._pipe = _Pipe(self._proc.stdout, self._proc.stdin)
        self._live: dict = {}
        self.threads = 0

    @classmethod
    def shared(cls) -> "TorchProcess":
        """The process of this run, started on first use (and again if it has ended)."""
        if cls._shared is None or cls._shared._proc.poll() is not None:
            cls._shared = cls()
            atexit.register(cls._shared.close)
        return cls._shared

    def _ask(self, msg):
        try:
            self._pipe.send(msg)
            status, value = self._pipe.recv()
        except (EOFError, OSError):
            raise RuntimeError(f"the PyTorch process ended (exit code {self._proc.poll()})") from None
        if status == "error":
            raise RuntimeError(value)
        return value

    def setup(self, spec: Spec, n: int, batch: int, *, loader: bool, compile: bool) -> None:
        """Builds the PyTorch sides of a case over `data(spec, n)` (seeded: the arrays dlcore's side has)."""
        self._live, self.threads = self._ask(("setup", spec, n, batch, loader, compile))

    def side(self, name: str) -> Callable[[], int] | None:
        """An epoch of side `name` ("torch" or "torch.compile"), or None if it is not there (no torch)."""
        if not self._live.get(name):
            return None
        return lambda: self._ask(("epoch", name))

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._pipe.send(None)
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            stream.close()


def compare(spec: Spec, *, batch: int, n: int, repeats: int, torch_compile: bool, case: str, unit: str,
            why_not: str = "", loader: bool = False, warmup: int = 1, bfloat16: bool = False) -> Result:
    """One case: dlcore's Trainer, eager PyTorch and (when `torch_compile`) `torch.compile` each train epochs
    of the same `n` random examples at `batch`, timed by `measure`; FLOPs from dlcore's compiled step.
    `why_not` says in the note why `torch.compile` was not run; `loader`: PyTorch's batches from a `DataLoader`;
    `warmup`: untimed calls after the first (0 in smoke runs); `bfloat16`: dlcore again under
    `precision="bfloat16"` (the `bfloat16` field)."""
    arrays = data(spec, n)
    ours, trainer = dlcore_side(spec, arrays, batch)
    peer = TorchProcess.shared()
    peer.setup(spec, n, batch, loader=loader, compile=torch_compile)
    sides = {"dlcore": ours, "torch": peer.side("torch")}
    if bfloat16:
        sides["dlcore bfloat16"] = dlcore_side(spec, arrays, batch, precision="bfloat16")[0]
    failed: dict[str, str] = {}
    if torch_compile and sides["torch"] is not None:
        sides["torch.compile"] = peer.side("torch.compile")
    with conv_tuning.recording() as lowered:  # the convolutions' lowerings, chosen when the steps are traced
        timings = measure(sides, repeats=repeats, warmup=warmup, failed=failed, may_fail=("torch.compile",))
    flops = step_flops(trainer, arrays)
    steps = timings["dlcore"].steps
    parts = [f"{spec.recipe()} ({spec.source})", f"best of {repeats} alternated epochs of {steps} steps after "
             f"{1 + warmup} untimed"
             + (", torch's batches from a shuffling DataLoader" if loader else ""),
             "FLOPs: XLA's count of dlcore's step, used for every side"]
    if lowered:
        def named(plan):
            return " / ".join(f"{a} in {r}-row calls" if r < batch else a for a, r in plan)
        kinds = collections.Counter(map(named, lowered.values()))
        parts.append("dlcore's large convolutions (forward / input gradient / kernel gradient): "
                     + ", ".join(f"{c} {k}" for k, c in sorted(kinds.items())))
    parts.append("dlcore's epoch: " + ("one lax.scan" if "train_epoch" in trainer.trace_counts
                                       else "one jitted step per batch"))
    if sides["torch"] is None:
        parts.append("torch not installed")
    else:
        parts.append(f"torch {peer.threads} threads, in a process of its own (see TorchProcess)")
        if not torch_compile:
            parts.append("torch.compile not run" + (f" ({why_not})" if why_not else ""))
        elif "torch.compile" in failed:
            parts.append(f"torch.compile failed here: {failed['torch.compile'][:160]}")
        else:
            parts.append("torch.compile: the network's forward and backward (Inductor), the optimizer step eager")
    out = result(case, timings, flops=flops, examples=n, unit=unit, note="; ".join(parts))
    if "dlcore bfloat16" in timings:
        t = timings["dlcore bfloat16"]
        out.bfloat16 = 1e3 * t.best / t.steps if unit == "ms" else t.best
        out.note += (f"; dlcore under precision='bfloat16': {out.bfloat16:.4g} {unit} "
                     f"(float32 / bfloat16 = {out.dlcore / out.bfloat16:.2f}x)")
    return out
