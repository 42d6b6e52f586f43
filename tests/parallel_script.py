"""The mesh half of tests/test_parallel.py, run in its own process with 4 simulated CPU devices.

``XLA_FLAGS=--xla_force_host_platform_device_count=4`` only takes effect before JAX starts its backend,
which the pytest process has already done; tests/test_parallel.py runs this file once and asserts on the
JSON it prints. Every comparison is a one-device Trainer run against the same run on a 4-device mesh
(replicated states, and FSDP-sharded states).
"""

import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

import json  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from dlcore import losses, optim  # noqa: E402
from dlcore.train import Callback, Checkpoint, EarlyStopping, NonFiniteError, Trainer  # noqa: E402
from dlcore.train import parallel  # noqa: E402


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(8, 32, rngs=rngs)
        self.l2 = nnx.Linear(32, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


class CNN(nnx.Module):
    """Conv -> batch norm -> relu -> dropout -> dense: every piece that could differ under a split batch."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 8, (3, 3), use_bias=False, rngs=rngs)  # a bias before batch norm has no gradient
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.out = nnx.Linear(8 * 6 * 6, 3, rngs=rngs)

    def __call__(self, x):  # (B, 6, 6, 1) -> (B, 3)
        h = self.drop(nnx.relu(self.bn(self.conv(x))))
        return self.out(h.reshape(h.shape[0], -1))


class Steps(Callback):
    """Every step's batch loss (the per-step curve)."""

    every_n_steps = 1

    def __init__(self):
        self.losses = []

    def on_batch_end(self, trainer, epoch, step, logs):
        self.losses.append(logs["loss"])


rng = np.random.default_rng(0)
TABLE = {"x": rng.normal(size=(64, 8)).astype(np.float32), "y": rng.integers(0, 3, 64).astype(np.int32)}
TABLE_VAL = {"x": rng.normal(size=(30, 8)).astype(np.float32), "y": rng.integers(0, 3, 30).astype(np.int32)}
IMAGES = {"x": rng.normal(size=(48, 6, 6, 1)).astype(np.float32), "y": rng.integers(0, 3, 48).astype(np.int32)}
IMAGES_VAL = {"x": rng.normal(size=(24, 6, 6, 1)).astype(np.float32), "y": rng.integers(0, 3, 24).astype(np.int32)}
MESH = parallel.data_mesh(4)
PLANS = {"one": None, "replicated": MESH, "fsdp": parallel.DataParallel(MESH, fsdp=True, min_size=0)}


def leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree)]


def max_diff(a, b):
    return max([float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(leaves(a), leaves(b))] + [0.0])


def specs(tree):
    return sorted({str(getattr(a.sharding, "spec", "one device")) for a in jax.tree.leaves(tree) if isinstance(a, jax.Array)})


def fit(make, data, val, mesh, *, epochs=3, batch_size=16, epoch_mode="auto", callbacks=(), lr=0.05, steps=True,
        **kw):
    """A Trainer run; ``steps``: also record every step's loss (under a mesh, that runs one jitted step per
    batch: JAX runs no ordered host callback on several devices)."""
    steps = Steps() if steps else None
    trainer = Trainer(make(nnx.Rngs(0)), optim.adam(lr), losses.cross_entropy, metrics=["accuracy"],
                      batch_size=batch_size, epoch_mode=epoch_mode, mesh=mesh, seed=3,
                      callbacks=[c for c in (steps, *callbacks) if c is not None], progress=False, **kw)
    history = trainer.fit(data, epochs=epochs, validation=val)
    return trainer, history, steps.losses if steps else []


