"""Tests for dlcore.metrics: values, masked streaming, RMSE aggregation, names."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import losses, metrics


def close(a, b, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


LOGITS = jnp.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, 0.0, 5.0], [1.0, 0.0, 0.5]])
LABELS = jnp.array([1, 0, 1, 2])  # argmax [1, 0, 2, 0]: right, right, wrong, wrong


def test_accuracy_multiclass():
    close(metrics.accuracy(LOGITS, LABELS), 0.5)
    # (B, T, C) with (B, T) labels: over all positions
    close(metrics.accuracy(LOGITS.reshape(2, 2, 3), LABELS.reshape(2, 2)), 0.5)


def test_accuracy_binary_logits():
    logits = jnp.array([[2.0], [-1.0], [0.5], [-3.0]])
    labels = jnp.array([1, 1, 0, 0])  # predictions [1, 0, 1, 0]: right, wrong, wrong, right
    close(metrics.accuracy(logits, labels), 0.5)
    close(metrics.accuracy(logits[:, 0], labels), 0.5)
    close(metrics.accuracy(logits, labels[:, None].astype(jnp.float32)), 0.5)
    # sigmoid probabilities need threshold 0.5
    close(metrics.accuracy(jax.nn.sigmoid(logits), labels, threshold=0.5), 0.5)
    # multi-label: element-wise over (B, L)
    close(metrics.accuracy(jnp.array([[1.0, -1.0], [1.0, 1.0]]), jnp.array([[1, 0], [0, 1]])), 0.75)


def test_top_k_accuracy():
    logits = jnp.array([[0.1, 0.5, 0.2, 0.9], [0.8, 0.1, 0.3, 0.2], [0.3, 0.2, 0.1, 0.0]])
    labels = jnp.array([1, 2, 3])  # ranks of the true class: 2nd, 2nd, 4th
    close(metrics.top_k_accuracy(logits, labels, k=1), 0.0)
    close(metrics.top_k_accuracy(logits, labels, k=2), 2 / 3)
    close(metrics.top_k_accuracy(logits, labels, k=4), 1.0)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 4\]"):
        metrics.top_k_accuracy(logits, labels, k=5)


def test_regression_metrics():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])  # errors 1, 0, 2, 4
    close(metrics.mae(p, t), 7 / 4)
    close(metrics.mse(p, t), 21 / 4)
    close(metrics.rmse(p, t), math.sqrt(21 / 4))
    with pytest.raises(ValueError, match="no silent broadcasting"):
        metrics.mse(jnp.ones((3, 1)), jnp.ones(3))


def _stream(metric, batches):
    acc = metric.init()
    for outputs, targets, weights in batches:
        acc = metric.update(acc, outputs, targets, weights)
    return metric.compute(acc)


def test_masked_streaming_equals_unmasked_real_rows():
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(10, 4)).astype(np.float32)
    labels = rng.randint(0, 4, size=10)
    preds = rng.normal(size=(10, 2)).astype(np.float32)
    targets = rng.normal(size=(10, 2)).astype(np.float32)
    # Batches of 4: the last holds 2 real rows and 2 padded rows of garbage (NaN and huge) with weight 0.
    pad_logits = np.concatenate([logits, [[np.nan] * 4, [1e30] * 4]]).astype(np.float32)
    pad_labels = np.concatenate([labels, [0, 3]])
    pad_preds = np.concatenate([preds, [[np.nan, np.inf], [1e30, -1e30]]]).astype(np.float32)
    pad_targets = np.concatenate([targets, np.zeros((2, 2))]).astype(np.float32)
    mask = np.r_[np.ones(10), np.zeros(2)].astype(np.float32)

    def batches(outputs, targets):
        return [(outputs[i : i + 4], targets[i : i + 4], mask[i : i + 4]) for i in range(0, 12, 4)]

    for metric, outputs, targets, want in [
        (metrics.Accuracy(), pad_logits, pad_labels, metrics.accuracy(logits, labels)),
        (metrics.TopKAccuracy(k=2), pad_logits, pad_labels, metrics.top_k_accuracy(logits, labels, k=2)),
        (metrics.MAE(), pad_preds, pad_targets, metrics.mae(preds, targets)),
        (metrics.MSE(), pad_preds, pad_targets, metrics.mse(preds, targets)),
        (metrics.RMSE(), pad_preds, pad_targets, metrics.rmse(preds, targets)),
        (metrics.Mean("loss", losses.mse), pad_preds, pad_targets, jnp.mean(losses.mse(preds, targets))),
    ]:
        got = _stream(metric, batches(outputs, targets))
        assert np.isfinite(float(got)), metric.name
        close(got, want, rtol=1e-5)
    # and a real-valued result to compare with: 3 of 10 here
    assert 0 < float(metrics.accuracy(logits, labels)) < 1


def test_rmse_aggregates_over_the_whole_set():
    # Batch 1 errors [1, 1] (RMSE 1), batch 2 errors [3, 3] (RMSE 3): the mean of batch RMSEs is 2, but
    # the RMSE of the set is sqrt((1 + 1 + 9 + 9) / 4) = sqrt(5) (Géron, ch. 10, Model Evaluation: 0.5668 vs 0.6388).
    batches = [
        (jnp.array([1.0, 1.0]), jnp.zeros(2), None),
        (jnp.array([3.0, 3.0]), jnp.zeros(2), None),
    ]
    got = _stream(metrics.RMSE(), batches)
    close(got, math.sqrt(5))
    mean_of_roots = np.mean([metrics.rmse(o, t) for o, t, _ in batches])
    close(mean_of_roots, 2.0)
    assert abs(float(got) - mean_of_roots) > 0.2
    close(got, metrics.rmse(jnp.array([1.0, 1.0, 3.0, 3.0]), jnp.zeros(4)))


def test_weighted_rows_cover_every_element():
    # (B, T) outputs: a row's weight counts each of its T elements.
    m = metrics.MAE()
    got = m(jnp.array([[1.0, 3.0], [10.0, 10.0]]), jnp.zeros((2, 2)), jnp.array([1.0, 0.0]))
    close(got, 2.0)
    with pytest.raises(ValueError, match=r"weights shape \(2, 1\) must be \(B,\)"):
        m(jnp.ones((2, 2)), jnp.ones((2, 2)), jnp.ones((2, 1)))


def test_streaming_is_jittable_and_scannable_with_static_metric():
    rng = np.random.RandomState(1)
    preds = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)  # 3 batches of 4
    targets = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    weights = jnp.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]], jnp.float32)

    @jax.jit
    def run(preds, targets, weights):
        metric = metrics.RMSE()

        def body(acc, batch):
            return metric.update(acc, *batch), None

        acc, _ = jax.lax.scan(body, metric.init(), (preds, targets, weights))
        return metric.compute(acc)

    want = metrics.rmse(preds.reshape(-1)[:9], targets.reshape(-1)[:9])
    close(run(preds, targets, weights), want, rtol=1e-6)

    update = jax.jit(lambda m, acc, o, t, w: m.update(acc, o, t, w), static_argnums=0)
    acc = update(metrics.Accuracy(), metrics.Accuracy().init(), LOGITS, LABELS, jnp.ones(4))
    close(metrics.Accuracy().compute(acc), 0.5)
    assert hash(metrics.TopKAccuracy(3)) == hash(metrics.TopKAccuracy(k=3))


def test_get_resolves_names():
    assert metrics.get("accuracy") == metrics.Accuracy()
    assert metrics.get("RMSE") == metrics.RMSE()
    assert metrics.get("mae").name == "mae" and metrics.get("mse").name == "mse"
    assert metrics.get("top5_accuracy") == metrics.TopKAccuracy(k=5)
    assert metrics.get("top_k_accuracy").k == 5
    assert metrics.get("top3_accuracy").name == "top3_accuracy"
    custom = metrics.Mean("loss", losses.mae)
    assert metrics.get(custom) is custom


def test_get_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown metric 'precison': did you mean 'precision'.*known: accuracy, f1, mae"):
        metrics.get("precison")
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        metrics.TopKAccuracy(k=0)


def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk_cm

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, p, 4), sk_cm(y, p, labels=range(4)))
    # hand-computed: one 0->0, two 1->2, an out-of-range id ignored
    np.testing.assert_array_equal(metrics.confusion_matrix(jnp.array([0, 1, 1, 5]), jnp.array([0, 2, 2, 0]), 3),
                                  [[1, 0, 0], [0, 0, 2], [0, 0, 0]])
