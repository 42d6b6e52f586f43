"""Bad input to the Trainer is one line naming what is wrong, before anything compiles; sample weights
and ignored labels are honoured, and NaN rows are dropped and counted only when asked."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, optim


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] > 0).astype(np.int32)}


def trainer(loss=losses.cross_entropy, **kw):
    kw.setdefault("batch_size", 8)
    return dlcore.Trainer(dlcore.nn.MLP((3, 2), rngs=nnx.Rngs(0)), optim.sgd(0.1), loss, progress=False, **kw)


def one_line(excinfo, *fragments):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, msg


@pytest.mark.parametrize("make, fragments", [
    (lambda d: {**d, "x": d["x"].astype(str)}, ["train['x'] holds strings"]),
    (lambda d: {**d, "x": d["x"].astype(object)}, ["train['x'] holds Python objects"]),
    (lambda d: {**d, "x": np.where(np.arange(40)[:, None] == 5, np.nan, d["x"])},
     ["1 rows hold NaN or inf in 'x' (first at row 5)", "nonfinite_rows='drop'"]),
    (lambda d: {**d, "y": np.where(np.arange(40) == 7, np.inf, d["y"]).astype(np.float32)},
     ["NaN or inf in 'y' (first at row 7)"]),
    (lambda d: {**d, "w": -np.ones(40, np.float32)}, ["train['w'] must be finite sample weights >= 0"]),
    (lambda d: {**d, "x": d["x"][:, :2]}, ["inputs of shape (2,) per example do not fit"]),
    (lambda d: {**d, "y": d["y"] + 5}, ["labels lie outside [0, 2)"]),
    (lambda d: "train.csv", ["train is a path ('train.csv')"]),
    (lambda d: {"x": d["x"], "z": d["y"]}, ["has keys ['z'] besides 'x', 'y', 'w'"]),
])
def test_bad_training_data_is_one_line_before_compiling(make, fragments):
    t = trainer()
    with pytest.raises(ValueError) as e:
        t.fit(make(data()), epochs=1)
    one_line(e, *fragments)
    assert t.trace_counts == {}


@pytest.mark.parametrize("kw, fragment", [
    ({"batch_size": 2.5}, "batch_size (None: full batch) must be an int >= 1, got 2.5"),
    ({"on_nonfinite": "ignore"}, "on_nonfinite must be one of"),
    ({"nonfinite_rows": "keep"}, "nonfinite_rows must be one of"),
])
def test_bad_trainer_arguments_name_the_argument(kw, fragment):
    with pytest.raises(ValueError) as e:
        trainer(**kw)
    one_line(e, fragment)


def test_bad_fit_arguments_name_the_argument():
    for kw, fragment in (({"epochs": 1.5}, "epochs must be an int >= 1, got 1.5"),
                         ({"epochs": 2, "steps_per_epoch": 0}, "steps_per_epoch must be an int >= 1")):
        with pytest.raises(ValueError) as e:
            trainer().fit(data(), **kw)
        one_line(e, fragment)


def test_nan_rows_dropped_and_counted_when_asked():
    d = data()
    d["x"][[3, 17]] = np.nan
    hist = trainer(nonfinite_rows="drop").fit(d, epochs=2)
    assert hist["dropped_rows"] == [2.0, 2.0] and np.isfinite(hist["loss"]).all()
    clean = {k: np.delete(v, [3, 17], axis=0) for k, v in d.items()}
    assert trainer().fit(clean, epochs=2)["loss"] == hist["loss"]  # the same as training without those rows
    batches = [{"x": d["x"][i:i + 8], "y": d["y"][i:i + 8]} for i in range(0, 40, 8)]
    assert trainer(nonfinite_rows="drop").fit(batches, epochs=1)["dropped_rows"] == [2.0]


def test_sample_weights_are_honoured():
    d = data()
    w = np.where(np.arange(40) < 20, 1.0, 0.0).astype(np.float32)
    # weight-0 rows count nowhere: the loss is the mean over the weighted rows only
    t = trainer(shuffle=False, batch_size=40)
    half = {k: v[:20] for k, v in d.items()}
    assert t.evaluate({**d, "w": w})["loss"] == pytest.approx(t.evaluate(half)["loss"], rel=1e-6)
    # and so training on them with full batches equals training on the weighted rows alone
    a = trainer(shuffle=False, batch_size=None).fit({**d, "w": w}, epochs=3)["loss"]
    b = trainer(shuffle=False, batch_size=None).fit(half, epochs=3)["loss"]
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_labels_the_loss_ignores_pass_the_label_check():
    d = data()
    d["y"][[2, 9]] = -100
    with pytest.raises(ValueError) as e:
        trainer().fit(d, epochs=1)
    one_line(e, "2 labels lie outside [0, 2)", "ignore_index")
    ignoring = functools.partial(losses.cross_entropy, ignore_index=-100)
    hist = trainer(ignoring).fit(d, epochs=2)
    assert np.isfinite(hist["loss"]).all()
    # those rows are padding: they weigh nothing in the loss, its gradient or the metrics, as in PyTorch's mean
    # over the labelled rows; training and evaluating equal the same data with the rows weighted 0
    labelled = (d["y"] >= 0).astype(np.float32)
    weighted = {**d, "y": np.maximum(d["y"], 0), "w": labelled}
    a, b = (trainer(ignoring, shuffle=False, metrics=["accuracy"]) for _ in range(2))
    np.testing.assert_allclose(a.fit(d, epochs=2)["loss"], b.fit(weighted, epochs=2)["loss"], rtol=1e-6)
    ev_a, ev_b = a.evaluate(d), b.evaluate(weighted)
    assert ev_a == pytest.approx(ev_b, rel=1e-6)
    out = a.predict(d["x"])
    keep = d["y"] >= 0
    assert ev_a["accuracy"] == pytest.approx(np.mean(out[keep].argmax(-1) == d["y"][keep]))


def test_an_epoch_with_nothing_counted_logs_nan_not_zero():
    """Every step skipped (or every row weighted 0): the epoch's loss is NaN, which early stopping never takes
    for the best, not 0."""
    x = np.linspace(-1, 1, 16, dtype=np.float32)[:, None]
    y = 2 * x
    y[[0, 8]] = 1e30  # finite targets whose squared error overflows, one in each batch of 8: both steps skipped
    es = dlcore.EarlyStopping("loss", patience=3)
    hist = dlcore.Trainer(dlcore.models.create("linear"), optim.sgd(1e-3), losses.mse, batch_size=8, shuffle=False,
                          on_nonfinite="skip", callbacks=[es], progress=False).fit({"x": x, "y": y}, epochs=2)
    assert hist["skipped_steps"] == [2.0, 2.0] and np.isnan(hist["loss"]).all()
    assert es.best == float("inf")
    assert np.isnan(trainer().evaluate({**data(8), "w": np.zeros(8, np.float32)})["loss"])


def test_evaluation_and_prediction_sizes_and_initial_epoch_are_checked():
    for kw, needle in (({"eval_batch_size": 0}, "eval_batch_size"), ({"eval_batch_size": 2.5}, "eval_batch_size"),
                       ({"eval_batch_size": -3}, "eval_batch_size")):
        with pytest.raises(ValueError) as e:
            trainer(**kw)
        one_line(e, needle, "must be an int >= 1")
    t = trainer()
    for size in (0, -2, 1.5):
        with pytest.raises(ValueError) as e:
            t.predict(data()["x"], batch_size=size)
        one_line(e, "predict: batch_size", "must be an int >= 1")
    with pytest.raises(ValueError) as e:
        t.fit(data(), epochs=2, initial_epoch=-3)
    one_line(e, "initial_epoch", "must be an int >= 0")
    assert t.epoch == 0  # nothing trained


def test_a_loaders_labels_are_all_checked_before_training():
    """A Loader holds its whole split on the host: every label is checked before the first step, as for a
    dict (before, only the first batch's, and a bad label later trained and then failed as 'NaN or inf')."""
    from dlcore.data import Loader

    d = data(24)
    d["y"][21] = 7  # in the last batch of 8
    for src in (d, Loader(d, 8)):
        t = trainer()
        with pytest.raises(ValueError) as e:
            t.fit(src, epochs=1)
        one_line(e, "1 labels lie outside [0, 2)")
        assert int(t.state.step) == 0


def test_a_kept_carry_of_another_batch_size_is_one_line():
    """reset_carry=False keeps the carry from fit to fit; batches of another size cannot continue it: one line
    (before, a broadcasting error from inside the traced step), and `trainer.carry = None` starts afresh."""
    import jax
    import jax.numpy as jnp

    def step(state, batch, key, carry):
        def objective(p):
            out = state.model(train=True, key=key, params=p)(batch["x"]) + carry
            return losses.reduce(losses.cross_entropy(out, batch["y"]), weights=batch["w"]), out
        (loss, out), g = jax.value_and_grad(objective, has_aux=True)(state.params)
        return state.apply_gradients(g), {"loss": loss}, jax.lax.stop_gradient(out) * 0.1

    t = dlcore.Trainer(dlcore.nn.MLP((3, 2), rngs=nnx.Rngs(0)), optim.sgd(0.1), step=step,
                       carry=lambda bs: jnp.zeros((bs, 2)), reset_carry=False, batch_size=4, progress=False)
    t.fit(data(8), epochs=1)
    with pytest.raises(ValueError) as e:
        t.fit(data(2, seed=1), epochs=2)
    one_line(e, "the carry kept from the last fit (reset_carry=False)", "batches of 2 rows", "trainer.carry = None")
    t.carry = None
    t.fit(data(2, seed=1), epochs=2)  # one more epoch, from the initial carry
    assert t.epoch == 2 and jax.tree.leaves(t.carry)[0].shape == (2, 2)


def test_text_columns_in_a_loader_and_bad_layer_sizes_are_one_line():
    """A Loader refused object arrays but passed NumPy text (what read_csv gives for a text column) to JAX's
    own TypeError; Linear built garbage layers from negative or fractional sizes (a (4, 16382) kernel for -2)."""
    from dlcore.data import Loader

    d = data(8)
    with pytest.raises(ValueError) as e:
        Loader({**d, "job": np.array(list("abcdefgh"))}, 4)
    one_line(e, "split['job'] holds Python objects or text (<U1)")
    for sizes, needle in (((3, -2), "sizes[1] must be an int >= 1, got -2"),
                          ((3, 2.5), "sizes[1] must be an int >= 1, got 2.5")):
        with pytest.raises(ValueError) as e:
            dlcore.nn.MLP(sizes, rngs=nnx.Rngs(0))
        one_line(e, needle)
    with pytest.raises(ValueError) as e:
        dlcore.models.create("mnist_convnet", num_classes=0)
    one_line(e, "out_features must be an int >= 1, got 0")
