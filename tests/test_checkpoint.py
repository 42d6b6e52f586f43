"""Checkpoint integrity: every array and the metadata carry a SHA-256 digest checked on restore; a resume
falls back from a corrupt newest checkpoint to the newest good one; checkpoints without digests still load."""

from __future__ import annotations

import collections
import json
import random
import shutil
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import dlcore
from dlcore import checkpoint as ckpt
from dlcore import losses, optim

sys.path.insert(0, str(Path(__file__).parent))
from test_train import assert_same, make_trainer, params_of, toy  # noqa: E402


class WideNet(nnx.Module):
    """Dropout and batch norm (RNG and batch statistics), and a layer big enough that OCDBT stores its bytes
    in a data file without a checksum of its own (smaller arrays sit in checksummed b-tree nodes)."""

    def __init__(self, din=8, width=256, classes=3, *, rngs):
        self.l1 = dlcore.nn.Linear(din, width, rngs=rngs)
        self.bn = nnx.BatchNorm(width, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.l2 = dlcore.nn.Linear(width, classes, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.drop(jax.nn.relu(self.bn(self.l1(x)))))


def wide_trainer(**kw):
    return dlcore.Trainer(WideNet(rngs=nnx.Rngs(0)), optim.adam(1e-2), losses.cross_entropy, metrics=["accuracy"],
                          batch_size=16, progress=False, **kw)


def array_files(step_dir: Path) -> list[Path]:
    """The files holding the array data of one checkpoint (OCDBT data files, under a `d` folder)."""
    files = [f for f in (step_dir / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    return sorted(files, key=lambda f: (f.stat().st_size, f.read_bytes()))  # names are random, contents not


def flip_bit(files: list[Path], bit: int) -> None:
    """Flip bit number `bit` of the concatenation of `files`."""
    byte = bit // 8
    for f in files:
        size = f.stat().st_size
        if byte < size:
            data = bytearray(f.read_bytes())
            data[byte] ^= 1 << (bit % 8)
            f.write_bytes(bytes(data))
            return
        byte -= size
    raise IndexError(bit)


def flip_a_weight(step_dir: Path, scratch: Path) -> None:
    """Flip one bit of array data that Orbax reads back without complaint: only the digest can catch it.

    Each candidate is tried on a fresh copy under `scratch` (TensorStore caches what it read from a path).
    """
    files = array_files(step_dir)
    for attempt, bit in enumerate(range(sum(f.stat().st_size for f in files) * 8 // 2, 0, -997)):
        trial = scratch / f"try{attempt}" / step_dir.name
        shutil.copytree(step_dir, trial)
        flip_bit(array_files(trial), bit)
        try:
            ckpt.load(trial.parent, int(step_dir.name))
        except dlcore.CheckpointError as exc:
            if "does not match its digest" in exc.reason:
                flip_bit(files, bit)
                return
    raise AssertionError(f"no bit of {step_dir} alters an array silently")


def same_tree(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(u).dtype == np.asarray(v).dtype and np.array_equal(u, v) for u, v in zip(la, lb))


def legacy_save(directory, step, tree, meta, *, keep=2):
    """How checkpoints were written before digests: the array tree and the JSON document only."""
    tree = jax.tree.map(np.asarray, tree)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    with ocp.CheckpointManager(Path(directory).absolute(), options=options) as mngr:
        mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                meta=ocp.args.JsonSave(meta)), force=True)
        mngr.wait_until_finished()


def tree_template(trainer):
    return {**trainer.checkpoint_tree(), "callbacks": {}}


def one_warning(record, *needles) -> str:
    lines = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)
             and "newest good" in str(w.message)]
    assert len(lines) == 1, lines
    assert "\n" not in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- digests --------------------------------------------------------------------------------------------


def test_random_bit_flips_never_restore_altered_weights(tmp_path):
    rng = np.random.default_rng(0)
    tree = {"state": {"params": {"w": rng.normal(size=(64, 64)).astype(np.float32),
                                 "b": rng.normal(size=64).astype(np.float32)},
                      "step": np.int32(3)},
            "loop": {"count": np.int64(7), "key": np.array([1, 2], np.uint32)}}
    older = jax.tree.map(lambda a: a + 1, tree)
    pristine = tmp_path / "pristine"
    ckpt.save(pristine, 1, older, {"epoch": 1})
    ckpt.save(pristine, 2, tree, {"epoch": 2})
    total_bits = sum(f.stat().st_size for f in array_files(pristine / "2")) * 8
    pick = random.Random(0)
    counts = collections.Counter()
    for trial in range(40):
        run = tmp_path / f"trial{trial}"
        shutil.copytree(pristine, run)
        flip_bit(array_files(run / "2"), pick.randrange(total_bits))
        # the newest alone: equal arrays, or an error
        try:
            got, meta = ckpt.restore(run, tree, step=2)
        except dlcore.CheckpointError as exc:
            assert "\n" not in str(exc) and str(run / "2") in str(exc)
            counts["raised: digest" if "does not match its digest" in exc.reason else "raised: unreadable"] += 1
            newest_ok = False
        else:
            assert same_tree(got, tree) and meta == {"epoch": 2}, f"trial {trial}: altered weights restored"
            counts["verified"] += 1
            newest_ok = True
        # the fallback: the newest when it verifies, else the older one, each exactly as saved
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            got, meta, step = ckpt.restore_latest_good(run, tree)
        if newest_ok:
            assert step == 2 and same_tree(got, tree) and not record
        else:
            assert step == 1 and same_tree(got, older) and meta == {"epoch": 1}
            one_warning(record, str(run / "2"), str(run / "1"))
            counts["fell back"] += 1
        shutil.rmtree(run)
    print(f"\n40 single-bit flips: {dict(counts)}")
    raised = counts["raised: digest"] + counts["raised: unreadable"]
    assert counts["verified"] + raised == 40 and counts["fell back"] == raised
    # most flips land in array bytes that Orbax reads back without complaint: the digest is what stops them
    assert counts["raised: digest"] >= 20


def test_digest_is_written_inside_the_step_and_names_the_altered_array(tmp_path):
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
            "b": {"c": np.random.default_rng(0).normal(size=1000)}}
    where = ckpt.save(tmp_path, 5, tree, {"epoch": 5, "note": (1, 2)})
    doc = json.loads((where / "digest" / "metadata").read_text())
    assert doc["format"] == ckpt.DIGEST_FORMAT
    assert doc["arrays"]["a"]["dtype"] == "float32" and doc["arrays"]["a"]["shape"] == [2, 3]
    assert set(doc["arrays"]) == {"a", "b/c"}
    assert doc == ckpt.digest(tree, {"epoch": 5, "note": [1, 2]})
    out, meta = ckpt.load(tmp_path)
    assert same_tree(out, tree) and meta == {"epoch": 5, "note": [1, 2]}
    flip_a_weight(where, tmp_path / "scratch")
    for call in (lambda: ckpt.restore(tmp_path, tree), lambda: ckpt.load(tmp_path)):
        with pytest.raises(dlcore.CheckpointError, match=r"5 is corrupt: array b/c does not match its digest") as e:
            call()
        assert "\n" not in str(e.value)


