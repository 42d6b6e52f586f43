"""Tests for dlcore.optim: PyTorch parity of every optimizer (1cycle, parameter groups, L-BFGS included),
penalties, max-norm, masks, accumulation, injected hyperparameters, clipping golden values, errors, recompiles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlcore import optim

STEPS = 100

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


def _torch_run(make_opt, steps=STEPS, lr_lambda=None, max_norm=None, make_sched=None):
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
    if make_sched is not None:
        sched = make_sched(opt)
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
    ("adamax", "Adamax", dict(lr=0.01)),
    ("adamax", "Adamax", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1)),
    ("nadam", "NAdam", dict(lr=0.01)),
    ("nadam", "NAdam", dict(lr=0.02, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=0.01)),
    ("nadam", "NAdam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)),
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
        ("nadam", dict(weight_decay=0.1, decoupled_weight_decay=True), "NAdam",
         dict(weight_decay=0.1, decoupled_weight_decay=True)),
        ("adamax", dict(), "Adamax", dict()),
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
    assert optim.names() == ["adadelta", "adagrad", "adam", "adamax", "adamw", "nadam", "rmsprop", "sgd"]
    tx = optim.create("SGD", lr=0.5)
    p = {"w": jnp.array([1.0])}
    u, _ = tx.update({"w": jnp.array([2.0])}, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-1.0])


def test_unknown_name_lists_known():
    known = "adadelta, adagrad, adam, adamax, adamw, nadam, rmsprop, sgd"
    with pytest.raises(ValueError, match=rf"unknown optimizer 'lbfgsx' \(known: {known}\)"):
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


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adadelta", "adagrad", "adamax", "nadam"])
def test_negative_lr_raises(name):
    with pytest.raises(ValueError, match=rf"^{name}: lr must be a finite number >= 0 or a schedule \(a function of the step\), got -0.1$"):
        optim.create(name, lr=-0.1)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("sgd", dict(lr=0.1, nesterov=True), "Nesterov momentum requires"),
        ("sgd", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "Nesterov momentum requires"),
        ("sgd", dict(lr=0.1, momentum=-0.9), "sgd: momentum must be a finite number >= 0"),
        ("adam", dict(betas=(0.9, 1.0)), r"adam: betas\[1\] must be a finite number in \[0, 1\), got 1.0"),
        ("adam", dict(eps=-1e-8), "adam: eps must be a finite number >= 0"),
        ("adamw", dict(weight_decay=-0.1), "adamw: weight_decay must be a finite number >= 0"),
        ("adadelta", dict(rho=1.5), r"adadelta: rho must be a finite number in \[0, 1\]"),
        ("adagrad", dict(lr_decay=-1.0), "adagrad: lr_decay must be a finite number >= 0"),
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


# ---- 1cycle: learning rate and momentum cycled per step -----------------------------------------------


@pytest.mark.parametrize(
    "name,torch_name,kwargs",
    [
        ("sgd", "SGD", dict(momentum=0.9)),
        ("sgd", "SGD", dict(momentum=0.9, nesterov=True, weight_decay=0.01)),
        ("rmsprop", "RMSprop", dict(momentum=0.5, centered=True)),
        ("adam", "Adam", dict()),
        ("adamw", "AdamW", dict(weight_decay=0.1)),
        ("nadam", "NAdam", dict()),
        ("adamax", "Adamax", dict()),
    ],
)
def test_one_cycle_with_momentum_cycling_matches_torch(name, torch_name, kwargs):
    torch = pytest.importorskip("torch")
    from dlcore import schedules

    max_lr = 0.05 if name in ("sgd",) else 0.02
    lr = schedules.one_cycle_lr(max_lr, total_steps=STEPS, pct_start=0.25)
    mom = schedules.one_cycle_momentum(STEPS, pct_start=0.25)
    ours = dict(kwargs, lr=lr)
    if name in ("sgd", "rmsprop"):
        ours["momentum"] = mom
    else:
        ours["betas"] = (mom, 0.999)
    _check_parity(
        optim.create(name, **ours),
        lambda p: getattr(torch.optim, torch_name)(p, lr=max_lr, **kwargs),
        make_sched=lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=STEPS,
                                                                   pct_start=0.25),
    )


# ---- parameter groups ---------------------------------------------------------------------------------


def _split(theta):
    w1, b1, w2, b2 = _unpack(theta)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2}


def _torch_groups_run(make_opt, steps=STEPS):
    """torch.optim on the net's four tensors; returns per-step gradients and parameters (dicts of arrays)."""
    import torch

    params = {k: torch.nn.Parameter(torch.tensor(np.array(v))) for k, v in _split(THETA).items()}
    opt = make_opt(params)
    x, y = torch.tensor(X), torch.tensor(Y)
    grads, traj = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.mean((torch.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"] - y) ** 2)
        loss.backward()
        grads.append({k: p.grad.numpy().copy() for k, p in params.items()})
        opt.step()
        traj.append({k: p.detach().numpy().copy() for k, p in params.items()})
    return grads, traj


def _jax_groups_run(tx, grads):
    params = {k: jnp.asarray(v) for k, v in _split(THETA).items()}
    state = tx.init(params)
    traj = []
    for g in grads:
        updates, state = tx.update({k: jnp.asarray(v) for k, v in g.items()}, state, params)
        params = optax.apply_updates(params, updates)
        traj.append(params)
    return traj


@pytest.mark.parametrize(
    "name,torch_name,defaults",
    [
        ("sgd", "SGD", dict(lr=0.1, momentum=0.9)),
        ("adam", "Adam", dict(lr=0.01)),
        ("adamw", "AdamW", dict(lr=0.01, weight_decay=0.0)),
        ("rmsprop", "RMSprop", dict(lr=0.005, momentum=0.5)),
    ],
)
def test_param_groups_match_torch(name, torch_name, defaults):
    # Weights decayed, biases at another learning rate: the book's two groups (Géron, ch. 11, l1 and l2 Regularization).
    torch = pytest.importorskip("torch")
    groups = [{"params": "^w", "weight_decay": 0.1}, {"params": "^b", "lr": 0.03}]
    params = _split(THETA)
    tx = optim.param_groups(params, groups, name, **defaults)

    def make(p):
        return getattr(torch.optim, torch_name)(
            [{"params": [p["w1"], p["w2"]], "weight_decay": 0.1}, {"params": [p["b1"], p["b2"]], "lr": 0.03}],
            **defaults)

    grads, want = _torch_groups_run(make)
    got = _jax_groups_run(tx, grads)
    for k in params:
        ours = np.stack([np.asarray(g[k]) for g in got])
        theirs = np.stack([w[k] for w in want])
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6, err_msg=k)
    assert np.max(np.abs(want[-1]["w1"] - params["w1"])) > 1e-2


def test_param_groups_first_match_wins_default_group_and_frozen():
    params = {"w1": jnp.ones((2, 2)), "b1": jnp.ones(2), "head": {"w": jnp.ones((2, 1)), "b": jnp.ones(1)}}
    tx = optim.param_groups(params, [{"params": "head", "frozen": True}, {"params": optim.no_decay, "lr": 0.5}],
                            "sgd", lr=1.0)
    grads = jax.tree.map(jnp.ones_like, params)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["head"]["w"], 0.0)  # frozen: first group wins over no_decay for head.b
    np.testing.assert_allclose(u["head"]["b"], 0.0)
    np.testing.assert_allclose(u["b1"], -0.5)  # no_decay group
    np.testing.assert_allclose(u["w1"], -1.0)  # default group


