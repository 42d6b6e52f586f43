"""Every example in quick mode on embedded data, the book's exact figures, and kill-then-resume."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dlcore import checkpoint, runner


def run(name, **kw):
    out = io.StringIO()
    report = runner.run(name, out=out, progress=False, **kw)
    return report, out.getvalue()


# thermometer is checked to the book's digits below (its quick run keeps the book's epochs: the full run's figures)
@pytest.mark.parametrize("name", [e.name for e in runner.examples() if e.name != "thermometer"])
def test_every_example_runs_quick_on_embedded_data(name, quick_run):
    report, text = quick_run(name)
    ex = runner.get(name).EXAMPLE
    assert report["dataset"] in (ex.data, ex.standin) or report["dataset"].startswith("inline")
    first = text.splitlines()[0]
    assert first.startswith("data: ")
    if report["dataset"] == ex.standin and ex.data:
        assert f"stand-in for {ex.data}" in first
    assert report["metrics"] and all(np.isfinite(v) for v in report["metrics"].values())


def test_thermometer_reproduces_the_book_exactly(quick_run):
    # --quick keeps the book's epochs for thermometer (full-batch steps on 11 points take microseconds), so the
    # quick run, shared with tests/examples/test_foundations_examples.py, is the full run
    report, text = quick_run("thermometer")
    assert text.splitlines()[0].startswith("data: ") and report["dataset"] == "thermometer"
    m = report["metrics"]
    assert all(np.isfinite(v) for v in m.values())
    # section 5.4.4, Normalizing inputs: loss 2.927648, w 5.3671, b -17.3012 (float32; the book's own reruns
    # print ...647)
    assert m["gd_loss"] == pytest.approx(2.927648, abs=2e-6)
    assert round(m["gd_w"], 4) == 5.3671 and round(m["gd_b"], 4) == -17.3012
    # section 5.5.2, Optimizers a la carte: Adam lr 0.1 on raw t_u, 2000 epochs
    assert m["adam_loss"] == pytest.approx(2.927646, abs=2e-6)
    assert round(m["adam_w"], 4) == 0.5367 and round(m["adam_b"], 4) == -17.3021
    # the split-dependent variants still converge to a comparable line
    assert 4.8 < m["linear_w"] < 6.0 and m["mlp_train_loss"] < 4.0


def test_autograd_and_clipping_match_the_books():
    a, _ = run("autograd")
    assert a["metrics"] == a["book"]
    c, _ = run("gradient_clipping")
    for k, v in c["book"].items():
        assert c["metrics"][k] == pytest.approx(v, abs=1e-7)


def test_explicit_loop_gives_the_trainers_figures_on_the_same_data_and_seed():
    # the written-out loop (TrainState, train_step, scan, compute_metrics) against Trainer.fit (fashion_mlp)
    loop, _ = run("explicit_loop", quick=True, epochs=2, seed=3)
    fit, _ = run("fashion_mlp", quick=True, epochs=2, seed=3)
    assert loop["dataset"] == fit["dataset"]
    assert loop["metrics"].keys() == fit["metrics"].keys()
    for k, v in fit["metrics"].items():
        assert loop["metrics"][k] == pytest.approx(v, rel=1e-5), k


def _final_params(directory):
    tree, meta = checkpoint.load(directory)
    return meta["epoch"], [np.asarray(a) for a in jax.tree.leaves(tree["state"]["params"])]


def test_killing_mnist_convnet_and_resuming_ends_with_the_same_weights(tmp_path):
    args = [sys.executable, "-m", "dlcore.cli", "run", "mnist_convnet", "--quick", "--epochs", "6",
            "--no-progress", "--data", "digits"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # the uninterrupted reference run, side by side with the one to kill (each spends most of its time in one
    # thread: imports, compiling)
    full = subprocess.Popen(args + ["--checkpoint", str(tmp_path / "full")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # a run killed (SIGKILL, no chance to clean up) once its first checkpoint exists
    proc = subprocess.Popen(args + ["--checkpoint", str(tmp_path / "killed")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not checkpoint.steps(tmp_path / "killed") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = checkpoint.steps(tmp_path / "killed")
    assert done and max(done) < 6, f"the kill should land mid-run, checkpoints: {done}"
    assert full.wait(timeout=180) == 0, full.stderr.read()[-2000:]
    subprocess.run(args + ["--checkpoint", str(tmp_path / "killed"), "--resume"], check=True, env=env,
                   capture_output=True)
    e_full, p_full = _final_params(tmp_path / "full")
    e_res, p_res = _final_params(tmp_path / "killed")
    assert e_full == e_res == 6
    for a, b in zip(p_full, p_res):
        np.testing.assert_array_equal(a, b)
