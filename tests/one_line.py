"""The shared check of bad-input tests: an error is raised, in one line, naming what it should."""

import pytest


def raises_one_line(fn, *parts, exc=ValueError) -> str:
    """Call `fn`, expect `exc` with a one-line message containing every string of `parts`; return the message."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert p in msg, msg
    return msg
