"""The foundations chapters' worked examples: thermometer's hand-derived runs, polynomial_ridge,
california_from_scratch and tensors, against the books' printed figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from one_line import raises_one_line

from dlcore.examples import thermometer

T_C = np.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0], np.float32)
T_U = np.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4], np.float32)


# ---- thermometer (Antiga et al., Deep Learning with PyTorch, ch. 5) ----

def test_thermometer_hand_derived_runs_print_the_books_digits(quick_run):
    m = quick_run("thermometer")[0]["metrics"]
    # section 5.4.3, Out[17] and Out[18]: the book's printed digits, compared as printed
    assert f"{m['hand_epoch1_loss']:.6f}" == "1763.884644"
    assert f"{m['hand_epoch1_grad_w']:.4f}" == "4517.2969" and f"{m['hand_epoch1_grad_b']:.4f}" == "82.6000"
    assert m["hand_first_nonfinite_epoch"] == 11
    assert f"{m['lr1e4_loss']:.6f}" == "29.022669"
    assert f"{m['lr1e4_w']:.4f}" == "0.2327" and f"{m['lr1e4_b']:.4f}" == "-0.0438"
    # section 5.4.4, Out[20]
    assert f"{m['normalised_epoch1_loss']:.6f}" == "80.364342"
    # section 5.5.3, Out[15]: the book's printed split
    assert f"{m['split_train_loss']:.4f}" == "3.0125" and f"{m['split_val_loss']:.4f}" == "3.5756"
    assert f"{m['split_w']:.4f}" == "5.1964" and f"{m['split_b']:.4f}" == "-16.7512"


def test_thermometer_hand_derived_gradient_is_jax_grad():
    def loss(params, t_u, t_c):
        return jnp.mean((params[0] * t_u + params[1] - t_c) ** 2)

    rng = np.random.default_rng(0)
    points = [(1.0, 0.0, T_U), (0.2327, -0.0438, T_U), (5.3671, -17.3012, 0.1 * T_U)]
    points += [(*rng.normal(size=2) * 3, rng.normal(size=11).astype(np.float32) * 10) for _ in range(3)]
    for w, b, t_u in points:
        w, b = jnp.float32(w), jnp.float32(b)
        t_u = jnp.asarray(t_u, jnp.float32)
        t_p = thermometer.model(t_u, w, b)
        hand = thermometer.grad_fn(t_u, jnp.asarray(T_C), t_p, w, b)
        auto = jax.grad(loss)(jnp.stack([w, b]), t_u, jnp.asarray(T_C))
        np.testing.assert_allclose(hand, auto, rtol=2e-5, atol=1e-5)


def test_thermometer_epoch_two_of_the_diverging_run_and_the_jitted_loop():
    # Out[17], epoch 2: loss 5802485.500000, params [2568.4014, 45.1637]; epoch 10: the 35-digit loss
    _, h = thermometer.training_loop(11, 1e-2, [1.0, 0.0], T_U, T_C)
    assert f"{h['loss'][1]:.6f}" == "5802485.500000"
    assert f"{h['loss'][9]:.6f}" == "90901154706620645225508955521810432.000000"
    assert [f"{v:.4f}" for v in h["params"][1]] == ["2568.4014", "45.1637"]
    assert np.isinf(h["loss"][10])
    # the jitted loop: the same run to float32 rounding (XLA's fused multiply-add), not bit for bit
    _, e = thermometer.training_loop(100, 1e-4, [1.0, 0.0], T_U, T_C)
    _, j = thermometer.training_loop_jit(100, 1e-4, [1.0, 0.0], T_U, T_C)
    np.testing.assert_allclose(j["loss"], e["loss"], rtol=1e-6)
    np.testing.assert_allclose(j["params"], e["params"], rtol=1e-5, atol=1e-7)


def test_thermometer_loops_reject_bad_input_in_one_line():
    raises_one_line(lambda: thermometer.training_loop(0, 1e-2, [1.0, 0.0], T_U, T_C), "n_epochs", ">= 1")
    raises_one_line(lambda: thermometer.training_loop(5, 1e-2, [1.0, 0.0], T_U, T_C[:5]), "t_u and t_c",
                    "(11,)", "(5,)")
    raises_one_line(lambda: thermometer.split_training_loop(
        5, thermometer.optim.sgd(1e-2), [1.0, 0.0], T_U, T_U[:0], T_C, T_C[:0]), "non-zero length")
