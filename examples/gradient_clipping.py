"""Gradient clipping by value and by norm on the vector [0.9, 100.0] (Géron, Hands-On ML, ch. 11).

The book (ch. 11, Gradient Clipping): clipping by value 1.0 gives [0.9, 1.0], which turns the vector toward
the diagonal; clipping by norm 1.0 gives [0.00899964, 0.9999595], which keeps its direction.

Run: `dlcore run gradient_clipping` or `python examples/gradient_clipping.py`.
"""

from __future__ import annotations

import jax.numpy as jnp

from dlcore import optim
from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="gradient_clipping",
    title="clip_grad_value_ and clip_grad_norm_ on [0.9, 100.0]",
    book="Géron, Hands-On Machine Learning with Scikit-Learn and PyTorch",
    section="ch. 11, Training Deep Neural Networks, Gradient Clipping",
    source="the gradient vector [0.9, 100.0] clipped by value and by norm",
    data="",
    standin="inline",
    book_figures={"by_value_0": 0.9, "by_value_1": 1.0, "by_norm_0": 0.00899964, "by_norm_1": 0.9999595},
)


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: the gradient [0.9, 100.0]")
    g = {"w": jnp.array([0.9, 100.0], jnp.float32)}
    by_value = optim.clip_by_value(g, 1.0)["w"]
    by_norm = optim.clip_by_norm(g, 1.0)["w"]
    ctx.print(f"by value: {by_value.tolist()}   by norm: {by_norm.tolist()}")
    return {"by_value_0": float(by_value[0]), "by_value_1": float(by_value[1]),
            "by_norm_0": float(by_norm[0]), "by_norm_1": float(by_norm[1])}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
