"""The training core: determinism, one compilation, resume, both data paths, callbacks, bad input."""

from __future__ import annotations

import sys
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import checkpoint as ckpt
from dlcore import losses, optim
from dlcore.train import step as S
from dlcore.train.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from train_toys import Net, toy  # noqa: E402


def make_trainer(seed=0, **kw):
    kw.setdefault("batch_size", 16)
    return dlcore.Trainer(Net(rngs=nnx.Rngs(seed)), optim.adam(1e-2), losses.cross_entropy,
                          metrics=["accuracy"], progress=False, **kw)


def params_of(trainer):
    return [np.asarray(a) for a in jax.tree.leaves(trainer.state.params)]


def assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_same_seed_same_weights_and_different_seed_differs():
    data = toy()
    a, b = make_trainer(), make_trainer()
    a.fit(data, epochs=3)
    b.fit(data, epochs=3)
    assert_same(params_of(a), params_of(b))
    c = dlcore.Trainer(Net(rngs=nnx.Rngs(0)), optim.adam(1e-2), losses.cross_entropy, batch_size=16,
                       progress=False, seed=1)  # same init, other shuffle/dropout seed
    c.fit(data, epochs=3)
    assert any(not np.array_equal(u, v) for u, v in zip(params_of(a), params_of(c)))


def test_training_learns_and_writes_back_into_the_model():
    data = toy(300)
    model = Net(rngs=nnx.Rngs(0))
    before = np.asarray(model.l1.kernel[...]).copy()
    t = dlcore.Trainer(model, optim.adam(1e-2), losses.cross_entropy, metrics=["accuracy"],
                       batch_size=32, progress=False)
    hist = t.fit(data, epochs=15, validation=data)
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.85
    assert not np.array_equal(before, np.asarray(model.l1.kernel[...]))
    np.testing.assert_array_equal(np.asarray(model.l1.kernel[...]), np.asarray(t.state.params["l1"]["kernel"][...]))
    # batch-norm running statistics moved away from their initial (0, 1) and reached the model
    assert float(jnp.abs(model.bn.mean[...]).max()) > 1e-3
    # predict uses eval mode: deterministic (dropout off)
    p1, p2 = t.predict(data["x"][:7]), t.predict(data["x"][:7])
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (7, 3)


def test_train_epoch_compiles_once():
    data, val = toy(), toy(40, seed=1)
    t = make_trainer()
    t.fit(data, epochs=3, validation=val)
    t.fit(data, epochs=5, validation=val)  # a second fit on same shapes reuses the compiled epoch
    t.evaluate(val)
    assert t.trace_counts["train_epoch"] == 1
    assert t.trace_counts["eval_epoch"] == 1
    conv = dlcore.Trainer(dlcore.models.create("mnist_convnet"), optim.adadelta(0.5), losses.nll, batch_size=8,
                          progress=False)
    assert conv.epoch_mode == ("auto" if jax.default_backend() == "cpu" else "scan")
    digits = {"x": np.zeros((20, 28, 28, 1), np.float32), "y": np.arange(20) % 10}
    conv.fit(digits, epochs=2, validation=digits)
    conv.fit(digits, epochs=3, validation=digits)
    assert all(v == 1 for v in conv.trace_counts.values()), conv.trace_counts
    if jax.default_backend() == "cpu":  # the tests run XLA's own convolutions (conftest): step by step
        assert "train_epoch" not in conv.trace_counts and "eval_epoch" not in conv.trace_counts


