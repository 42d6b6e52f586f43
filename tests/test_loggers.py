"""CSVLogger and TensorBoard: one row / one value per epoch, equal to the history, across second fits,
resumes and a run killed between its log row and its checkpoint."""

from __future__ import annotations

import csv
import importlib.util
import struct
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

import dlcore
from dlcore import losses, optim
from dlcore.train.callbacks import CSVLogger, TensorBoard

sys.path.insert(0, str(Path(__file__).parent))
from train_toys import Net, toy  # noqa: E402


def make_trainer(seed=0, **kw):
    return dlcore.Trainer(Net(rngs=nnx.Rngs(seed)), optim.adam(1e-2), losses.cross_entropy, metrics=["accuracy"],
                          batch_size=16, progress=False, **kw)

EPOCH_LOGS = ["loss", "accuracy", "val_loss", "val_accuracy"]
HAVE_TBX = importlib.util.find_spec("tensorboardX") is not None  # the TensorBoard checks run where it is


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def assert_rows_match(rows, trainer):
    assert [int(r["epoch"]) for r in rows] == list(range(1, trainer.epoch + 1))
    for k, values in trainer.history.items():
        assert [float(r[k]) for r in rows] == values  # exact: written with repr


def read_events(log_dir):
    """{tag: {step: value}} as TensorBoard shows it: event files in name order, and a SessionLog START
    at step s (tensorboardX's purge_step) drops the values of step s and later read before it.
    Also returns every (tag, step) read, purged or not, and the START steps."""
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    shown, raw, starts = {}, [], []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + n])
            at += 12 + n + 4
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                starts.append(event.step)
                for values in shown.values():
                    for s in [s for s in values if s >= event.step]:
                        del values[s]
            for v in event.summary.value:
                raw.append((v.tag, event.step))
                assert event.step not in shown.setdefault(v.tag, {})  # one value per step per tag
                shown[v.tag][event.step] = v.simple_value
    return shown, raw, starts


def assert_events_match(shown, trainer):
    assert sorted(shown) == sorted(trainer.history)
    for tag, values in trainer.history.items():
        assert list(shown[tag]) == list(range(1, len(values) + 1))
        assert list(shown[tag].values()) == pytest.approx(values, rel=1e-6)  # float32 in the file


def loggers(tmp_path):
    return [CSVLogger(tmp_path / "logs" / "run.csv")] + ([TensorBoard(tmp_path / "tb")] if HAVE_TBX else [])


def test_one_row_and_one_event_per_epoch_equal_to_history_flushed_each_epoch_and_fit_twice_continues(tmp_path):
    data = toy()
    path, tb = tmp_path / "logs" / "run.csv", tmp_path / "tb"

    class Peek(dlcore.train.Callback):  # after the loggers, at each epoch's end: is the epoch on disk?
        seen = []

        def on_epoch_end(self, trainer, epoch, logs):
            self.seen.append((len(read_csv(path)), sorted(read_events(tb)[0]["loss"]) if HAVE_TBX else None))

    t = make_trainer(callbacks=[*loggers(tmp_path), Peek()])
    t.fit(data, epochs=2, validation=data)
    rows = read_csv(path)
    assert list(rows[0]) == ["epoch", "step", *EPOCH_LOGS]
    assert [int(r["step"]) for r in rows] == [7, 14]  # 100 rows, batches of 16: 7 steps an epoch
    assert_rows_match(rows, t)
    if HAVE_TBX:
        shown, raw, starts = read_events(tb)
        assert sorted(shown) == sorted(EPOCH_LOGS)
        assert_events_match(shown, t)
    t.fit(data, epochs=4, validation=data)  # epochs 3 and 4
    rows = read_csv(path)
    assert_rows_match(rows, t)
    assert [int(r["step"]) for r in rows] == [7, 14, 21, 28]
    assert not [p for p in path.parent.iterdir() if p.name != "run.csv"]  # no temporary file left
    if HAVE_TBX:
        shown, raw, starts = read_events(tb)
        assert_events_match(shown, t)
        assert len(raw) == 4 * 4 and starts == [1, 3]  # two files, one per fit, nothing written twice
        assert Peek.seen == [(i, list(range(1, i + 1))) for i in (1, 2, 3, 4)]
    else:
        assert [n for n, _ in Peek.seen] == [1, 2, 3, 4]


def test_killed_after_its_log_before_its_checkpoint_resumes_without_a_duplicate(tmp_path):
    data = toy()
    path, tb, ck = tmp_path / "logs" / "run.csv", tmp_path / "tb", tmp_path / "ckpt"
    t = make_trainer(callbacks=[*loggers(tmp_path), dlcore.Checkpoint(ck)])
    t.fit(data, epochs=2)
    # the run went on: epoch 3's row and values reached the files, then the process died (with half a
    # row of epoch 4) before checkpoint 3 was saved
    with open(path, "a", encoding="utf-8") as f:
        f.write("3,21,0.5,0.75\n4,28,0.4")
    if HAVE_TBX:
        import tensorboardX

        # named as dlcore's writer names its files (the second, the host, then nanoseconds), so that it
        # sorts after the fit's file even when both were opened in the same second
        w = tensorboardX.SummaryWriter(str(tb), filename_suffix=f".{time.time_ns():020d}")
        w.add_scalar("loss", 123.0, 3)
        w.add_scalar("accuracy", 0.5, 3)
        w.close()
        assert read_events(tb)[0]["loss"][3] == 123.0
    fresh = make_trainer(callbacks=[*loggers(tmp_path), dlcore.Checkpoint(ck)])  # a new process
    fresh.fit(data, epochs=4, resume=True)
    rows = read_csv(path)
    assert_rows_match(rows, fresh)
    assert [int(r["step"]) for r in rows] == [7, 14, 21, 28]
    assert path.read_text().endswith("\n")
    if HAVE_TBX:
        shown, raw, starts = read_events(tb)
        assert_events_match(shown, fresh)
        assert shown["loss"][3] != 123.0 and raw.count(("loss", 3)) == 2 and starts[-1] == 3


