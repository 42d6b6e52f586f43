"""Every optimizer hyperparameter is checked when the optimizer is built: one ValueError line naming the
optimizer and the argument, never a failure at the first step."""

import inspect
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dlcore import optim

NAMES = ["sgd", "adam", "adamw", "adamax", "nadam", "rmsprop", "adadelta", "adagrad"]
SCHED = r" or a schedule \(a function of the step\)"
PARAMS = {"w": jnp.array([1.0, -2.0])}


def _one_line(err):
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _step(tx):
    state = tx.init(PARAMS)
    updates, _ = tx.update({"w": jnp.array([0.5, 0.5])}, state, PARAMS)
    return np.asarray(updates["w"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", ["0.1", True, None, math.nan, math.inf, [0.1], np.array([0.1, 0.2]), 1j])
def test_bad_lr_is_one_line_naming_the_optimizer_and_lr(name, bad):
    for build in (lambda: getattr(optim, name)(lr=bad), lambda: optim.create(name, lr=bad),
                  lambda: optim.injectable(name, lr=bad)):
        with pytest.raises(ValueError) as err:
            build()
        assert re.fullmatch(rf"{name}: lr must be a finite number >= 0{SCHED}, got {re.escape(repr(bad))}",
                            _one_line(err)), str(err.value)


def test_the_reported_message():
    with pytest.raises(ValueError) as err:
        optim.sgd("0.1")
    assert str(err.value) == ("sgd: lr must be a finite number >= 0 or a schedule (a function of the step), "
                              "got '0.1'")


def _numeric_args(name):
    """(argument, a good value) for every numeric argument of the factory but lr and betas."""
    sig = inspect.signature(getattr(optim, name)).parameters
    return [(a, p.default) for a, p in sig.items()
            if a not in ("lr", "betas") and not isinstance(p.default, bool)]


CASES = [(n, a) for n in NAMES for a, _ in _numeric_args(n)]


@pytest.mark.parametrize("name,arg", CASES, ids=[f"{n}-{a}" for n, a in CASES])
@pytest.mark.parametrize("bad", ["0.5", False, None, math.nan, "abc"])
def test_every_numeric_hyperparameter_is_checked(name, arg, bad):
    with pytest.raises(ValueError) as err:
        optim.create(name, lr=0.1, **{arg: bad})
    msg = _one_line(err)
    assert msg.startswith(f"{name}: {arg} must be a finite number"), msg
    assert msg.endswith(f"got {bad!r}"), msg


@pytest.mark.parametrize("name", ["adam", "adamw", "adamax", "nadam"])
def test_betas_are_checked(name):
    for betas, arg in [(("0.9", 0.999), "betas[0]"), ((0.9, "0.999"), "betas[1]"), ((True, 0.999), "betas[0]"),
                       ((0.9, None), "betas[1]"), ((0.9, math.nan), "betas[1]")]:
        with pytest.raises(ValueError) as err:
            optim.create(name, betas=betas)
        assert _one_line(err).startswith(f"{name}: {arg} must be a finite number in [0, 1)"), str(err.value)
    with pytest.raises(ValueError, match=rf"^{name}: betas must be a pair \(beta1, beta2\), got 0.9$"):
        optim.create(name, betas=0.9)


@pytest.mark.parametrize("name,flag", [("sgd", "nesterov"), ("adam", "amsgrad"), ("adamw", "amsgrad"),
                                       ("rmsprop", "centered"), ("nadam", "decoupled_weight_decay")])
def test_switches_must_be_bools(name, flag):
    with pytest.raises(ValueError, match=rf"^{name}: {flag} must be True or False, got 'False'$"):
        optim.create(name, lr=0.1, momentum=0.9, **{flag: "False"}) if name == "sgd" else \
            optim.create(name, lr=0.1, **{flag: "False"})


def test_a_schedule_only_where_the_optimizer_takes_one():
    with pytest.raises(ValueError) as err:
        optim.adam(eps=lambda c: 1e-8)
    assert re.fullmatch(r"adam: eps must be a finite number >= 0, got <function .*>", _one_line(err))
    with pytest.raises(ValueError, match=r"^adagrad: lr_decay must be a finite number >= 0, got <function"):
        optim.adagrad(lr_decay=lambda c: 0.1)
    with pytest.raises(ValueError, match=r"betas\[1\] cannot be a schedule"):
        optim.adam(betas=(0.9, lambda c: 0.999))
    # schedules where the factories document them: lr, SGD's and RMSprop's momentum, beta1
    for tx in (optim.sgd(lambda c: 0.1, momentum=lambda c: 0.9), optim.rmsprop(lambda c: 0.01, momentum=lambda c: 0.5),
               optim.adam(lambda c: 1e-3, betas=(lambda c: 0.9, 0.999))):
        assert np.all(np.isfinite(_step(tx)))
    # injectable: inject_hyperparams evaluates any numeric hyperparameter as a schedule
    tx = optim.injectable("adam", lr=0.1, eps=lambda c: 1e-8)
    np.testing.assert_allclose(_step(tx), _step(optim.adam(0.1)), rtol=1e-6)


@pytest.mark.parametrize("lr", [np.float32(0.1), np.float64(0.1), jnp.float32(0.1), jnp.asarray(0.1),
                                np.asarray(0.1), 1, np.int64(1)])
def test_numpy_and_jax_scalars_are_accepted(lr):
    want = -float(lr) * 0.5
    np.testing.assert_allclose(_step(optim.sgd(lr)), [want, want], rtol=1e-6)
    np.testing.assert_allclose(_step(optim.create("sgd", lr=lr, momentum=np.float32(0.9))), [want, want], rtol=1e-6)


def test_traced_hyperparameters_are_accepted():
    def final(lr, momentum):
        tx = optim.sgd(lr, momentum=momentum, weight_decay=lr * 0.0)
        return tx.update({"w": jnp.ones(2)}, tx.init(PARAMS), PARAMS)[0]["w"]

    out = jax.jit(jax.vmap(final))(jnp.array([0.1, 0.2]), jnp.array([0.0, 0.9]))
    np.testing.assert_allclose(out, [[-0.1, -0.1], [-0.2, -0.2]], rtol=1e-6)
    with pytest.raises(ValueError, match="sgd: lr must be a finite number"):
        jax.jit(lambda flag: optim.sgd(flag))(jnp.array(True))


def test_param_groups_names_the_group_or_the_defaults():
    params = {"w": jnp.ones(2), "b": jnp.zeros(2)}
    with pytest.raises(ValueError) as err:
        optim.param_groups(params, [{"params": "^b", "lr": "0.5"}], "sgd", lr=0.1)
    assert str(err.value) == ("param_groups: group 0: sgd: lr must be a finite number >= 0 or a schedule "
                              "(a function of the step), got '0.5'")
    with pytest.raises(ValueError) as err:
        optim.param_groups(params, [{"params": "^b", "lr": 0.5}], "sgd", lr=0.1, momentum="0.9")
    assert str(err.value) == ("param_groups: defaults: sgd: momentum must be a finite number >= 0 or a schedule "
                              "(a function of the step), got '0.9'")
    with pytest.raises(ValueError, match=r"^param_groups: group 0: adam: betas\[0\] must be"):
        optim.param_groups(params, [{"params": "^b", "betas": ("0.9", 0.99)}], "adam", inject=True)
    with pytest.raises(ValueError, match=r"^param_groups: defaults: adam: eps must be a finite number >= 0, got None$"):
        optim.param_groups(params, [{"params": "^b", "lr": 0.5}], "adam", eps=None)


def test_injectable_rejects_what_inject_hyperparams_would_choke_on():
    for kwargs, match in [(dict(lr="0.1"), "sgd: lr must be"), (dict(lr=0.1, momentum=True), "sgd: momentum must be"),
                          (dict(lr=0.1, weight_decay=[1e-4]), "sgd: weight_decay must be")]:
        with pytest.raises(ValueError, match=f"^{match}"):
            optim.injectable("sgd", **kwargs)


def test_clipping_penalties_and_lbfgs_check_their_numbers():
    cases = [
        (lambda: optim.clip_grad_norm("1.0"), r"clip_grad_norm: max_norm must be a number > 0, got '1.0'"),
        (lambda: optim.clip_grad_norm(0.0), r"clip_grad_norm: max_norm must be a number > 0, got 0.0"),
        (lambda: optim.clip_grad_norm(1.0, norm_type="2"), r"clip_grad_norm: norm_type must be a number > 0"),
        (lambda: optim.clip_grad_value(None), r"clip_grad_value: clip_value must be a number > 0, got None"),
        (lambda: optim.clip_by_norm(PARAMS, True), r"clip_by_norm: max_norm must be a number > 0, got True"),
        (lambda: optim.clip_by_value(PARAMS, -1), r"clip_by_value: clip_value must be a number > 0, got -1"),
        (lambda: optim.with_clipping(optim.sgd(0.1), max_norm="1"), r"clip_grad_norm: max_norm must be"),
        (lambda: optim.max_norm("2"), r"max_norm: max_value must be a number > 0, got '2'"),
        (lambda: optim.add_l1("1e-4"), r"add_l1: coef must be a finite number >= 0, got '1e-4'"),
        (lambda: optim.add_l2(math.nan), r"add_l2: coef must be a finite number >= 0, got nan"),
        (lambda: optim.LBFGS(lr="1"), r"LBFGS: lr must be a finite number >= 0, got '1'"),
        (lambda: optim.LBFGS(tolerance_grad=-1.0), r"LBFGS: tolerance_grad must be a finite number >= 0"),
        (lambda: optim.LBFGS(tolerance_change="1e-9"), r"LBFGS: tolerance_change must be a finite number >= 0"),
        (lambda: optim.LBFGS(max_eval=0), r"LBFGS: max_eval must be an int >= 1, got 0"),
    ]
    for build, match in cases:
        with pytest.raises(ValueError, match=f"^{match}") as err:
            build()
        _one_line(err)
    # infinity is "no limit" for the clipping bounds, and norm_type=inf the max norm
    tx = optim.with_clipping(optim.sgd(1.0), max_norm=math.inf)
    np.testing.assert_allclose(_step(tx), [-0.5, -0.5], rtol=1e-5)
    assert np.isfinite(np.asarray(optim.clip_by_norm(PARAMS, 1.0, norm_type=math.inf)["w"])).all()


def test_jitted_update_under_inject_still_works_with_array_hyperparams():
    tx = optim.injectable("adamw", lr=jnp.asarray(1e-2), weight_decay=np.float32(0.1))
    state = tx.init(PARAMS)
    step = jax.jit(lambda s: tx.update({"w": jnp.ones(2)}, s, PARAMS))
    u, state = step(state)
    u2, _ = step(state)
    assert np.all(np.isfinite(np.asarray(u["w"]))) and np.all(np.isfinite(np.asarray(u2["w"])))
    assert isinstance(optax.apply_updates(PARAMS, u)["w"], jax.Array)