class _SmallCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = dlcore.nn.Conv2d(1, 4, 3, padding=1, rngs=rngs)
        self.out = nnx.Linear(4 * 8 * 8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.conv(x)).reshape(x.shape[0], -1))


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the choice is made on a CPU")
def test_auto_epochs_scan_where_no_convolution_is_xlas_own(monkeypatch):
    """Under epoch_mode="auto" a convolutional model's epoch is one lax.scan when every convolution of its
    step runs in a lowering of dlcore's own (here im2col, as if measured fastest), step by step when one is
    XLA's (tuning off), and both give the same training to float rounding."""
    from dlcore.nn import conv_tuning

    rng = np.random.default_rng(0)
    data = {"x": rng.random((40, 8, 8, 1), np.float32), "y": rng.integers(0, 3, 40)}

    def run(mode, tuned):
        monkeypatch.setattr(conv_tuning, "MODE", "auto" if tuned else "off")
        monkeypatch.setattr(conv_tuning, "MIN_FLOPS", 0)
        monkeypatch.setattr(conv_tuning, "choice", lambda x_shape, *a: (("im2col", x_shape[0]),) * 3)
        t = dlcore.Trainer(_SmallCNN(nnx.Rngs(0)), optim.sgd(0.1, momentum=0.9), losses.cross_entropy,
                           batch_size=8, progress=False, epoch_mode=mode)
        history = t.fit(data, epochs=2, validation=data)
        return t, history

    auto, h_auto = run("auto", tuned=True)
    assert "train_epoch" in auto.trace_counts and "eval_epoch" in auto.trace_counts, auto.trace_counts
    stepped, h_step = run("step", tuned=True)
    assert "train_epoch" not in stepped.trace_counts
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(h_auto[key], h_step[key], rtol=1e-5)
    for u, v in zip(params_of(auto), params_of(stepped)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    xla, _ = run("auto", tuned=False)
    assert "train_epoch" not in xla.trace_counts and "eval_epoch" not in xla.trace_counts


def test_train_step_does_not_recompile_when_jitted():
    t = make_trainer()
    traces = []

    def step(state, batch, key):
        traces.append(1)
        return S.train_step(state, batch, key, loss_fn=losses.cross_entropy)

    step = jax.jit(step)
    d = toy(16)
    batch = {"x": d["x"], "y": d["y"], "w": np.ones(16, np.float32)}
    state = t.state
    for i in range(3):
        state, _ = step(state, batch, jax.random.PRNGKey(i))
    assert len(traces) == 1
    assert int(state.step) == 3


def test_train_step_is_vmappable_over_keys():
    t = make_trainer()
    d = toy(16)
    batch = {"x": d["x"], "y": d["y"], "w": np.ones(16, np.float32)}
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    new = jax.jit(jax.vmap(lambda k: S.train_step(t.state, batch, k, loss_fn=losses.cross_entropy)[0].params))(keys)
    k = np.asarray(new["l1"]["kernel"][...])
    assert k.shape == (4, 8, 16)
    assert not np.allclose(k[0], k[1])  # different dropout masks, different updates


def test_host_fed_steps_match_the_device_scan():
    data = toy(90)
    a = make_trainer()
    b = make_trainer(max_device_bytes=0)  # forces one jitted step per batch from the host
    ha = a.fit(data, epochs=2)
    hb = b.fit(data, epochs=2)
    assert "train_step" in b.trace_counts and "train_epoch" not in b.trace_counts
    for u, v in zip(params_of(a), params_of(b)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-5)


def test_padded_last_batch_counts_each_example_once():
    data = toy(37)  # 37 = 2 * 16 + 5: the last batch is padded with weight-0 rows
    t = make_trainer()
    t.fit(data, epochs=1)
    ev = t.evaluate(data)
    out = t.predict(data["x"])
    expected = float(np.mean(np.asarray(losses.cross_entropy(jnp.asarray(out), jnp.asarray(data["y"])))))
    assert ev["loss"] == pytest.approx(expected, rel=1e-5)
    assert ev["accuracy"] == pytest.approx(float(np.mean(out.argmax(-1) == data["y"])))


def test_resume_ends_with_the_same_weights(tmp_path):
    data, val = toy(), toy(40, seed=1)
    full = make_trainer()
    full.fit(data, epochs=4, validation=val)

    first = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path / "run")])
    first.fit(data, epochs=2, validation=val)  # "killed" after epoch 2
    assert ckpt.latest_step(tmp_path / "run") == 2
    second = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path / "run")])
    hist = second.fit(data, epochs=4, validation=val, resume=True)
    assert_same(params_of(full), params_of(second))
    assert len(hist["loss"]) == 4
    np.testing.assert_allclose(hist["val_loss"], full.history["val_loss"], rtol=0, atol=0)


