"""Large temporary blocks in transparent huge pages: the setting the `dlcore` command starts with on Linux.

Why. At every call, a compiled XLA:CPU function allocates one block for its temporary arrays and frees it
at the end. glibc's malloc maps a block of more than 32 MiB fresh from the kernel and unmaps it when it
is freed, so a training step with a large batch page-faults all of its temporary memory in again, 4 KiB
at a time. Measured on this project's 2-core CPU (one step, `Trainer.fit`, batch 256):

- Ketkar & Moolayil's batch-norm CNN (a 67 MiB block): 17,000 page faults and 23-30 ms of kernel time a
  step, 32-38 ms a step; in huge pages, 300-700 faults and 3-5 ms, 18-19 ms a step;
- Mastering PyTorch's ConvNet: 18,800 faults, 45-49 ms a step; in huge pages, 370 faults, 28-34 ms;
- Géron's Fashion-MNIST CNN: 67,600 faults, 394-418 ms a step; in huge pages 170-440, 358-374 ms.

Small steps (whose blocks glibc keeps for reuse) and small batches are unchanged.

What. glibc 2.35 and later maps such blocks in transparent huge pages (2 MiB: 512 times fewer faults)
when its tunable ``glibc.malloc.hugetlb=1`` is set, which it reads only when a process starts, from the
environment variable ``GLIBC_TUNABLES``. So the `dlcore` command's long-running commands (``dlcore run``,
``dlcore bench``) start themselves again at once with it set (`relaunch`), as PyTorch's CPU launcher
restarts a program with its allocator settings; the processes they start inherit it. A program that
imports dlcore gets it by being started with the variable set::

    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py

``DLCORE_MALLOC=system`` keeps the command from setting it. Other settings tried: one malloc arena for
all threads with large blocks from the heap (``M_ARENA_MAX`` 1, ``M_MMAP_MAX`` 0, no trimming) removes
the faults too (the batch-norm CNN 18 ms a step), but XLA's threads then wait for one another's
allocations: small steps 15-25% slower (Subramanian's CNN at batch 32: 1.9 -> 2.4 ms).
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

__all__ = ["TUNABLE", "huge_pages", "launch_environment", "plain_environment", "relaunch"]

TUNABLE = "glibc.malloc.hugetlb=1"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    try:
        return tuple(int(p) for p in version.split(".")[:2]) if name == "glibc" else ()
    except ValueError:
        return ()


def huge_pages(environ=None) -> bool:
    """Whether this process's glibc maps its large blocks in huge pages (`TUNABLE` in ``GLIBC_TUNABLES``
    of `environ`, default this process's, as it started)."""
    env = os.environ if environ is None else environ
    return TUNABLE in env.get("GLIBC_TUNABLES", "").split(":")


def launch_environment(environ=None) -> dict[str, str] | None:
    """`environ` (default: this process's) with `TUNABLE` added to ``GLIBC_TUNABLES``, or None where
    there is nothing to add: already set, ``DLCORE_MALLOC=system``, not Linux with glibc 2.35 or later,
    or the kernel's transparent huge pages turned off ("never").

    Raises:
        ValueError: ``DLCORE_MALLOC`` is neither "auto" nor "system".
    """
    env = dict(os.environ if environ is None else environ)
    mode = env.get("DLCORE_MALLOC", "auto").strip().lower() or "auto"
    if mode not in ("auto", "system"):
        raise ValueError(f"DLCORE_MALLOC must be 'auto' or 'system', got {mode!r}")
    if mode == "system" or huge_pages(env) or platform.system() != "Linux" or _glibc_version() < (2, 35):
        return None
    try:
        if "[never]" in _THP.read_text():
            return None
    except OSError:
        pass  # no sysfs entry: the tunable is harmless where it does nothing
    tunables = env.get("GLIBC_TUNABLES", "")
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return env


def plain_environment(environ=None) -> dict[str, str]:
    """`environ` (default: this process's) without `TUNABLE`, other tunables kept: for a process that should
    start with glibc's defaults (e.g. a benchmark's peer library, as its users run it)."""
    env = dict(os.environ if environ is None else environ)
    tunables = [t for t in env.pop("GLIBC_TUNABLES", "").split(":") if t and t != TUNABLE]
    if tunables:
        env["GLIBC_TUNABLES"] = ":".join(tunables)
    return env


def relaunch() -> None:
    """Start this program again at once, in place (``os.execve``), with `launch_environment`; returns
    without doing anything where that is None, and where starting again fails."""
    env = launch_environment()
    argv = getattr(sys, "orig_argv", None)
    if env is None or not argv:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    except OSError:
        return
