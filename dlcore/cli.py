"""The `dlcore` command: list and run the worked examples.

    dlcore list [--json]
    dlcore run NAME [--quick] [--data D] [--epochs N] [--seed S] [--json FILE] [--checkpoint DIR [--resume | --overwrite]]
    dlcore bench [NAME ...] [--vs PEER] [--quick] [--json FILE]
    dlcore data list [--json] | path [NAME] | prepare NAME ...
"""

from __future__ import annotations

import argparse
import json
import sys

from dlcore import runner


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlcore", description="Deep learning the JAX way: the books' worked examples.")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="examples (name, book, section, where in it, data) and models (name, parameters)",
                        description="List the worked examples and the registered models with their parameter "
                                    "counts. The counts are cached in $XDG_CACHE_HOME/dlcore (~/.cache/dlcore): "
                                    "the first listing after an install or a change to the model code computes "
                                    "them (seconds), later ones answer at once.")
    ls.add_argument("--json", action="store_true", help="print one JSON object")
    r = sub.add_parser("run", help="run a worked example and print its figures beside the book's")
    r.add_argument("name")
    runner.add_run_arguments(r)
    b = sub.add_parser("bench", help="jit-compiled benchmarks, dlcore beside its peer library in one run")
    b.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    b.add_argument("--vs", help="only benchmarks against this peer (torch, scikit-learn)")
    b.add_argument("--quick", action="store_true", help="small sizes, seconds")
    b.add_argument("--json", dest="json_path", metavar="FILE", help="write the results as JSON")
    from dlcore.data import cli as data_cli

    data_cli.add_parser(sub)
    return p


def _list(as_json: bool) -> None:
    """Examples are read from their files, not imported; parameter counts come from a cache.

    See `dlcore.models.registry.param_counts`: the first listing after an install or a change to the
    model code builds every model abstractly (seconds); later ones read the cached counts.
    """
    from dlcore.models.registry import param_counts

    exs = [e.as_dict() for e in runner.examples()]
    mods = [{"name": name, "parameters": n} for name, n in param_counts().items()]
    if as_json:
        print(json.dumps({"examples": exs, "models": mods}, indent=2))
        return
    print("examples:")
    for e in exs:
        data = e["data"] + (f" (stand-in {e['standin']})" if e["data"] else e["standin"])
        print(f"  {e['name']:<20} {e['book']}, {e['section']} [{e['source']}]  data: {data}")
    print("models:")
    for m in mods:
        print(f"  {m['name']:<20} {m['parameters']:>12,} parameters")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return runner.guarded(lambda: _command(args))


def entry() -> None:
    """The console script: `main`, then exit (at once after an interrupt, see `runner.exit_process`)."""
    runner.exit_process(main())


def _command(args) -> None:
    if args.command == "list":
        _list(args.json)
    elif args.command == "run":
        runner.run(args.name, **runner.run_options(args))
    elif args.command == "bench":
        from dlcore import bench

        bench.run(args.names or None, vs=args.vs, quick=args.quick, json_path=args.json_path)
    elif args.command == "data":
        from dlcore.data import cli as data_cli

        data_cli.main(args)


if __name__ == "__main__":
    entry()
