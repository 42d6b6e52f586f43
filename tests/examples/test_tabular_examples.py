"""wine_quality and sklearn_mlp: hand-computed figures on a small wine file, its download and checksum, the
stand-in said as such, the book's figures where the data is here, and the perceptron rule."""

from __future__ import annotations

import dataclasses
import hashlib
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dlcore import data, runner
from dlcore.data import real
from one_line import raises_one_line

HEADER = ";".join(f'"{c}"' for c in (*real.WINE_FEATURES, "quality"))
# (total sulfur dioxide, quality) per wine; the other columns are filler. By hand, with the book's rule
# (good if sulfur < 141.83, actually good if quality > 5, bad if quality <= 3):
#   100/6 TP, 150/7 FN, 141.8/5 FP, 90/3 FP (bad), 200/3 TN (bad), 120/8 TP, 160/5 TN, 130/4 FP,
#   141.83/6 FN (not below the threshold: torch.lt is strict), 110/9 TP
WINES = [(100, 6), (150, 7), (141.8, 5), (90, 3), (200, 3), (120, 8), (160, 5), (130, 4), (141.83, 6), (110, 9)]
HAND = {"bad_wines": 2, "predicted_good": 6, "actual_good": 5, "true_positives": 3, "precision": 3 / 6,
        "recall": 3 / 5,
        # the middling wines (quality 4-6): 100, 141.8, 160, 130, 141.83
        "mid_total_sulfur_dioxide": (100 + 141.8 + 160 + 130 + 141.83) / 5}


def _wine_csv() -> bytes:
    rows = [";".join(["7", "0.27", "0.36", "20.7", "0.045", "45", str(s), "1.001", "3", "0.45", "8.8", str(q)])
            for s, q in WINES]
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def _run(name, **kw):
    out = io.StringIO()
    return runner.run(name, out=out, progress=False, **kw), out.getvalue()


def _check_hand_figures(report):
    assert report["dataset"] == "wine_quality"
    m = report["metrics"]
    for k, v in HAND.items():
        assert m[k] == pytest.approx(v, rel=1e-6), k


def test_wine_quality_gives_hand_computed_figures_on_a_file_in_the_cache(cache):
    (cache / "wine_quality").mkdir(parents=True)
    (cache / "wine_quality" / "winequality-white.csv").write_bytes(_wine_csv())
    report, text = _run("wine_quality")
    _check_hand_figures(report)
    assert text.splitlines()[0] == "data: wine_quality"
    assert "precision 3 / 6 = 0.50000000, recall 3 / 5 = 0.60000000" in text


