"""`dlcore bench speed`: rows with the new fields and one FLOP count for every side, the PyTorch networks the
same as dlcore's, and the `dlcore` command's persistent compilation cache. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import jax
import pytest
from one_line import raises_one_line

from dlcore import bench, cli, cpu, runner
from dlcore.benchmarks import _steps

HAS_TORCH = importlib.util.find_spec("torch") is not None


# what the cache row's two fresh processes report in the `speed` fixture: the real processes (the bench's own
# script, an MLP's first Trainer.fit epochs) run in test_cache_in_the_dlcore_cache_dir_is_written_then_hit
COLD, WARM = {"compile_s": 1.5, "hits": 0}, {"compile_s": 0.25, "hits": 7}


def _replayed_cache_run(folder, model, batch, steps):
    """Stands in for the cache row's `_cache_run`: the first call writes two cache entries, the second hits."""
    entries = sorted(p for p in os.listdir(folder) if p.endswith("-cache"))
    if not entries:
        for name in ("a-cache", "b-cache"):
            open(os.path.join(folder, name), "w").close()
    return {**(WARM if entries else COLD), "folder": folder}


@pytest.fixture(scope="module")
def speed(tmp_path_factory):
    path = tmp_path_factory.mktemp("speed") / "speed.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench.BENCHMARKS.get("speed"), "_cache_run", _replayed_cache_run)
        assert cli.main(["bench", "speed", "--quick", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_quick_step_rows_carry_compile_throughput_and_flops(speed):
    rows = {r["case"]: r for r in speed["results"]}
    steps = [rows["mlp step, batch 4"], rows["mnist_cnn_001 step, batch 4"]]
    for r in steps:
        assert r["benchmark"] == "speed" and r["unit"] == "ms" and r["dlcore"] > 0 and r["peer_name"] == "torch"
        assert r["flops"] > 0 and r["compile_s"] >= 0
        seconds = r["dlcore"] / 1e3                                   # a step
        assert r["examples_per_s"] == pytest.approx(4 / seconds)      # batch 4
        assert r["flops_per_s"] == pytest.approx(r["flops"] / seconds)
        assert r["peak_share"] == pytest.approx(r["flops_per_s"] / bench.CPU_PEAK_FLOPS)
        assert "torch.compile not run (--quick)" in r["note"] and "peer2" not in r
        if HAS_TORCH:  # the same FLOP count on both sides: each side's FLOP/s times its step time
            assert r["peer"] > 0 and r["ratio"] == pytest.approx(r["peer"] / r["dlcore"])
            assert r["peer_flops_per_s"] * r["peer"] / 1e3 == pytest.approx(r["flops"])
            assert r["peer_examples_per_s"] == pytest.approx(4e3 / r["peer"])
            assert r["peer_peak_share"] == pytest.approx(r["peer_flops_per_s"] / bench.CPU_PEAK_FLOPS)
        else:
            assert r["peer"] is None and "torch not installed" in r["note"]


def test_the_mlp_row_also_times_dlcore_under_the_bfloat16_policy(speed):
    rows = {r["case"]: r for r in speed["results"]}
    mlp, cnn = rows["mlp step, batch 4"], rows["mnist_cnn_001 step, batch 4"]
    assert mlp["bfloat16"] > 0 and f"{mlp['bfloat16']:.4g} ms" in mlp["note"] and "bfloat16" not in cnn
    assert speed["machine"]["matmul_flops"] > 1e9


def test_xla_flop_count_of_the_mlp_step_matches_a_hand_count(speed):
    r = next(r for r in speed["results"] if r["case"] == "mlp step, batch 4")
    b, layers = 4, [(784, 300), (300, 100), (100, 10)]
    macs = sum(i * o for i, o in layers)                              # 266,200 a forward example
    # forward and weight gradients (2 products a layer), input gradients of all but the first layer; 2 flops a
    # multiply-add; then SGD's p - lr * g, 2 flops a parameter
    hand = 2 * b * (2 * macs + sum(i * o for i, o in layers[1:])) + 2 * (macs + sum(o for _, o in layers))
    assert hand == 5_040_420
    assert r["flops"] == pytest.approx(hand, rel=0.01)                # the rest: biases, ReLU, softmax


def test_cache_row_reports_a_cold_and_a_warm_compile(speed):
    row = speed["results"][-1]
    assert row["case"] == "mlp first-epoch compile, empty vs warm cache" and row["peer"] is None
    assert row["compile_s"] == row["dlcore"] == COLD["compile_s"] and row["cached_compile_s"] == WARM["compile_s"]
    hits = int(re.search(r"found (\d+) of its compiled programs", row["note"]).group(1))
    written = int(re.search(r"\((\d+) entries written", row["note"]).group(1))
    assert hits == WARM["hits"] and written == 2


def test_json_says_where_and_when(speed):
    m = speed["machine"]
    assert m["cpu"] and m["cores"] == os.cpu_count() and m["cpu_peak_flops"] == bench.CPU_PEAK_FLOPS
    assert re.match(r"\d{4}-\d\d-\d\dT", m["date"]) and m["versions"]["jax"] == jax.__version__
    assert m["versions"]["jaxlib"] and (m["versions"]["torch"] is not None) == HAS_TORCH
    assert m["compilation_cache"] == jax.config.jax_compilation_cache_dir   # None: cli.main leaves it off


def test_peak_is_cores_times_fma_pipes_times_lanes_times_clock():
    # the machines this project has run on, by hand: cores x 2 pipes x lanes x 2 flops x clock
    zen5 = {"vendor_id": "AuthenticAMD", "cpu family": "26", "cpu MHz": "2596.0", "flags": "fpu avx2 fma avx512f"}
    zen4 = {**zen5, "cpu family": "25", "cpu MHz": "2400.0"}
    zen3 = {"vendor_id": "AuthenticAMD", "cpu family": "25", "cpu MHz": "2445.406", "flags": "fpu avx avx2 fma"}
    spr = {"vendor_id": "GenuineIntel", "cpu family": "6", "cpu MHz": "2100.0", "flags": "avx2 fma avx512f amx_bf16"}
    assert cpu.peak_flops(zen5, cores=2) == pytest.approx(332.3e9, rel=1e-3)
    assert cpu.peak_flops(zen4, cores=2) == pytest.approx(2 * 2 * 8 * 2 * 2.4e9)
    assert cpu.peak_flops(zen3, cores=2) == pytest.approx(156.5e9, rel=1e-3)
    assert cpu.peak_flops(spr, cores=4) == pytest.approx(4 * 2 * 16 * 2 * 2.1e9)
    assert cpu.peak_flops({"flags": "sse2"}, cores=1) == pytest.approx(2 * 4 * 2 * 2.5e9)
    assert bench.CPU_PEAK_FLOPS == cpu.peak_flops()  # this machine's
    assert "family" in cpu.identity() and cpu.model() in cpu.identity()


# the books' parameter counts (docstrings of dlcore's models, the books' summaries) or hand counts
PARAMETERS = {"mlp": 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10,
              "mnist_convnet": (9 * 16 + 16) + (9 * 16 * 32 + 32) + (4608 * 64 + 64) + (64 * 10 + 10),
              "mnist_bn_cnn": 207_018, "mnist_cnn_001": 21_840, "fashion_cnn": 1_413_834,
              "resnet18": 11_689_512 - (512 * 1000 + 1000) + (512 * 10 + 10)}


@pytest.mark.parametrize("name", sorted(_steps.SPECS))
def test_torch_networks_are_dlcore_architectures(name):
    torch = pytest.importorskip("torch")
    spec = _steps.SPECS[name]
    assert _steps.dlcore_parameters(spec) == PARAMETERS[name]
    assert _steps.torch_parameters(spec) == PARAMETERS[name]
    x = torch.zeros(2, spec.shape[2], *spec.shape[:2])               # NCHW
    assert tuple(_steps.torch_net(spec).eval()(x).shape) == (2, spec.classes)


# the cache row's script (an MLP's Trainer.fit, a first epoch then a second) as the cache row runs it, printing
# also the losses, which a warm cache must not change
_LOSSES = 'print(json.dumps({"loss": [float(v) for v in trainer.history["loss"]]}))\n'


def _cache_script(env) -> dict:
    script = bench.BENCHMARKS.get("speed")._CACHE_SCRIPT + _LOSSES
    proc = subprocess.run([sys.executable, "-c", script, "mlp", "4", "2"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    return {**json.loads(lines[-2]), **json.loads(lines[-1])}


def test_cache_in_the_dlcore_cache_dir_is_written_then_hit(tmp_path):
    # the `dlcore` command's default cache folder (DLCORE_DATA/jax), the bench cache row's own script
    env = {**os.environ, "DLCORE_DATA": str(tmp_path)}
    env.pop(cli.CACHE_ENV, None)
    first = _cache_script(env)
    folder = tmp_path / "jax"
    entries = sorted(p.name for p in folder.iterdir() if p.name.endswith("-cache"))
    assert first["folder"] == str(folder) and first["hits"] == 0 and entries
    assert len(first["loss"]) == 2 and all(v > 0 for v in first["loss"])
    second = _cache_script(env)
    assert second["hits"] >= 1 and second["loss"] == first["loss"]                # the same programs, the same run
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith("-cache")) == entries  # nothing new


def test_cache_off_or_misplaced(tmp_path, monkeypatch):
    before = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(cli.CACHE_ENV, "0")
    assert cli.compilation_cache() is None
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(cli.CACHE_ENV, str(tmp_path / "file"))
    raises_one_line(cli.compilation_cache, "is a file", cli.CACHE_ENV, "0 to turn the cache off")
    assert jax.config.jax_compilation_cache_dir == before
    assert cli.CACHE_ENV in cli._parser().epilog


def test_the_console_script_turns_the_cache_on_and_main_does_not(monkeypatch):
    calls, codes, relaunched = [], [], []
    monkeypatch.setattr(cli, "compilation_cache", lambda: calls.append(1))
    monkeypatch.setattr(cli.memory, "relaunch", lambda: relaunched.append(1))  # not this test process
    monkeypatch.setattr(runner, "exit_process", codes.append)
    monkeypatch.setattr(sys, "argv", ["dlcore", "bench", "nope"])
    cli.entry()
    assert calls == [1] and codes == [2]                              # unknown benchmark: one line, exit 2
    assert relaunched == [1]                                          # bench starts again in huge pages
    assert cli.main(["bench", "nope"]) == 2 and calls == [1] and relaunched == [1]
    monkeypatch.setattr(sys, "argv", ["dlcore", "list", "nope"])
    cli.entry()
    assert relaunched == [1]                                          # a quick command does not


def test_vs_torch_takes_the_step_epoch_and_sequence_benchmarks():
    torch_peered = {b.name for b in bench.benchmarks() if b.peer == "torch"}
    assert {"speed", "training", "sequence", "seq2seq"} <= torch_peered


def test_json_path_that_cannot_be_written_fails_before_any_benchmark(tmp_path):
    raises_one_line(lambda: bench.run(["speed"], json_path=str(tmp_path)), "is a directory")
    (tmp_path / "f").write_text("x")
    raises_one_line(lambda: bench.run(["speed"], json_path=str(tmp_path / "f" / "out.json")), "is a file")
