"""The foundations chapters' worked examples: thermometer's hand-derived runs, polynomial_ridge,
california_from_scratch and tensors, against the books' printed figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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
    raises_one_line(lambda: thermometer.training_loop(5, float("nan"), [1.0, 0.0], T_U, T_C), "learning_rate")
    raises_one_line(lambda: thermometer.training_loop(5, 1e-2, [1.0], T_U, T_C), "params", "(2,)", "(1,)")
    raises_one_line(lambda: thermometer.training_loop_jit(5, 1e-2, [1.0, 0.0], np.r_[T_U[:-1], np.nan], T_C),
                    "NaN")
    raises_one_line(lambda: thermometer.split_training_loop(
        5, thermometer.optim.sgd(1e-2), [1.0, 0.0], T_U, T_U[:0], T_C, T_C[:0]), "non-zero length")


# ---- polynomial_ridge (Ketkar & Moolayil, Deep Learning with Python, ch. 1) ----

def _book_fit(x, y, n_coefficients, lambda_reg=0.0):
    """Listings 1-2 and 1-5 as the book writes them: NumPy, the normal equations with an explicit inverse."""
    X_train = np.column_stack([np.power(x[:80], i) for i in range(n_coefficients)])
    model = np.dot(np.dot(np.linalg.inv(np.dot(X_train.T, X_train) + lambda_reg * np.identity(n_coefficients)),
                          X_train.T), y[:80])
    predicted = np.dot(model, [np.power(x, i) for i in range(n_coefficients)])
    train = np.sqrt(np.sum(np.dot(y[:80] - predicted[:80], y[:80] - predicted[:80])))
    test = np.sqrt(np.sum(np.dot(y[80:] - predicted[80:], y[80:] - predicted[80:])))
    return train, test


def test_polynomial_ridge_data_is_the_books_seeded_numpy_draw():
    from dlcore.examples import polynomial_ridge as pr

    state = np.random.get_state()
    try:
        np.random.seed(20)  # Listing 1-5
        noise = np.random.normal(0, 0.1, 100)
    finally:
        np.random.set_state(state)
    x, y, signal = pr.make_data(20)
    np.testing.assert_array_equal(x, np.linspace(-1, 1, 100))
    np.testing.assert_array_equal(y, 2 + x + 2 * x * x + noise)


def test_polynomial_ridge_matches_the_books_numpy_formulas(quick_run):
    from dlcore.examples import polynomial_ridge as pr

    m = quick_run("polynomial_ridge")[0]["metrics"]
    x, y, _ = pr.make_data(20)
    for degree in (1, 2, 8):
        train, test = _book_fit(x, y, degree + 1)
        assert m[f"deg{degree}_train_root_sse"] == pytest.approx(train, rel=1e-7)
        assert m[f"deg{degree}_test_root_sse"] == pytest.approx(test, rel=1e-6)
        # the true RMSE divides the squared errors by the number of points
        assert m[f"deg{degree}_train_rmse"] == pytest.approx(train / np.sqrt(80), rel=1e-7)
    # the book's story (Table 1-1), on its seeded data: degree 2 generalises, 8 overfits, 1 underfits
    assert m["deg8_train_root_sse"] < m["deg2_train_root_sse"] < m["deg1_train_root_sse"]
    assert m["deg2_test_root_sse"] < m["deg1_test_root_sse"] < m["deg8_test_root_sse"]
    lambdas = np.linspace(0.01, 0.99, 100)
    sweep = np.array([_book_fit(x, y, 80, lam) for lam in lambdas])
    assert m["ridge_train_root_sse_first"] == pytest.approx(sweep[0, 0], rel=1e-5)
    assert m["ridge_test_root_sse_first"] == pytest.approx(sweep[0, 1], rel=1e-5)
    assert m["ridge_test_root_sse_last"] == pytest.approx(sweep[-1, 1], rel=1e-5)
    assert m["ridge_best_lambda"] == lambdas[np.argmin(sweep[:, 1])]


def test_polynomial_ridge_rejects_bad_input_in_one_line():
    from dlcore.examples import polynomial_ridge as pr

    x, y, _ = pr.make_data(20)
    raises_one_line(lambda: pr.fit_polynomial(x, y, -1), "degree", ">= 0")
    raises_one_line(lambda: pr.fit_polynomial(x, y, 2, lambda_reg=float("nan")), "lambda_reg")
    raises_one_line(lambda: pr.fit_polynomial(x, y, 2, n_train=100), "n_train")
    raises_one_line(lambda: pr.ridge_sweep(x, y, 80, [0.1, -1.0]), "lambdas", ">= 0")
    raises_one_line(lambda: pr.make_data(20, n=1), "n must be")
    raises_one_line(lambda: pr.fit_polynomial(x, y[:50], 2), "x and y", "(100,)", "(50,)")
    raises_one_line(lambda: pr.ridge_sweep(x, np.r_[y[:-1], np.nan], 80, [0.1]), "NaN")


# ---- california_from_scratch (Géron, Hands-On ML, ch. 10) ----

def test_california_from_scratch_runs_the_three_models(quick_run):
    report, text = quick_run("california_from_scratch")
    m = report["metrics"]
    for name in ("autograd", "linear", "mlp"):
        assert m[f"{name}_loss"] < m[f"{name}_epoch1_loss"], name
    if report["dataset"] == "diabetes":  # offline: the stand-in says why its linear models use lr 0.1
        assert "lr 0.4 would diverge" in text and "not comparable to the book's" in text
    else:  # the census data: close to the book's epoch-20 losses (the starting weights differ)
        for name in ("autograd", "linear", "mlp"):
            assert m[f"{name}_loss"] == pytest.approx(report["book"][f"{name}_loss"], abs=0.08), name


def test_california_from_scratch_linear_regression_is_the_books_torch_loop():
    torch = pytest.importorskip("torch")
    from dlcore.examples import california_from_scratch as cfs

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 8)).astype(np.float32)
    y = (X @ rng.normal(size=(8, 1)) + 0.5 + 0.3 * rng.normal(size=(200, 1))).astype(np.float32)
    params, history = cfs.train_linear_regression(jnp.asarray(X), jnp.asarray(y), learning_rate=0.4, n_epochs=20,
                                                  key=jax.random.key(3))
    start = cfs.init_linear_regression(8, jax.random.key(3))
    # the book's loop, verbatim but for the starting weights
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    w = torch.tensor(np.asarray(start["w"]), requires_grad=True)
    b = torch.tensor(0.0, requires_grad=True)
    losses = []
    for _ in range(20):
        y_pred = Xt @ w + b
        loss = ((y_pred - yt) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            b -= 0.4 * b.grad
            w -= 0.4 * w.grad
            b.grad.zero_()
            w.grad.zero_()
        losses.append(loss.item())
    np.testing.assert_allclose(history, losses, rtol=1e-5)
    np.testing.assert_allclose(params["w"], w.detach().numpy(), rtol=1e-4, atol=1e-6)
    # and it approaches the least-squares optimum (NumPy's lstsq)
    A = np.hstack([X, np.ones((200, 1), np.float32)])
    best = np.mean((A @ np.linalg.lstsq(A, y, rcond=None)[0] - y) ** 2)
    assert best <= history[-1] < best * 1.05


def test_california_from_scratch_rejects_bad_input_in_one_line():
    from dlcore.examples import california_from_scratch as cfs

    X, y = jnp.ones((5, 3)), jnp.ones((5, 1))
    raises_one_line(lambda: cfs.train_linear_regression(X, y, learning_rate=0.1, n_epochs=0, key=jax.random.key(0)),
                    "n_epochs")
    raises_one_line(lambda: cfs.train_linear_regression(X, y[:4], learning_rate=0.1, n_epochs=2,
                                                        key=jax.random.key(0)), "(5, 3)", "(4, 1)")
    raises_one_line(lambda: cfs.train_linear_regression(X.at[0, 0].set(jnp.nan), y, learning_rate=0.1, n_epochs=2,
                                                        key=jax.random.key(0)), "NaN")


# ---- tensors (Antiga et al. ch. 3; Ketkar & Moolayil ch. 2 and 4) ----

def test_tensors_report_the_books_printed_figures(quick_run):
    report, text = quick_run("tensors")
    m, book = report["metrics"], report["book"]
    for k, v in book.items():
        if k == "float16_of_0_4":  # the book prints 4 decimals of float16(0.4) = 0.39990234375
            assert f"{m[k]:.4f}" == "0.3999" and m[k] == 0.39990234375
        else:
            assert m[k] == pytest.approx(v, abs=1e-6), k
    assert m["grad_check_max_rel_error"] < 1e-5
    assert "storage [4.0, 5.0, 2.0, 1.0, 3.0, 1.0]" in text  # Antiga et al. Out[46]


def test_tensors_indexing_is_the_books_listings():
    from dlcore.examples import tensors

    i = tensors.indexing()
    assert i["cat_0"] == (6, 2) and i["cat_1"] == (2, 6)  # Listing 2-23
    np.testing.assert_array_equal(i["index_select_0"], [[1, 2, 3], [4, 5, 6]])  # Listing 2-28
    np.testing.assert_array_equal(i["index_select_1"], [[1, 2], [4, 5], [7, 8]])
    np.testing.assert_array_equal(i["masked_select"], [2, 4, 5, 6, 8])  # Listing 2-29
    np.testing.assert_allclose(i["gather_0"], [[0.6212, 0.7763, 0.3011, 0.7185]], rtol=1e-6)  # Listing 2-37
    np.testing.assert_allclose(i["gather_1"], [[0.6212], [0.7763], [0.3011], [0.7185]], rtol=1e-6)
    expected = np.array(tensors.GATHER_A, np.float32)
    np.fill_diagonal(expected, 0.0)  # Listing 2-38: scatter of zeros along dim 0 at [[0, 1, 2, 3]]
    np.testing.assert_array_equal(i["scatter_0"], expected)
    np.testing.assert_array_equal(i["scatter_input"], np.array(tensors.GATHER_A, np.float32))
    assert i["unsqueeze"] == (1, 3, 2) and i["squeeze"] == (2, 2)
    np.testing.assert_allclose(i["broadcast_gray"], np.full((2, 5, 5), 1.0), rtol=1e-6)  # weights sum to 1


def test_tensors_strides_match_torch():
    torch = pytest.importorskip("torch")
    from dlcore.examples import tensors

    points = torch.tensor(tensors.POINTS)
    v = tensors.views_and_strides()
    assert v["points_strides"] == points.stride() and v["points_t_strides"] == points.t().stride()
    assert v["second_point_offset"] == points[1].storage_offset()
    some_t = torch.ones(3, 4, 5)
    assert v["transpose_t_strides"] == some_t.transpose(0, 2).stride()
    assert v["contiguous_strides"] == points.t().contiguous().stride()
    assert v["contiguous_storage"] == points.t().contiguous().flatten().tolist()
    assert tensors.element_strides(np.ones((2, 3), np.float64)[:, ::2]) == torch.ones(2, 3)[:, ::2].stride()


def test_tensors_gradient_check_catches_a_wrong_gradient():
    from jax.test_util import check_grads

    from dlcore.examples import tensors

    assert tensors.gradient_check(1)["max_rel_error"] < 1e-5

    @jax.custom_vjp
    def bad_tanh(x):
        return jnp.tanh(x)

    bad_tanh.defvjp(lambda x: (jnp.tanh(x), x), lambda x, g: (g * 1.1 * (1 - jnp.tanh(x) ** 2),))
    with jax.enable_x64(True):
        x = jnp.linspace(-1, 1, 5, dtype=jnp.float64)
        with pytest.raises(AssertionError):
            check_grads(lambda x: bad_tanh(x).sum(), (x,), order=1, modes=("rev",))
