"""Test-wide settings: no dataset download is ever attempted from the test suite."""

import os

# Examples and data tests must use what is on the machine (or the embedded stand-ins); the download
# path is tested against a local HTTP server with its own settings.
os.environ.setdefault("DLCORE_OFFLINE", "1")
# On a CPU dlcore times each large convolution's lowerings once and keeps the fastest (dlcore.nn.conv_tuning):
# timings differ from run to run, and so could a figure's last float32 digits. The suite runs the plain XLA
# call, for repeatable figures and a shorter run; tests/test_nn_conv.py turns measuring on and checks
# that every lowering gives the plain call's results.
os.environ.setdefault("DLCORE_CONV_TUNING", "off")
# Many tests compile the same small programs again (a fresh Trainer or model on the same shapes). One persistent
# compilation cache per test process, fresh for each run and shared with the `dlcore` subprocesses the tests start
# (through DLCORE_COMPILATION_CACHE), turns each repeat into a cache read: the suite's largest saving. The folder
# is the process's own, so no two pytest processes (`pytest -n 2`) race on one entry; it is removed at the end.
import shutil  # noqa: E402
import tempfile  # noqa: E402

os.environ["DLCORE_COMPILATION_CACHE"] = _JAX_CACHE = tempfile.mkdtemp(prefix="dlcore-test-jax-")

from dlcore.cli import compilation_cache  # noqa: E402

compilation_cache()


def pytest_unconfigure(config):
    shutil.rmtree(_JAX_CACHE, ignore_errors=True)


import functools  # noqa: E402
import http.server  # noqa: E402
import io  # noqa: E402
import threading  # noqa: E402

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


# A real HTTP server on 127.0.0.1 for the download tests: it serves the bytes a test puts in `files`
# (path -> bytes), records `requests` as (path, Range header), honours ``Range`` unless `honour_range` is
# False, and can cut a connection after `cut_after[path]` bytes of the body.

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = srv.cut_after.pop(self.path, None)
        if cut is not None:
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """The running server; its `url` is the base of every path."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cut_after, srv.honour_range = {}, [], {}, True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty dlcore data cache in tmp_path, downloads allowed (the download tests' server answers them)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DLCORE_DATA", str(cache))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.delenv("DLCORE_OFFLINE", raising=False)
    monkeypatch.delenv("DLCORE_MIRROR", raising=False)
    return cache
