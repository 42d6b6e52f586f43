"""The one name -> thing registry that every by-name lookup in dlcore uses.

Models, optimizers, schedules, metrics, activations, datasets, examples and benchmarks are each a
`Registry`: the same verbs (`register`, `get`, `names`, `in`) and the same error for an unknown
name, which lists the close matches and where to see all names.

Example:
    >>> OPTIMIZERS = Registry("optimizer", normalize=str.lower, listing="dlcore.optim.names()")
    >>> @OPTIMIZERS.register("sgd")
    ... def sgd(lr): ...
    >>> OPTIMIZERS.get("SGD") is sgd
    True
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, Iterable, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "UnknownNameError"]


class UnknownNameError(ValueError, KeyError):
    """A name that no registry entry has. A `ValueError` (bad input) and a `KeyError` (failed lookup)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Things of one kind, found by name.

    Args:
        kind: what the entries are, for messages ("model", "optimizer", "metric", ...).
        normalize: maps a user's spelling to the stored key before lookup (e.g. `str.lower`);
            applied to registered names too.
        listing: how a user sees every name (e.g. "dlcore list"), named in the unknown-name error.
        loader: called once, before the first lookup, to fill a registry lazily (e.g. by importing
            the modules that register themselves).
    """

    def __init__(self, kind: str, *, normalize: Callable[[str], str] | None = None,
                 listing: str | None = None, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._normalize = normalize or (lambda s: s)
        self._listing = listing
        self._loader = loader
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    # -- filling -----------------------------------------------------------------------------------

    def register(self, name: str, obj: T | None = None, *, aliases: Iterable[str] = ()) -> Any:
        """Register `obj` under `name` (and `aliases`); without `obj`, a decorator that does.

        Raises:
            ValueError: when `name` or an alias is already taken.
        """
        def add(thing: T) -> T:
            key = self._key(name)
            seen = set(self._entries) | set(self._aliases)
            if key in seen:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            for alias in aliases:  # check every alias before adding anything
                if self._key(alias) in seen | {key}:
                    raise ValueError(f"{self.kind} alias {alias!r} is registered twice")
                seen.add(self._key(alias))
            self._entries[key] = thing
            self._aliases.update({self._key(a): key for a in aliases})
            return thing

        return add if obj is None else add(obj)

    # -- lookup ------------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self._normalize(name.strip())

    def _load(self) -> None:
        if self._loader is not None:
            loader, self._loader = self._loader, None
            loader()

    def names(self) -> list[str]:
        """The registered names (not aliases), sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load()
        key = self._key(name)
        return key in self._entries or key in self._aliases

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def resolve(self, name: str) -> str:
        """The registered name that `name` (any accepted spelling or alias) stands for.

        Raises:
            UnknownNameError: for a name nothing is registered under, listing the close matches.
        """
        if not isinstance(name, str):
            raise UnknownNameError(f"a {self.kind} name must be a string, got {type(name).__name__} {name!r}")
        self._load()
        key = self._key(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise UnknownNameError(self._unknown(name))
        return key

    def get(self, name: str) -> T:
        """The entry registered as `name`.

        Raises:
            UnknownNameError: for a name nothing is registered under, listing the close matches.
        """
        return self._entries[self.resolve(name)]

    def _unknown(self, name: str) -> str:
        candidates = list(self._entries) + list(self._aliases)
        close = difflib.get_close_matches(self._key(name), candidates, n=3, cutoff=0.6)
        close = list(dict.fromkeys(self._aliases.get(c, c) for c in close))
        known = self.names()
        text = f"unknown {self.kind} {name!r}"
        if close:
            text += f": did you mean {' or '.join(repr(c) for c in close)}?"
        if self._listing:
            return f"{text} ({len(known)} known: see {self._listing})"
        return f"{text} (known: {', '.join(known)})"
