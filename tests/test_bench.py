"""`dlcore bench`: the registry, the table and the JSON contract (a smoke run, no timing asserted)."""

from __future__ import annotations

import json

import pytest

from dlcore import bench, cli


def test_training_benchmark_quick_writes_both_sides(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert cli.main(["bench", "training", "--quick", "--json", str(path)]) == 0
    out = json.loads(path.read_text())
    rows = out["results"]
    assert {r["benchmark"] for r in rows} == {"training"}
    for r in rows:
        assert r["dlcore"] > 0 and r["unit"] == "s" and r["peer_name"] == "torch"
        if r["peer"] is not None:  # torch installed
            assert r["ratio"] == pytest.approx(r["peer"] / r["dlcore"])
    assert "mnist_convnet epoch" in capsys.readouterr().out


def test_unknown_benchmark_and_peer():
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        bench.run(["nope"])
    with pytest.raises(ValueError, match="no benchmark compares with 'matlab'"):
        bench.run(vs="matlab")


def test_seq2seq_benchmark_quick_runs_both_models_on_both_sides():
    rows = bench.run(["seq2seq"], quick=True)
    assert [r["case"].split(",")[1].split("(")[0].strip() for r in rows] == ["plain", "with Luong attention"]
    for r in rows:
        assert r["dlcore"] > 0 and r["unit"] == "ms"
        assert r["peer"] is None or r["peer"] > 0       # None without torch


def test_compare_steps_counts_the_calls_and_returns_the_best_median():
    calls = {"ours": 0, "theirs": 0}

    def ours():
        calls["ours"] += 1

    def theirs():
        calls["theirs"] += 1

    best, peer, compile_s = bench.compare_steps(ours, theirs, warmup=2, repeats=3, steps=4)
    assert calls == {"ours": 1 + 2 + 3 * 4, "theirs": 2 + 3 * 4}
    assert best >= 0 and peer >= 0 and compile_s >= 0
    assert bench.compare_steps(ours, None, warmup=0, repeats=1, steps=1)[1] is None