def test_garbage_or_edited_metadata_is_caught(tmp_path):
    t = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path, keep=3)])
    t.fit(toy(), epochs=3)
    template = tree_template(t)
    # 3: bytes that are not JSON; 2: valid JSON with an edited value
    (tmp_path / "3" / "meta" / "metadata").write_bytes(b"\x00garbage{")
    meta = json.loads((tmp_path / "2" / "meta" / "metadata").read_text())
    (tmp_path / "2" / "meta" / "metadata").write_text(json.dumps({**meta, "epoch": 7}))
    with pytest.raises(dlcore.CheckpointError, match="3 cannot be restored") as e:
        ckpt.restore(tmp_path, template)
    assert "\n" not in str(e.value)
    with pytest.raises(dlcore.CheckpointError, match="2 is corrupt: its metadata does not match its digest"):
        ckpt.restore_meta(tmp_path, 2)
    fresh = make_trainer(callbacks=[dlcore.Checkpoint(tmp_path, keep=3)])
    with pytest.warns(RuntimeWarning) as record:
        epoch = fresh.callbacks[0].restore(fresh)
    assert epoch == 1
    line = one_warning(record, str(tmp_path / "3"), str(tmp_path / "2"), str(tmp_path / "1"))
    assert "metadata does not match its digest" in line and "cannot be read" in line
    assert fresh.history == {k: v[:1] for k, v in t.history.items()}


