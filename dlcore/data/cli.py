"""``dlcore data list | path | prepare NAME``: the datasets from the command line.

    dlcore data list [--json]     every dataset: name, embedded or real, splits, present locally
    dlcore data path [NAME]       the cache directory (of NAME)
    dlcore data prepare NAME ...  download and parse real datasets for offline use
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``data`` command to ``dlcore``'s subparsers."""
    p = subparsers.add_parser("data", help="datasets: list them, show the cache, prepare them for offline use")
    sub = p.add_subparsers(dest="data_command", required=True)
    ls = sub.add_parser("list", help="every dataset: embedded or real, splits, whether present locally")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    path = sub.add_parser("path", help="the cache directory ($DLCORE_DATA or ~/.cache/dlcore)")
    path.add_argument("name", nargs="?", help="a dataset: its directory in the cache")
    prep = sub.add_parser("prepare", help="download (checksummed) and parse real datasets into the cache")
    prep.add_argument("names", nargs="+", metavar="NAME")
    prep.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _present(name: str) -> bool:
    from dlcore.data import real
    from dlcore.data.sources import cache_dir

    dataset = real.DATASETS[name]
    _, missing = dataset._find(cache_dir() / name, dataset.splits)
    return not missing


def main(args: argparse.Namespace) -> None:
    """Runs ``dlcore data ...``; bad input raises ValueError (one line, exit 2)."""
    from dlcore import data

    if args.data_command == "list":
        rows = []
        for name in data.names():
            meta = data.info(name)
            rows.append({"name": name, "embedded": meta.embedded, "splits": list(meta.splits),
                         "present": True if meta.embedded else _present(name),
                         "description": meta.description})
        if args.json:
            print(json.dumps({"cache": str(data.cache_dir()), "datasets": rows}, indent=2))
            return
        print(f"cache: {data.cache_dir()}")
        for r in rows:
            kind = "embedded" if r["embedded"] else ("real, in cache" if r["present"] else "real, not downloaded")
            print(f"  {r['name']:<20} {kind:<21} splits: {', '.join(r['splits'])}")
    elif args.data_command == "path":
        if args.name is None:
            print(data.cache_dir())
            return
        meta = data.info(args.name)  # ValueError for an unknown name
        print("embedded (no files)" if meta.embedded else data.cache_dir() / args.name)
    elif args.data_command == "prepare":
        for name in args.names:
            data.info(name)  # check every name before the first download
        for name in args.names:
            where = data.prepare(name, progress=False if args.no_progress else True)
            print(f"{name}: {where if where == 'embedded' else 'ready in ' + where}")
    else:  # pragma: no cover - argparse enforces the choices
        raise ValueError(f"unknown data command {args.data_command!r}")


def _standalone(argv: list[str] | None = None) -> int:
    """``python -m dlcore.data.cli ...`` until ``dlcore data`` is wired in."""
    import sys

    parser = argparse.ArgumentParser(prog="dlcore")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        main(args)
    except ValueError as exc:
        print(f"dlcore: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_standalone())
