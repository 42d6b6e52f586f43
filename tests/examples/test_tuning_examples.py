"""fashion_mlp_tuning (Géron ch. 10, Fine-Tuning Neural Network Hyperparameters with Optuna): the quick run's study
and population, read from its report and its printed tables (the run is shared with test_examples)."""

from __future__ import annotations

import io
import re
import sys

import pytest

from dlcore import runner, tune

pytest.importorskip("optuna")


def test_fashion_mlp_tuning_runs_the_books_study_then_a_halving_population(quick_run):
    report, text = quick_run("fashion_mlp_tuning")
    m = report["metrics"]
    assert report["book"] == {"best_learning_rate": 0.0853, "best_n_hidden": 116, "best_val_accuracy": 0.8868}
    # the book's 5 trials, every one inside the book's space, and the best is the best of the printed table
    rows = re.findall(r"^\s+(\d)\s+([\d.e+-]+)\s+(\d+)\s+([\d.]+)\s+(complete|pruned)", text, flags=re.M)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3, 4], text
    for _, lr, n_hidden, _, _ in rows:
        assert 1e-5 <= float(lr) <= 1e-1 and 20 <= int(n_hidden) <= 300
    assert m["best_val_accuracy"] == pytest.approx(max(float(r[3]) for r in rows), abs=1e-4)
    assert 20 <= m["best_n_hidden"] <= 300 and m["best_n_hidden"] == int(m["best_n_hidden"])
    assert m["pruned_trials"] == 0  # MedianPruner(n_startup_trials=5) waits for 5 finished trials: never in 5
    if report["dataset"] != "fashion_mnist":
        assert "not comparable" in text
    # the population: 4 learning rates of the same space, halved after epoch 1 of 2: 4 + 2 member-epochs of 8
    assert m["population_members"] == 4
    assert (m["population_member_epochs"], m["population_full_epochs"]) == (6, 8)
    assert text.count("survived") == 2
    drawn = tune.Param("float", 1e-5, 1e-1, log=True).sample(4, seed=0)  # the run's seed, 0
    assert any(m["population_best_learning_rate"] == pytest.approx(lr, rel=1e-6) for lr in drawn)
    assert f"at n_hidden {int(m['best_n_hidden'])}," in text


def test_fashion_mlp_tuning_without_optuna_says_so_and_skips_the_study(monkeypatch):
    mod = runner.get("fashion_mlp_tuning")
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now raises ImportError
    out = io.StringIO()
    ctx = runner.Context(example=mod.EXAMPLE, quick=True, out=out)
    assert mod._study(ctx, {}, {}, epochs=1) is None
    assert 'pip install "dlcore[tune]"' in out.getvalue() and "skipped" in out.getvalue()