def test_csv_new_log_extends_the_header_and_a_fresh_run_replaces_the_file(tmp_path):
    data = toy()
    path = tmp_path / "log.csv"
    t = make_trainer(callbacks=[CSVLogger(path)])
    t.fit(data, epochs=1)
    t.fit(data, epochs=2, validation=data)  # val_* appear at epoch 2
    rows = read_csv(path)
    assert list(rows[0]) == ["epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert rows[0]["val_loss"] == "" and float(rows[1]["val_loss"]) == t.history["val_loss"][0]
    t.fit(data, epochs=3)  # and without again: empty cells, same header
    rows = read_csv(path)
    assert [r["val_loss"] == "" for r in rows] == [True, False, True]
    assert [float(r["loss"]) for r in rows] == t.history["loss"]
    # a run from epoch 1 into the same file replaces it (here: the same trainer, a new logger)
    for append in (True, False):
        t.callbacks = [CSVLogger(path, append=append)]
        t.fit(data, epochs=2, initial_epoch=0)
        rows = read_csv(path)
        assert list(rows[0]) == ["epoch", "step", "loss", "accuracy"]
        assert [float(r["loss"]) for r in rows] == t.history["loss"][-2:]
    # append=False starts afresh even when the run continues; append=True keeps the earlier epochs
    t.callbacks = [CSVLogger(path, append=False)]
    t.fit(data, epochs=3)
    assert [int(r["epoch"]) for r in read_csv(path)] == [3]


def test_csv_bad_arguments_and_a_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="append must be one of"):
        CSVLogger(tmp_path / "a.csv", append="yes")
    with pytest.raises(ValueError, match="is a directory"):
        CSVLogger(tmp_path)
    with pytest.raises(ValueError, match="path must be"):
        CSVLogger(None)
    other = tmp_path / "data.csv"
    other.write_text("name,value\nx,1\n")
    t = make_trainer(callbacks=[CSVLogger(other)])
    with pytest.raises(ValueError, match="not a CSVLogger log"):
        t.fit(toy(), epochs=1)
    assert other.read_text() == "name,value\nx,1\n"


def test_tensorboard_arguments_and_without_tensorboardx_names_the_extra(monkeypatch, tmp_path):
    pytest.importorskip("tensorboardX")
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        TensorBoard(tmp_path / "f")
    import sys

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"pip install dlcore\[tensorboard\]"):
        TensorBoard(tmp_path)


@pytest.mark.parametrize("epoch_mode", ["scan", "step"])
def test_per_step_rows_on_request_hold_each_batch_loss_once_across_a_resume(tmp_path, epoch_mode):
    import csv as csv_lib

    import dlcore
    from dlcore import losses, optim

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    data = {"x": x, "y": (x[:, 0] > 0).astype(np.int32)}

    def make(callbacks):
        return dlcore.Trainer(dlcore.nn.MLP((4, 8, 2), rngs=nnx.Rngs(0)), optim.sgd(0.1), losses.cross_entropy,
                              batch_size=8, shuffle=False, progress=False, epoch_mode=epoch_mode, callbacks=callbacks)

    log = tmp_path / "log.csv"

    def callbacks():
        tb = [dlcore.TensorBoard(tmp_path / "tb", every_n_steps=2)] if HAVE_TBX else []
        return [dlcore.CSVLogger(log, every_n_steps=2), *tb, dlcore.Checkpoint(tmp_path / "ck")]

    t = make(callbacks())
    t.fit(data, epochs=2)  # 5 steps an epoch: steps 2, 4, 6, 8, 10
    t = make(callbacks())
    t.fit(data, epochs=3, resume=True)
    rows = list(csv_lib.DictReader(open(tmp_path / "log.steps.csv")))
    if HAVE_TBX:
        shown, _, _ = read_events(tmp_path / "tb" / "steps")
        assert sorted(shown["loss"]) == [2, 4, 6, 8, 10, 12, 14]
        assert [shown["loss"][s] for s in sorted(shown["loss"])] == pytest.approx(
            [float(r["loss"]) for r in rows], rel=1e-6)
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12, 14]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2, 2, 3, 3]
    # the logged figure is that step's batch loss: step 12's batch is the 2nd batch of epoch 3
    ref = make([])
    ref.fit(data, epochs=2)
    state = ref.state
    from dlcore.train.step import train_step
    batch = {"x": data["x"][:8], "y": data["y"][:8]}
    state, _ = train_step(state, batch, jax.random.fold_in(ref.key, 10), loss_fn=losses.cross_entropy)
    batch = {"x": data["x"][8:16], "y": data["y"][8:16]}
    _, acc = train_step(state, batch, jax.random.fold_in(ref.key, 11), loss_fn=losses.cross_entropy)
    expected = float(acc["loss"]["total"] / acc["loss"]["count"])
    assert float(rows[5]["loss"]) == pytest.approx(expected, rel=1e-5)
