"""A tour of tensors the JAX way: creation, indexing, views and strides, dtypes, NumPy interop, saving, and a
numerical gradient check (Antiga et al., ch. 3; Ketkar & Moolayil, ch. 2; Mastering PyTorch, ch. 1).

The books' PyTorch tensors are mutable views of a storage with an offset and strides (Antiga et al., ch. 3,
3.8 Tensors: Scenic views of storage, 3.9 Tensor metadata: Size, offset, and stride). JAX arrays are
immutable values and have no user-visible storage or strides: XLA decides the layout, and `x[1]` or
`x.T` gives a new array (which XLA avoids copying where it can). So this tour shows the book's views and
strides on NumPy arrays, which do have them (`ndarray.strides`, in bytes, divided here by the item size to
read as PyTorch's element strides), and next to each the JAX way: `x.at[i].set(v)` returns an updated copy
where PyTorch writes in place, and the original is left as it was (the book's `clone()` comes for free).

Checked against the books' printed tensors:

* Antiga et al., ch. 3: `points = [[4, 1], [5, 3], [2, 1]]`; `points[1]` starts at storage offset 2
  (Out[21]); strides (2, 1) and, transposed, (1, 2) (Out[33], Out[34]); `ones(3, 4, 5)` has strides
  (20, 5, 1), its `transpose(0, 2)` (1, 5, 20) (Out[37], Out[38]); the contiguous copy of the transpose has
  strides (3, 1) and storage 4, 5, 2, 1, 3, 1 (Out[45], Out[46]); writing through the view `points[1]`
  changes `points` (Out[28]: 10), a clone does not (Out[29]: 5);
* Ketkar & Moolayil, ch. 2: float16 holds 0.4 as 0.3999 (Listing 2-7); `index_select` (Listing 2-28);
  `masked_select` gives [2, 4, 5, 6, 8] (Listing 2-29); `gather` along dim 0 of the printed 4x4 matrix
  with index [[0, 1, 2, 3]] gives its diagonal [0.6212, 0.7763, 0.3011, 0.7185] (Listing 2-37); `scatter`
  of zeros at the same indices zeroes the diagonal and leaves the input as it was (Listing 2-38, here on
  Listing 2-37's matrix).

Dtypes: JAX's default integer and float are 32-bit (PyTorch's integer default is int64); 64-bit needs
`jax.enable_x64(True)` (a local context here). NumPy interop: `np.asarray` of a JAX array on the CPU is a
read-only view without a copy, `jnp.asarray` of a NumPy array copies. Saving: `np.save` / `np.load`, and
safetensors when installed (`dlcore.weights` saves model state dicts the same way). The gradient check
(Ketkar & Moolayil, ch. 4, numerical differentiation as the way to check gradients):
`jax.test_util.check_grads` compares forward- and reverse-mode derivatives of a small
tanh MLP's loss with central finite differences, in float64.

Run: `dlcore run tensors` or `python examples/tensors.py`.
"""

from __future__ import annotations

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads

from dlcore.runner import Context, Example

EXAMPLE = Example(
    name="tensors",
    title="creation, indexing, views and strides (NumPy) against immutable JAX arrays, dtypes, interop, saving, "
          "and a numerical gradient check",
    book="Antiga, Stevens, Huang & Viehmann, Deep Learning with PyTorch, 2nd ed.; Ketkar & Moolayil, Deep "
         "Learning with Python, 2nd ed.; Mastering PyTorch",
    section="Antiga et al. ch. 3, It starts with a tensor; Ketkar & Moolayil ch. 2, Introduction to PyTorch; "
            "Mastering PyTorch ch. 1, PyTorch modules",
    source="Antiga et al. sections 3.2-3.12 (In/Out[17]-[46]); Ketkar & Moolayil Listings 2-1 to 2-38",
    data="",
    standin="inline",
    book_figures={"second_point_offset": 2, "points_stride_0": 2, "points_stride_1": 1,
                  "points_t_stride_0": 1, "points_t_stride_1": 2,
                  "transpose_t_stride_0": 1, "transpose_t_stride_1": 5, "transpose_t_stride_2": 20,
                  "contiguous_stride_0": 3, "contiguous_stride_1": 1,
                  "view_write_points_1_0": 10.0, "clone_keeps_points_1_0": 5.0,
                  "float16_of_0_4": 0.3999, "masked_select_sum": 25.0, "gather_diagonal_sum": 2.4171},
)

