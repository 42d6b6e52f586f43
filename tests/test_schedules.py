"""Tests for dlcore.schedules and dlcore.train.lr: hand-computed sequences, PyTorch parity, callbacks."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dlcore
from dlcore import optim, schedules
from dlcore.train import lr as lr_lib


def _seq(schedule, n):
    return np.array([float(schedule(t)) for t in range(n)])


# ---- golden values, computed by hand ---------------------------------------------------------------


GOLDEN = [
    (schedules.step_lr(0.1, step_size=3, gamma=0.5), [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025]),
    (schedules.multistep_lr(1.0, [2, 5], gamma=0.1), [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01]),
    (schedules.multistep_lr(1.0, [2, 2], gamma=0.5), [1, 1, 0.25, 0.25]),  # a repeated milestone counts twice
    # Géron, ch. 11, Exponential Scheduling: gamma 0.9 leaves ~35% after 10 epochs, ~12% after 20
    (lambda t: schedules.exponential_lr(0.05, 0.9)(10 * t), [0.05, 0.05 * 0.3486784401, 0.05 * 0.12157665459]),
    # eta_min + (lr - eta_min) * (1 + cos(pi t / 4)) / 2, going on past T_max
    (schedules.cosine_annealing_lr(0.1, T_max=4),
     [0.1, 0.0853553391, 0.05, 0.0146446609, 0.0, 0.0146446609, 0.05, 0.0853553391, 0.1]),
    # the book's T_max=20, eta_min=0.001 at t = 10: 0.001 + 0.099 / 2
    (lambda t: schedules.cosine_annealing_lr(0.1, 20, 0.001)(10 * t), [0.1, 0.0505, 0.001]),
    # the book's T_0=2, T_mult=2, eta_min=0.001 (Géron, ch. 11, Cosine Annealing with Warm Restarts): cycles [0, 2), [2, 6), [6, 14), [14, 30)
    (schedules.cosine_annealing_warm_restarts(0.1, T_0=2, T_mult=2, eta_min=0.001),
     [0.1, 0.0505, 0.1, 0.0855017857, 0.0505, 0.0154982143, 0.1, None, None, None, 0.0505, None, None, None,
      0.1]),
    (schedules.cosine_annealing_warm_restarts(1.0, T_0=3), [1.0, 0.75, 0.25, 1.0, 0.75, 0.25, 1.0]),
    # the book's warm-up: 10%, 40%, 70%, then 100% (Géron, ch. 11, Warming Up the Learning Rate)
    (schedules.linear_lr(0.1, 0.1, 1.0, 3), [0.01, 0.04, 0.07, 0.1, 0.1]),
    (schedules.constant_lr(0.3, factor=0.5, total_iters=2), [0.15, 0.15, 0.3, 0.3]),
    (schedules.polynomial_lr(1.0, total_iters=4, power=2), [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]),
    (schedules.lambda_lr(2.0, lambda t: 1.0 / (1.0 + t)), [2.0, 1.0, 2.0 / 3]),
    (schedules.sequential_lr([schedules.linear_lr(0.1, 0.1, 1.0, 3), schedules.exponential_lr(0.1, 0.5)], [3]),
     [0.01, 0.04, 0.07, 0.1, 0.05, 0.025]),
    # 1cycle, linear: 0.1 -> 1.0 over steps 0..2 (end 0.3 * 10 - 1), then down to 0.001 at step 9
    (schedules.one_cycle_lr(1.0, 10, 0.3, "linear", div_factor=10, final_div_factor=100),
     [0.1, 0.55, 1.0, 1 - 0.999 / 7, None, None, None, None, None, 0.001]),
    (schedules.one_cycle_lr(1.0, 10, 0.3, "cos", div_factor=10, final_div_factor=100), [0.1, 0.55, 1.0]),
    (schedules.one_cycle_momentum(10, 0.3, "linear"), [0.95, 0.90, 0.85, 0.85 + 0.1 / 7, None, None, None, None,
                                                        None, 0.95]),
    # three phases: 0.1 -> 1 (to step 2), -> 0.1 (to step 4), -> 0.001 (to step 9)
    (schedules.one_cycle_lr(1.0, 10, 0.3, "linear", div_factor=10, final_div_factor=100, three_phase=True),
     [0.1, 0.55, 1.0, 0.55, 0.1, 0.1 - 0.099 / 5, None, None, None, 0.001]),
]


@pytest.mark.parametrize("i", range(len(GOLDEN)))
def test_golden_sequences(i):
    schedule, want = GOLDEN[i]
    got = _seq(schedule, len(want))
    for t, w in enumerate(want):
        if w is not None:
            assert got[t] == pytest.approx(w, rel=1e-5, abs=1e-7), (t, got[t], w)


def test_schedules_are_jittable_and_take_fractional_epochs():
    sched = schedules.cosine_annealing_warm_restarts(1.0, T_0=2, T_mult=2)
    jitted = jax.jit(sched)
    np.testing.assert_allclose(jitted(jnp.arange(8)), _seq(sched, 8), rtol=1e-6)
    # PyTorch's step(epoch + i / iters): halfway through the second cycle (t = 4 = 2 + 4/2)
    assert float(sched(4.0)) == pytest.approx(0.5, abs=1e-6)
    assert float(sched(2.5)) == pytest.approx((1 + math.cos(math.pi * 0.5 / 4)) / 2, rel=1e-6)


def test_per_epoch_wraps_a_schedule_for_per_step_use():
    sched = schedules.per_epoch(schedules.exponential_lr(1.0, 0.5), steps_per_epoch=3)
    np.testing.assert_allclose(_seq(sched, 7), [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


# ---- PyTorch parity ----------------------------------------------------------------------------------


def _torch_lrs(make_sched, steps, lr=0.1, key="lr", optimizer="SGD", **opt_kwargs):
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = getattr(torch.optim, optimizer)([p], lr=lr, **opt_kwargs)
    sched = make_sched(opt)
    out = []
    for _ in range(steps):
        group = opt.param_groups[0]
        out.append(group["betas"][0] if key == "beta1" else group[key])
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    return np.array(out, np.float64)


TORCH_CASES = [
    ("StepLR", dict(step_size=4, gamma=0.3), lambda: schedules.step_lr(0.1, 4, 0.3)),
    ("MultiStepLR", dict(milestones=[3, 7, 7, 12], gamma=0.5), lambda: schedules.multistep_lr(0.1, [3, 7, 7, 12], 0.5)),
    ("ExponentialLR", dict(gamma=0.93), lambda: schedules.exponential_lr(0.1, 0.93)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01), lambda: schedules.cosine_annealing_lr(0.1, 7, 0.01)),
    ("CosineAnnealingWarmRestarts", dict(T_0=3), lambda: schedules.cosine_annealing_warm_restarts(0.1, 3)),
    ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=2, eta_min=0.001),
     lambda: schedules.cosine_annealing_warm_restarts(0.1, 2, 2, 0.001)),
    ("CosineAnnealingWarmRestarts", dict(T_0=1, T_mult=3), lambda: schedules.cosine_annealing_warm_restarts(0.1, 1, 3)),
    ("LinearLR", dict(start_factor=0.1, end_factor=1.0, total_iters=3), lambda: schedules.linear_lr(0.1, 0.1, 1.0, 3)),
    ("LinearLR", dict(start_factor=1.0, end_factor=0.2, total_iters=10),
     lambda: schedules.linear_lr(0.1, 1.0, 0.2, 10)),
    ("LambdaLR", dict(lr_lambda=lambda t: 0.9 ** t / (1 + t)),
     lambda: schedules.lambda_lr(0.1, lambda t: 0.9 ** t / (1 + t))),
    ("ConstantLR", dict(factor=0.25, total_iters=4), lambda: schedules.constant_lr(0.1, 0.25, 4)),
    ("PolynomialLR", dict(total_iters=12, power=1.5), lambda: schedules.polynomial_lr(0.1, 12, 1.5)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=40), lambda: schedules.one_cycle_lr(0.5, 40)),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=40, pct_start=0.4, anneal_strategy="linear", div_factor=5.0,
                        final_div_factor=50.0, three_phase=True),
     lambda: schedules.one_cycle_lr(0.5, 40, 0.4, "linear", 5.0, 50.0, True)),
]


@pytest.mark.parametrize("name,kwargs,ours", TORCH_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(TORCH_CASES)])
def test_matches_torch_lr_scheduler(name, kwargs, ours):
    torch = pytest.importorskip("torch")
    steps = 40
    want = _torch_lrs(lambda opt: getattr(torch.optim.lr_scheduler, name)(opt, **kwargs), steps)
    np.testing.assert_allclose(_seq(ours(), steps), want, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("three_phase", [False, True])
def test_one_cycle_momentum_matches_torch(three_phase):
    torch = pytest.importorskip("torch")
    kw = dict(max_lr=0.5, total_steps=30, pct_start=0.3, three_phase=three_phase)
    ours = schedules.one_cycle_momentum(30, 0.3, three_phase=three_phase)
    want = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, **kw), 30, key="momentum", momentum=0.9)
    np.testing.assert_allclose(_seq(ours, 30), want, rtol=1e-5)
    want = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(o, **kw), 30, key="beta1", optimizer="Adam")
    np.testing.assert_allclose(_seq(ours, 30), want, rtol=1e-5)


@pytest.mark.parametrize("anneal", ["linear", "cos"])
def test_one_cycle_holds_its_final_values_past_the_cycle(anneal):
    """Past total_steps - 1 (where PyTorch raises) the rate and momentum hold the cycle's last values: annealing on
    took a linear rate below 0 (SGD then climbs the loss) and a cosine one back up to max_lr."""
    lr = schedules.one_cycle_lr(0.1, 10, 0.3, anneal, div_factor=10, final_div_factor=100)
    mom = schedules.one_cycle_momentum(10, 0.3, anneal)
    lrs, moms = np.asarray(_seq(lr, 30)), np.asarray(_seq(mom, 30))
    assert lrs.min() > 0 and moms.max() <= 0.95 + 1e-6
    np.testing.assert_allclose(lrs[9:], 0.1 / 10 / 100, rtol=1e-4)
    np.testing.assert_allclose(moms[9:], 0.95, rtol=1e-5)


def test_sequential_warmup_then_schedule_matches_torch():
    torch = pytest.importorskip("torch")
    L = torch.optim.lr_scheduler

    def make(opt):
        return L.SequentialLR(opt, [L.LinearLR(opt, 0.1, 1.0, 3), L.CosineAnnealingLR(opt, T_max=10)], milestones=[3])

    ours = schedules.sequential_lr([schedules.linear_lr(0.1, 0.1, 1.0, 3), schedules.cosine_annealing_lr(0.1, 10)], [3])
    np.testing.assert_allclose(_seq(ours, 25), _torch_lrs(make, 25), rtol=1e-5, atol=1e-8)

    def make3(opt):
        return L.SequentialLR(opt, [L.ConstantLR(opt, 0.5, 10), L.ExponentialLR(opt, 0.8), L.StepLR(opt, 2, 0.5)],
                              milestones=[2, 6])

    ours3 = schedules.sequential_lr([schedules.constant_lr(0.1, 0.5, 10), schedules.exponential_lr(0.1, 0.8),
                                     schedules.step_lr(0.1, 2, 0.5)], [2, 6])
    np.testing.assert_allclose(_seq(ours3, 14), _torch_lrs(make3, 14), rtol=1e-5, atol=1e-8)


# ---- reduce on plateau ---------------------------------------------------------------------------------


def test_plateau_golden():
    metrics = [5, 4, 4, 4, 4, 3, 3, 3, 3]
    p = schedules.Plateau(1.0, patience=2, factor=0.5)
    assert [p.step(m)[0] for m in metrics] == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25]
    p = schedules.Plateau(1.0, patience=2, factor=0.5, cooldown=2)
    assert [p.step(m)[0] for m in metrics] == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5]
    p = schedules.Plateau([1.0, 0.6], patience=2, factor=0.5, min_lr=[0.4, 0.0])
    assert [p.step(m) for m in metrics][-1] == [0.4, 0.15]
    p = schedules.Plateau(1.0, mode="max", patience=0, factor=0.1, threshold=0.1, threshold_mode="abs")
    assert [p.step(m)[0] for m in [0.5, 0.55, 0.7]] == [1.0, pytest.approx(0.1), pytest.approx(0.1)]
    # a NumPy string is a choice like any str (as read from a config array)
    p = schedules.Plateau(1.0, mode=np.str_("max"), patience=0, factor=0.1, threshold=0.1, threshold_mode="abs")
    assert [p.step(m)[0] for m in [0.5, 0.55, 0.7]] == [1.0, pytest.approx(0.1), pytest.approx(0.1)]


@pytest.mark.parametrize(
    "options",
    [dict(), dict(mode="max", patience=2, factor=0.5), dict(patience=1, cooldown=2, threshold=0.05),
     dict(patience=0, threshold_mode="abs", threshold=0.02, min_lr=0.004, factor=0.3), dict(patience=1, eps=0.05)],
)
def test_plateau_matches_torch(options):
    torch = pytest.importorskip("torch")
    rng = np.random.RandomState(7)
    metrics = list(np.cumsum(rng.normal(scale=0.1, size=60)) + 3.0)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **options)
    ours = schedules.Plateau(0.1, **options)
    for m in metrics:
        sched.step(m)
        assert ours.step(m)[0] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert ours.lrs[0] < 0.1  # the options above all reduce at least once on this walk


# ---- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: schedules.step_lr(-0.1, 3), "lr must be a number >= 0"),
        (lambda: schedules.step_lr(0.1, 0), "step_size must be an int >= 1"),
        (lambda: schedules.exponential_lr(0.1, -0.5), "gamma must be a number >= 0"),
        (lambda: schedules.cosine_annealing_lr(0.1, 0), "T_max must be an int >= 1"),
        (lambda: schedules.cosine_annealing_warm_restarts(0.1, 2, 0), "T_mult must be an int >= 1"),
        (lambda: schedules.linear_lr(0.1, 0.0), r"start_factor must be a number in \(0, 1\]"),
        (lambda: schedules.multistep_lr(0.1, []), "milestones must not be empty"),
        (lambda: schedules.sequential_lr([schedules.step_lr(0.1, 1)], [3]), "expected len"),
        (lambda: schedules.one_cycle_lr(0.1, 3), "leave a phase without steps"),
        (lambda: schedules.one_cycle_lr(0.1, 100, anneal_strategy="cosine"), "anneal_strategy"),
        (lambda: schedules.one_cycle_momentum(100, base_momentum=0.9, max_momentum=0.8), "max_momentum must be a number >= 0.9"),
        (lambda: schedules.Plateau(0.1, factor=1.0), r"factor must be a number in \[0, 1\)"),
        (lambda: schedules.Plateau(0.1, mode="up"), "mode must be"),
        (lambda: schedules.create("cosine_annealing", lr=0.1), "unknown schedule 'cosine_annealing': did you mean 'cosine'"),
        (lambda: schedules.create("cosine", lr=0.1, T=3), "takes no argument"),
        (lambda: lr_lib.ReduceLROnPlateau(patience=-1), "patience must be an int >= 0"),
    ],
)
def test_bad_input_raises_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_create_by_name():
    assert schedules.names()[:3] == ["constant", "cosine", "cosine_warm_restarts"]
    for name in ("cosine", "CosineAnnealingLR", "cosine_lr"):
        assert float(schedules.create(name, lr=0.1, T_max=4)(2)) == pytest.approx(0.05)


# ---- callbacks in the Trainer --------------------------------------------------------------------------


def _regression(n=64):
    rng = np.random.RandomState(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return {"x": x, "y": (x @ rng.normal(size=(4, 1))).astype(np.float32)}


def _fit(tx, callbacks=(), epochs=4):
    model = dlcore.models.create("mlp", sizes=(4, 8, 1), seed=0)
    trainer = dlcore.Trainer(model, tx, dlcore.losses.mse, batch_size=16, shuffle=True, progress=False,
                             callbacks=list(callbacks))
    trainer.fit(_regression(), epochs=epochs)
    return trainer


def test_lr_scheduler_callback_sets_each_epoch_without_recompiling():
    sched = schedules.exponential_lr(0.05, 0.5)
    trainer = _fit(optim.injectable("sgd", lr=0.05, momentum=0.9), [lr_lib.LRScheduler(sched)])
    np.testing.assert_allclose(trainer.history["lr"], [0.05, 0.025, 0.0125, 0.00625], rtol=1e-6)
    assert trainer.trace_counts["train_epoch"] == 1
    # the same as the per-step schedule that changes once per epoch (4 batches of 16)
    reference = _fit(optim.sgd(schedules.per_epoch(sched, 4), momentum=0.9))
    for a, b in zip(jax.tree.leaves(trainer.state.params), jax.tree.leaves(reference.state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_lr_scheduler_relative_scales_each_group():
    model = dlcore.models.create("mlp", sizes=(4, 8, 1), seed=0)
    tx = optim.param_groups(model, [{"params": "bias", "lr": 0.2}], "sgd", lr=0.1, inject=True)
    trainer = dlcore.Trainer(model, tx, dlcore.losses.mse, batch_size=16, progress=False,
                             callbacks=[lr_lib.LRScheduler(schedules.step_lr(1.0, 1, 0.5), relative=True)])
    trainer.fit(_regression(), epochs=2)
    assert sorted(optim.get_hyperparams(trainer.state.opt_state, "lr")) == [pytest.approx(0.05), pytest.approx(0.1)]


def test_lr_scheduler_needs_an_injectable_optimizer():
    with pytest.raises(ValueError, match="injectable"):
        _fit(optim.sgd(0.05), [lr_lib.LRScheduler(schedules.exponential_lr(0.05, 0.5))], epochs=1)


def test_reduce_lr_on_plateau_callback_matches_torch_with_groups():
    torch = pytest.importorskip("torch")
    model = dlcore.models.create("mlp", sizes=(4, 8, 1), seed=0)
    tx = optim.param_groups(model, [{"params": "bias", "lr": 0.02}], "sgd", lr=0.1, inject=True)
    state = dlcore.TrainState.create(model, tx)
    trainer = types.SimpleNamespace(state=state, history={})
    cb = lr_lib.ReduceLROnPlateau("val_loss", patience=1, factor=0.5, cooldown=1, min_lr=0.01)
    cb.on_fit_start(trainer)
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    # the optimizer state flattens the groups by label: "default" (lr 0.1) before "group0" (lr 0.02)
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.02}], lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, cooldown=1, min_lr=0.01)
    for epoch, m in enumerate([1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.5, 0.6, 0.7, 0.8], start=1):
        cb.on_epoch_end(trainer, epoch, {"val_loss": m})
        sched.step(m)
        got = optim.get_hyperparams(trainer.state.opt_state, "lr")
        np.testing.assert_allclose(got, [g["lr"] for g in opt.param_groups], rtol=1e-6)
    assert got[0] < 0.1 and len(trainer.history["lr"]) == 10
    with pytest.raises(ValueError, match="not among the epoch logs"):
        cb.on_epoch_end(trainer, 11, {"loss": 1.0})


def test_reduce_lr_on_plateau_in_fit_state_round_trip():
    cb = lr_lib.ReduceLROnPlateau("loss", patience=0, factor=0.5, threshold=10.0)  # never "improves" enough
    trainer = _fit(optim.injectable("adam", lr=0.01), [cb], epochs=3)
    assert trainer.history["lr"] == [pytest.approx(0.01), pytest.approx(0.005), pytest.approx(0.0025)]
    assert trainer.trace_counts["train_epoch"] == 1
    again = lr_lib.ReduceLROnPlateau("loss", patience=0, factor=0.5, threshold=10.0)
    again.load_state_dict(cb.state_dict())
    trainer.callbacks = [again]
    again.on_fit_start(trainer)
    assert again.plateau.lrs == cb.plateau.lrs and again.plateau.last_epoch == 3


# ---- learning-rate finder ------------------------------------------------------------------------------


def test_lr_find_sweeps_exponentially_and_suggests(tmp_path):
    model = dlcore.models.create("mlp", sizes=(4, 8, 1), seed=0)
    before = [np.asarray(v) for _, v in optim.named_leaves(model)]
    result = lr_lib.lr_find(model, "sgd", dlcore.losses.mse, _regression(256), start_lr=1e-4, end_lr=10.0,
                            steps=60, batch_size=16)
    assert result.lrs[0] == pytest.approx(1e-4)
    np.testing.assert_allclose(result.lrs[1:] / result.lrs[:-1], (10.0 / 1e-4) ** (1 / 60), rtol=1e-5)
    assert 1e-4 < result.suggestion < 10.0 / 10
    assert result.stopped_at <= 60 and len(result.losses) == result.stopped_at
    assert np.min(result.smoothed[10:]) < np.mean(result.smoothed[:10])  # the loss fell before it rose
    after = [np.asarray(v) for _, v in optim.named_leaves(model)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)  # the model is untouched
    fig = result.plot(str(tmp_path / "lr.png"))
    if fig is not None:
        assert (tmp_path / "lr.png").exists()
    with pytest.raises(ValueError, match="start_lr < end_lr"):
        lr_lib.lr_find(model, "sgd", dlcore.losses.mse, _regression(), start_lr=1.0, end_lr=0.1)