def test_param_groups_on_nnx_model_and_no_decay_paths():
    from flax import nnx

    from dlcore.nn.norm import BatchNorm1d
    from dlcore.nn.layers import Linear

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.fc = Linear(3, 4, rngs=rngs)
            self.bn = BatchNorm1d(4)
            self.out = Linear(4, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(self.bn(self.fc(x)))

    model = Net(nnx.Rngs(0))
    names_ = {p for p, _ in optim.named_leaves(model)}
    assert names_ == {"fc.kernel", "fc.bias", "bn.scale", "bn.bias", "out.kernel", "out.bias"}
    decayed = {p for p, v in optim.named_leaves(model) if optim.weights_only(p, v)}
    assert decayed == {"fc.kernel", "out.kernel"}
    mask = dict(zip([p for p, _ in optim.named_leaves(model)], jax.tree.leaves(optim.decay_mask(model))))
    assert mask["fc.kernel"] is True and mask["bn.scale"] is False and mask["out.bias"] is False
    tx = optim.param_groups(model, [{"params": optim.no_decay, "weight_decay": 0.0}], "adamw", lr=1e-3,
                            weight_decay=0.05)
    params = nnx.state(model, nnx.Param)
    grads = jax.tree.map(jnp.zeros_like, params)
    u, _ = tx.update(grads, tx.init(params), params)
    # zero gradients: only the decoupled decay moves the weights, and only the kernels
    np.testing.assert_allclose(u["fc"]["kernel"][...], -1e-3 * 0.05 * params["fc"]["kernel"][...], rtol=1e-6)
    np.testing.assert_allclose(u["bn"]["scale"][...], 0.0)
    np.testing.assert_allclose(u["fc"]["bias"][...], 0.0)


@pytest.mark.parametrize(
    "groups,kwargs,match",
    [
        ([{"params": "conv"}], {}, "matches no parameter"),
        ([{"params": "w"}, {"params": "w1"}], {}, "group 1.*matches no parameter"),
        ([{"params": "w", "betas": (0.9, 0.9)}], {}, "does not take"),
        ([{"lr": 0.1}], {}, "must be a dict with a 'params'"),
        ([{"params": "("}], {}, "Bad parameter pattern"),
        ([{"params": "w", "lr": -1.0}], {}, "param_groups: group 0: sgd: lr must be a finite number >= 0"),
    ],
)
def test_param_groups_errors_at_construction(groups, kwargs, match):
    params = _split(THETA)
    with pytest.raises(ValueError, match=match):
        optim.param_groups(params, groups, "sgd", lr=0.1, **kwargs)


def test_param_groups_unknown_optimizer():
    with pytest.raises(ValueError, match="unknown optimizer 'sgdd': did you mean 'sgd'"):
        optim.param_groups(_split(THETA), [], "sgdd", lr=0.1)


# ---- penalties, max-norm, masks, accumulation -----------------------------------------------------------


def test_add_l1_l2_golden_and_equal_to_penalised_loss():
    params = {"w": jnp.array([[1.0, -2.0], [0.0, 3.0]]), "b": jnp.array([5.0, -5.0])}
    grads = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    l1, _ = optim.add_l1(0.1).update(grads, (), params)
    np.testing.assert_allclose(l1["w"], [[1.1, 0.9], [1.0, 1.1]])  # sign(0) = 0
    np.testing.assert_allclose(l1["b"], [1.0, 1.0])  # biases are not penalised
    l2, _ = optim.add_l2(0.1).update(grads, (), params)
    np.testing.assert_allclose(l2["w"], [[1.2, 0.6], [1.0, 1.6]])  # g + 2 * 0.1 * w
    # the same as differentiating main loss + coef * penalty (Géron, ch. 11, l1 and l2 Regularization); away from 0, where
    # jax.grad(abs) is 1 and PyTorch's (and add_l1's) is 0
    from dlcore.nn.regularization import l1_penalty, l2_penalty

    params = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([5.0, -5.0])}

    def main(p):
        return jnp.sum(p["w"] ** 3) + jnp.sum(p["b"])

    for tx, pen in [(optim.add_l1(0.01), l1_penalty), (optim.add_l2(0.01), l2_penalty)]:
        want = jax.grad(lambda p, pen=pen: main(p) + 0.01 * pen(p))(params)
        got, _ = tx.update(jax.grad(main)(params), (), params)
        for k in params:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


