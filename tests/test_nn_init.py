"""dlcore.nn.init: fans, gains and the distributions torch.nn.init draws from."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dlcore.nn import init

KEY = jax.random.PRNGKey(0)


def test_fans_follow_torch_for_linear_and_grouped_conv():
    assert init._fans((300, 100)) == (300, 100)              # Linear kernel (in, out)
    assert init._fans((3, 3, 4, 16)) == (36, 144)            # conv kernel (kh, kw, in/groups, out)


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75 and init.calculate_gain("conv2d") == 1.0
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swishy")


@pytest.mark.parametrize("fn,std", [
    (init.glorot_uniform(), math.sqrt(2 / (400 + 600))),
    (init.glorot_normal(), math.sqrt(2 / (400 + 600))),
    (init.he_uniform(), math.sqrt(2 / 400)),
    (init.he_normal(mode="fan_out"), math.sqrt(2 / 600)),
    (init.he_normal(a=0.2, nonlinearity="leaky_relu"), math.sqrt(2 / 1.04 / 400)),
    (init.lecun_uniform(), math.sqrt(1 / 400)),
    (init.lecun_normal(), math.sqrt(1 / 400)),
    (init.torch_default(), math.sqrt(1 / (3 * 400))),
    (init.torch_uniform(400), math.sqrt(1 / (3 * 400))),
    (init.normal(0.02), 0.02),
])
def test_initializer_std(fn, std):
    w = np.asarray(fn(KEY, (400, 600)))
    assert w.shape == (400, 600) and w.dtype == np.float32
    assert abs(w.mean()) < 0.02 * std + 1e-4
    assert w.std() == pytest.approx(std, rel=0.02)


def test_uniform_bounds():
    w = np.asarray(init.glorot_uniform()(KEY, (50, 70)))
    a = math.sqrt(6 / 120)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.95 * a
    w = np.asarray(init.torch_uniform(25)(KEY, (5, 5, 1, 8)))
    assert np.abs(w).max() <= 0.2


def test_orthogonal_and_constants():
    w = np.asarray(init.orthogonal(2.0)(KEY, (64, 32)))
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(32), atol=1e-4)
    w = np.asarray(init.orthogonal()(KEY, (3, 3, 8, 16)))     # conv kernel: columns are filters
    m = w.reshape(-1, 16)
    np.testing.assert_allclose(m.T @ m, np.eye(16), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(init.constant(0.5)(KEY, (2, 3))), 0.5)
    np.testing.assert_array_equal(np.asarray(init.zeros()(KEY, (2,))), 0.0)
    assert init.xavier_uniform is init.glorot_uniform and init.kaiming_normal is init.he_normal


def test_init_keys_are_reproducible_and_distinct():
    a, b = init.InitKeys(nnx.Rngs(3)), init.InitKeys(nnx.Rngs(3))
    ka = [np.asarray(jax.random.key_data(a.params())) for _ in range(3)]
    kb = [np.asarray(jax.random.key_data(b.params())) for _ in range(3)]
    np.testing.assert_array_equal(np.stack(ka), np.stack(kb))
    assert len({k.tobytes() for k in ka}) == 3
    assert a.dropout is not None  # other streams come from the wrapped Rngs


def test_a_new_shape_compiles_nothing_once_its_distribution_has_been_drawn():
    """Eager initialisation draws float32 values in fixed-size chunks and joins them on the host: once a
    distribution has been drawn, a kernel of any new shape or size costs no XLA compilation (before, each
    power-of-two size bucket compiled a threefry program, a third of a second each; `jnp.asarray` of the host
    slice would compile a copy program for every new shape), and gives the values the traced draw gives."""
    compiles = []

    def listen(event, duration, **kw):
        # lowering happens for every program not compiled in this process, even one the persistent cache holds
        if event in ("/jax/core/compile/jaxpr_to_mlir_module_duration", "/jax/core/compile/backend_compile_duration"):
            compiles.append(event)

    draw = init.kaiming_uniform(a=math.sqrt(5))
    draw(KEY, (7, 9, 5, 3))  # compiled here if not before
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        shapes = [(3, 3, 4, 19), (5, 5, 2, 15), (700, 3), (3, 3, 64, 130)]  # 684 to 74,880 values: two chunks
        eager = [draw(KEY, s) for s in shapes]
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []
    for s, a in zip(shapes, eager):
        assert a.shape == s and a.dtype == np.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(jax.jit(draw, static_argnums=1)(KEY, s)))


@pytest.mark.parametrize("key", [KEY, jax.random.key(7)], ids=["raw key", "typed key"])
def test_chunked_draws_are_jax_randoms_own_values(key):
    """The chunks are `jax.random.uniform(key, (size,))` and `jax.random.normal` bit for bit, across chunk
    boundaries (65,536 values a chunk), eagerly and traced."""
    n = 2 * init._CHUNK + 1234
    ref_u = np.asarray(jax.random.uniform(key, (n,)))
    ref_n = np.asarray(jax.random.normal(key, (n,)))
    for draw, ref in ((init.uniform(0.0, 1.0), ref_u), (init.normal(std=1.0, mean=0.0), ref_n)):
        np.testing.assert_array_equal(np.asarray(draw(key, (n, 1)))[:, 0], ref)
        np.testing.assert_array_equal(np.asarray(jax.jit(draw, static_argnums=1)(key, (n, 1)))[:, 0], ref)
    # a scaled normal: eager and traced agree to the bit, and with the scaled jax.random draw to float32's rounding
    got = np.asarray(init.normal(std=0.02, mean=0.5)(key, (n, 1)))[:, 0]
    np.testing.assert_array_equal(got, np.asarray(jax.jit(init.normal(std=0.02, mean=0.5), static_argnums=1)(
        key, (n, 1)))[:, 0])
    np.testing.assert_allclose(got, 0.5 + 0.02 * ref_n, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype, impl", [(jnp.bfloat16, "threefry2x32"), (jnp.float32, "rbg")])
def test_other_dtypes_and_prngs_draw_power_of_two_buckets(dtype, impl):
    """Where the chunks' arithmetic is not jax.random's (another dtype, another PRNG), a draw is the head of a
    power-of-two bucket of jax.random's own values, eagerly and traced alike."""
    key = jax.random.key(3, impl=impl)
    draw = init.uniform(-1.0, 1.0)
    got = draw(key, (30, 7), dtype)
    assert got.dtype == dtype and got.shape == (30, 7)
    ref = -1.0 + 2.0 * jax.random.uniform(key, (256,), dtype)
    np.testing.assert_array_equal(np.asarray(got, np.float32).ravel(), np.asarray(ref[:210], np.float32))
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(jax.jit(draw, static_argnums=(1, 2))(key, (30, 7), dtype), np.float32))