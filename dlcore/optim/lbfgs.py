"""L-BFGS: a host-driven optimizer, as torch.optim.LBFGS is (it evaluates the function itself).

References:
    Nocedal & Wright, "Numerical Optimization" (2006), algorithms 3.5, 3.6 and 7.4;
    the ``torch.optim.LBFGS`` documentation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dlcore.checks import check_choice, check_int
from dlcore.optim._checks import _check

__all__ = ["LBFGS", "lbfgs_minimize"]


def _cubic_min(x1, f1, g1, x2, f2, g2, lo=None, hi=None) -> float:
    """Minimiser of the cubic through (x1, f1, slope g1) and (x2, f2, slope g2), clipped to [lo, hi].

    Nocedal & Wright, "Numerical Optimization" (2006), eq. 3.59; the midpoint when the cubic has no
    real minimiser. Default bounds: the interval between x1 and x2.
    """
    if lo is None:
        lo, hi = min(x1, x2), max(x1, x2)
    theta = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2)
    disc = theta * theta - g1 * g2
    if disc < 0:
        return (lo + hi) / 2.0
    root = math.sqrt(disc)
    if x1 <= x2:
        x = x2 - (x2 - x1) * (g2 + root - theta) / (g2 - g1 + 2.0 * root)
    else:
        x = x1 - (x1 - x2) * (g1 + root - theta) / (g1 - g2 + 2.0 * root)
    return min(max(x, lo), hi)


class LBFGS:
    """L-BFGS with torch.optim.LBFGS's arguments, defaults and iteration, on a JAX function.

    ``step(fn, params)`` is PyTorch's ``optimizer.step(closure)``: up to ``max_iter`` iterations
    (``max_eval`` function evaluations) of limited-memory BFGS from ``params``, keeping the curvature
    history across calls. Without ``line_search_fn`` each iteration moves by a fixed step (``lr``; the
    very first by ``min(1, 1 / sum|g|) * lr``); with ``line_search_fn="strong_wolfe"`` the step comes
    from a bracketing line search with cubic interpolation that stops at the strong Wolfe conditions
    (c1 = 1e-4, c2 = 0.9), written from Nocedal & Wright's algorithms 3.5-3.6 with PyTorch's choices
    (bracket safeguards, evaluation budget). Both variants follow PyTorch's trajectory (tested).

    It runs on the host, one jitted ``value_and_grad`` per evaluation (the parameters are raveled to one
    vector), like PyTorch's Python loop: style transfer optimises one image this way (Subramanian, Deep
    Learning with PyTorch, ch. 7, Neural style transfer, Creating the optimizer). optax.lbfgs is a
    different algorithm (its own line search and scaling), hence this class.

    Args:
        lr: Learning rate (> 0).
        max_iter: Iterations per ``step``.
        max_eval: Function evaluations per ``step`` (default ``max_iter * 5 // 4``).
        tolerance_grad: Stop when ``max |g| <= tolerance_grad``.
        tolerance_change: Stop when the step or the loss change is below this.
        history_size: Curvature pairs kept.
        line_search_fn: None or ``"strong_wolfe"``.

    Example:
        >>> opt = LBFGS(line_search_fn="strong_wolfe")
        >>> for _ in range(5):
        ...     params, loss = opt.step(loss_fn, params)
    """

    def __init__(self, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None):
        _check("lr", lr, who="LBFGS")
        max_iter = check_int(max_iter, "max_iter", low=1, who="LBFGS")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        max_eval = check_int(max_eval, "max_eval", low=1, who="LBFGS")
        _check("tolerance_grad", tolerance_grad, who="LBFGS")
        _check("tolerance_change", tolerance_change, who="LBFGS")
        history_size = check_int(history_size, "history_size", low=1, who="LBFGS")
        check_choice(line_search_fn, "line_search_fn", (None, "strong_wolfe"), who="LBFGS")
        self.lr, self.max_iter, self.max_eval = float(lr), max_iter, max_eval
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change
        self.history_size, self.line_search_fn = history_size, line_search_fn
        self.state: dict[str, Any] = {"func_evals": 0, "n_iter": 0}
        self._compiled: dict[Any, Any] = {}

    def _value_and_grad(self, fn, unravel, value_and_grad):
        if value_and_grad is not None:
            def evaluate(flat):
                value, grads = value_and_grad(unravel(flat))
                return float(value), ravel_pytree(grads)[0]

            return evaluate
        key = (fn, unravel)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(jax.value_and_grad(lambda flat: fn(unravel(flat))))
        vg = self._compiled[key]

        def evaluate(flat):
            value, grad = vg(flat)
            return float(value), grad

        return evaluate

    def step(self, fn: Callable[[Any], jax.Array] | None, params: Any, *,
             value_and_grad: Callable[[Any], tuple[Any, Any]] | None = None) -> tuple[Any, float]:
        """Runs one PyTorch ``LBFGS.step``: up to ``max_iter`` iterations on ``fn`` from ``params``.

        Args:
            fn: Scalar loss of the parameters (a pure JAX function, differentiated and jitted here).
            params: A pytree of float arrays.
            value_and_grad: Instead of ``fn``: a function ``params -> (loss, grads)`` called as is (e.g.
                one that evaluates on the host); grads has the structure of ``params``.

        Returns:
            ``(new params, loss at params)`` (PyTorch's step returns the loss before the step).
        """
        if (fn is None) == (value_and_grad is None):
            raise ValueError("LBFGS.step: give fn or value_and_grad, exactly one.")
        x, unravel = ravel_pytree(params)
        evaluate = self._value_and_grad(fn, unravel, value_and_grad)
        st = self.state
        loss, g = evaluate(x)
        orig_loss = loss
        evals = 1
        st["func_evals"] += 1
        if float(jnp.max(jnp.abs(g))) <= self.tolerance_grad:
            return unravel(x), orig_loss
        d, t = st.get("d"), st.get("t")
        s_hist, y_hist, rho = st.get("old_stps"), st.get("old_dirs"), st.get("ro")
        h_diag, g_prev, loss_prev = st.get("H_diag"), st.get("prev_flat_grad"), st.get("prev_loss")
        it = 0
        while it < self.max_iter:
            it += 1
            st["n_iter"] += 1
            if st["n_iter"] == 1:
                d, s_hist, y_hist, rho, h_diag = -g, [], [], [], 1.0
            else:
                y = g - g_prev
                s = d * t
                ys = jnp.dot(y, s)
                if float(ys) > 1e-10:
                    if len(y_hist) == self.history_size:
                        y_hist.pop(0), s_hist.pop(0), rho.pop(0)
                    y_hist.append(y), s_hist.append(s), rho.append(1.0 / ys)
                    h_diag = ys / jnp.dot(y, y)
                d = self._two_loop(-g, s_hist, y_hist, rho, h_diag)
            g_prev, loss_prev = g, loss
            t = (min(1.0, 1.0 / float(jnp.sum(jnp.abs(g)))) if st["n_iter"] == 1 else 1.0) * self.lr
            gtd = float(jnp.dot(g, d))
            if gtd > -self.tolerance_change:
                break
            ls_evals = 0
            if self.line_search_fn == "strong_wolfe":
                loss, g, t, ls_evals = self._strong_wolfe(evaluate, x, t, d, loss, g, gtd,
                                                          max_ls=self.max_eval - evals)
                x = x + t * d
            else:
                x = x + t * d
                if it != self.max_iter:  # PyTorch skips the last re-evaluation
                    loss, g = evaluate(x)
                    ls_evals = 1
            evals += ls_evals
            st["func_evals"] += ls_evals
            if it == self.max_iter or evals >= self.max_eval:
                break
            if float(jnp.max(jnp.abs(g))) <= self.tolerance_grad:
                break
            if float(jnp.max(jnp.abs(d * t))) <= self.tolerance_change or abs(loss - loss_prev) < self.tolerance_change:
                break
        st.update(d=d, t=t, old_stps=s_hist, old_dirs=y_hist, ro=rho, H_diag=h_diag, prev_flat_grad=g_prev,
                  prev_loss=loss_prev)
        return unravel(x), orig_loss

    @staticmethod
    def _two_loop(q, s_hist, y_hist, rho, h_diag):
        """The L-BFGS two-loop recursion: ``H @ q`` with the stored curvature pairs (N&W algorithm 7.4)."""
        alpha = [None] * len(s_hist)
        for i in range(len(s_hist) - 1, -1, -1):
            alpha[i] = jnp.dot(s_hist[i], q) * rho[i]
            q = q - alpha[i] * y_hist[i]
        r = q * h_diag
        for i in range(len(s_hist)):
            beta = jnp.dot(y_hist[i], r) * rho[i]
            r = r + (alpha[i] - beta) * s_hist[i]
        return r

    def _strong_wolfe(self, evaluate, x, t, d, f0, g0, gtd0, c1=1e-4, c2=0.9, max_ls=25):
        """Step length satisfying the strong Wolfe conditions: bracketing, then zoom (N&W alg. 3.5, 3.6).

        Returns ``(f, g, t, evaluations)`` at the accepted step.
        """
        d_max = float(jnp.max(jnp.abs(d)))
        f, g = evaluate(x + t * d)
        evals, ls_iter = 1, 0
        gtd = float(jnp.dot(g, d))
        t_old, f_old, g_old, gtd_old = 0.0, f0, g0, gtd0
        # Phase 1: grow the step until an interval is known to contain an acceptable point.
        bracket = None
        while ls_iter < max_ls:
            if f > f0 + c1 * t * gtd0 or (ls_iter > 1 and f >= f_old):
                bracket = [[t_old, f_old, g_old, gtd_old], [t, f, g, gtd]]
                break
            if abs(gtd) <= -c2 * gtd0:
                return f, g, t, evals
            if gtd >= 0:
                bracket = [[t_old, f_old, g_old, gtd_old], [t, f, g, gtd]]
                break
            t_next = _cubic_min(t_old, f_old, gtd_old, t, f, gtd, lo=t + 0.01 * (t - t_old), hi=10 * t)
            t_old, f_old, g_old, gtd_old = t, f, g, gtd
            t = t_next
            f, g = evaluate(x + t * d)
            evals += 1
            gtd = float(jnp.dot(g, d))
            ls_iter += 1
        if bracket is None:  # budget spent while growing: keep the better of the start and the last point
            points = [[0.0, f0, g0, gtd0], [t, f, g, gtd]]
            best = points[0] if points[0][1] <= points[1][1] else points[1]
            return best[1], best[2], best[0], evals
        # Phase 2: shrink the bracket [lo, hi] (lo has the lower value) until the conditions hold.
        lo, hi = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
        stalled = False
        while ls_iter < max_ls:
            a, b = bracket[0][0], bracket[1][0]
            if abs(b - a) * d_max < self.tolerance_change:
                break
            t = _cubic_min(a, bracket[0][1], bracket[0][3], b, bracket[1][1], bracket[1][3])
            top, bottom = max(a, b), min(a, b)
            margin = 0.1 * (top - bottom)
            if min(top - t, t - bottom) < margin:  # too close to an end: move inside, or note it
                if stalled or t >= top or t <= bottom:
                    t = top - margin if abs(t - top) < abs(t - bottom) else bottom + margin
                    stalled = False
                else:
                    stalled = True
            else:
                stalled = False
            f, g = evaluate(x + t * d)
            evals += 1
            gtd = float(jnp.dot(g, d))
            ls_iter += 1
            if f > f0 + c1 * t * gtd0 or f >= bracket[lo][1]:
                bracket[hi] = [t, f, g, gtd]
                lo, hi = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
            else:
                if abs(gtd) <= -c2 * gtd0:
                    bracket[lo] = [t, f, g, gtd]
                    break
                if gtd * (bracket[hi][0] - bracket[lo][0]) >= 0:
                    bracket[hi] = list(bracket[lo])
                bracket[lo] = [t, f, g, gtd]
        t, f, g, _ = bracket[lo]
        return f, g, t, evals


def lbfgs_minimize(fn: Callable[[Any], jax.Array], params: Any, steps: int = 1,
                   **kwargs: Any) -> tuple[Any, list[float]]:
    """Runs ``steps`` calls of ``LBFGS(**kwargs).step(fn, ·)`` from ``params``.

    Args:
        fn: Scalar loss of the parameters.
        params: Initial pytree of float arrays.
        steps: Number of PyTorch ``optimizer.step(closure)`` calls.
        **kwargs: ``LBFGS`` arguments (lr, max_iter, ..., line_search_fn).

    Returns:
        ``(final params, [loss at the start of each step])``.
    """
    opt = LBFGS(**kwargs)
    losses = []
    for _ in range(steps):
        params, loss = opt.step(fn, params)
        losses.append(loss)
    return params, losses
