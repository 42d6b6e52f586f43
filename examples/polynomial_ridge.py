"""Polynomial curve fitting and ridge regression by least squares (Ketkar & Moolayil, ch. 1).

The book's recipe (ch. 1, Generalization vs. Rote Learning, Listings 1-1 to 1-4; Regularization,
Listing 1-5): 100 points x = linspace(-1, 1, 100), y = 2 + x + 2x^2 + N(0, 0.1) noise; the first 80 are
seen (train), the last 20 unseen (test, an extrapolation to x > 0.6). Least squares on the powers
[x^0, ..., x^d] by the normal equations, beta = (X^T X)^-1 X^T y, for degrees 1, 2 and 8; then ridge
regression, beta = (X^T X + lambda I)^-1 X^T y, on the 80 powers x^0..x^79 (the book's `degree = 80`), for
100 values of lambda in linspace(0.01, 0.99, 100) (Figure 1-6).

The data: Listing 1-5 draws the noise with `np.random.seed(20); np.random.normal(0, 0.1, 100)`; this script
draws it with NumPy's same generator and seed, so the ridge sweep is the book's exactly (the book prints
only its plot). Listing 1-1 draws its noise without a seed, so the book's figures for degrees 1, 2 and 8
(train 3.55 / 1.01 / 0.84, test 7.56 / 0.43 / 35.44) are one draw among many; here they use the seeded
data too and come out near the book's (the degree-8 test figure, an extrapolation, varies most).

The book's "RMSE" is sqrt(sum of squared errors), without dividing by the number of points; its figures
are reported under that name (`*_root_sse`) beside the true RMSE, sqrt(mean of squared errors).

Float64: X^T X of degree-8 powers on [-1, 0.6] has a condition number near 1e8, beyond float32's 7 digits,
so the fits run in JAX under a local `jax.enable_x64(True)` context (NumPy's float64 in the book). The 100
ridge fits are one `jax.vmap` over lambda. A figure of the fits and of the sweep is saved when matplotlib
is installed.

Run: `dlcore run polynomial_ridge` or `python examples/polynomial_ridge.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dlcore.checks import check_float, check_int
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="polynomial_ridge",
    title="least-squares polynomial fits of degree 1, 2 and 8, and ridge regression on 80 powers",
    book="Ketkar & Moolayil, Deep Learning with Python, 2nd ed.",
    section="ch. 1, Introduction to Machine Learning and Deep Learning, Generalization vs. Rote Learning; "
            "Regularization",
    source="Listings 1-1 to 1-5, Figures 1-2 to 1-6",
    data="",
    standin="inline",
    book_figures={"deg1_train_root_sse": 3.55, "deg1_test_root_sse": 7.56,
                  "deg2_train_root_sse": 1.01, "deg2_test_root_sse": 0.43,
                  "deg8_train_root_sse": 0.84, "deg8_test_root_sse": 35.44},
)

N_TRAIN = 80  # the book's seen points: x[0:80]


def make_data(seed: int = 20, n: int = 100):
    """The book's toy data: x = linspace(-1, 1, n), y = 2 + x + 2x^2 + N(0, 0.1).

    The noise comes from NumPy's legacy generator (`np.random.seed(seed)` then `np.random.normal`), the
    stream the book's Listing 1-5 draws, without touching NumPy's global state.

    Args:
        seed: the NumPy seed (the book's 20).
        n: the number of points (the book's 100).

    Returns:
        (x, y, signal): float64 arrays of shape (n,).
    """
    check_int(n, "n", low=2, who="make_data")
    x = np.linspace(-1, 1, n)
    signal = 2 + x + 2 * x * x
    noise = np.random.RandomState(seed).normal(0, 0.1, n)
    return x, signal + noise, signal


def powers(x, n_coefficients: int):
    """The design matrix [x^0, x^1, ..., x^(n_coefficients - 1)]. Shapes: (N,) -> (N, n_coefficients)."""
    return jnp.vander(jnp.asarray(x), n_coefficients, increasing=True)


@jax.jit
def ridge_coefficients(X, y, lambda_reg):
    """beta solving (X^T X + lambda I) beta = X^T y: least squares for lambda = 0, ridge regression above.

    The book inverts X^T X + lambda I; solving the system gives the same beta with less rounding.

    Args:
        X: (N, K) design matrix.
        y: (N,) targets.
        lambda_reg: () the penalty on ||beta||^2.

    Returns:
        (K,) coefficients, beta[i] multiplying x^i.
    """
    gram = X.T @ X + lambda_reg * jnp.eye(X.shape[1], dtype=X.dtype)
    return jnp.linalg.solve(gram, X.T @ y)


def root_sse(y, predicted):
    """The book's "RMSE": sqrt(sum((y - predicted)^2)), not divided by the number of points. (N,) -> ()."""
    return jnp.sqrt(jnp.sum((y - predicted) ** 2))


def rmse(y, predicted):
    """The root mean squared error sqrt(mean((y - predicted)^2)). (N,) -> ()."""
    return jnp.sqrt(jnp.mean((y - predicted) ** 2))


def _check_points(x, y, n_train, who):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{who}: x and y must be 1-D and of one length, got shapes {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{who}: x or y holds NaN or infinite values")
    check_int(n_train, "n_train", low=1, high=len(x) - 1, who=who)


def fit_polynomial(x, y, degree: int, lambda_reg: float = 0.0, n_train: int = N_TRAIN):
    """Fit a polynomial of `degree` to the first `n_train` points, predict every point.

    Args:
        x, y: (N,) float64 points.
        degree: the polynomial's degree (degree + 1 coefficients).
        lambda_reg: the ridge penalty (0: least squares).
        n_train: the first n_train points are the training set, the rest the test set.

    Returns:
        (beta, predicted): (degree + 1,) coefficients and (N,) predictions, NumPy float64.
    """
    check_int(degree, "degree", low=0, who="fit_polynomial")
    check_float(lambda_reg, "lambda_reg", low=0, who="fit_polynomial")
    _check_points(x, y, n_train, "fit_polynomial")
    with jax.enable_x64(True):
        X = powers(np.asarray(x, np.float64), degree + 1)
        beta = ridge_coefficients(X[:n_train], jnp.asarray(y[:n_train], jnp.float64), jnp.float64(lambda_reg))
        return np.asarray(beta), np.asarray(X @ beta)


@jax.jit(static_argnames="n_train")
def _ridge_sweep(X_train, y_train, X, y, lambdas, n_train):
    """Train and test root-SSE for every lambda: one vmapped solve. Shapes: (L,) lambdas -> (L,), (L,)."""
    def one(lambda_reg):
        predicted = X @ ridge_coefficients(X_train, y_train, lambda_reg)
        return root_sse(y[:n_train], predicted[:n_train]), root_sse(y[n_train:], predicted[n_train:])

    return jax.vmap(one)(lambdas)


def ridge_sweep(x, y, n_coefficients: int, lambdas, n_train: int = N_TRAIN):
    """The book's Listing 1-5: ridge fits on x^0..x^(n_coefficients-1) for each lambda.

    Returns:
        (train, test): (L,) NumPy arrays of the book's root-SSE on the training and the test points.
    """
    check_int(n_coefficients, "n_coefficients", low=1, who="ridge_sweep")
    _check_points(x, y, n_train, "ridge_sweep")
    lambdas = np.asarray(lambdas, np.float64)
    if lambdas.ndim != 1 or lambdas.size == 0 or not np.all(np.isfinite(lambdas)) or np.any(lambdas < 0):
        raise ValueError(f"ridge_sweep: lambdas must be a non-empty 1-D array of finite numbers >= 0, got {lambdas!r}")
    with jax.enable_x64(True):
        X = powers(np.asarray(x, np.float64), n_coefficients)
        y = jnp.asarray(y, jnp.float64)
        train, test = _ridge_sweep(X[:n_train], y[:n_train], X, y, jnp.asarray(lambdas), n_train)
        return np.asarray(train), np.asarray(test)


def _draw(plt, x, y, fits, lambdas, train, test):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(x, y, "k.", label="data")
    for degree, predicted in fits.items():
        ax1.plot(x, predicted, label=f"degree {degree}")
    ax1.axvline(x[N_TRAIN - 1], color="gray", linestyle=":")
    ax1.set(xlabel="x", ylabel="y", ylim=(0, 7), title="least squares (train | test)")
    ax1.legend(loc=2)
    ax2.plot(lambdas, train, label="Train")
    ax2.plot(lambdas, test, label="Test")
    ax2.set(xlabel=r"$\lambda$", ylabel="RMSE (the book's: root of the sum of squares)",
            title="ridge, 80 coefficients")
    ax2.legend(loc=2)
    fig.tight_layout()
    return fig


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: y = 2 + x + 2x^2 + N(0, 0.1) at 100 points of [-1, 1], NumPy seed 20")
    if ctx.epochs is not None:
        ctx.print("--epochs has no effect: every fit here is a closed-form solve, not an iterative training run")
    x, y, _ = make_data(20)
    metrics, fits = {}, {}
    book = EXAMPLE.book_figures
    ctx.print(f"{'degree':>6}  {'train root-SSE (book)':>22}  {'test root-SSE (book)':>21}  "
              f"{'train RMSE':>10}  {'test RMSE':>9}")
    for degree in (1, 2, 8):
        _, predicted = fit_polynomial(x, y, degree)
        fits[degree] = predicted
        tr, te = float(root_sse(y[:N_TRAIN], predicted[:N_TRAIN])), float(root_sse(y[N_TRAIN:], predicted[N_TRAIN:]))
        tr_rmse, te_rmse = float(rmse(y[:N_TRAIN], predicted[:N_TRAIN])), float(rmse(y[N_TRAIN:], predicted[N_TRAIN:]))
        ctx.print(f"{degree:>6}  {tr:>13.2f} ({book[f'deg{degree}_train_root_sse']:5.2f})  "
                  f"{te:>12.2f} ({book[f'deg{degree}_test_root_sse']:5.2f})  {tr_rmse:>10.4f}  {te_rmse:>9.4f}")
        metrics.update({f"deg{degree}_train_root_sse": tr, f"deg{degree}_test_root_sse": te,
                        f"deg{degree}_train_rmse": tr_rmse, f"deg{degree}_test_rmse": te_rmse})

    lambdas = np.linspace(0.01, 0.99, 100)
    train, test = ridge_sweep(x, y, 80, lambdas)
    best = int(np.argmin(test))
    ctx.print(f"ridge on x^0..x^79: lambda 0.01 train {train[0]:.4f} test {test[0]:.4f}; lambda 0.99 train "
              f"{train[-1]:.4f} test {test[-1]:.4f}; lowest test {test[best]:.4f} at lambda {lambdas[best]:.4f}")
    metrics.update(ridge_train_root_sse_first=float(train[0]), ridge_test_root_sse_first=float(test[0]),
                   ridge_train_root_sse_last=float(train[-1]), ridge_test_root_sse_last=float(test[-1]),
                   ridge_best_lambda=float(lambdas[best]), ridge_best_test_root_sse=float(test[best]))
    ctx.save_plot(EXAMPLE.name, lambda plt: _draw(plt, x, y, fits, lambdas, train, test))
    return metrics


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
