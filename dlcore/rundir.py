"""A run's directory and output files, checked before training: `dlcore run` fails in its first second,
with one line, rather than after an hour of training.

- `check_output_file` / `check_output_dir`: a path a run will write (--json, --checkpoint, the plot
  folder) is a file or a folder as needed and can be written (probed by creating a file there).
- `write_json`: a JSON document written atomically (a temporary file beside it, then `os.replace`);
  no temporary file is left behind when the write fails.
- `RunLock`: an exclusive lock file in a checkpoint directory, holding the owner's process id. The
  operating system releases it when the process ends, however it ends, so a lock left by a killed run
  is taken over by the next one.
- `checkpoint_dirs` / `remove_checkpoints`: the checkpoint directories in a run's directory (itself
  and the per-model subdirectories of `Context.trainer_kwargs(tag=...)`), and removing their
  checkpoints for --overwrite.
- `compare`: the recorded hyperparameters of a run against those of the run that would continue it.

Every failure is a one-line `ValueError` (the `dlcore` command prints it and exits with 2).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

LOCK_NAME = "dlcore.lock"
_TMP_MARK = ".orbax-checkpoint-tmp"


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _existing_ancestor(start: Path, flag: str, shown: Any) -> Path:
    """The nearest existing folder at or above `start`; a file on the way is an error."""
    p = start
    while not p.exists():
        if p.parent == p:
            break
        p = p.parent
    if not p.is_dir():
        raise ValueError(f"{flag} {shown}: {p} is a file, not a directory")
    return p


def _probe(folder: Path, flag: str, path: Any) -> None:
    """Create and delete a file in `folder`: the only test that is right for every user (root included)."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".dlcore-probe-")
    except OSError as exc:
        raise ValueError(f"{flag} {path}: cannot write in {folder} ({_why(exc)})") from None
    os.close(fd)
    os.unlink(name)


def check_output_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` is a file the run can create or replace (its folder may not exist yet). Creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.is_dir():
        raise ValueError(f"{flag} {path} is a directory; give a file name, e.g. {Path(path) / 'report.json'}")
    if str(path).endswith(os.sep) or (os.altsep and str(path).endswith(os.altsep)):
        raise ValueError(f"{flag} {path} names a directory; give a file name")
    _probe(_existing_ancestor(p.parent, flag, path), flag, path)
    return p


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """`path` is a folder the run can create or write in. Creates nothing."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {path} is a file; it needs a directory")
    _probe(_existing_ancestor(p, flag, path), flag, path)
    return p


def write_json(path: str | os.PathLike, obj: Any, flag: str = "--json") -> None:
    """Write `obj` as JSON to `path` atomically: readers see the old file or the new one, never a part.

    The folder is created if needed; on failure the temporary file is removed and a one-line ValueError
    names the path.
    """
    p = Path(path).expanduser()
    text = json.dumps(obj, indent=2) + "\n"
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        raise ValueError(f"cannot write {flag} {path} ({_why(exc)})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


# -- the lock -------------------------------------------------------------------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _read_holder(path: Path) -> str:
    for _ in range(20):  # the holder writes its pid just after taking the lock
        try:
            text = path.read_text().split()
        except OSError:
            text = []
        if text:
            return text[0]
        time.sleep(0.05)
    return "unknown"


class RunLock:
    """An exclusive lock on a run's checkpoint directory: `DIR/dlcore.lock` holds the owner's pid.

    With `fcntl` (Linux, macOS) the lock is an advisory `flock` on that file: the operating system drops
    it when the process ends (even killed), so a stale file is simply taken over. Elsewhere the file is
    created exclusively and a file whose process is gone is taken over.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser().absolute()
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def _refuse(self, holder: str) -> ValueError:
        return ValueError(f"--checkpoint {self.directory} is in use by another dlcore run (process {holder}); "
                          f"wait for it to end or use another directory")

    def acquire(self) -> "RunLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self._acquire_exclusive()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._refuse(_read_holder(self.path)) from None
            try:  # the holder before us may have removed the file between our open and our lock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def _acquire_exclusive(self) -> "RunLock":  # pragma: no cover - Windows
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder.isdigit() and _pid_alive(int(holder)):
                    raise self._refuse(holder) from None
                try:
                    os.unlink(self.path)  # stale: its process is gone
                except OSError:
                    pass
                continue
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            self._fd = fd
            return self
        raise self._refuse(_read_holder(self.path))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiting process then retries on a new file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- checkpoints in a run's directory ------------------------------------------------------------------

def _is_step_dir(p: Path) -> bool:
    return p.name.isdigit() or _TMP_MARK in p.name


def checkpoint_dirs(directory: str | os.PathLike, depth: int = 2) -> dict[Path, int]:
    """`{folder: latest step}` for `directory` and its subfolders (to `depth` levels) holding checkpoints."""
    from dlcore import checkpoint as ckpt

    root = Path(directory).expanduser().absolute()
    found: dict[Path, int] = {}

    def walk(d: Path, level: int) -> None:
        if not d.is_dir():
            return
        step = ckpt.latest_step(d) if any(c.is_dir() and c.name.isdigit() for c in d.iterdir()) else None
        if step is not None:
            found[d] = step
        if level < depth:
            for child in sorted(d.iterdir()):
                if child.is_dir() and not _is_step_dir(child):
                    walk(child, level + 1)

    walk(root, 0)
    return found


def remove_checkpoints(directory: str | os.PathLike, dirs: dict[Path, int] | None = None) -> None:
    """Delete the checkpoints (step folders, finished or not) of `directory` and of its checkpoint
    subfolders, then those subfolders when empty; other files are left alone."""
    root = Path(directory).expanduser().absolute()
    dirs = checkpoint_dirs(root) if dirs is None else dirs
    for d in dirs:
        for child in d.iterdir():
            if child.is_dir() and _is_step_dir(child):
                shutil.rmtree(child)
        if d != root:
            try:
                d.rmdir()
            except OSError:
                pass


def describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def compare(recorded: dict[str, Any], wanted: dict[str, Any], where: Path,
            skip: tuple[str, ...] = ("epochs",)) -> None:
    """Raise when a hyperparameter recorded in both differs (keys in `skip` and keys only one has pass)."""
    for key, value in wanted.items():
        if key in skip or key not in recorded:
            continue
        old = recorded[key]
        if old != value and not (isinstance(old, list) and isinstance(value, tuple) and old == list(value)):
            raise ValueError(f"resuming: {key} {describe(value)} differs from the run's {key} {describe(old)} "
                             f"in {where}; continue it unchanged, or start afresh with --overwrite")