def test_max_norm_matches_book_apply_max_norm():
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(3)
    kernel = rng.normal(size=(5, 3)).astype(np.float32) * 2  # (in, out): 3 units of 5 inputs
    bias = rng.normal(size=3).astype(np.float32) * 5
    grads = {"kernel": rng.normal(size=(5, 3)).astype(np.float32), "bias": rng.normal(size=3).astype(np.float32)}
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}
    tx = optax.chain(optim.sgd(0.1), optim.max_norm(2.0))
    u, _ = tx.update({k: jnp.asarray(v) for k, v in grads.items()}, tx.init(params), params)
    got = optax.apply_updates(params, u)
    # the book's loop (Géron, ch. 11, Max-Norm Regularization) on torch's (out, in) layout
    lin = torch.nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(kernel.T))
        lin.bias.copy_(torch.tensor(bias))
    lin.weight.grad, lin.bias.grad = torch.tensor(grads["kernel"].T), torch.tensor(grads["bias"])
    torch.optim.SGD(lin.parameters(), lr=0.1).step()
    with torch.no_grad():
        for name, param in lin.named_parameters():
            if "bias" not in name:
                actual = param.norm(p=2, dim=1, keepdim=True)
                param *= torch.clamp(actual, 0, 2.0) / (1e-8 + actual)
    np.testing.assert_allclose(got["kernel"], lin.weight.detach().numpy().T, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got["bias"], lin.bias.detach().numpy(), rtol=1e-6)
    assert np.all(np.linalg.norm(np.asarray(got["kernel"]), axis=0) <= 2.0 + 1e-5)


