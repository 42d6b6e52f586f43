"""Test-wide settings: no dataset download is ever attempted from the test suite."""

import os

# Examples and data tests must use what is on the machine (or the embedded stand-ins); the download
# path is tested against a local HTTP server with its own settings.
os.environ.setdefault("DLCORE_OFFLINE", "1")