# -- resume: fallback, none good, old checkpoints -----------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted 4-epoch run, a run killed after epoch 3 (checkpoints 2 and 3), and one killed after
    epoch 2 whose checkpoints were written the old way, without digests."""
    base = tmp_path_factory.mktemp("runs")
    data, val = toy(), toy(40, seed=1)
    full = wide_trainer()
    full.fit(data, epochs=4, validation=val)
    wide_trainer(callbacks=[dlcore.Checkpoint(base / "run")]).fit(data, epochs=3, validation=val)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ckpt, "save", legacy_save)
        wide_trainer(callbacks=[dlcore.Checkpoint(base / "legacy")]).fit(data, epochs=2, validation=val)
    return {"base": base, "data": data, "val": val, "full": full}


def test_resume_skips_a_corrupt_newest_checkpoint_and_ends_bit_identical(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["base"] / "run", run)
    assert ckpt.steps(run) == [2, 3]
    flip_a_weight(run / "3", tmp_path / "scratch")
    second = wide_trainer(callbacks=[dlcore.Checkpoint(run)])
    with pytest.raises(dlcore.CheckpointError, match="does not match its digest"):  # caught only by the digest
        ckpt.restore(run, tree_template(second))
    with pytest.warns(RuntimeWarning) as record:
        hist = second.fit(runs["data"], epochs=4, validation=runs["val"], resume=True)
    line = one_warning(record, f"{run / '3'} (array ", "does not match its digest", f"using {run / '2'}")
    assert line.startswith("skipped a bad checkpoint: ")
    assert_same(params_of(runs["full"]), params_of(second))
    assert len(hist["loss"]) == 4
    np.testing.assert_allclose(hist["val_loss"], runs["full"].history["val_loss"], rtol=0, atol=0)
    # the corrupt checkpoint 3 was replaced by a good one
    assert ckpt.steps(run) == [3, 4]
    assert ckpt.restore_meta(run, 3)["epoch"] == 3
    ckpt.restore(run, tree_template(second), step=3)


def test_resume_with_every_checkpoint_corrupt_is_one_line(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["base"] / "run", run)
    flip_a_weight(run / "3", tmp_path / "scratch")
    for f in array_files(run / "2"):
        f.write_bytes(b"garbage")
    t = wide_trainer(callbacks=[dlcore.Checkpoint(run)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback line when nothing is good
        with pytest.raises(dlcore.CheckpointError, match=f"no good checkpoint in {run}") as e:
            t.fit(runs["data"], epochs=4, resume=True)
    assert "\n" not in str(e.value)
    assert "3: array " in str(e.value) and "2: cannot be read" in str(e.value)
    assert t.trace_counts == {}  # nothing compiled
    with pytest.raises(dlcore.CheckpointError, match="no checkpoint in"):
        ckpt.restore_latest_good(tmp_path / "none", tree_template(t))


def test_old_checkpoints_without_digests_still_restore(runs, tmp_path):
    legacy = tmp_path / "legacy"
    shutil.copytree(runs["base"] / "legacy", legacy)
    assert ckpt.steps(legacy) == [1, 2] and not (legacy / "2" / "digest").exists()
    tree, meta = ckpt.load(legacy)
    assert meta["epoch"] == 2
    second = wide_trainer(callbacks=[dlcore.Checkpoint(legacy)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ckpt.restore(legacy, tree_template(second))
        hist = second.fit(runs["data"], epochs=4, validation=runs["val"], resume=True)
    assert_same(params_of(runs["full"]), params_of(second))
    assert len(hist["loss"]) == 4
    assert (legacy / "4" / "digest").is_dir()  # new checkpoints carry digests
