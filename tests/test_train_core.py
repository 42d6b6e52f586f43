"""The training core's second floor: any batch source, custom steps (several models, a carry), resume
after SIGKILL, fits that continue, the non-finite guard, and clear errors for bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import checkpoint as ckpt
from dlcore import data, losses, optim
from dlcore.train import NonFiniteError

sys.path.insert(0, str(Path(__file__).parent))
import train_toys  # noqa: E402

TOYS = Path(__file__).parent / "train_toys.py"


def toy(n=96, din=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, din)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1]) > 0).astype(np.int32)
    return {"x": x, "y": y}


def mlp(seed=0, din=6):
    return dlcore.nn.MLP((din, 16, 2), rngs=nnx.Rngs(seed))


def trainer(**kw):
    kw.setdefault("batch_size", 16)
    kw.setdefault("shuffle", False)
    kw.setdefault("metrics", ["accuracy"])
    return dlcore.Trainer(mlp(), optim.sgd(0.1), losses.cross_entropy, progress=False, **kw)


# -- any batch source ---------------------------------------------------------------------------------


def test_every_source_gives_the_same_batches_the_same_metrics(tmp_path):
    d = toy()
    list_of_batches = [{"x": d["x"][i:i + 16], "y": d["y"][i:i + 16]} for i in range(0, 96, 16)]
    sources = {
        "arrays": d,
        "tuple": (d["x"], d["y"]),
        "loader": data.Loader(d, 16),
        "grain": data.ArraySource(d),
        "list": list_of_batches,
        "generator_fn": lambda epoch: (b for b in list_of_batches),
    }
    results = {}
    for name, src in sources.items():
        t = trainer()
        hist = t.fit(src, epochs=2, validation=src)
        results[name] = (hist, np.asarray(t.predict(d["x"])))
    ref_hist, ref_pred = results["arrays"]
    for name, (hist, pred) in results.items():
        for k in ("loss", "accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(hist[k], ref_hist[k], rtol=1e-6, err_msg=f"{name} {k}")
        np.testing.assert_allclose(pred, ref_pred, rtol=1e-6, atol=1e-7, err_msg=name)
    # a one-shot generator trains one epoch; a second epoch asks for a re-playable source
    t = trainer()
    t.fit((b for b in list_of_batches), epochs=1)
    np.testing.assert_allclose(t.history["loss"], ref_hist["loss"][:1], rtol=1e-6)
    with pytest.raises(ValueError, match="generator, which can be consumed once"):
        trainer().fit((b for b in list_of_batches), epochs=2)


def test_padded_short_batches_of_a_stream_count_once():
    d = toy(40)
    batches = [{"x": d["x"][i:i + 16], "y": d["y"][i:i + 16]} for i in range(0, 40, 16)]  # 16, 16, 8
    t = trainer()
    t.fit(d, epochs=1)
    assert t.evaluate(batches) == pytest.approx(t.evaluate(d), rel=1e-6)
    pred = t.predict(batches)
    assert pred.shape == (40, 2)
    np.testing.assert_allclose(pred, t.predict(d["x"]), rtol=1e-6)


class TwoInputs(nnx.Module):
    def __init__(self, *, rngs):
        self.a = dlcore.nn.Linear(3, 4, rngs=rngs)
        self.b = dlcore.nn.Linear(2, 4, rngs=rngs)
        self.out = dlcore.nn.Linear(8, 1, rngs=rngs)

    def __call__(self, wide, deep):
        return self.out(jnp.concatenate([self.a(wide), self.b(deep)], -1))


def test_several_inputs_by_keyword_and_by_position():
    rng = np.random.default_rng(0)
    wide, deep = rng.normal(size=(50, 3)).astype(np.float32), rng.normal(size=(50, 2)).astype(np.float32)
    y = (wide[:, :1] - deep[:, 1:]).astype(np.float32)
    by_name = dlcore.Trainer(TwoInputs(rngs=nnx.Rngs(0)), optim.sgd(0.05), losses.mse, batch_size=10, progress=False)
    by_pos = dlcore.Trainer(TwoInputs(rngs=nnx.Rngs(0)), optim.sgd(0.05), losses.mse, batch_size=10, progress=False)
    h1 = by_name.fit({"x": {"wide": wide, "deep": deep}, "y": y}, epochs=5)
    h2 = by_pos.fit({"x": (wide, deep), "y": y}, epochs=5)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)
    assert h1["loss"][-1] < h1["loss"][0]
    assert by_name.predict({"wide": wide, "deep": deep}).shape == (50, 1)


def test_targets_may_be_absent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    model = dlcore.nn.MLP((4, 3, 4), rngs=nnx.Rngs(0))
    t = dlcore.Trainer(model, optim.adam(1e-2), lambda out: jnp.mean(out ** 2, -1), batch_size=16, progress=False)
    hist = t.fit({"x": x}, epochs=3)
    assert hist["loss"][-1] < hist["loss"][0]
    with pytest.raises(ValueError, match="no targets"):
        dlcore.Trainer(model, optim.sgd(0.1), lambda out: jnp.mean(out, -1), metrics=["accuracy"],
                       progress=False).fit({"x": x}, epochs=1)


# -- fits that continue, other shapes, no recompilation -----------------------------------------------


def test_second_fit_with_other_batch_and_data_sizes_continues_the_history():
    d = toy(96)
    t = trainer(shuffle=True)
    t.fit(d, epochs=2)
    t.batch_size = 32
    t.fit(toy(70, seed=1), epochs=3)  # another batch size and dataset size: epoch 3
    assert len(t.history["loss"]) == 3 and t.epoch == 3
    t.fit(toy(70, seed=1), epochs=5)
    assert len(t.history["loss"]) == 5
    assert t.trace_counts["train_epoch"] == 2  # once per shape: (6, 16) and (3, 32) batch plans
    with pytest.raises(ValueError, match="pass epochs=7 to train 2 more"):
        t.fit(d, epochs=2)


def test_a_continued_fit_equals_one_long_fit():
    d = toy()
    a, b = trainer(shuffle=True), trainer(shuffle=True)
    a.fit(d, epochs=4)
    b.fit(d, epochs=2)
    b.fit(d, epochs=4)
    assert a.history == b.history
    for u, v in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(u, v)


# -- custom steps -------------------------------------------------------------------------------------


def test_gan_shaped_step_trains_two_models_with_their_own_optimizers():
    t = train_toys.gan_trainer()
    d_before = np.asarray(t.modules[0].l1.kernel[...]).copy()
    hist = t.fit(train_toys.points(), epochs=3)
    assert set(hist) == {"d_loss", "g_loss"} and len(hist["d_loss"]) == 3
    assert all(np.isfinite(hist["d_loss"])) and all(np.isfinite(hist["g_loss"]))
    steps = [int(s.step) for s in t.states()]
    assert steps == [24, 24]  # 256 / 32 batches x 3 epochs, each model updated once a step
    assert not np.array_equal(d_before, np.asarray(t.modules[0].l1.kernel[...]))  # written back
    adam_mu = [jax.tree.leaves(s.opt_state)[1] for s in t.states()]  # each its own optimizer state
    assert adam_mu[0].shape != adam_mu[1].shape or not np.array_equal(adam_mu[0], adam_mu[1])
    fake = t.predict(np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32), which="g")
    assert fake.shape == (500, 2)
    with pytest.raises(ValueError, match="which="):
        t.predict(np.zeros((4, 2), np.float32))


def test_bptt_shaped_step_carries_the_hidden_state():
    t = train_toys.bptt_trainer()
    chunks = train_toys.sine_chunks()
    hist = t.fit(chunks, epochs=6, validation=chunks)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert t.carry.shape == (4, 8) and float(jnp.abs(t.carry).sum()) > 0
    # the carry matters: the same step with the state reset at every batch learns another model
    reset = dlcore.Trainer(train_toys.Recurrence(rngs=nnx.Rngs(0)), optim.adam(1e-2),
                           step=lambda s, b, k, c: train_toys.bptt_step(s, b, k, jnp.zeros((4, 8)))[:2] + (c,),
                           carry=jnp.zeros(()), progress=False)
    reset.fit(chunks, epochs=6)
    assert reset.history["loss"] != hist["loss"]


@pytest.mark.parametrize("kind", ["gan", "bptt"])
def test_custom_steps_resume_bit_identical_after_sigkill(kind, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "JAX_PLATFORMS": "cpu"}
    full, cut = tmp_path / "full.npz", tmp_path / "cut.npz"
    # the uninterrupted run, side by side with the one to kill (each spends most of its time in one thread)
    uninterrupted = subprocess.Popen([sys.executable, str(TOYS), kind, str(tmp_path / "a"), "4", str(full)], env=env,
                                     stderr=subprocess.PIPE, text=True)
    # a run killed with SIGKILL after its second checkpoint, then resumed
    proc = subprocess.Popen([sys.executable, str(TOYS), kind, str(tmp_path / "b"), "4", str(cut), "--sleep-after",
                             "2"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "checkpointed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-2000:]
    finally:
        proc.kill()
        uninterrupted.kill()
    assert ckpt.latest_step(tmp_path / "b") == 2
    tree, meta = ckpt.load(tmp_path / "b")
    assert set(tree["state"]) == ({"d", "g"} if kind == "gan" else {"params", "rest", "opt_state", "step", "key"})
    assert ("carry" in tree["loop"]) == (kind == "bptt")  # the carry is saved with the states
    subprocess.run([sys.executable, str(TOYS), kind, str(tmp_path / "b"), "4", str(cut), "--resume"], env=env,
                   check=True, timeout=300)
    a, b = np.load(full), np.load(cut)
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# -- the non-finite guard -------------------------------------------------------------------------------


def diverging(**kw):
    x = np.linspace(-3, 3, 64, dtype=np.float32)[:, None] * 100
    return dlcore.Trainer(dlcore.models.create("linear"), optim.sgd(1.0), losses.mse, batch_size=16, shuffle=False,
                          progress=False, **kw), {"x": x, "y": 3 * x}


def test_a_diverging_run_stops_with_one_line_naming_epoch_and_step(tmp_path):
    t, d = diverging(callbacks=[dlcore.Checkpoint(tmp_path)])
    with pytest.raises(NonFiniteError) as e:
        t.fit(d, epochs=50)
    msg = str(e.value)
    assert "\n" not in msg
    epoch, step = (int(v) for v in __import__("re").search(r"epoch (\d+), step (\d+)", msg).groups())
    assert t.epoch == epoch - 1 and t.count == 4 * epoch  # the epoch did not complete
    params = jax.tree.leaves(t.state.params)
    assert all(np.isfinite(np.asarray(p)).all() for p in params)  # the last good weights
    assert int(t.state.step) == step - 1  # the weights of the step before the bad one
    assert ckpt.latest_step(tmp_path) == epoch - 1  # the last good checkpoint is kept
    tree, _ = ckpt.load(tmp_path)
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(tree["state"]["params"]))


def test_skip_policy_skips_and_counts_the_bad_steps():
    _, d = diverging()
    d = {**d, "y": d["y"].copy()}
    d["y"][20] = 1e30  # finite data, but its squared error overflows: the second batch of each epoch is skipped
    small = dlcore.Trainer(dlcore.models.create("linear"), optim.sgd(1e-6), losses.mse, batch_size=16,
                           shuffle=False, progress=False, on_nonfinite="skip")
    hist = small.fit(d, epochs=2)
    assert hist["skipped_steps"] == [1.0, 1.0]
    assert np.isfinite(hist["loss"]).all()
    assert int(small.state.step) == 6 and small.count == 8


# -- bad input: one clear line each ----------------------------------------------------------------------


def test_a_source_whose_batches_change_structure():
    d = toy()
    good = {"x": d["x"][:16], "y": d["y"][:16]}
    for bad, what in (({"x": d["x"][16:32, :4], "y": d["y"][16:32]}, "per-example shapes"),
                      ({"x": {"a": d["x"][16:32]}, "y": d["y"][16:32]}, "another structure"),
                      ({"x": d["x"][16:32].astype(np.float64), "y": d["y"][16:32]}, "another structure")):
        with pytest.raises(ValueError, match="batch 2 of epoch 1 has another structure") as e:
            trainer().fit([good, bad], epochs=1)
        assert "\n" not in str(e.value) and what.split()[0] in str(e.value)


def test_a_custom_step_returning_another_structure():
    def drops_a_model(states, batch, key, carry):
        return {"d": states["d"]}, {"x": jnp.zeros(())}, carry

    def changes_the_carry(states, batch, key, carry):
        return states, {"x": jnp.zeros(())}, jnp.zeros((3,))

    def vector_logs(states, batch, key, carry):
        return states, {"x": jnp.zeros((4,))}, carry

    models = lambda: {"d": mlp(0), "g": mlp(1)}  # noqa: E731
    for step, match in ((drops_a_model, "states of another structure"), (changes_the_carry, "carry of another"),
                        (vector_logs, "must be scalars")):
        t = dlcore.Trainer(models(), optim.sgd(0.1), step=step, carry=jnp.zeros((2,)), progress=False)
        with pytest.raises(ValueError, match=match) as e:
            t.fit(toy(), epochs=1)
        assert "\n" not in str(e.value)
        assert t.trace_counts == {}  # found before anything compiled
    with pytest.raises(ValueError, match="eval_step"):
        dlcore.Trainer(models(), optim.sgd(0.1), step=drops_a_model, progress=False).evaluate(toy())
    with pytest.raises(ValueError, match="custom step"):
        dlcore.Trainer(models(), optim.sgd(0.1), losses.mse, progress=False)
    with pytest.raises(ValueError, match="structure of model"):
        dlcore.Trainer(models(), {"d": optim.sgd(0.1)}, step=drops_a_model, progress=False)


def test_unknown_metric_and_activation_names():
    with pytest.raises(ValueError, match="unknown metric 'acuracy': did you mean 'accuracy'") as e:
        trainer(metrics=["acuracy"])
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown activation 'leaky_rlu': did you mean 'leaky_relu'"):
        dlcore.nn.MLP((2, 3, 1), activation="leaky_rlu", rngs=nnx.Rngs(0))


def test_metrics_by_name_in_the_trainer():
    d = toy()
    d = {"x": d["x"], "y": d["y"].astype(np.float32)}
    model = dlcore.nn.MLP((6, 16, 1), rngs=nnx.Rngs(0))
    bce = lambda out, y: losses.binary_cross_entropy_with_logits(out[:, 0], y)  # noqa: E731
    t = dlcore.Trainer(model, optim.sgd(0.1), bce, metrics=["accuracy", "precision", "recall", "f1"],
                       batch_size=16, progress=False)
    hist = t.fit(d, epochs=2)
    logits = t.predict(d["x"])[:, 0]
    pred, true = logits > 0, d["y"] > 0.5
    ev = t.evaluate(d)
    tp = float(np.sum(pred & true))
    assert ev["precision"] == pytest.approx(tp / np.sum(pred), rel=1e-6)
    assert ev["recall"] == pytest.approx(tp / np.sum(true), rel=1e-6)
    assert {"precision", "recall", "f1"} <= set(hist)
    # a metric that does not fit the outputs is one line before anything compiles
    bad = trainer(metrics=["precision"])
    with pytest.raises(ValueError, match="metric 'precision'") as e:
        bad.fit(toy(), epochs=1)
    assert "\n" not in str(e.value) and bad.trace_counts == {}


def test_non_finite_parameters_behind_finite_logs_are_found_and_named():
    # a step that poisons one weight at the 7th step of the run while its logs stay finite: the
    # epoch-end check sees it and the replay names the step
    def poison(state, batch, key, carry):
        state = state.replace(step=state.step + 1)
        bad = jnp.where(state.step == 7, jnp.nan, 0.0)
        params = jax.tree.map(lambda p: p + bad, state.params)
        return state.replace(params=params), {"loss": jnp.zeros(())}, carry

    t = dlcore.Trainer(mlp(), optim.sgd(0.1), step=poison, batch_size=16, shuffle=False, progress=False)
    with pytest.raises(NonFiniteError, match=r"epoch 2, step 7 \(batch 1 of the epoch\)"):
        t.fit(toy(), epochs=3)  # 6 batches an epoch
    assert int(t.state.step) == 6 and t.epoch == 1
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(t.state.params))


def test_predict_checks_its_inputs_before_compiling():
    t = trainer()
    with pytest.raises(ValueError, match=r"predict: inputs of shape \(5,\) per example do not fit") as e:
        t.predict(np.zeros((4, 5), np.float32))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="holds strings"):
        t.predict(np.array([["a"] * 6]))
    assert "predict" not in t.trace_counts


class Dropped(nnx.Module):
    def __init__(self, *, rngs):
        self.l1 = dlcore.nn.Linear(6, 32, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.l2 = dlcore.nn.Linear(32, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.l1(x))))


def test_after_fit_the_model_is_in_eval_mode_and_train_switches_back():
    model = Dropped(rngs=nnx.Rngs(0))
    t = dlcore.Trainer(model, optim.sgd(0.1), losses.cross_entropy, batch_size=16, progress=False)
    t.fit(toy(), epochs=1)
    x = toy(8)["x"]
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x)))  # dropout off
    np.testing.assert_allclose(np.asarray(model(x)), t.predict(x), rtol=1e-6)
    model.train()
    assert not np.array_equal(np.asarray(model(x)), np.asarray(model(x)))  # dropout on again
