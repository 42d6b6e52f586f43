"""`dlcore run` and its run directory: a directory holding another run needs --resume or --overwrite, a
resume must continue the same run, one process at a time per directory (a lock naming its holder, a
stale one taken over), and every output path checked before training, the JSON written atomically.
Each refusal is one line on stderr with exit 2, before any data loads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlcore import checkpoint as ckpt
from dlcore import cli, runner, rundir

ROOT = Path(__file__).resolve().parent.parent
CONVNET = ["run", "mnist_convnet", "--quick", "--no-progress", "--data", "digits"]


def one_line_error(capsys, argv, *needles):
    """`dlcore argv` refuses with one line, exit 2, before loading any data; returns the line."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and err.startswith("dlcore: error:"), err
    assert "data:" not in captured.out, "the refusal must come before the data loads"
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def tree(directory):
    """Every path under `directory` with its modification time: what a refused run must not touch."""
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in Path(directory).rglob("*")}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch mnist_convnet run's checkpoint directory (copy it before changing it)."""
    d = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main(CONVNET + ["--epochs", "2", "--checkpoint", str(d)]) == 0
    assert ckpt.steps(d) == [1, 2]
    return d


@pytest.fixture
def run_dir(finished, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    return d


# -- a directory holding another run -------------------------------------------------------------------

def test_a_finished_runs_directory_is_refused_without_resume_or_overwrite_and_left_untouched(capsys, run_dir):
    before = tree(run_dir)
    one_line_error(capsys, CONVNET + ["--epochs", "2", "--checkpoint", str(run_dir)],
                   f"--checkpoint {run_dir} holds another run's checkpoints (epoch 2)", "--resume", "--overwrite")
    assert tree(run_dir) == before
    assert not (run_dir / rundir.LOCK_NAME).exists()  # the lock is released on the refusal too


def test_overwrite_removes_the_old_checkpoints_and_starts_afresh(capsys, run_dir):
    (run_dir / "notes.txt").write_text("mine")
    assert cli.main(CONVNET + ["--epochs", "1", "--checkpoint", str(run_dir), "--overwrite"]) == 0
    assert ckpt.steps(run_dir) == [1]  # epoch 2 of the old run is gone
    assert ckpt.restore_meta(run_dir)["epoch"] == 1
    assert (run_dir / "notes.txt").read_text() == "mine"  # only checkpoints are deleted
    capsys.readouterr()
    one_line_error(capsys, CONVNET + ["--checkpoint", str(run_dir), "--resume", "--overwrite"], "give one")


def test_resume_continues_with_epochs_as_the_new_total_on_the_runs_data(capsys, run_dir):
    quick = ["run", "mnist_convnet", "--quick", "--no-progress"]  # no --data: the run's own is used
    assert cli.main(quick + ["--epochs", "3", "--checkpoint", str(run_dir), "--resume"]) == 0
    out = capsys.readouterr().out
    assert "as in the resumed run" in out.splitlines()[0]  # --data pinned to the run's dataset
    assert ckpt.steps(run_dir) == [2, 3]
    meta = ckpt.restore_meta(run_dir)
    assert meta["epoch"] == 3 and len(meta["history"]["loss"]) == 3
    assert {"example": "mnist_convnet", "seed": 0, "data": "digits", "quick": True}.items() \
        <= meta["hyperparameters"].items()


# -- a resume that would not continue the same run -----------------------------------------------------

def test_resume_without_a_checkpoint_says_so(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, CONVNET + ["--checkpoint", str(tmp_path / "empty"), "--resume"],
                   f"--resume: no checkpoint in {tmp_path / 'empty'}, nothing to continue")
    one_line_error(capsys, CONVNET + ["--checkpoint", str(tmp_path / "typo"), "--resume"],
                   f"--resume: {tmp_path / 'typo'} is not a directory, so there is nothing to continue")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("extra, message", [
    (["--seed", "7"], "--seed 7 differs from the run's seed 0 in {d}"),
    (["--epochs", "1"], "--epochs 1 is fewer than the 2 epochs the run in {d} has done; --epochs is the new total"),
    (["--data", "mnist"], "--data mnist differs from the run's data digits in {d}"),
])
def test_resume_with_other_settings_is_refused_naming_the_difference(capsys, finished, extra, message):
    before = tree(finished)
    epochs = [] if "--epochs" in extra else ["--epochs", "2"]
    one_line_error(capsys, CONVNET + epochs + ["--checkpoint", str(finished), "--resume"] + extra,
                   message.format(d=finished))
    assert tree(finished) == before


def test_resume_of_another_example_or_without_quick_is_refused(capsys, finished):
    argv = ["run", "mnist_convnet", "--no-progress", "--data", "digits", "--checkpoint", str(finished), "--resume"]
    one_line_error(capsys, argv, f"the run in {finished} was made with --quick")
    one_line_error(capsys, ["run", "mnist_cnn", "--quick", "--checkpoint", str(finished), "--resume"],
                   f"{finished} holds a run of mnist_convnet, not of mnist_cnn")


def test_a_trainer_resumed_with_other_hyperparameters_or_fewer_epochs_is_refused(finished):
    ctx = runner.Context(example=runner.get("mnist_convnet").EXAMPLE, quick=True, checkpoint=str(finished),
                         resume=True, dataset="digits")
    same = {"optimizer": "adadelta", "lr": 0.5, "batch_size": 32}
    with pytest.raises(ValueError, match="resuming: lr 0.1 differs from the run's lr 0.5"):
        ctx.trainer_kwargs({**same, "lr": 0.1, "epochs": 2})
    with pytest.raises(ValueError, match="has done 2 epochs, more than the 1 asked for now; --epochs is the new"):
        ctx.trainer_kwargs({**same, "epochs": 1})
    ctx.trainer_kwargs({**same, "epochs": 5})  # more epochs: fine


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    """A finished transfer_a_to_b run: one checkpoint folder per model (trainer_kwargs(tag=...))."""
    d = tmp_path_factory.mktemp("tagged") / "run"
    assert cli.main(["run", "transfer_a_to_b", "--quick", "--no-progress", "--checkpoint", str(d)]) == 0
    assert not ckpt.steps(d) and set(rundir.checkpoint_dirs(d)) == {d / "model_a", d / "model_b",
                                                                   d / "b_on_a_frozen", d / "b_on_a_unfrozen"}
    return d


def test_runs_with_a_folder_per_model_are_checked_too(capsys, tagged, tmp_path):
    base = ["run", "transfer_a_to_b", "--quick", "--no-progress", "--checkpoint"]
    one_line_error(capsys, base + [str(tagged)], "holds another run's checkpoints (4 model folders, up to epoch")
    one_line_error(capsys, base + [str(tagged), "--resume", "--seed", "7"], "--seed 7 differs from the run's seed 0")
    d = tmp_path / "run"
    shutil.copytree(tagged, d)
    t0 = time.time_ns()
    assert cli.main(base + [str(d), "--overwrite", "--json", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "r.json").exists()
    assert {p.name: s for p, s in rundir.checkpoint_dirs(d).items()} == \
        {p.name: s for p, s in rundir.checkpoint_dirs(tagged).items()}
    assert all(p.stat().st_mtime_ns >= t0 for p in d.glob("*/[0-9]*"))  # every checkpoint is the new run's


# -- one process per directory -------------------------------------------------------------------------

def test_a_second_process_is_refused_with_the_holders_pid_while_the_first_finishes(capsys, tmp_path):
    d = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "DLCORE_OFFLINE": "1"}
    first = subprocess.Popen([sys.executable, "-c", "from dlcore.cli import entry; entry()", *CONVNET,
                              "--epochs", "3", "--checkpoint", str(d)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        lock = d / rundir.LOCK_NAME
        while time.time() < deadline and first.poll() is None and not (lock.exists() and lock.read_text()):
            time.sleep(0.02)
        assert first.poll() is None, first.communicate()
        one_line_error(capsys, CONVNET + ["--epochs", "4", "--checkpoint", str(d)],
                       f"--checkpoint {d} is in use by another dlcore run (process {first.pid})")
        one_line_error(capsys, CONVNET + ["--epochs", "4", "--checkpoint", str(d), "--resume"],
                       f"(process {first.pid})")
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 0, err[-2000:]
    assert ckpt.steps(d)[-1] == 3
    assert not lock.exists()  # released on exit


def test_a_stale_lock_is_taken_over_and_the_lock_goes_on_error_and_interrupt(capsys, tmp_path, monkeypatch):
    d = tmp_path / "run"
    d.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (d / rundir.LOCK_NAME).write_text(f"{dead.stdout.strip()} elsewhere\n")  # its process is gone
    assert cli.main(["run", "autograd", "--checkpoint", str(d)]) == 0
    assert not (d / rundir.LOCK_NAME).exists()
    mod = runner.get("autograd")

    def boom(ctx):
        assert (d / rundir.LOCK_NAME).read_text().split()[0] == str(os.getpid())  # held during the run
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "run", boom)
    assert cli.main(["run", "autograd", "--checkpoint", str(d)]) == 130
    assert not (d / rundir.LOCK_NAME).exists()
    monkeypatch.setattr(mod, "run", lambda ctx: (_ for _ in ()).throw(ValueError("bad")))
    assert cli.main(["run", "autograd", "--checkpoint", str(d)]) == 2
    assert not (d / rundir.LOCK_NAME).exists()


# -- output paths --------------------------------------------------------------------------------------

def test_unwritable_outputs_are_refused_before_training(capsys, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    one_line_error(capsys, CONVNET + ["--json", str(tmp_path)], f"--json {tmp_path} is a directory")
    one_line_error(capsys, CONVNET + ["--json", str(tmp_path / "a_file" / "r.json")],
                   f"{tmp_path / 'a_file'} is a file, not a directory")
    one_line_error(capsys, CONVNET + ["--json", "/proc/dlcore/r.json"], "--json /proc/dlcore/r.json: cannot write in")
    one_line_error(capsys, CONVNET + ["--checkpoint", str(tmp_path / "a_file")],
                   f"--checkpoint {tmp_path / 'a_file'} is a file; it needs a directory")
    one_line_error(capsys, CONVNET + ["--checkpoint", str(tmp_path / "a_file" / "run")], "is a file, not a directory")
    monkeypatch.setenv("DLCORE_PLOTS", str(tmp_path / "a_file" / "plots"))  # an example that saves a plot
    one_line_error(capsys, ["run", "optimizer_comparison", "--no-progress"], "the plot folder ($DLCORE_PLOTS)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_the_json_is_written_atomically_and_a_failed_write_leaves_no_temporary_file(capsys, tmp_path, monkeypatch):
    path = tmp_path / "out" / "r.json"
    assert cli.main(["run", "autograd", "--json", str(path)]) == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"]
    old = path.read_text()

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rundir.os, "replace", fail)
    capsys.readouterr()
    assert cli.main(["run", "autograd", "--json", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"dlcore: error: cannot write --json {path} (No space left on device)\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json"] and path.read_text() == old


# -- a corrupt newest checkpoint, through the command line -----------------------------------------------

def corrupt_arrays(checkpoint: Path) -> None:
    """One bit flipped in the middle of each array file of a checkpoint."""
    for f in (checkpoint / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 64 and f.name not in ("_METADATA", "commit_success.txt"):
            data = bytearray(f.read_bytes())
            data[len(data) // 2] ^= 0x10
            f.write_bytes(bytes(data))


@pytest.mark.parametrize("what", ["arrays", "metadata"])
def test_resume_past_a_corrupt_newest_checkpoint_from_the_command_line(capsys, run_dir, what):
    newest = run_dir / "2"
    if what == "arrays":
        corrupt_arrays(newest)
    else:
        meta = newest / "meta" / "metadata"
        meta.write_text(meta.read_text().replace('"epoch": 2', '"epoch": 7'))
    assert cli.main(CONVNET + ["--epochs", "3", "--checkpoint", str(run_dir), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "skipped a bad checkpoint" in err and str(newest) in err, err
    assert ckpt.steps(run_dir)[-1] == 3
    ckpt.restore_meta(run_dir)  # the new newest verifies


def test_a_corrupt_checkpoint_costs_its_process_one_line(run_dir):
    # Orbax reads the arrays as concurrent tasks and raises the first failure: the process also printed the
    # other tasks' never-retrieved exceptions and the closed event loop's errors, dozens of tracebacks around
    # dlcore's one line
    corrupt_arrays(run_dir / "2")
    done = subprocess.run([sys.executable, "-c", "from dlcore.cli import entry; entry()", *CONVNET, "--epochs", "3",
                           "--checkpoint", str(run_dir), "--resume"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "skipped a bad checkpoint" in lines[0], done.stderr[-3000:]
