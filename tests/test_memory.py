"""dlcore.memory: the `dlcore` command's huge pages for large blocks, and what they change."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlcore import memory

ROOT = Path(__file__).resolve().parent.parent
SUPPORTED = memory.launch_environment({}) is not None  # Linux, glibc 2.35+, huge pages not turned off
needs_support = pytest.mark.skipif(not SUPPORTED, reason="glibc 2.35+ on Linux with transparent huge pages")


@needs_support
def test_the_launch_environment_adds_the_tunable_once_and_keeps_the_others():
    env = memory.launch_environment({"PATH": "/bin"})
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": memory.TUNABLE} and memory.huge_pages(env)
    other = memory.launch_environment({"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"})
    assert other["GLIBC_TUNABLES"] == f"glibc.malloc.tcache_count=0:{memory.TUNABLE}"
    assert memory.launch_environment(other) is None                   # already there: nothing to do
    assert memory.launch_environment({"DLCORE_MALLOC": "system"}) is None
    assert not memory.huge_pages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=10"})
    # and back: the tunable removed, the others kept (PyTorch's benchmark process)
    assert memory.plain_environment(other) == {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
    assert memory.plain_environment(env) == {"PATH": "/bin"}


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="DLCORE_MALLOC must be 'auto' or 'system', got 'bogus'"):
        memory.launch_environment({"DLCORE_MALLOC": "bogus"})


def _run(code: str, env: dict) -> list[str]:
    env = {**env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@needs_support
def test_relaunch_starts_the_program_again_once_with_the_tunable():
    code = "import os; from dlcore import memory; print(memory.huge_pages()); memory.relaunch()"
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "DLCORE_MALLOC")}
    assert _run(code, env) == ["False", "True"]                       # the first start, then the second
    assert _run(code, {**env, "DLCORE_MALLOC": "system"}) == ["False"]


# A jitted function whose temporary block (sin of a 64 MiB input, a product's operand) is 64 MiB or more,
# twice the largest block glibc keeps for reuse.
_FAULTS = """
import resource, jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.sum(jnp.sin(x) @ jnp.cos(x).T[:, :64]))
x = jnp.ones((4096, 4096), jnp.float32)
f(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    f(x).block_until_ready()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 4)
"""


@needs_support
def test_huge_pages_cut_the_page_faults_of_a_large_temporary_block():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    plain = int(_run(_FAULTS, env)[0])
    huge = int(_run(_FAULTS, memory.launch_environment(env))[0])
    assert plain > 12000                                 # 4 KiB pages: the block faulted in again at every call
    assert huge * 5 < plain, (plain, huge)               # 2 MiB pages
