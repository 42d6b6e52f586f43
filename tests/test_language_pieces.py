"""Pieces of the language-model chapters: the streaming perplexity and weight tying through Embedding.attend."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import metrics


def test_perplexity_is_exp_of_the_mean_token_nll_over_the_whole_set():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (4, 5))
    targets[0, 3:] = -100  # padding
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, np.where(targets < 0, 0, targets)[..., None], -1)[..., 0]
    real = targets >= 0
    expected = math.exp(nll[real].mean())
    assert isinstance(metrics.get("perplexity"), metrics.Perplexity)
    m = metrics.Perplexity(ignore_index=-100)
    acc = m.init()
    for i in range(0, 4, 2):  # two batches: the figure is over all tokens, not a mean of batch figures
        acc = m.update(acc, logits[i:i + 2], targets[i:i + 2], np.ones(2, np.float32))
    assert float(m.compute(acc)) == pytest.approx(expected, rel=1e-5)
    # a weight-0 row counts nowhere
    acc = m.update(m.init(), logits, targets, np.array([1, 1, 1, 0], np.float32))
    assert float(m.compute(acc)) == pytest.approx(math.exp(nll[:3][real[:3]].mean()), rel=1e-5)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.cross_entropy(torch.tensor(logits).reshape(-1, 7), torch.tensor(targets).reshape(-1),
                                            ignore_index=-100)
    assert float(m.compute(m.update(m.init(), logits, targets))) == pytest.approx(math.exp(float(ref)), rel=1e-5)
    with pytest.raises(ValueError, match="perplexity: targets shape"):
        m.update(m.init(), logits, targets[:, :3])
    assert isinstance(metrics.get("ppl"), metrics.Perplexity)


class TiedLM(nnx.Module):
    def __init__(self, *, rngs):
        self.embed = dlcore.nn.Embedding(11, 6, rngs=rngs)
        self.rnn = dlcore.nn.GRU(6, 6, rngs=rngs)
        self.bias = nnx.Param(jnp.zeros(11))

    def __call__(self, ids):
        out, _ = self.rnn(self.embed(ids))
        return self.embed.attend(out, self.bias[...])


def test_weight_tying_shares_one_table_between_input_and_output():
    model = TiedLM(rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 11, (3, 4)))
    logits = model(ids)
    assert logits.shape == (3, 4, 11)
    h, _ = model.rnn(model.embed(ids))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(h @ model.embed.weight[...].T), rtol=1e-6, atol=1e-6)
    params = nnx.state(model, nnx.Param)
    table, gru, bias = 11 * 6, 2 * (3 * 6) * 6 + 2 * (3 * 6), 11  # no separate output matrix
    assert sum(np.prod(p.shape) for p in jax.tree.leaves(params)) == table + gru + bias
    # the one table gets the gradient of both uses
    grads = nnx.grad(lambda m: jnp.sum(m(ids) ** 2))(model)
    assert float(jnp.abs(grads["embed"]["weight"][...]).sum()) > 0
    t = dlcore.Trainer(TiedLM(rngs=nnx.Rngs(1)), dlcore.optim.adam(1e-2),
                       lambda out, y: dlcore.losses.cross_entropy(out, y).mean(-1), metrics=["perplexity"],
                       batch_size=4, progress=False)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 11, (16, 5))
    hist = t.fit({"x": x, "y": np.roll(x, -1, axis=1)}, epochs=3)
    assert hist["perplexity"][-1] < hist["perplexity"][0]
    with pytest.raises(ValueError, match="attend expects hidden states whose last axis is 6"):
        model.embed.attend(jnp.zeros((2, 5)))


class FrozenVectorsClassifier(nnx.Module):
    """Pretrained vectors kept frozen (001's GloVe model): mean of the token vectors, then a Linear."""

    def __init__(self, table, *, rngs):
        self.embed = dlcore.nn.Embedding.from_pretrained(table, freeze=True, padding_idx=0)
        self.head = dlcore.nn.Linear(table.shape[1], 2, rngs=rngs)

    def __call__(self, ids):
        return self.head(self.embed(ids).mean(1))


def test_a_frozen_embedding_survives_training_checkpoints_and_resume(tmp_path):
    from dlcore import checkpoint
    from dlcore.train.callbacks import Checkpoint

    rng = np.random.default_rng(0)
    table = rng.normal(size=(12, 4)).astype(np.float32)
    data = {"x": rng.integers(0, 12, (32, 6)), "y": rng.integers(0, 2, 32)}

    def trainer(directory):
        return dlcore.Trainer(FrozenVectorsClassifier(table, rngs=nnx.Rngs(0)), dlcore.optim.adam(1e-2),
                              dlcore.losses.cross_entropy, batch_size=8, progress=False,
                              callbacks=[Checkpoint(directory)])

    full = trainer(tmp_path / "full")
    full.fit(data, epochs=3)
    part = trainer(tmp_path / "part")
    part.fit(data, epochs=1)
    resumed = trainer(tmp_path / "part")
    resumed.fit(data, epochs=3, resume=True)
    for t in (full, resumed):
        np.testing.assert_array_equal(np.asarray(t.model.embed.weight[...]), table)   # never trained
    np.testing.assert_array_equal(np.asarray(resumed.model.head.kernel[...]), np.asarray(full.model.head.kernel[...]))
    assert not np.array_equal(np.asarray(full.model.head.kernel[...]),
                              np.asarray(FrozenVectorsClassifier(table, rngs=nnx.Rngs(0)).head.kernel[...]))
    # the model alone: a fresh one built on other vectors gets the saved (frozen) table back
    checkpoint.save(tmp_path / "model", 0, full.model)
    fresh = FrozenVectorsClassifier(np.zeros_like(table), rngs=nnx.Rngs(5))
    checkpoint.restore(tmp_path / "model", fresh)
    np.testing.assert_array_equal(np.asarray(fresh.embed.weight[...]), table)
    ids = data["x"][:4]
    np.testing.assert_array_equal(np.asarray(fresh(ids)), np.asarray(full.model(ids)))
    assert isinstance(fresh.embed.weight, dlcore.nn.Frozen)
