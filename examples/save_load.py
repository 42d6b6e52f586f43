"""Saving and loading a model, an exported predict function, and int8 weights (Géron, Hands-On ML, ch. 10).

The book's recipe (Saving and Loading PyTorch Models): do not pickle the whole model; save its state
dict with the hyperparameters that rebuild it (``{"model_state_dict": ..., "model_hyperparameters":
{"n_inputs": 784, "n_hidden1": 300, ...}}``), or with safetensors; then build a fresh model from the
saved hyperparameters, load the weights, and predict. Here the 784-300-100-10 MLP is trained, saved as
a `.safetensors` file whose header holds the model's name and hyperparameters (`dlcore.weights.save(...,
metadata=...)`), rebuilt from them in a fresh model of another random initialisation, and its
predictions compared: identical, to the bit.

Compiling and Optimizing a PyTorch Model: TorchScript traces the model and saves a program that runs
without its Python code. dlcore's counterpart is `dlcore.export`: the eval-mode forward pass traced
once with `jax.export` (a free batch size), saved with the weights inside or as an argument, loaded
back and compared for two batch sizes.

Quantization (which the book leaves to its Appendix B; ch. 11, Practical Guidelines): the MNIST ConvNet of Jha, Mastering PyTorch,
ch. 1 (as `examples/mnist_convnet.py` trains it: Adadelta 0.5, batch 32, normalised pixels) with its
Linear and Conv kernels stored as int8 with per-output-channel scales (`dlcore.quantize`): test
accuracy and kernel bytes before and after (1,201,216 -> 300,792 bytes, 3.99x smaller), and the
exported files' sizes.

Without Fashion-MNIST on this machine it runs on scikit-learn's 8x8 digits resized to 28x28. The
book prints no figures for this section; everything it claims (identical predictions) is checked.

Run: `dlcore run save_load [--quick]` or `python examples/save_load.py`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

import dlcore
from dlcore import export, losses, models, optim, quantize, weights
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="save_load",
    title="a state dict with its hyperparameters, a model rebuilt from them, an exported function, int8 weights",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 10, Building Neural Networks with PyTorch, Saving and Loading PyTorch Models; Compiling and "
            "Optimizing a PyTorch Model",
    source="the model_data dict (model_state_dict, model_hyperparameters) rebuilt with ImageClassifier(**...); "
           "torch.jit.trace, save and load",
    data="fashion_mnist",
    standin="digits",
    book_figures={},
)

HYPERPARAMETERS = {"sizes": [784, 300, 100, 10], "activation": "relu"}  # the book's n_inputs, n_hidden1, ...
MEAN, STD = 0.1302, 0.3069  # mnist_convnet's pixel statistics (Jha ch. 1)


def _outputs(fn, x: np.ndarray, batch: int = 1000) -> np.ndarray:
    """`fn` over `x` in batches of `batch` rows: (N, ...) -> (N, classes)."""
    return np.concatenate([np.asarray(fn(x[i:i + batch])) for i in range(0, len(x), batch)])


def _accuracy(fn, split: dict) -> float:
    return float((_outputs(fn, split["x"]).argmax(-1) == split["y"]).mean())


def _train(ctx: Context, model, optimizer, loss, train: dict, epochs: int, tag: str, hyperparameters: dict):
    trainer = dlcore.Trainer(model, optimizer, loss, metrics=["accuracy"], batch_size=32,
                             **ctx.trainer_kwargs({**hyperparameters, "epochs": epochs}, tag=tag))
    history = trainer.fit(train, epochs=epochs, resume=ctx.resume)
    ctx.print(f"{tag}: {epochs} epochs, train loss {history['loss'][-1]:.4f} accuracy {history['accuracy'][-1]:.4f}")
    return trainer


def run(ctx: Context) -> dict[str, float]:
    train, test = ctx.image_splits(quick=(512, 256))
    x_test = np.asarray(test["x"], np.float32)                    # (N, 28, 28, 1), NHWC
    epochs = ctx.n_epochs(5, quick=1)

    # 1. Train the MLP, save its state dict with the hyperparameters that rebuild it.
    model = models.create("mlp", **HYPERPARAMETERS, seed=ctx.seed)
    _train(ctx, model, optim.sgd(lr=0.1), losses.cross_entropy, train, epochs, "mlp",
           {"optimizer": "sgd", "lr": 0.1})
    model.eval()
    figures = {"test_accuracy": _accuracy(model, test)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        saved = weights.save(model, folder / "my_fashion_mnist_model.safetensors",
                             metadata={"model": "mlp", "model_hyperparameters": json.dumps(HYPERPARAMETERS)})
        ctx.print(f"saved: {saved.name}, {saved.stat().st_size:,} bytes (tensors in torch layout, "
                  f"hyperparameters in its header)")

        # 2. A fresh model from the saved hyperparameters (another initialisation), the weights loaded into it.
        meta = weights.metadata(saved)
        fresh = models.create(meta["model"], **json.loads(meta["model_hyperparameters"]), seed=ctx.seed + 1)
        weights.load(fresh, saved)
        fresh.eval()
        before, after = _outputs(model, x_test), _outputs(fresh, x_test)
        figures["reload_max_abs_diff"] = float(np.abs(before - after).max())
        ctx.print(f"rebuilt {meta['model']}({meta['model_hyperparameters']}) and loaded: predictions "
                  f"{'identical' if np.array_equal(before, after) else 'DIFFERENT'} on {len(x_test)} test images")

        # 3. The exported predict function (TorchScript's role), weights inside and as an argument.
        inside = export.export(model, folder / "fashion_mlp.dlx", input_shape=(28, 28, 1))
        as_arg = export.export(model, folder / "fashion_mlp_graph.dlx", input_shape=(28, 28, 1), weights="argument")
        npz = export.save_weights(model, folder / "fashion_mlp_weights.npz")
        loaded, bound = export.load(inside), export.load(as_arg, weights=npz)
        diff = 0.0
        for n in (1, len(x_test)):                                # two batch sizes, one file
            diff = max(diff, float(np.abs(np.asarray(loaded(x_test[:n])) - before[:n]).max()),
                       float(np.abs(np.asarray(bound(x_test[:n])) - before[:n]).max()))
        figures["export_max_abs_diff"] = diff
        ctx.print(f"exported: {inside.name} {inside.stat().st_size:,} bytes (weights inside); {as_arg.name} "
                  f"{as_arg.stat().st_size:,} bytes + {npz.name} {npz.stat().st_size:,} bytes; reloaded, batch "
                  f"sizes 1 and {len(x_test)}: max |difference| {diff:.3g}")

        # 4. int8 weights for mnist_convnet, trained as examples/mnist_convnet.py does.
        norm = [{**s, "x": (np.asarray(s["x"], np.float32) - MEAN) / STD} for s in (train, test)]
        convnet = models.create("mnist_convnet", seed=ctx.seed)
        _train(ctx, convnet, optim.adadelta(lr=0.5), losses.nll, norm[0], ctx.n_epochs(2, quick=1), "mnist_convnet",
               {"optimizer": "adadelta", "lr": 0.5})
        float32 = export.Predictor.from_model(convnet)
        int8 = quantize.quantize_int8(convnet)
        figures["convnet_test_accuracy"] = _accuracy(float32, norm[1])
        figures["int8_test_accuracy"] = _accuracy(int8, norm[1])
        figures["kernel_bytes_float32"] = float(float32.kernel_nbytes)
        figures["kernel_bytes_int8"] = float(int8.kernel_nbytes)
        figures["kernel_size_ratio"] = float32.kernel_nbytes / int8.kernel_nbytes
        f32_file = export.export(float32, folder / "mnist_convnet.dlx", input_shape=(28, 28, 1))
        i8_file = export.export(int8, folder / "mnist_convnet_int8.dlx", input_shape=(28, 28, 1))
        figures["export_bytes_float32"] = float(f32_file.stat().st_size)
        figures["export_bytes_int8"] = float(i8_file.stat().st_size)
        agree = float((_outputs(export.load(i8_file), norm[1]["x"]).argmax(-1)
                       == _outputs(float32, norm[1]["x"]).argmax(-1)).mean())
    ctx.print(f"mnist_convnet int8: test accuracy {figures['convnet_test_accuracy']:.4f} -> "
              f"{figures['int8_test_accuracy']:.4f} (the exported int8 file agrees with float32 on {agree:.2%} of "
              f"the test images); kernels {float32.kernel_nbytes:,} -> {int8.kernel_nbytes:,} bytes "
              f"({figures['kernel_size_ratio']:.2f}x smaller), all weights {float32.nbytes:,} -> {int8.nbytes:,}; "
              f"export files {int(figures['export_bytes_float32']):,} -> "
              f"{int(figures['export_bytes_int8']):,} bytes")
    return figures


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