def compare(make, data, val, **kw):
    """One-device run vs the replicated and FSDP mesh runs: curves, weights, evaluate, predict, shardings."""
    runs = {plan: fit(make, data, val, mesh, **kw) for plan, mesh in PLANS.items()}
    one, h1, s1 = runs["one"]
    x = val["x"] if isinstance(val, dict) else IMAGES_VAL["x"]
    out = {"epoch_mode": one.epoch_mode, "history": h1, "steps": s1}
    for plan in ("replicated", "fsdp"):
        tr, h, s = runs[plan]
        out[plan] = {
            "history": h,
            "steps": s,
            "history_diff": max(abs(a - b) for k in h1 for a, b in zip(h1[k], h[k])),
            "history_keys_equal": sorted(h) == sorted(h1),
            "steps_diff": max([abs(a - b) for a, b in zip(s1, s)] + [0.0]) if len(s) == len(s1) else None,
            "weights_diff": max_diff(one.state.params, tr.state.params),
            "rest_diff": max_diff(one.state.rest, tr.state.rest),
            "opt_diff": max_diff(one.state.opt_state, tr.state.opt_state),
            "evaluate_diff": max(abs(a - b) for a, b in zip(one.evaluate(val).values(), tr.evaluate(val).values())),
            "predict_diff": float(np.max(np.abs(one.predict(x) - tr.predict(x)))),
            "param_specs": specs(tr.state.params),
            "opt_specs": specs(tr.state.opt_state),
            "devices": sorted({len(a.sharding.device_set) for a in jax.tree.leaves(tr.state.params)}),
            "spec_by_path": {jax.tree_util.keystr(p): str(a.sharding.spec)
                             for p, a in jax.tree_util.tree_flatten_with_path(tr.state.params)[0]},
            "model_diff": max_diff(nnx.state(one.model, nnx.Param), nnx.state(tr.model, nnx.Param)),
            "trace_counts": tr.trace_counts,
        }
    return out, runs