def test_resume_finds_each_callbacks_state_whatever_the_other_callbacks(tmp_path):
    """A callback's state is saved under its class name, not its place in the list: resuming with a logger
    added in front, the callbacks reordered, or early stopping removed, restores the checkpoint (before, the
    arrays were declared missing and the checkpoint corrupt, or one callback got another's state)."""
    data, val = toy(), toy(40, seed=1)
    es = dlcore.EarlyStopping(patience=10)
    make_trainer(callbacks=[es, dlcore.Checkpoint(tmp_path / "run")]).fit(data, epochs=2, validation=val)
    meta = ckpt.restore_meta(tmp_path / "run")
    assert set(meta["callbacks"]) == {"EarlyStopping"}
    class Counter(Callback):  # another callback with a state of its own
        def state_dict(self):
            return {"n": 7}

        def load_state_dict(self, d):
            self.n = d.get("n")

    for others in ([dlcore.CSVLogger(tmp_path / "log.csv")], [Counter()], []):
        again = dlcore.EarlyStopping(patience=10)
        run = tmp_path / f"run{len(others)}{type(others[0]).__name__ if others else ''}"
        shutil.copytree(tmp_path / "run", run)
        t = make_trainer(callbacks=[*others, dlcore.Checkpoint(run), again])
        assert t.fit(data, epochs=2, validation=val, resume=True)["loss"] == meta["history"]["loss"]  # resumed, done
        assert (again.best, again.best_epoch, again.wait) == (es.best, es.best_epoch, es.wait)
        assert_same(jax.tree.leaves(again.best_state), jax.tree.leaves(es.best_state))
    t = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path / "run")])  # early stopping gone: its arrays unused
    assert len(t.fit(data, epochs=3, validation=val, resume=True)["loss"]) == 3
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="directory .*a_file' is a file; it needs a folder"):
        dlcore.Checkpoint(tmp_path / "a_file")


def test_checkpoint_holds_optimizer_state_epoch_and_hyperparameters(tmp_path):
    t = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path, hyperparameters={"lr": 0.01})])
    t.fit(toy(), epochs=1)
    meta = ckpt.restore_meta(tmp_path)
    assert meta["epoch"] == 1 and meta["hyperparameters"] == {"lr": 0.01}
    tree, _ = ckpt.restore(tmp_path, {**t.checkpoint_tree(), "callbacks": {}})
    mu = jax.tree.leaves(tree["state"]["opt_state"])
    assert any(np.abs(np.asarray(m)).sum() > 0 for m in mu)
    assert int(tree["state"]["step"]) == int(np.ceil(100 / 16))


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 1)).astype(np.float32)
    data = {"x": x, "y": 3 * x + 1}
    model = dlcore.models.create("linear")
    # lr far too high: the loss grows every epoch after the first, so epoch 1 is the best
    es = dlcore.EarlyStopping(monitor="val_loss", patience=2)
    t = dlcore.Trainer(model, optim.sgd(1.5), losses.mse, batch_size=None, progress=False, callbacks=[es])
    hist = t.fit(data, epochs=50, validation=data)
    assert len(hist["val_loss"]) == es.best_epoch + 2  # stopped after `patience` worse epochs
    best = min(hist["val_loss"])
    assert t.evaluate(data)["loss"] == pytest.approx(best, rel=1e-6)
    assert best < hist["val_loss"][-1]


def test_bad_input_fails_fast_with_one_line():
    t = make_trainer()
    data = toy()
    with pytest.raises(ValueError, match="do not fit") as e:
        t.fit({"x": data["x"][:, :5], "y": data["y"]}, epochs=1)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        t.fit({"x": data["x"], "y": data["y"] + 1}, epochs=1)
    with pytest.raises(ValueError, match="same first dimension"):
        t.fit({"x": data["x"], "y": data["y"][:-1]}, epochs=1)
    with pytest.raises(ValueError, match="Checkpoint callback"):
        t.fit(data, epochs=1, resume=True)
    with pytest.raises(ValueError, match="epochs"):
        t.fit(data, epochs=0)
    assert t.trace_counts == {}  # nothing compiled


