"""Test-wide settings: no dataset download is ever attempted from the test suite."""

import os

# Examples and data tests must use what is on the machine (or the embedded stand-ins); the download
# path is tested against a local HTTP server with its own settings.
os.environ.setdefault("DLCORE_OFFLINE", "1")


import functools  # noqa: E402
import io  # noqa: E402

import pytest  # noqa: E402


@functools.lru_cache(maxsize=None)
def _quick_run(name: str):
    from dlcore import runner

    out = io.StringIO()
    report = runner.run(name, out=out, progress=False, quick=True)
    return report, out.getvalue()


@pytest.fixture(scope="session")
def quick_run():
    """`quick_run(name) -> (report, printed text)`: an example in quick mode, run once per session, so the test
    that every example runs and the tests of one example's figures share the run."""
    return _quick_run
