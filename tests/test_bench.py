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