POINTS = [[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]  # Antiga et al., ch. 3
# Ketkar & Moolayil, Listing 2-37: the torch.rand(4, 4) the book printed, to 4 decimals
GATHER_A = [[0.6212, 0.7720, 0.8867, 0.4805], [0.0323, 0.7763, 0.2295, 0.8778],
            [0.5836, 0.3244, 0.3011, 0.5630], [0.6748, 0.4487, 0.7052, 0.7185]]


def element_strides(a: np.ndarray) -> tuple[int, ...]:
    """A NumPy array's strides in elements, as PyTorch's `stride()` reads (NumPy counts bytes)."""
    return tuple(s // a.itemsize for s in a.strides)


def storage_offset(view: np.ndarray, base: np.ndarray) -> int:
    """Where `view`'s first element sits in `base`'s buffer, in elements: PyTorch's `storage_offset()`."""
    return (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize


def views_and_strides() -> dict:
    """Antiga et al., 3.8-3.9, on NumPy (which has views and strides) and the JAX equivalents.

    Returns:
        The figures by name: offsets and element strides of the book's views, the storage order of the
        contiguous copy, and what writing through a view (NumPy) or `.at[].set` (JAX) does to the original.
    """
    points = np.array(POINTS, np.float32)
    second_point = points[1]  # a view: same buffer, offset 2
    some_t = np.ones((3, 4, 5), np.float32)
    transpose_t = some_t.transpose(2, 1, 0)  # torch's transpose(0, 2)
    points_t = points.T
    contiguous = np.ascontiguousarray(points_t)
    out = {"second_point_offset": storage_offset(second_point, points),
           "points_strides": element_strides(points), "points_t_strides": element_strides(points_t),
           "shares_buffer": np.shares_memory(points, points_t),
           "some_t_strides": element_strides(some_t), "transpose_t_strides": element_strides(transpose_t),
           "points_t_contiguous": points_t.flags["C_CONTIGUOUS"],
           "contiguous_strides": element_strides(contiguous), "contiguous_storage": contiguous.ravel().tolist()}
    second_point[0] = 10.0  # writes into points, as in the book's Out[28]
    out["view_write_points_1_0"] = float(points[1, 0])
    # JAX: no views to write through. .at[].set returns a new array; the original keeps its 5.
    jpoints = jnp.asarray(POINTS)
    updated = jpoints.at[1, 0].set(10.0)
    out["jax_updated_1_0"], out["clone_keeps_points_1_0"] = float(updated[1, 0]), float(jpoints[1, 0])
    return out


def indexing() -> dict:
    """Ketkar & Moolayil, Listings 2-23 to 2-38, in jax.numpy. Returns the results by name."""
    a = jnp.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    index = jnp.array([0, 1])
    mask = jnp.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    g = jnp.array(GATHER_A)
    diagonal_index = jnp.array([[0, 1, 2, 3]])
    rows = jnp.arange(4)
    return {
        "cat_0": jnp.concatenate([jnp.zeros((2, 2))] * 3, 0).shape,  # (6, 2)
        "cat_1": jnp.concatenate([jnp.zeros((2, 2))] * 3, 1).shape,  # (2, 6)
        "index_select_0": jnp.take(a, index, axis=0),  # rows 0, 1
        "index_select_1": jnp.take(a, index, axis=1),  # columns 0, 1
        # a boolean mask gives an array whose size depends on the data: fine eagerly, not under jit
        # (there, jnp.where(mask, a, 0) keeps the shape)
        "masked_select": a[mask],
        "gather_0": jnp.take_along_axis(g, diagonal_index, axis=0),  # torch's a.gather(0, b)
        "gather_1": jnp.take_along_axis(g, diagonal_index.T, axis=1),  # a.gather(1, d)
        "scatter_0": g.at[diagonal_index[0], rows].set(0.0),  # a.scatter(0, index, zeros): a new array
        "scatter_input": g,
        "unsqueeze": jnp.asarray(POINTS)[None].shape,  # (1, 3, 2)
        "squeeze": jnp.zeros((2, 1, 2, 1)).squeeze().shape,  # (2, 2)
        # Antiga et al. 3.4: a (2, 3, 5, 5) batch times (3, 1, 1) channel weights, summed over channels
        "broadcast_gray": (jnp.ones((2, 3, 5, 5)) * jnp.array([0.2126, 0.7152, 0.0722])[:, None, None]).sum(-3),
    }


def dtypes() -> dict:
    """Default and explicit dtypes; float64 under a local x64 context."""
    out = {"default_int": str(jnp.array([2, 2]).dtype), "default_float": str(jnp.array([1.0]).dtype),
           "float16_of_0_4": float(jnp.array([0.1, 0.2, 0.3, 0.4], jnp.float16)[3]),
           "short": str(jnp.array([[1, 2], [3, 4]], jnp.int16).dtype)}
    with jax.enable_x64(True):
        out["float64"] = str(jnp.zeros(5, jnp.float64).dtype)
        out["default_int_x64"] = str(jnp.array([2, 2]).dtype)
    return out


def interop_and_saving(folder: str) -> dict:
    """NumPy in and out, np.save / np.load and safetensors (when installed) round trips in `folder`."""
    x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
    view = np.asarray(x)  # no copy on the CPU, and read-only: JAX arrays are immutable
    source = np.array([1, 2, 3, 4, 5])
    copied = jnp.asarray(source)
    source[0] = 100  # does not reach the JAX array
    path = os.path.join(folder, "points.npy")
    np.save(path, np.asarray(x))
    out = {"numpy_view_readonly": not view.flags.writeable, "jnp_copy_first": int(copied[0]),
           "npy_roundtrip": bool(np.array_equal(np.load(path), x))}
    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:
        out["safetensors_roundtrip"] = None
    else:
        path = os.path.join(folder, "points.safetensors")
        save_file({"points": np.asarray(x)}, path)
        out["safetensors_roundtrip"] = bool(np.array_equal(load_file(path)["points"], x))
    return out


def mlp_loss(params: dict, x, y):
    """A small tanh MLP's mean squared error. Shapes: x (N, 3), y (N, 1); params W1 (3, 4), b1 (4,), W2 (4, 1),
    b2 (1,)."""
    hidden = jnp.tanh(x @ params["W1"] + params["b1"])
    return jnp.mean((hidden @ params["W2"] + params["b2"] - y) ** 2)


def gradient_check(seed: int = 0) -> dict:
    """`jax.test_util.check_grads` on `mlp_loss`, and autodiff against a central difference, in float64.

    Returns:
        `check_grads` (True when it passed; it raises otherwise) and `max_rel_error`, the largest relative
        difference between `jax.grad` and central differences (h = 1e-6) over every parameter.
    """
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(seed), 6)
        params = {"W1": jax.random.normal(k[0], (3, 4), jnp.float64), "b1": jax.random.normal(k[1], (4,), jnp.float64),
                  "W2": jax.random.normal(k[2], (4, 1), jnp.float64), "b2": jax.random.normal(k[3], (1,), jnp.float64)}
        x = jax.random.normal(k[4], (8, 3), jnp.float64)
        y = jax.random.normal(k[5], (8, 1), jnp.float64)
        loss = jax.jit(lambda p: mlp_loss(p, x, y))
        check_grads(loss, (params,), order=1, modes=("fwd", "rev"))
        flat, unravel = ravel_pytree(params)
        auto = ravel_pytree(jax.grad(loss)(params))[0]
        h = 1e-6
        central = jax.jit(jax.vmap(lambda e: (loss(unravel(flat + h * e)) - loss(unravel(flat - h * e))) / (2 * h)))
        numeric = central(jnp.eye(flat.size, dtype=flat.dtype))  # one row per parameter
        rel = jnp.abs(auto - numeric) / jnp.maximum(jnp.abs(auto), 1e-8)
        return {"check_grads": True, "max_rel_error": float(rel.max()), "n_params": int(flat.size)}


def run(ctx: Context) -> dict[str, float]:
    ctx.inline("inline: the books' small printed tensors")
    if ctx.epochs is not None:
        ctx.print("--epochs has no effect: this tour trains nothing")
    v = views_and_strides()
    ctx.print(f"points[1]: storage offset {v['second_point_offset']}; strides: points {v['points_strides']}, "
              f"points.T {v['points_t_strides']} (same buffer: {v['shares_buffer']}); ones(3, 4, 5) "
              f"{v['some_t_strides']}, transposed {v['transpose_t_strides']}")
    ctx.print(f"points.T contiguous: {v['points_t_contiguous']}; its contiguous copy: strides "
              f"{v['contiguous_strides']}, storage {v['contiguous_storage']}")
    ctx.print(f"NumPy: writing 10 through the view points[1] makes points[1, 0] = {v['view_write_points_1_0']}; "
              f"JAX: points.at[1, 0].set(10) gives a new array ({v['jax_updated_1_0']}), points keeps "
              f"{v['clone_keeps_points_1_0']}")
    i = indexing()
    def show(a):
        return "[" + ", ".join(f"{x:g}" for x in np.asarray(a, np.float64).ravel().round(4)) + "]"

    ctx.print(f"masked_select {show(i['masked_select'])}; gather along 0 {show(i['gather_0'])}; scatter of zeros: "
              f"diagonal {show(np.diag(i['scatter_0']))}, the input's diagonal kept "
              f"{show(np.diag(i['scatter_input']))}")
    d = dtypes()
    ctx.print(f"dtypes: integers {d['default_int']} ({d['default_int_x64']} under x64; PyTorch: int64), floats "
              f"{d['default_float']}, float64 needs x64 ({d['float64']}; without it JAX truncates to float32); "
              f"float16 holds 0.4 as {d['float16_of_0_4']:.8f}")
    with tempfile.TemporaryDirectory() as folder:
        s = interop_and_saving(folder)
    ctx.print(f"NumPy interop: np.asarray(jax array) is read-only: {s['numpy_view_readonly']}; jnp.asarray copies "
              f"(first element still {s['jnp_copy_first']}); np.save/np.load round trip: {s['npy_roundtrip']}; "
              f"safetensors: {'not installed' if s['safetensors_roundtrip'] is None else s['safetensors_roundtrip']}")
    g = gradient_check(ctx.seed)
    ctx.print(f"gradient check of a 3-4-1 tanh MLP ({g['n_params']} parameters, float64): check_grads passed (forward "
              f"and reverse mode); autodiff vs central differences: max relative error {g['max_rel_error']:.2e}")
    names = ("points", "points_t", "transpose_t", "contiguous")
    strides = {f"{n}_stride_{k}": s_ for n in names for k, s_ in enumerate(v[f"{n}_strides"])
               if f"{n}_stride_{k}" in EXAMPLE.book_figures}
    return {"second_point_offset": v["second_point_offset"], **strides,
            "view_write_points_1_0": v["view_write_points_1_0"], "clone_keeps_points_1_0": v["clone_keeps_points_1_0"],
            "float16_of_0_4": d["float16_of_0_4"], "masked_select_sum": float(i["masked_select"].sum()),
            "gather_diagonal_sum": float(i["gather_0"].sum()), "npy_roundtrip": float(s["npy_roundtrip"]),
            "grad_check_max_rel_error": g["max_rel_error"]}


if __name__ == "__main__":
    from dlcore.runner import main_for

    main_for(EXAMPLE.name)
