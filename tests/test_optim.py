"""Tests for dlcore.optim: PyTorch parity of every optimizer, clipping golden values, errors, recompiles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlcore import optim

STEPS = 60

# A tiny 3-4-1 tanh regression net: non-quadratic, with gradients that change sign along the way, so the
# momentum and adaptive terms of each optimizer all matter. Its 21 parameters live in one flat vector
# (w1 (3, 4), b1 (4,), w2 (4, 1), b2 (1,)): the update rules act element-wise, and one leaf keeps the
# tests fast (eager JAX compiles each operation once per shape). Pytrees of several leaves are covered
# by the clipping tests, where leaves interact through the global norm.
_rng = np.random.RandomState(0)
X = _rng.normal(size=(16, 3)).astype(np.float32)
Y = np.sin(X @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
THETA = np.concatenate(
    [_rng.normal(size=12) * 0.7, _rng.normal(size=4) * 0.1, _rng.normal(size=4) * 0.7, [0.0]]
).astype(np.float32)


def _unpack(theta):
    return theta[:12].reshape(3, 4), theta[12:16], theta[16:20].reshape(4, 1), theta[20:]


def _jax_loss(params):
    w1, b1, w2, b2 = _unpack(params["theta"])
    return jnp.mean((jnp.tanh(X @ w1 + b1) @ w2 + b2 - Y) ** 2)


def _torch_run(make_opt, steps=STEPS, lr_lambda=None, max_norm=None):
    """Runs torch.optim on the net; returns the raw gradients fed to each step and the parameters after it.

    Both are stacked to (steps, 21). The gradients come from torch autograd and are fed unchanged to
    dlcore's optimizer, so the comparison tests the update rules alone: with each side computing its own
    gradients, float32 rounding differences of the two autodiffs (~1e-7) are amplified wherever
    Adam-like optimizers divide a near-zero first moment by its root mean square.
    """
    import torch

    theta = torch.nn.Parameter(torch.tensor(THETA))
    opt = make_opt([theta])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda) if lr_lambda else None
    x, y = torch.tensor(X), torch.tensor(Y)
    grads, traj = [], []
    for _ in range(steps):
        opt.zero_grad()
        w1, b1, w2, b2 = _unpack(theta)
        loss = torch.mean((torch.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)
        loss.backward()
        grads.append(theta.grad.numpy().copy())
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_([theta], max_norm)
        opt.step()
        if sched is not None:
            sched.step()
        traj.append(theta.detach().numpy().copy())
    return np.stack(grads), np.stack(traj)


def _jax_run(tx, grads, jit=False):
    """Parameters after each update of ``tx`` fed the gradients ``grads`` (steps, 21); (steps, 21).

    Eager by default: the operations' compilations are cached across tests, a jitted step per case is not.
    """

    def step(params, state, g):
        updates, state = tx.update(g, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step) if jit else step
    params = {"theta": jnp.asarray(THETA)}
    state = tx.init(params)
    traj = []
    for g in grads:
        params, state = step(params, state, {"theta": g})
        traj.append(params["theta"])
    return np.asarray(jnp.stack(traj))


def _check_parity(tx, make_torch_opt, **torch_kwargs):
    grads, want = _torch_run(make_torch_opt, **torch_kwargs)
    _assert_same_trajectory(_jax_run(tx, grads), want)


def _assert_same_trajectory(ours, theirs, rtol=1e-5, atol=1e-6):
    # atol: parameters that pass near zero cannot meet a pure relative tolerance (float32 rounding of
    # the two libraries' different operation orders is ~1e-7 absolute).
    assert ours.shape == theirs.shape == (STEPS, THETA.size)
    assert np.max(np.abs(theirs[-1] - THETA)) > 1e-2, "the problem is too easy: parameters barely moved"
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


# (dlcore name, torch.optim class, keyword arguments): the arguments are the same on both sides.
CASES = [
    ("sgd", "SGD", dict(lr=0.1)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd", "SGD", dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("sgd", "SGD", dict(lr=0.1, weight_decay=0.05)),
    ("adam", "Adam", dict(lr=0.01)),
    ("adam", "Adam", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1)),
    ("adam", "Adam", dict(lr=0.02, amsgrad=True)),
    ("adam", "Adam", dict(lr=0.02, eps=1e-3, amsgrad=True, weight_decay=0.01)),
    ("adamw", "AdamW", dict(lr=0.01)),
    ("adamw", "AdamW", dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
    ("rmsprop", "RMSprop", dict(lr=0.005)),
    ("rmsprop", "RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-4, weight_decay=0.1)),
    ("rmsprop", "RMSprop", dict(lr=0.002, momentum=0.5, centered=True)),
    ("rmsprop", "RMSprop", dict(lr=0.002, momentum=0.1, centered=True, weight_decay=0.1)),
    ("adadelta", "Adadelta", dict()),
    ("adadelta", "Adadelta", dict(lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.05)),
    ("adagrad", "Adagrad", dict(lr=0.05)),
    ("adagrad", "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.1,
                                eps=1e-6)),
]


def _case_id(case):
    name, _, kwargs = case
    return "-".join([name] + [f"{k}={v}" for k, v in kwargs.items()])


@pytest.mark.parametrize("name,torch_name,kwargs", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_torch_optim(name, torch_name, kwargs):
    torch = pytest.importorskip("torch")
    _check_parity(optim.create(name, **kwargs), lambda p: getattr(torch.optim, torch_name)(p, **kwargs))


@pytest.mark.parametrize(
    "name,kwargs,torch_name,theirs",
    [
        ("sgd", dict(momentum=0.9), "SGD", dict(momentum=0.9)),
        ("rmsprop", dict(momentum=0.5), "RMSprop", dict(momentum=0.5)),  # lr multiplies the whole buffer
        ("adamw", dict(weight_decay=0.2), "AdamW", dict(weight_decay=0.2)),  # decay follows the schedule
        ("adagrad", dict(lr_decay=0.1), "Adagrad", dict(lr_decay=0.1)),  # schedule and lr_decay compose
    ],
)
def test_schedule_matches_torch_scheduler(name, kwargs, torch_name, theirs):
    # An optax schedule indexed by update count == a PyTorch scheduler stepped after every update.
    torch = pytest.importorskip("torch")
    lr0 = 0.02
    _check_parity(
        optim.create(name, lr=optax.exponential_decay(lr0, transition_steps=1, decay_rate=0.95), **kwargs),
        lambda p: getattr(torch.optim, torch_name)(p, lr=lr0, **theirs),
        lr_lambda=lambda t: 0.95**t,
    )


def test_clipped_sgd_matches_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    # max_norm below the gradient norm, so clipping is active on every step.
    _check_parity(
        optim.with_clipping(optim.sgd(0.1, momentum=0.9), max_norm=0.05),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        max_norm=0.05,
    )


def test_dampening_differs_from_optax_trace_on_first_step():
    # PyTorch's buffer starts as the raw gradient: the first step is -lr * g, undamped.
    tx = optim.sgd(1.0, momentum=0.5, dampening=0.5)
    p = {"w": jnp.array([1.0])}
    state = tx.init(p)
    u1, state = tx.update({"w": jnp.array([2.0])}, state, p)
    u2, _ = tx.update({"w": jnp.array([4.0])}, state, p)
    np.testing.assert_allclose(u1["w"], [-2.0])  # buf = g = 2
    np.testing.assert_allclose(u2["w"], [-3.0])  # buf = 0.5 * 2 + (1 - 0.5) * 4 = 3


def test_amsgrad_uses_max_of_raw_second_moment():
    # Worked by hand with b1 = 0, b2 = 0.5, eps = 0 (so m_hat = g):
    # step 1, g = 2: v = 0.5 * 4 = 2, vmax = 2, correction sqrt(1 - 0.5) = sqrt(.5);
    #   step = 2 / (sqrt(2) / sqrt(.5)) = 1
    # step 2, g = 0.1: v = 0.5 * 2 + 0.5 * 0.01 = 1.005, vmax = 2, correction sqrt(0.75);
    #   step = 0.1 / (sqrt(2) / sqrt(0.75)) = 0.0612372 (optax's max of corrected moments gives 0.05).
    tx = optim.adam(lr=1.0, betas=(0.0, 0.5), eps=0.0, amsgrad=True)
    p = {"w": jnp.array([0.0])}
    state = tx.init(p)
    u1, state = tx.update({"w": jnp.array([2.0])}, state, p)
    u2, _ = tx.update({"w": jnp.array([0.1])}, state, p)
    np.testing.assert_allclose(u1["w"], [-1.0], rtol=1e-6)
    np.testing.assert_allclose(u2["w"], [-0.1 / (math.sqrt(2) / math.sqrt(0.75))], rtol=1e-6)


def test_adagrad_eps_outside_root_and_zero_accumulator():
    # First step: sum = g**2, step = lr * g / (|g| + eps) = lr * sign(g) (up to eps). optax.adagrad's
    # default accumulator of 0.1 would give 0.1 * 0.5 / sqrt(0.35) = 0.0845 instead of 0.1.
    tx = optim.adagrad(lr=0.1)
    p = {"w": jnp.array([0.0, 0.0])}
    u, _ = tx.update({"w": jnp.array([0.5, -3.0])}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-0.1, 0.1], rtol=1e-6)


def test_inject_hyperparams_compatible():
    # The factories work under optax.inject_hyperparams (e.g. for reduce-on-plateau), with the
    # hyperparameters traced inside jit.
    grads = np.random.RandomState(2).normal(size=(20, THETA.size)).astype(np.float32)
    cases = [(optim.sgd, dict(lr=0.05, momentum=0.9)), (optim.adam, dict(lr=0.01, weight_decay=0.1))]
    for factory, kwargs in cases:
        got = _jax_run(optax.inject_hyperparams(factory)(**kwargs), grads, jit=True)
        want = _jax_run(factory(**kwargs), grads)
        # Not bit-equal: jit fuses differently, and traced betas are float32 (Adam's bias correction).
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    tx = optax.inject_hyperparams(optim.sgd)(lr=0.05, momentum=0.9)
    params = {"theta": jnp.asarray(THETA)}
    state = tx.init(params)
    state.hyperparams["lr"] = jnp.asarray(0.0)
    updates, _ = tx.update(params, state, params)
    assert float(jnp.max(jnp.abs(updates["theta"]))) == 0.0


# ---- clipping ---------------------------------------------------------------------------------------


def test_clip_golden_values_book_003():
    grads = jnp.array([0.9, 100.0])
    np.testing.assert_allclose(optim.clip_by_value(grads, 1.0), [0.9, 1.0], atol=1e-7)
    np.testing.assert_allclose(optim.clip_by_norm(grads, 1.0), [0.00899964, 0.9999595], atol=1e-7)


def test_clip_transforms_golden_values_on_pytree():
    # Total norm over both leaves: sqrt(0.9**2 + 100**2) = 100.00405.
    grads = {"a": jnp.array([0.9]), "b": jnp.array([[100.0]])}
    for tx, want in [
        (optim.clip_grad_value(1.0), {"a": [0.9], "b": [[1.0]]}),
        (optim.clip_grad_norm(1.0), {"a": [0.00899964], "b": [[0.9999595]]}),
    ]:
        out, _ = tx.update(grads, tx.init(grads))
        for k in grads:
            np.testing.assert_allclose(out[k], want[k], atol=1e-7)


def test_clip_by_norm_below_limit_scales_by_torch_coefficient():
    # Under the limit PyTorch still multiplies by min(1, max_norm / (norm + 1e-6)) = 1.
    grads = {"a": jnp.array([3.0, 4.0])}  # norm 5
    np.testing.assert_allclose(optim.clip_by_norm(grads, 10.0)["a"], [3.0, 4.0])
    at_limit = optim.clip_by_norm(grads, 5.0)["a"]
    np.testing.assert_allclose(at_limit, np.array([3.0, 4.0]) * 5 / 5.000001, rtol=1e-7)
    # max norm: largest |g| = 4 -> scale 2 / (4 + 1e-6)
    np.testing.assert_allclose(optim.clip_by_norm(grads, 2.0, norm_type=math.inf)["a"], [1.5, 2.0], rtol=1e-6)


def test_clip_by_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(1)
    leaves = [rng.normal(size=s).astype(np.float32) * 3 for s in [(3, 4), (5,), (2, 2, 2)]]
    tensors = [torch.nn.Parameter(torch.zeros(a.shape)) for a in leaves]
    for t, a in zip(tensors, leaves):
        t.grad = torch.tensor(a)
    norm = torch.nn.utils.clip_grad_norm_(tensors, 2.5)
    ours = optim.clip_by_norm(leaves, 2.5)
    for t, o in zip(tensors, ours):
        np.testing.assert_allclose(o, t.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(optax.tree.norm(leaves), norm.item(), rtol=1e-6)


def test_with_clipping_composes_and_rejects_both():
    tx = optim.with_clipping(optim.sgd(1.0), clip_value=1.0)
    p = {"w": jnp.array([0.0, 0.0])}
    u, _ = tx.update({"w": jnp.array([0.9, 100.0])}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-0.9, -1.0])
    with pytest.raises(ValueError, match="not both"):
        optim.with_clipping(optim.sgd(1.0), max_norm=1.0, clip_value=1.0)
    assert optim.with_clipping(tx) is tx


# ---- names and errors -------------------------------------------------------------------------------


def test_names_and_create():
    assert optim.names() == ["adadelta", "adagrad", "adam", "adamw", "rmsprop", "sgd"]
    tx = optim.create("SGD", lr=0.5)
    p = {"w": jnp.array([1.0])}
    u, _ = tx.update({"w": jnp.array([2.0])}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-1.0])


def test_unknown_name_lists_known():
    known = "adadelta, adagrad, adam, adamw, rmsprop, sgd"
    with pytest.raises(ValueError, match=f"Unknown optimizer 'lbfgsx'; known optimizers: {known}"):
        optim.create("lbfgsx", lr=0.1)


def test_unknown_or_missing_argument():
    with pytest.raises(ValueError, match="sgd takes no argument.*betas.*lr, momentum"):
        optim.create("sgd", lr=0.1, betas=(0.9, 0.99))
    with pytest.raises(ValueError, match="missing a required argument: 'lr'"):
        optim.create("sgd", momentum=0.9)


def test_arguments_are_torch_names_defaults_and_order():
    torch = pytest.importorskip("torch")
    import inspect

    for name, cls in {n: c for n, c, _ in CASES}.items():
        ours = inspect.signature(getattr(optim, name)).parameters
        theirs = inspect.signature(getattr(torch.optim, cls).__init__).parameters
        positional = [p for p in theirs if p not in ("self", "params")][: len(ours)]
        assert list(ours) == positional, name  # same names, same positional order
        for arg, p in ours.items():
            if p.default is not inspect.Parameter.empty:  # sgd's lr is required here (PyTorch: 1e-3)
                assert p.default == theirs[arg].default, (name, arg)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adadelta", "adagrad"])
def test_negative_lr_raises(name):
    with pytest.raises(ValueError, match="Invalid learning rate: -0.1"):
        optim.create(name, lr=-0.1)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("sgd", dict(lr=0.1, nesterov=True), "Nesterov momentum requires"),
        ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
        ("sgd", dict(lr=0.1, momentum=-0.9), "Invalid momentum"),
        ("adam", dict(betas=(0.9, 1.0)), "beta parameter at index 1"),
        ("adam", dict(eps=-1e-8), "Invalid epsilon"),
        ("adamw", dict(weight_decay=-0.1), "Invalid weight_decay"),
        ("adadelta", dict(rho=1.5), "Invalid rho"),
        ("adagrad", dict(lr_decay=-1.0), "Invalid lr_decay"),
    ],
)
def test_bad_arguments_raise(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.create(name, **kwargs)


# ---- compilation ------------------------------------------------------------------------------------


def test_jitted_update_does_not_recompile():
    adam = optim.adam(lr=lambda c: 1e-2 * 0.9**c, amsgrad=True, weight_decay=0.01)
    tx = optim.with_clipping(adam, max_norm=1.0)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)  # runs only while tracing
        grads = jax.grad(_jax_loss)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = {"theta": jnp.asarray(THETA)}
    state = tx.init(params)
    params, state = step(params, state)
    loss1 = _jax_loss(params)
    params, state = step(params, state)
    params, state = step(params, state)
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert _jax_loss(params) < loss1