def test_max_norm_golden_and_errors():
    p = {"k": jnp.array([[3.0, 0.3], [4.0, 0.4]])}  # column norms 5 and 0.5
    u, _ = optim.max_norm(1.0, eps=0.0).update({"k": jnp.zeros((2, 2))}, (), p)
    np.testing.assert_allclose(optax.apply_updates(p, u)["k"], [[0.6, 0.3], [0.8, 0.4]], rtol=1e-6)
    with pytest.raises(ValueError, match=r"max_norm: max_value must be a number > 0, got 0.0"):
        optim.max_norm(0.0)
    with pytest.raises(ValueError, match="needs the parameters"):
        optim.max_norm(1.0).update({"k": jnp.zeros((2, 2))}, ())


def test_keep_masks_keeps_pruned_weights_at_zero():
    params = {"w": jnp.array([[0.0, 2.0], [3.0, 0.0]]), "b": jnp.ones(2)}
    masks = {"w": jnp.array([[0.0, 1.0], [1.0, 0.0]]), "b": None}
    tx = optax.chain(optim.adam(0.1), optim.keep_masks(masks))
    state = tx.init(params)
    for _ in range(3):
        u, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        params = optax.apply_updates(params, u)
    assert float(params["w"][0, 0]) == 0.0 and float(params["w"][1, 1]) == 0.0
    assert float(params["w"][0, 1]) < 2.0 and float(params["b"][0]) < 1.0