def test_wine_quality_downloads_its_file_and_enforces_the_published_hash(cache, server, monkeypatch):
    body = _wine_csv()
    # a mirror serving other bytes than the published file: the declared SHA-256 refuses them, in one line,
    # and nothing is kept (the stand-in is not used behind the user's back either)
    server.files["/wine_quality/winequality-white.csv"] = body
    monkeypatch.setenv("DLCORE_MIRROR", server.url)
    msg = raises_one_line(lambda: _run("wine_quality"), "winequality-white.csv", "SHA-256", exc=data.ChecksumError)
    assert real.WINE_QUALITY.files[0].sha256 in msg
    assert not (cache / "wine_quality" / "winequality-white.csv").exists()
    # the same download path with this file's own hash: fetched once, then read from the cache
    monkeypatch.delenv("DLCORE_MIRROR")
    remote = dataclasses.replace(real.WINE_QUALITY.files[0], urls=(server.url + "/winequality-white.csv",),
                                 sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    monkeypatch.setitem(real.DATASETS, "wine_quality", dataclasses.replace(real.WINE_QUALITY, files=(remote,)))
    server.files["/winequality-white.csv"] = body
    report, _ = _run("wine_quality")
    _check_hand_figures(report)
    assert (cache / "wine_quality" / "winequality-white.csv").read_bytes() == body
    assert [p for p, _ in server.requests].count("/winequality-white.csv") == 1


def test_wine_quality_offline_runs_on_the_standin_and_says_so(quick_run):
    report, text = quick_run("wine_quality")
    assert report["dataset"] == "synthetic_wine"
    assert "stand-in for wine_quality" in text.splitlines()[0]
    assert "synthetic_wine is generated: these counts are not the book's" in text
    m = report["metrics"]
    assert m["precision"] == m["true_positives"] / m["predicted_good"]
    assert m["recall"] == m["true_positives"] / m["actual_good"]
    assert data.info("synthetic_wine").embedded and data.info("wine_quality").standin == "synthetic_wine"


def _real_wine_file():
    path = data.cache_dir() / "wine_quality" / "winequality-white.csv"
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != real.WINE_QUALITY.files[0].sha256:
        pytest.skip(f"the UCI file is not in {path.parent} (dlcore data prepare wine_quality)")
    return path


def test_wine_quality_gives_the_books_figures_on_the_uci_file():
    _real_wine_file()
    report, _ = _run("wine_quality")
    m, book = report["metrics"], report["book"]
    for k in ("bad_wines", "predicted_good", "actual_good", "true_positives"):
        assert m[k] == book[k], k
    assert round(m["precision"], 8) == 0.74000733 and round(m["recall"], 8) == 0.61939840
    assert round(m["mid_total_sulfur_dioxide"], 2) == 141.83


def test_wine_quality_bad_input_one_line(cache):
    from dlcore.examples.wine_quality import threshold_rule

    raises_one_line(lambda: threshold_rule(np.zeros((4, 3)), np.zeros(4)), "threshold_rule", "(N, 11)")
    raises_one_line(lambda: threshold_rule(np.zeros((4, 11)), np.zeros(5)), "target (N,)")
    (cache / "wine_quality").mkdir(parents=True)
    (cache / "wine_quality" / "winequality-white.csv").write_text(HEADER + "\n")
    raises_one_line(lambda: _run("wine_quality"), "no rows")
    (cache / "wine_quality" / "winequality-white.csv").write_text(HEADER + "\n7;0.27;6\n")
    raises_one_line(lambda: _run("wine_quality"), "line 2 has 3 fields")


# --- sklearn_mlp ---------------------------------------------------------------------------------


def test_perceptron_loss_gradient_is_the_perceptron_rule():
    from dlcore.examples.sklearn_mlp import Perceptron, heaviside, perceptron_loss

    # d loss / d z: -1 for a missed positive (also at z = 0, where a zero-started unit must move),
    # +1 for a missed negative, 0 for a right answer
    z = jnp.array([[0.0], [-0.5], [0.5], [0.5], [-0.5]])
    y = jnp.array([[1.0], [1.0], [1.0], [0.0], [0.0]])
    grads = jax.grad(lambda z: jnp.sum(perceptron_loss(z, y)))(z)
    assert grads[:, 0].tolist() == [-1.0, -1.0, 0.0, 1.0, 0.0]
    # one SGD step at lr 1 from zero on x = [2, 1], y = 1 is Equation 9-3: w = [2, 1], b = 1
    model = Perceptron(2)
    x = jnp.array([[2.0, 1.0]])
    g = jax.grad(lambda w, b: jnp.sum(perceptron_loss(x @ w + b, jnp.ones((1, 1)))), argnums=(0, 1))(
        model.w[...], model.b[...])
    assert (-g[0][:, 0]).tolist() == [2.0, 1.0] and (-g[1]).tolist() == [1.0]
    assert heaviside(jnp.array([-0.1, 0.0, 0.1])).tolist() == [0.0, 1.0, 1.0]  # Equation 9-1


def test_sklearn_mlp_quick_gives_the_books_perceptron_answers(quick_run):
    report, text = quick_run("sklearn_mlp")
    m = report["metrics"]
    assert report["dataset"] == "diabetes" and "stand-in for california_housing" in text.splitlines()[0]
    assert "classifier data: digits (embedded stand-in for fashion_mnist" in text
    # the book (and scikit-learn): True, False for the flowers [2, 0.5] and [3, 1]; setosa is separable
    assert (m["perceptron_flower_1"], m["perceptron_flower_2"]) == (1.0, 0.0)
    assert (m["sklearn_perceptron_flower_1"], m["sklearn_perceptron_flower_2"]) == (1.0, 0.0)
    assert m["perceptron_train_accuracy"] == 1.0
    assert m["reg_epochs"] == 3 and m["clf_epochs"] == 2  # --quick caps scikit-learn's max_iter
    assert -1.0 < m["reg_best_val_r2"] < 1.0 and 0.0 < m["clf_test_accuracy"] <= 1.0


def test_sklearn_mlp_draws_scikit_learns_initial_weights():
    from dlcore.examples.sklearn_mlp import SklearnMLP

    model = SklearnMLP((8, 50, 1), seed=0)
    for kernel, bias, (n_in, n_out) in zip(model.kernels, model.biases, ((8, 50), (50, 1))):
        bound = np.sqrt(6.0 / (n_in + n_out))  # scikit-learn's _init_coef for ReLU
        assert kernel.shape == (n_in, n_out) and bias.shape == (n_out,)
        assert float(jnp.max(jnp.abs(kernel[...]))) <= bound and float(jnp.max(jnp.abs(bias[...]))) <= bound
        assert float(jnp.max(jnp.abs(kernel[...]))) > 0.9 * bound  # spread over the whole interval
    assert model(jnp.ones((3, 8))).shape == (3, 1)
