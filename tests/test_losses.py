"""Tests for dlcore.losses: hand-computed values, PyTorch parity, gradients, shape errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from dlcore import losses

# Jitted once per static configuration: that checks every loss traces, and compiles faster than eager
# mode compiles each new operation.
ce = jax.jit(losses.cross_entropy, static_argnames=("ignore_index", "label_smoothing", "reduction"))
nll = jax.jit(losses.nll, static_argnames=("ignore_index", "reduction"))
mse, mae = jax.jit(losses.mse), jax.jit(losses.mae)
huber = jax.jit(losses.huber, static_argnames="delta")
bce = jax.jit(losses.binary_cross_entropy)
bce_logits = jax.jit(losses.binary_cross_entropy_with_logits)
reduce = jax.jit(losses.reduce, static_argnames="reduction")

LN2, LN3, LN6 = math.log(2), math.log(3), math.log(6)
# Logits whose softmax is [1/6, 2/6, 3/6]: log-probs ln(1/6), ln(1/3), ln(1/2).
LOGITS = jnp.array([[0.0, LN2, LN3], [0.0, LN2, LN3]])


def close(a, b, rtol=1e-6, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b, dtype=np.float64), rtol=rtol, atol=atol)


# ---- hand-computed values ----------------------------------------------------------------------------


def test_regression_losses_by_hand():
    p = jnp.array([[1.0, 2.0], [3.0, 5.0]])
    t = jnp.array([[0.0, 2.0], [1.0, 1.0]])
    # differences [[1, 0], [2, 4]]
    close(mse(p, t), [(1 + 0) / 2, (4 + 16) / 2])
    close(mae(p, t), [(1 + 0) / 2, (2 + 4) / 2])
    # delta 1: |1| -> 0.5*1; 0 -> 0; 2 -> 1*(2 - 0.5) = 1.5; 4 -> 3.5
    close(huber(p, t), [(0.5 + 0) / 2, (1.5 + 3.5) / 2])
    # delta 2: 1 -> 0.5; 0 -> 0; 2 -> 0.5*4 = 2; 4 -> 2*(4 - 1) = 6
    close(huber(p, t, delta=2.0), [0.25, 4.0])
    # (B,) inputs: one element per example, the loss is element-wise
    close(mse(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])), [1.0, 9.0])


def test_cross_entropy_by_hand():
    labels = jnp.array([2, 0])
    # -ln p_2 = ln 2, -ln p_0 = ln 6
    close(ce(LOGITS, labels), [LN2, LN6])
    close(ce(LOGITS, labels, reduction="mean"), (LN2 + LN6) / 2)
    close(ce(LOGITS, labels, reduction="sum"), LN2 + LN6)
    # class weights [1, 2, 3]: per position w[y] * nll; the mean divides by w[2] + w[0] = 4
    w = jnp.array([1.0, 2.0, 3.0])
    close(ce(LOGITS, labels, weight=w), [3 * LN2, LN6])
    close(ce(LOGITS, labels, weight=w, reduction="mean"), (3 * LN2 + LN6) / 4)
    # ignore_index: the second position gives 0 and is left out of the mean
    ign = jnp.array([2, -100])
    close(ce(LOGITS, ign, ignore_index=-100), [LN2, 0.0])
    close(ce(LOGITS, ign, ignore_index=-100, reduction="mean"), LN2)
    # label smoothing 0.3 over C = 3: 0.7 * ln 2 + 0.1 * (ln 6 + ln 3 + ln 2)
    close(ce(LOGITS[:1], labels[:1], label_smoothing=0.3), [0.7 * LN2 + 0.1 * math.log(36)])
    # soft targets [0.5, 0, 0.5]: -(0.5 ln(1/6) + 0.5 ln(1/2)) = 0.5 ln 12
    q = jnp.array([[0.5, 0.0, 0.5]])
    close(ce(LOGITS[:1], q), [0.5 * math.log(12)])


def test_cross_entropy_keeps_label_shape_and_class_axis_last():
    # (B, T, C) logits with (B, T) labels -> (B, T) losses
    logits = jnp.broadcast_to(LOGITS[0], (2, 4, 3))
    labels = jnp.array([[2, 0, 1, 2], [0, 0, 0, 0]])
    out = ce(logits, labels)
    assert out.shape == (2, 4)
    close(out[0], [LN2, LN6, LN3, LN2])


def test_cross_entropy_traced_label_smoothing():
    # label_smoothing may be traced (vmapped hyperparameter sweeps): same values as the static path.
    labels = jnp.array([2, 0])
    traced = jax.jit(lambda ls: losses.cross_entropy(LOGITS, labels, label_smoothing=ls, reduction="mean"))
    for ls in [0.0, 0.3]:
        close(traced(ls), ce(LOGITS, labels, label_smoothing=ls, reduction="mean"))


def test_out_of_range_label_gives_nan_not_a_wrong_class():
    out = ce(LOGITS, jnp.array([3, -1]))
    assert np.all(np.isnan(np.asarray(out)))


def test_nll_by_hand():
    log_probs = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]]))
    labels = jnp.array([0, 2])
    close(nll(log_probs, labels), [LN2, -math.log(0.7)])
    w = jnp.array([2.0, 1.0, 0.5])
    # weighted mean: (2 ln 2 + 0.5 * -ln 0.7) / (2 + 0.5)
    close(nll(log_probs, labels, weight=w, reduction="mean"), (2 * LN2 - 0.5 * math.log(0.7)) / 2.5)
    close(nll(log_probs, jnp.array([0, 5]), ignore_index=5), [LN2, 0.0])


def test_binary_cross_entropy_by_hand():
    p = jnp.array([[0.8, 0.1]])
    t = jnp.array([[1.0, 0.0]])
    close(bce(p, t), [(-math.log(0.8) - math.log(0.9)) / 2])
    close(bce(p, t, weight=jnp.array([2.0, 0.0])), [-math.log(0.8)])
    # log clamped at -100 as in PyTorch: p = 0 with t = 1 costs 100, not inf
    close(bce(jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0])), [100.0, 0.0])


def test_binary_cross_entropy_gradient_finite_at_0_and_1():
    g = jax.grad(lambda p: jnp.sum(bce(p, jnp.array([1.0, 0.0, 1.0]))))
    grad = np.asarray(g(jnp.array([0.0, 1.0, 0.5])))
    assert np.all(np.isfinite(grad))
    close(grad[2], -1 / 0.5)


def test_binary_cross_entropy_with_logits_by_hand():
    # x = ln 3 -> sigmoid 0.75: t = 1 costs -ln 0.75, t = 0 costs -ln 0.25 = ln 4; x = 0 costs ln 2
    x = jnp.array([[LN3, LN3, 0.0]])
    t = jnp.array([[1.0, 0.0, 1.0]])
    close(bce_logits(x, t), [(-math.log(0.75) + math.log(4) + LN2) / 3])
    # pos_weight (C,) scales only the positive term of each label
    pw = jnp.array([2.0, 5.0, 3.0])
    close(
        bce_logits(x, t, pos_weight=pw),
        [(-2 * math.log(0.75) + math.log(4) + 3 * LN2) / 3],
    )
    # stable where sigmoid saturates: x = 100, t = 0 costs 100 (a naive log(1 - sigmoid) gives inf)
    close(bce_logits(jnp.array([100.0, -100.0]), jnp.array([0.0, 0.0])), [100.0, 0.0])


def test_reduce():
    l = jnp.array([1.0, 2.0, 3.0, 4.0])
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    close(reduce(l), 2.5)
    close(reduce(l, "sum"), 10.0)
    close(reduce(l, "mean", weights=mask), 1.5)
    close(reduce(l, "sum", weights=mask), 3.0)
    close(reduce(l, "none", weights=mask), [1.0, 2.0, 0.0, 0.0])
    close(reduce(l, "mean", weights=jnp.array([1.0, 3.0, 0.0, 0.0])), (1 + 6) / 4)
    # a padded row's garbage loss does not leak through its zero weight
    close(reduce(jnp.array([1.0, 3.0, jnp.nan, jnp.inf]), "mean", weights=mask), 2.0)
    # (B, T) losses with (B, 1) weights
    close(reduce(jnp.ones((2, 3)), "sum", weights=jnp.array([[1.0], [0.0]])), 3.0)
    with pytest.raises(ValueError, match="reduce: reduction must be one of 'none', 'mean', 'sum', got 'avg'"):
        reduce(l, "avg")
    with pytest.raises(ValueError, match="does not broadcast"):
        reduce(l, weights=jnp.ones(3))


# ---- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [losses.mse, losses.mae, losses.huber, losses.binary_cross_entropy,
                                losses.binary_cross_entropy_with_logits])
def test_elementwise_losses_refuse_broadcasting(fn):
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4,\)"):
        fn(jnp.full((4, 1), 0.5), jnp.full((4,), 0.5))


def test_shape_errors_raise_at_trace_time():
    with pytest.raises(ValueError, match="shapes must match|Shapes must match"):
        jax.jit(losses.mse)(jnp.ones((4, 1)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"labels shape \(3,\) must equal logits.shape\[:-1\] = \(2,\)"):
        jax.jit(losses.cross_entropy)(LOGITS, jnp.array([0, 1, 2]))


def test_cross_entropy_argument_errors():
    with pytest.raises(ValueError, match="must be integers"):
        losses.cross_entropy(LOGITS, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"weight must have shape \(C,\) = \(3,\)"):
        losses.cross_entropy(LOGITS, jnp.array([0, 1]), weight=jnp.ones(2))
    with pytest.raises(ValueError, match="ignore_index only applies"):
        losses.cross_entropy(LOGITS, jnp.ones((2, 3)) / 3, ignore_index=0)
    with pytest.raises(ValueError, match=r"label_smoothing must be a finite number in \[0, 1\]"):
        losses.cross_entropy(LOGITS, jnp.array([0, 1]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.cross_entropy(LOGITS, jnp.array([0, 1]), reduction="batchmean")
    with pytest.raises(ValueError, match="must equal log_probs.shape"):
        losses.nll(LOGITS, jnp.array([[0, 1]]))
    with pytest.raises(ValueError, match="delta must be a number > 0"):
        losses.huber(jnp.ones(2), jnp.ones(2), delta=0.0)


# ---- gradients ----------------------------------------------------------------------------------------

# Finite differences in float32 (step 1e-3 by default) are good to ~1e-3; 1e-2 still catches a wrong
# gradient, which is off by O(1).
TOL = dict(order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_cross_entropy_gradients():
    rng = np.random.RandomState(0)
    logits = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    labels = jnp.array([0, 3, -100, 4])
    w = jnp.array([1.0, 2.0, 0.5, 1.0, 3.0])

    def f(x):
        return ce(x, labels, weight=w, ignore_index=-100, label_smoothing=0.1, reduction="mean")

    check_grads(jax.jit(f), (logits,), **TOL)
    soft = jax.nn.softmax(jnp.asarray(rng.normal(size=(4, 5)), jnp.float32))
    check_grads(jax.jit(lambda x: jnp.sum(ce(x, soft))), (logits,), **TOL)
    # the analytic gradient of the unweighted mean: (softmax - onehot) / B
    g = jax.grad(lambda x: ce(x, jnp.array([0, 1, 2, 3]), reduction="mean"))(logits)
    close(g, (jax.nn.softmax(logits) - jax.nn.one_hot(jnp.arange(4), 5)) / 4, atol=1e-6)


def test_huber_gradients():
    p = jnp.array([[0.3, -2.0, 4.0], [0.1, 1.7, -0.6]])
    t = jnp.zeros_like(p)
    check_grads(jax.jit(lambda x: jnp.sum(huber(x, t, delta=1.5))), (p,), **TOL)
    # quadratic region: d/dp = d / n; linear region: delta * sign(d) / n (n = 3 elements per example)
    g = jax.grad(lambda x: jnp.sum(huber(x, t, delta=1.5)))(p)
    close(g, [[0.1, -0.5, 0.5], [0.1 / 3, 0.5, -0.2]])


# ---- PyTorch parity -----------------------------------------------------------------------------------


def _np(x):
    return np.array(x, np.float32)  # a writable copy


def _all_reductions(fn, *args, **kwargs):
    """``fn(*args, reduction=r, **kwargs)`` for r = none, mean, sum, compiled once together."""
    both = jax.jit(lambda *a: [fn(*a, reduction=r, **kwargs) for r in ("none", "mean", "sum")])
    return dict(zip(("none", "mean", "sum"), both(*args)))


def test_regression_losses_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(1)
    p, t = rng.normal(size=(6, 3, 2)) * 2, rng.normal(size=(6, 3, 2))
    tp, tt = torch.tensor(_np(p)), torch.tensor(_np(t))
    for ours, theirs in [
        (mse, F.mse_loss),
        (mae, F.l1_loss),
        (lambda a, b: huber(a, b), F.huber_loss),
        (lambda a, b: huber(a, b, delta=0.7), lambda a, b, **k: F.huber_loss(a, b, delta=0.7, **k)),
    ]:
        per_example = ours(_np(p), _np(t))
        assert per_example.shape == (6,)
        close(jnp.mean(per_example), theirs(tp, tt).item(), rtol=1e-5)
        close(per_example, theirs(tp, tt, reduction="none").mean(dim=(1, 2)).numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight": True},
        {"ignore_index": 1},
        {"label_smoothing": 0.2},
        {"weight": True, "label_smoothing": 0.15},
        {"weight": True, "ignore_index": 1, "label_smoothing": 0.3},
    ],
    ids=lambda o: "-".join(o) or "plain",
)
def test_cross_entropy_hard_labels_match_torch(options):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(2)
    C = 4
    logits = _np(rng.normal(size=(3, 5, C)) * 2)  # (B, T, C): JAX layout
    labels = rng.randint(0, C, size=(3, 5))
    weight = _np(rng.uniform(0.2, 2.0, size=C)) if options.get("weight") else None
    kw = dict(label_smoothing=options.get("label_smoothing", 0.0))
    ignore = options.get("ignore_index")
    ours_all = _all_reductions(losses.cross_entropy, logits, labels, weight=weight, ignore_index=ignore, **kw)
    for reduction, ours in ours_all.items():
        theirs = F.cross_entropy(
            torch.tensor(logits).permute(0, 2, 1),  # PyTorch: class axis at dim 1
            torch.tensor(labels),
            weight=None if weight is None else torch.tensor(weight),
            ignore_index=-100 if ignore is None else ignore,
            reduction=reduction,
            **kw,
        )
        close(ours, theirs.numpy(), rtol=1e-5)
    if ignore is not None:
        assert np.any(labels == ignore)


@pytest.mark.parametrize("options", [{}, {"weight": True}, {"weight": True, "label_smoothing": 0.25}])
def test_cross_entropy_soft_labels_match_torch(options):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(3)
    logits = _np(rng.normal(size=(6, 5)) * 2)
    probs = _np(jax.nn.softmax(rng.normal(size=(6, 5)) * 3))
    weight = _np(rng.uniform(0.2, 2.0, size=5)) if options.get("weight") else None
    ls = options.get("label_smoothing", 0.0)
    ours_all = _all_reductions(losses.cross_entropy, logits, probs, weight=weight, label_smoothing=ls)
    for reduction, ours in ours_all.items():
        theirs = F.cross_entropy(
            torch.tensor(logits),
            torch.tensor(probs),
            weight=None if weight is None else torch.tensor(weight),
            label_smoothing=ls,
            reduction=reduction,
        )
        close(ours, theirs.numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    "options", [{}, {"weight": True}, {"ignore_index": 2}, {"weight": True, "ignore_index": 0}]
)
def test_nll_matches_torch(options):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(4)
    log_probs = _np(jax.nn.log_softmax(rng.normal(size=(8, 3))))
    labels = rng.randint(0, 3, size=8)
    weight = _np(rng.uniform(0.2, 2.0, size=3)) if options.get("weight") else None
    ignore = options.get("ignore_index")
    ours_all = _all_reductions(losses.nll, log_probs, labels, weight=weight, ignore_index=ignore)
    for reduction, ours in ours_all.items():
        theirs = F.nll_loss(
            torch.tensor(log_probs),
            torch.tensor(labels),
            weight=None if weight is None else torch.tensor(weight),
            ignore_index=-100 if ignore is None else ignore,
            reduction=reduction,
        )
        close(ours, theirs.numpy(), rtol=1e-5)


def test_binary_cross_entropies_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.RandomState(5)
    x = _np(rng.normal(size=(7, 3)) * 3)
    t = _np(rng.uniform(size=(7, 3)))  # soft targets are allowed by both
    t[:, 0] = t[:, 0] > 0.5
    w = _np(rng.uniform(0.1, 2.0, size=(7, 3)))
    pw = _np([0.5, 2.0, 4.0])
    tx, tt, tw, tpw = map(torch.tensor, (x, t, w, pw))
    p = _np(jax.nn.sigmoid(x))
    p[0, 0], p[1, 1] = 0.0, 1.0  # exercise the -100 clamp
    tp = torch.tensor(p)

    close(jnp.mean(bce(p, t)), F.binary_cross_entropy(tp, tt).item(), rtol=1e-5)
    close(
        bce(p, t, weight=w),
        F.binary_cross_entropy(tp, tt, weight=tw, reduction="none").mean(dim=1).numpy(),
        rtol=1e-5,
    )
    close(
        bce_logits(x, t),
        F.binary_cross_entropy_with_logits(tx, tt, reduction="none").mean(dim=1).numpy(),
        rtol=1e-5,
    )
    close(
        jnp.mean(bce_logits(x, t, pos_weight=pw, weight=w)),
        F.binary_cross_entropy_with_logits(tx, tt, weight=tw, pos_weight=tpw).item(),
        rtol=1e-5,
    )
