"""Training throughput: an epoch of the books' MNIST ConvNet and Fashion-MNIST MLP, dlcore vs PyTorch.

The ConvNet is the one of Jha, Mastering PyTorch, ch. 1 (Training a neural network using PyTorch;
Adadelta lr 0.5, NLL, batch 32); the MLP the 784-300-100-10 classifier of Géron, Hands-On Machine Learning
with Scikit-Learn and PyTorch, ch. 10 (Building an Image Classifier with PyTorch; SGD lr 0.1, batch 32).
Both sides train the same architecture with the same optimizer, batch size and number of examples on the
same random MNIST-shaped arrays, on this machine's CPU, in one run: the user's view, seconds per epoch.
dlcore's epoch is one more epoch of `Trainer.fit` (its epochs count on); PyTorch's one pass of a shuffling
`DataLoader` with the books' eager loop, and again with the network in `torch.compile` (not in --quick).
Each side runs a first epoch (it compiles; compile time = that epoch less the best) and a warm-up epoch,
then the sides alternate three timed epochs; the figure is each side's best epoch. Examples/s, FLOP/s
(XLA's count of dlcore's step times the steps, for every side) and its share of this CPU's peak are
printed under each case (see `benchmarks/speed.py` for the step-by-step cases). Ratio = torch / dlcore.

Run: `dlcore bench training [--quick] [--json FILE]`.
"""

from __future__ import annotations

from dlcore.bench import BenchContext, Benchmark, Result

from dlcore.benchmarks._steps import SPECS, compare

BENCHMARK = Benchmark(name="training", title="one training epoch of Mastering PyTorch's ConvNet and Géron's MLP",
                      peer="torch")


def run(ctx: BenchContext) -> list[Result]:
    n = 256 if ctx.quick else 10_000
    results = []
    for name, label in (("mnist_convnet", "mnist_convnet epoch"), ("mlp", "784-300-100-10 MLP epoch")):
        results.append(compare(SPECS[name], batch=32, n=n, repeats=2 if ctx.quick else 3, torch_compile=not ctx.quick,
                               case=f"{label}, {n} images", unit="s", why_not="--quick" if ctx.quick else "",
                               warmup=0 if ctx.quick else 1, loader=True))
    return results
