"""Tests for the binary metrics of dlcore.metrics: precision, recall, F1, ROC-AUC (golden, sklearn parity, streaming)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import metrics as M


def test_golden_counts_and_ratios():
    logits = jnp.array([2.0, -1.0, 0.5, -3.0, 1.0, -0.2])
    labels = jnp.array([1, 1, 0, 0, 1, 0])
    c = M.confusion_counts(logits, labels)
    assert {k: float(v) for k, v in c.items()} == {"tp": 2.0, "fp": 1.0, "fn": 1.0, "tn": 2.0}
    assert float(M.precision(logits, labels)) == pytest.approx(2 / 3)
    assert float(M.recall(logits, labels)) == pytest.approx(2 / 3)
    assert float(M.f1(logits[:, None], labels)) == pytest.approx(2 / 3)
    probs = jax.nn.sigmoid(logits)
    assert float(M.precision(probs, labels, threshold=0.5)) == pytest.approx(2 / 3)
    assert float(M.precision(-jnp.ones(3), jnp.array([1, 0, 1]))) == 0.0  # nothing predicted positive


def test_roc_auc_golden_with_ties():
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 -> 1/2, 0.4>0.1) = 3.5 / 4
    assert M.roc_auc([0.8, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == pytest.approx(0.875)
    assert M.roc_auc(np.array([[3.0], [1.0]]), np.array([1, 0])) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        M.roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="do not match"):
        M.roc_auc([0.1, 0.2, 0.3], [1, 0])


def test_matches_sklearn():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, size=500)
    scores = np.round(rng.normal(size=500) + y, 1).astype(np.float32)  # rounded: many ties
    assert M.roc_auc(scores, y) == pytest.approx(sk.roc_auc_score(y, scores), rel=1e-12)
    pred = (scores > 0).astype(int)
    assert float(M.precision(scores, y)) == pytest.approx(sk.precision_score(y, pred), rel=1e-6)
    assert float(M.recall(scores, y)) == pytest.approx(sk.recall_score(y, pred), rel=1e-6)
    assert float(M.f1(scores, y)) == pytest.approx(sk.f1_score(y, pred), rel=1e-6)


def test_streaming_equals_whole_set_and_masks_padding():
    rng = np.random.RandomState(1)
    y = rng.randint(0, 2, size=100)
    s = rng.normal(size=(100, 1)).astype(np.float32) + y[:, None]
    for metric, fn in [(M.Precision(), M.precision), (M.Recall(), M.recall), (M.F1(), M.f1)]:
        acc = metric.init()
        for i in range(0, 100, 32):  # batches of 32, the last one padded with garbage rows of weight 0
            xs, ys = s[i:i + 32], y[i:i + 32]
            pad = 32 - len(xs)
            w = np.r_[np.ones(len(xs)), np.zeros(pad)].astype(np.float32)
            xs = np.concatenate([xs, np.full((pad, 1), 5.0, np.float32)])
            ys = np.concatenate([ys, np.zeros(pad, int)])
            acc = jax.jit(metric.update)(acc, jnp.asarray(xs), jnp.asarray(ys), jnp.asarray(w))
        assert float(metric.compute(acc)) == pytest.approx(float(fn(s, y)), rel=1e-6), metric.name
    with pytest.raises(ValueError, match="do not match labels"):
        M.Precision()(jnp.ones((4, 2)), jnp.ones(4))


# ---- by name, in the Trainer ---------------------------------------------------------------------------


def test_names_resolve_to_the_streaming_classes_and_roc_auc_says_why_not():
    assert M.get("precision") == M.Precision() and M.get("Recall") == M.Recall()
    assert M.get("f1") == M.F1() and M.get("f1_score") == M.F1()
    assert {"precision", "recall", "f1"} <= set(M.names())
    with pytest.raises(ValueError, match="'roc_auc' cannot stream.*roc_auc\\(trainer.predict"):
        M.get("roc_auc")


def test_trainer_reports_precision_recall_f1_by_name_equal_to_the_functions():
    from flax import nnx

    from dlcore import Trainer, losses, optim

    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 2)).astype(np.float32)
    y = ((x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=70)) > 0.2).astype(np.float32)[:, None]
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    # batches of 16: the last of 70 rows is padded, which the weights mask must keep out of the counts
    trainer = Trainer(model, optim.sgd(0.1), losses.binary_cross_entropy_with_logits,
                      metrics=["precision", "recall", "f1"], batch_size=16, progress=False)
    history = trainer.fit({"x": x, "y": y}, epochs=3)
    assert {"precision", "recall", "f1"} <= set(history)
    logs = trainer.evaluate({"x": x, "y": y})
    logits = trainer.predict(x)
    assert 0 < float(M.precision(logits, y)) < 1  # a real mix of right and wrong predictions
    for name, fn in [("precision", M.precision), ("recall", M.recall), ("f1", M.f1)]:
        assert logs[name] == pytest.approx(float(fn(logits, y)), abs=1e-6)