def error_line(fn):
    try:
        fn()
    except (ValueError, NonFiniteError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def batches(data, size):
    """A re-playable host source: epoch -> list of (x, y) batches (the last one short)."""
    n = len(data["y"])
    return lambda epoch: [(data["x"][i:i + size], data["y"][i:i + size]) for i in range(0, n, size)]


def checkpoint_case(reference):
    """A checkpoint written under the FSDP mesh restores with its shardings, and a resumed run equals the
    uninterrupted one-device run (``reference``, the "mlp" comparison's)."""
    mesh = PLANS["fsdp"]
    with tempfile.TemporaryDirectory() as tmp:
        first, _, _ = fit(MLP, TABLE, TABLE_VAL, mesh, epochs=2, callbacks=[Checkpoint(tmp)])
        second = Trainer(MLP(nnx.Rngs(0)), optim.adam(0.05), losses.cross_entropy, metrics=["accuracy"],
                         batch_size=16, epoch_mode="scan", mesh=mesh, seed=3, callbacks=[Checkpoint(tmp)],
                         progress=False)
        epoch = Checkpoint(tmp).restore(second)
        restored = {"epoch": epoch, "weights_diff": max_diff(first.state.params, second.state.params),
                    "opt_diff": max_diff(first.state.opt_state, second.state.opt_state),
                    "specs": specs(second.state.params), "opt_specs": specs(second.state.opt_state),
                    "saved_specs": specs(first.state.params),
                    "devices": sorted({len(a.sharding.device_set) for a in jax.tree.leaves(second.state.params)})}
        h = second.fit(TABLE, epochs=3, validation=TABLE_VAL, resume=True)
    one, h1 = reference
    return {"restored": restored, "epochs": len(h["loss"]),
            "history_diff": max(abs(a - b) for k in h1 for a, b in zip(h1[k], h[k])),
            "weights_diff": max_diff(one.state.params, second.state.params)}


def early_stopping_case():
    """Early stopping with the best weights restored, on host batches (a function epoch -> batches)."""
    out = {}
    for plan in ("one", "fsdp"):
        stop = EarlyStopping("val_loss", patience=1)
        tr, h, _ = fit(MLP, batches(TABLE, 16), TABLE_VAL, PLANS[plan], epochs=8, callbacks=[stop], steps=False)
        out[plan] = {"epochs": len(h["loss"]), "best_epoch": stop.best_epoch, "val_loss": h["val_loss"],
                     "final_val": tr.evaluate(TABLE_VAL)["loss"], "specs": specs(tr.state.params)}
    return out


def nonfinite_case():
    """Rows 40-47 so large that their logits overflow to inf (batch 3, unshuffled): the guard stops at the same
    step on the mesh, with the weights of the step before."""
    bad = {"x": TABLE["x"].copy(), "y": TABLE["y"]}
    bad["x"][40:48] = 3e38
    out = {}
    for plan in ("one", "replicated"):
        trainer = Trainer(MLP(nnx.Rngs(0)), optim.adam(0.05), losses.cross_entropy, metrics=["accuracy"],
                          batch_size=16, epoch_mode="scan", mesh=PLANS[plan], seed=3, shuffle=False, progress=False)
        out[plan] = {"error": error_line(lambda: trainer.fit(bad, epochs=2)), "params": trainer.state.params}
    return {"one": out["one"]["error"], "replicated": out["replicated"]["error"],
            "weights_diff": max_diff(out["one"]["params"], out["replicated"]["params"])}


def gathered_batch_sharding():
    """The sharding a step sees for a batch gathered from the replicated device-resident split: split over
    "data" when its rows divide by 4, left to XLA (here: whole) otherwise."""
    from dlcore.data.protocol import gather

    seen = {}

    class Probe:  # a step shape that records the sharding of the batch it is given
        def train(self, states, batch, key, carry, acc):
            jax.debug.inspect_array_sharding(batch["x"], callback=lambda s: seen.__setitem__("train", s))
            return states, carry, acc, True

        def eval(self, states, batch, carry, acc):
            jax.debug.inspect_array_sharding(batch["x"], callback=lambda s: seen.__setitem__("eval", s))
            return carry, acc

    plan = parallel.DataParallel(MESH)
    task = parallel.ShardedTask(Probe(), plan)
    split = plan.replicate({"x": TABLE["x"], "y": TABLE["y"]})
    jax.jit(lambda d, i: task.train({}, gather(d, i, np.ones(16, np.float32)), None, None, {})[3])(split, np.arange(16))
    jax.jit(lambda d, i: task.eval({}, gather(d, i, np.ones(30, np.float32)), None, {}))(split, np.arange(30))
    seen["host"] = plan.put_batch({"x": TABLE["x"][:16]})["x"].sharding  # a Loader's or generator's batch
    seen["host_odd"] = plan.put_batch({"x": TABLE["x"][:10]})["x"].sharding
    return {k: {"spec": str(getattr(v, "spec", None)), "replicated": v.is_fully_replicated} for k, v in seen.items()}


def main():
    with tempfile.TemporaryDirectory() as cache:
        # Trainers of the same configuration compile the same programs: compile each once.
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        report = {"devices": len(jax.devices())}
        report["mlp"], runs = compare(MLP, TABLE, TABLE_VAL, epoch_mode="scan", steps=False)
        report["cnn"], _ = compare(CNN, IMAGES, IMAGES_VAL, epoch_mode="step", batch_size=12, epochs=2)
        report["gathered"] = gathered_batch_sharding()
        report["odd_batch"] = error_line(lambda: fit(MLP, TABLE, None, MESH, batch_size=10, epochs=1))
        report["odd_host_batch"] = error_line(lambda: fit(MLP, batches(TABLE, 6), None, MESH, epochs=1))
        report["checkpoint"] = checkpoint_case(runs["one"][:2])
        report["early_stopping"] = early_stopping_case()
        report["nonfinite"] = nonfinite_case()
    report["fsdp_specs"] = {str(s): str(parallel.fsdp_spec(s, 4)) for s in [(784, 128), (10,), (3, 5), (8, 12, 4096)]}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
