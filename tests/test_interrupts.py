"""Ctrl-C (SIGINT) and SIGTERM end a `dlcore run` with one line and 130 / 143, never a crash, and the
last checkpoint stays good: the run resumes from it. Real signals, sent at several moments of a run
(while compiling, mid-epoch, around the checkpoint writes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dlcore import checkpoint as ckpt

ROOT = Path(__file__).resolve().parent.parent


def start(run_dir, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "DLCORE_OFFLINE": "1"}
    code = "from dlcore.cli import entry; entry()"
    return subprocess.Popen([sys.executable, "-c", code, "run", "mnist_convnet", "--quick", "--epochs", "6",
                             "--no-progress", "--checkpoint", str(run_dir), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(run_dir, proc, at_least: int, timeout: float = 120.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if (ckpt.latest_step(run_dir) or 0) >= at_least:
            return
        time.sleep(0.05)


def signal_after_checkpoint(run_dir, sig, delay) -> tuple[int, str]:
    """A run signalled `delay` s after its first checkpoint appeared: (exit code, stderr)."""
    proc = start(run_dir)
    try:
        wait_for_checkpoint(run_dir, proc, 1)
        time.sleep(delay)  # 0: right after a checkpoint appeared, the next one may be being written
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


# both signals, before and during checkpoint writes; the three runs (and then their resumes) go side by side, each
# in its own thread: each run spends most of its time in one thread of its own (imports, compiling)
CASES = [(signal.SIGINT, 0.0), (signal.SIGTERM, 0.05), (signal.SIGINT, 0.3)]


def test_a_signal_ends_the_run_with_one_line_and_the_checkpoint_resumes(tmp_path):
    dirs = [tmp_path / f"run{i}" for i in range(len(CASES))]
    with ThreadPoolExecutor(len(CASES)) as pool:
        ended = list(pool.map(lambda c: signal_after_checkpoint(c[0], *c[1]), zip(dirs, CASES)))
    signalled = [(d, sig, delay, code, err) for d, (sig, delay), (code, err) in zip(dirs, CASES, ended)
                 if code != 0]  # 0: the run finished before the signal arrived, nothing to check
    if not signalled:
        pytest.skip("every run ended before its signal")
    for d, sig, delay, code, err in signalled:
        case = f"{signal.Signals(sig).name} {delay} s after the first checkpoint"
        assert code == 128 + sig, (case, code, err[-2000:])
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines[-1].startswith("dlcore: interrupted (SIG"), (case, err[-2000:])
        assert "Traceback" not in err and "Segmentation" not in err, case
        saved = ckpt.latest_step(d)
        assert saved is not None and saved >= 1, case

    def resume(d):
        return subprocess.run([sys.executable, "-c", "from dlcore.cli import entry; entry()", "run", "mnist_convnet",
                               "--quick", "--epochs", "6", "--no-progress", "--checkpoint", str(d), "--resume"],
                              env={**os.environ, "PYTHONPATH": str(ROOT), "DLCORE_OFFLINE": "1"},
                              capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(len(signalled)) as pool:
        resumed = list(pool.map(resume, [s[0] for s in signalled]))
    for (d, sig, delay, *_), r in zip(signalled, resumed):
        case = f"{signal.Signals(sig).name} {delay} s after the first checkpoint"
        assert r.returncode == 0, (case, r.stderr[-2000:])
        assert ckpt.latest_step(d) == 6, case
