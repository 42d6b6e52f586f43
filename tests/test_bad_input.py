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
    hist = trainer(functools.partial(losses.cross_entropy, ignore_index=-100)).fit(d, epochs=2)
    assert np.isfinite(hist["loss"]).all()