def test_accumulate_equals_one_larger_batch():
    # 4 micro-batches of 4 rows accumulated == one batch of 16 rows, step for step.
    rng = np.random.RandomState(0)
    xb = rng.normal(size=(48, 3)).astype(np.float32)
    yb = np.sin(xb @ np.array([[1.0], [-2.0], [0.5]], np.float32))

    def loss(p, x, y):
        w1, b1, w2, b2 = _unpack(p["theta"])
        return jnp.mean((jnp.tanh(x @ w1 + b1) @ w2 + b2 - y) ** 2)

    grad = jax.jit(jax.grad(loss))
    big, small = optim.adam(0.05), optim.accumulate(optim.adam(0.05), 4)
    big_update, small_update = jax.jit(big.update), jax.jit(small.update)
    p_big = p_small = {"theta": jnp.asarray(THETA)}
    s_big, s_small = big.init(p_big), small.init(p_small)
    for i in range(3):
        rows = slice(16 * i, 16 * (i + 1))
        u, s_big = big_update(grad(p_big, xb[rows], yb[rows]), s_big, p_big)
        p_big = optax.apply_updates(p_big, u)
        for j in range(4):
            mrows = slice(16 * i + 4 * j, 16 * i + 4 * (j + 1))
            u, s_small = small_update(grad(p_small, xb[mrows], yb[mrows]), s_small, p_small)
            p_small = optax.apply_updates(p_small, u)
            if j < 3:
                assert float(jnp.max(jnp.abs(u["theta"]))) == 0.0
        np.testing.assert_allclose(p_small["theta"], p_big["theta"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="every_k must be an int >= 1"):
        optim.accumulate(optim.sgd(0.1), 0)


def test_accumulate_in_the_trainer_equals_larger_batches():
    import dlcore

    rng = np.random.RandomState(1)
    data = {"x": rng.normal(size=(64, 4)).astype(np.float32), "y": rng.normal(size=(64, 1)).astype(np.float32)}
    weights = []
    for tx, bs in [(optim.sgd(0.1, momentum=0.9), 32), (optim.accumulate(optim.sgd(0.1, momentum=0.9), 4), 8)]:
        model = dlcore.models.create("mlp", sizes=(4, 8, 1), seed=0)
        trainer = dlcore.Trainer(model, tx, dlcore.losses.mse, batch_size=bs, shuffle=False, progress=False)
        trainer.fit(data, epochs=3)
        weights.append(jax.tree.leaves(nnx_params(model)))
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def nnx_params(model):
    from flax import nnx

    return nnx.state(model, nnx.Param)


# ---- injected hyperparameters ---------------------------------------------------------------------------


def test_injectable_get_and_set_hyperparams():
    tx = optim.injectable("sgd", lr=0.1, momentum=0.9, nesterov=True)
    params = {"theta": jnp.asarray(THETA)}
    state = tx.init(params)
    assert optim.get_hyperparams(state, "lr") == [pytest.approx(0.1)]
    for one in (np.float32(0.05), jnp.float32(0.05)):  # a NumPy or JAX number is one value too
        assert optim.get_hyperparams(optim.set_hyperparams(state, "lr", one), "lr") == [pytest.approx(0.05)]
    state = optim.set_hyperparams(state, "lr", 0.0)
    u, _ = tx.update(params, state, params)
    assert float(jnp.max(jnp.abs(u["theta"]))) == 0.0
    grouped = optim.param_groups(_split(THETA), [{"params": "^b", "lr": 0.5}], "adam", lr=0.1, inject=True)
    gstate = grouped.init(_split(THETA))
    assert sorted(optim.get_hyperparams(gstate, "lr")) == [pytest.approx(0.1), pytest.approx(0.5)]
    with pytest.raises(ValueError, match="no injected hyperparameter 'lr'"):
        optim.get_hyperparams(optim.sgd(0.1).init(params), "lr")
    with pytest.raises(ValueError, match="adam: lr must be a finite number >= 0"):
        optim.injectable("adam", lr=-1.0)
    scheduled = optim.injectable("sgd", lr=lambda c: 0.1)
    with pytest.raises(ValueError, match="is a schedule"):
        optim.set_hyperparams(scheduled.init(params), "lr", 0.2)


# ---- L-BFGS ---------------------------------------------------------------------------------------------


def test_lbfgs_first_iterations_golden():
    # f = 0.5 * sum(a * x**2): the first iteration steps -t * g with t = min(1, 1 / sum|g|) * lr.
    a = jnp.array([1.0, 4.0])
    x0 = {"x": jnp.array([1.0, 1.0])}

    def f(p):
        return 0.5 * jnp.sum(a * p["x"] ** 2)

    opt = optim.LBFGS(lr=1.0, max_iter=1)
    x1, loss0 = opt.step(f, x0)
    assert loss0 == pytest.approx(2.5)
    g = np.array([1.0, 4.0])
    np.testing.assert_allclose(x1["x"], np.array([1.0, 1.0]) - g / 5.0, rtol=1e-6)
    # with the line search it converges on the quadratic in a few iterations
    xs, losses = optim.lbfgs_minimize(f, x0, steps=2, line_search_fn="strong_wolfe")
    np.testing.assert_allclose(xs["x"], [0.0, 0.0], atol=1e-5)
    assert losses[0] == pytest.approx(2.5)


@pytest.mark.parametrize("kwargs", [dict(), dict(line_search_fn="strong_wolfe"),
                                    dict(lr=0.8, max_iter=7, history_size=4, line_search_fn="strong_wolfe")])
def test_lbfgs_matches_torch(kwargs):
    # Same algorithm in float64: 100 iterations (5 steps of 20) agree with torch.optim.LBFGS to 1e-5; in
    # float32 the iteration amplifies each library's rounding once it is near the minimum.
    torch = pytest.importorskip("torch")
    x64, y64, th64 = X.astype(np.float64), Y.astype(np.float64), THETA.astype(np.float64)
    theta = torch.nn.Parameter(torch.tensor(th64))
    opt = torch.optim.LBFGS([theta], **kwargs)
    tx, ty = torch.tensor(x64), torch.tensor(y64)

    def closure():
        opt.zero_grad()
        w1, b1, w2, b2 = _unpack(theta)
        loss = torch.mean((torch.tanh(tx @ w1 + b1) @ w2 + b2 - ty) ** 2)
        loss.backward()
        return loss

    want = []
    for _ in range(5):
        opt.step(closure)
        want.append(theta.detach().numpy().copy())

    def f(p):
        w1, b1, w2, b2 = _unpack(p["theta"])
        return jnp.mean((jnp.tanh(x64 @ w1 + b1) @ w2 + b2 - y64) ** 2)

    with jax.enable_x64(True):
        ours = optim.LBFGS(**kwargs)
        p = {"theta": jnp.asarray(th64)}
        got = []
        for _ in range(5):
            p, _ = ours.step(f, p)
            got.append(np.asarray(p["theta"]))
    assert ours.state["func_evals"] == opt.state[theta]["func_evals"]
    assert ours.state["n_iter"] == opt.state[theta]["n_iter"]
    np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(want[-1] - th64)) > 1.0


def test_lbfgs_errors():
    with pytest.raises(ValueError, match="LBFGS is not an optax transformation"):
        optim.create("lbfgs", lr=1.0)
    with pytest.raises(ValueError, match="line_search_fn must be one of None, 'strong_wolfe'"):
        optim.LBFGS(line_search_fn="armijo")
    with pytest.raises(ValueError, match="LBFGS: lr must be a finite number >= 0"):
        optim.LBFGS(lr=-1.0)
    with pytest.raises(ValueError, match="exactly one"):
        optim.LBFGS().step(None, {"x": jnp.ones(2)})
