"""Automatic differentiation of f = (x + y) * z at (1, -2, 3) (Ketkar & Moolayil, ch. 4).

The book (Listing 4-1) gets f = -3 and gradients df/dx = 3, df/dy = 3, df/dz = -1 from
`f.backward()`; `jax.grad` gives them as a function of the inputs.

Run: `dlcore run autograd` or `python examples/autograd.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="autograd",
    title="reverse-mode gradients of (x + y) * z",
    book="Ketkar & Moolayil, Deep Learning with Python, 2nd ed.",
    section="ch. 4, Automatic Differentiation in Deep Learning, What Is Autograd?",
    source="Listing 4-1",
    data="",
    standin="inline",
    book_figures={"f": -3.0, "df_dx": 3.0, "df_dy": 3.0, "df_dz": -1.0},
)


def f(x, y, z):
    """The book's function: a = x + y, f = z * a."""
    return z * (x + y)


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: x=1, y=-2, z=3")
    x, y, z = jnp.float32(1.0), jnp.float32(-2.0), jnp.float32(3.0)
    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(x, y, z)
    ctx.print(f"f = {float(value)}, gradients {[float(g) for g in grads]}")
    return {"f": float(value), "df_dx": float(grads[0]), "df_dy": float(grads[1]), "df_dz": float(grads[2])}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