def test_missing_and_corrupt_checkpoints(tmp_path):
    t = make_trainer()
    with pytest.raises(dlcore.CheckpointError, match="no checkpoint"):
        ckpt.restore(tmp_path / "none", t.state.checkpoint_tree())
    t2 = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path / "run")])
    t2.fit(toy(), epochs=1)
    # corrupt every array file of the checkpoint
    for f in (tmp_path / "run" / "1" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.suffix not in (".json",) and "METADATA" not in f.name:
            f.write_bytes(b"garbage")
    with pytest.raises(dlcore.CheckpointError, match="cannot be restored|does not match"):
        ckpt.restore(tmp_path / "run", {**t2.checkpoint_tree(), "callbacks": {}})


def test_a_failed_save_keeps_the_last_good_checkpoint(tmp_path):
    t = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path)])
    t.fit(toy(), epochs=1)
    good = ckpt.restore(tmp_path, {**t.checkpoint_tree(), "callbacks": {}})[0]
    with pytest.raises(Exception):
        ckpt.save(tmp_path, 2, {"bad": object()}, {"epoch": 2})
    assert ckpt.steps(tmp_path) == [1]
    again = ckpt.restore(tmp_path, {**t.checkpoint_tree(), "callbacks": {}})[0]
    assert_same(jax.tree.leaves(good), jax.tree.leaves(again))


def test_a_later_fit_skips_the_shape_traces_but_still_checks_what_changed(monkeypatch):
    # Trainer.check traces the model on one batch (tens of ms for a CNN); a fit an epoch at a time reuses the
    # first trace for batches of the same structure, shapes and dtypes, and checks anything else afresh.
    t = make_trainer()
    traced = []
    real = t._check_traces
    monkeypatch.setattr(t, "_check_traces", lambda *a: traced.append(1) or real(*a))
    data = toy()
    t.fit(data, epochs=1)
    t.fit(data, epochs=2)
    assert len(traced) == 1
    with pytest.raises(ValueError, match=r"inputs of shape \(5,\) per example do not fit Net"):
        t.fit(toy(din=5), epochs=3)
    bad = dict(data, y=np.where(np.arange(100) == 7, 9, data["y"]).astype(np.int32))
    with pytest.raises(ValueError, match=r"1 labels lie outside \[0, 3\)"):
        t.fit(bad, epochs=3)  # same shapes as before: the labels are still looked at
    assert len(traced) == 2


@pytest.mark.parametrize("n,batch,drop_last,steps", [(50, 16, False, None), (50, 16, True, None), (50, 16, False, 9),
                                                     (7, 16, False, None)])
def test_a_splits_plan_is_the_op_by_op_plan(n, batch, drop_last, steps):
    # ArraySplit.plan makes each epoch's plan in one compiled call: the same rows and weights as batch_plan run op by
    # op, every epoch
    from dlcore.data import protocol as P

    key, split = jax.random.PRNGKey(3), toy(n)
    shuffled = P.ArraySplit(split, batch, shuffle=True, key=key, drop_last=drop_last, steps=steps)
    plain = P.ArraySplit(split, batch, drop_last=drop_last, steps=steps)
    for epoch in (1, 2):
        want = P.batch_plan(jax.random.fold_in(key, epoch), shuffled.n, shuffled.batch_size, drop_last, steps)
        for got, ref in zip(shuffled.plan(epoch), want):
            assert got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)
        for got, ref in zip(plain.plan(epoch), P.batch_plan(None, plain.n, plain.batch_size, drop_last, steps)):
            assert got.dtype == ref.dtype
            np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(shuffled.plan(1)[0], shuffled.plan(2)[0])  # a fresh order each epoch


@pytest.mark.parametrize("drop_last", [False, True])
def test_steps_past_one_pass_in_order_continue_as_the_next_pass(drop_last):
    """In order (no shuffle), an epoch of more steps than one pass runs pass after pass, each as one pass is:
    the rows of a short last batch are trained on (weight 1, its padding 0), or dropped with drop_last."""
    from dlcore.data import protocol as P

    idx, w = (np.asarray(a) for a in P.batch_plan(None, 10, 4, drop_last, steps=7))
    one_idx, one_w = (np.asarray(a) for a in P.batch_plan(None, 10, 4, drop_last))
    per_pass = len(one_idx)
    assert idx.shape == w.shape == (7, 4)
    for s in range(7):
        np.testing.assert_array_equal(idx[s], one_idx[s % per_pass])
        np.testing.assert_array_equal(w[s], one_w[s % per_pass])
    used = set(idx[w > 0].tolist())
    assert used == (set(range(8)) if drop_last else set(range(10)))
