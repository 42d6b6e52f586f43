"""The `dlcore` command: list and run the worked examples.

    dlcore list [NAME] [--json]
    dlcore run NAME [--quick] [--data D] [--epochs N] [--seed S] [--json FILE] [--checkpoint DIR [--resume | --overwrite]]
    dlcore bench [NAME ...] [--vs PEER] [--quick] [--json FILE]
    dlcore data list [--json] | path [NAME] | prepare NAME ...
    dlcore export NAME --out FILE [--checkpoint DIR] [--input-shape 28,28,1] [--dtype D] [--int8] [--weights-file W.npz]

The command (`entry`, the console script) keeps JAX's compiled programs in a persistent cache, so that a second
run of the same example or benchmark skips most of its compilation; see `compilation_cache`. On Linux, `run` and
`bench` start again at once with glibc's large blocks in huge pages (`dlcore.memory`; DLCORE_MALLOC=system
keeps glibc's defaults).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dlcore import memory, runner

CACHE_ENV = "DLCORE_COMPILATION_CACHE"

_CACHE_HELP = (f"JAX's compiled programs are kept in a persistent cache, <dlcore cache dir>/jax ($DLCORE_DATA/jax, "
               f"else ~/.cache/dlcore/jax), so that later runs skip most compilation. {CACHE_ENV}=0 turns it off; "
               f"{CACHE_ENV}=DIR keeps it in DIR.")


def compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache for this process, as the `dlcore` command does at its start.

    Every compiled program is written to the folder and read back by later processes that compile the same
    program (same code, shapes, JAX version and machine): `jax_compilation_cache_dir` with the minimum compile
    time and entry size at 0, since on a CPU most of dlcore's programs compile in well under JAX's default
    threshold of one second. The folder is `<dlcore cache dir>/jax` (`dlcore.data.sources.cache_dir()`:
    `$DLCORE_DATA`, else ~/.cache/dlcore). `import dlcore` does not call this: a program that wants the cache
    calls it before its first compilation. The folder is not bounded (JAX's default): delete it to reclaim the
    space. XLA:CPU checks that a cached program was compiled for this CPU's features before it loads it, and
    recompiles otherwise; on CPUs where that check rejects every entry (jax-ml/jax#38445) the cache only costs
    a log line a program: turn it off there.

    The environment variable `DLCORE_COMPILATION_CACHE` decides: unset, "" or "1": on, in that folder; "0",
    "off" or "false": off; anything else: the folder to use.

    Returns:
        The cache folder, or None when turned off.

    Raises:
        ValueError: the folder is an existing file, or cannot be created.
    """
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("0", "off", "false", "no"):
        return None
    if value in ("", "1"):
        from dlcore.data.sources import cache_dir

        folder = cache_dir() / "jax"
    else:
        folder = Path(value).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"the compilation cache folder {folder} is a file; set {CACHE_ENV} to a folder, or to 0 "
                         f"to turn the cache off")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the compilation cache folder {folder} ({exc.strerror}); set {CACHE_ENV} "
                         f"to a writable folder, or to 0 to turn the cache off") from None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlcore", description="Deep learning the JAX way: the books' worked examples.",
                                epilog=_CACHE_HELP)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="examples (name, book, section, where in it, data) and models (name, "
                                     "parameters, arguments); with NAME, one of them in full",
                        description="List the worked examples and the registered models with their parameter "
                                    "counts and constructor arguments (name=default, as `dlcore.models.create` "
                                    "takes them). With NAME, show that one: a model's docstring summary, "
                                    "arguments and parameter count; an example's book, section, source, data "
                                    "and the book's figures. The counts are cached in $XDG_CACHE_HOME/dlcore "
                                    "(~/.cache/dlcore): the first listing after an install or a change to the "
                                    "model code computes them (seconds), later ones answer at once.")
    ls.add_argument("name", nargs="?", metavar="NAME", help="a model or example to show in full")
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
    x = sub.add_parser("export", help="serialise a model's predict function (jax.export) to one file",
                       description="Write a registered model's eval-mode predict function, with a free batch "
                                   "size, to FILE (dlcore.export): the file runs without the model's code "
                                   "(dlcore.export.load(FILE)(x)). NAME is a model (built with its defaults; "
                                   "--checkpoint DIR loads trained weights) or a checkpoint directory whose run "
                                   "recorded its model.")
    x.add_argument("name", metavar="NAME", help="a registered model (dlcore list), or a checkpoint directory")
    x.add_argument("--out", required=True, metavar="FILE", help="the export file to write")
    x.add_argument("--checkpoint", metavar="DIR", help="load the weights of this dlcore checkpoint (its newest)")
    x.add_argument("--input-shape", metavar="D1,D2,...",
                   help="one example's shape without the batch axis, e.g. 28,28,1 (default: from the model's "
                        "arguments, where they say it)")
    x.add_argument("--dtype", default="float32", help="the inputs' dtype (int32 for token ids; default float32)")
    x.add_argument("--int8", action="store_true", help="int8 Linear and Conv kernels (weight-only quantization)")
    x.add_argument("--weights-file", metavar="W.npz",
                   help="keep the weights out of FILE: write them to W.npz and make them the function's argument")
    x.add_argument("--seed", type=int, default=0, help="initialisation seed of a model without --checkpoint")
    return p


def _export(args) -> None:
    """`dlcore export`: every argument checked (one line each) before the model is built and traced."""
    from pathlib import Path

    from dlcore import checks, export

    shape = None
    if args.input_shape is not None:
        try:
            shape = tuple(int(d) for d in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ValueError(f"--input-shape must be positive integers separated by commas (one example, no batch "
                             f"axis), e.g. 28,28,1; got {args.input_shape!r}")
    export._dtype(args.dtype, "--dtype")
    checks.check_int(args.seed, "--seed", low=0)
    for flag, value, suffix in (("--out", args.out, None), ("--weights-file", args.weights_file, ".npz")):
        if value is None:
            continue
        path = Path(value).expanduser()
        if path.is_dir() or not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise ValueError(f"{flag} {value}: " + ("is a directory; give a file name" if path.is_dir() else
                                                    f"the folder {path.parent} does not exist"))
        if suffix and path.suffix != suffix:
            raise ValueError(f"{flag} must end in {suffix}, got {value!r}")
    name, model, shape = export.registered_model(args.name, checkpoint=args.checkpoint, seed=args.seed,
                                                 input_shape=shape)
    target = model
    if args.int8:
        from dlcore.quantize import quantize_int8

        target = quantize_int8(model)
    inside = args.weights_file is None
    out = export.export(target, args.out, input_shape=shape, dtype=args.dtype,
                        weights="inside" if inside else "argument")
    if not inside:
        export.save_weights(target, args.weights_file)
    source = f"checkpoint {args.checkpoint or args.name}" if (args.checkpoint or name != args.name) and \
        Path(args.checkpoint or args.name).expanduser().is_dir() else "initial weights"
    where = "inside" if inside else f"in {args.weights_file}"
    print(f"exported {name} ({source}{', int8 kernels' if args.int8 else ''}; weights {where}) for inputs "
          f"{export._shape_text((None, *shape))} {args.dtype}: {out} ({out.stat().st_size:,} bytes)")


def _json_default(value):
    """A default as JSON holds it (tuples become lists), else its repr."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _arguments(name: str) -> list[dict]:
    """Model `name`'s constructor arguments: ``{"name", "default"}``, or ``"required": True`` without one."""
    from dlcore.models.registry import arguments

    out = []
    for p in arguments(name):
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        if star or p.default is p.empty:
            out.append({"name": star + p.name, "required": not star})
        else:
            out.append({"name": p.name, "default": _json_default(p.default)})
    return out


def _signature_text(name: str) -> str:
    """``num_classes=1000, in_channels=3``: the arguments as Python spells them."""
    from dlcore.models.registry import arguments

    def text(p):
        star = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        return star + p.name if star or p.default is p.empty else f"{p.name}={p.default!r}"

    return ", ".join(text(p) for p in arguments(name))


def _list(as_json: bool, name: str | None = None) -> None:
    """Examples are read from their files, not imported; parameter counts come from a cache.

    See `dlcore.models.registry.param_counts`: the first listing after an install or a change to the
    model code builds every model abstractly (seconds); later ones read the cached counts. Arguments
    are read from the factories' signatures (nothing is built).
    """
    if name is not None:
        _show(name, as_json)
        return
    from dlcore.models.registry import param_counts

    exs = [e.as_dict() for e in runner.examples()]
    mods = [{"name": m, "parameters": n, "arguments": _arguments(m)} for m, n in param_counts().items()]
    if as_json:
        print(json.dumps({"examples": exs, "models": mods}, indent=2))
        return
    print("examples:")
    for e in exs:
        data = e["data"] + (f" (stand-in {e['standin']})" if e["data"] else e["standin"])
        print(f"  {e['name']:<20} {e['book']}, {e['section']} [{e['source']}]  data: {data}")
    print("models:")
    for m in mods:
        print(f"  {m['name']:<20} {m['parameters']:>12,} parameters  ({_signature_text(m['name'])})")


def _show(name: str, as_json: bool) -> None:
    """`dlcore list NAME`: one model and/or example (a name may be both) in full.

    Raises:
        UnknownNameError: a `ValueError` naming the close matches among models and examples.
    """
    from dlcore.models.registry import MODELS, param_counts, summary
    from dlcore.registry import Registry, UnknownNameError

    found = {}
    try:
        model = MODELS.resolve(name)
    except UnknownNameError:
        pass
    else:
        found["model"] = {"name": model, "summary": summary(model), "parameters": param_counts([model])[model],
                          "arguments": _arguments(model)}
    examples = {known.lower(): known for known in runner.EXAMPLES.names()}  # any case, as for models
    if name.strip().lower() in examples:
        found["example"] = runner.EXAMPLES.get(examples[name.strip().lower()])[1].as_dict()
    if not found:  # one error over both kinds, so the close matches come from either
        both = Registry("model or example", normalize=str.lower, listing="dlcore list")
        for known in dict.fromkeys([*MODELS.names(), *runner.EXAMPLES.names()]):
            both.register(known, known)
        both.resolve(name)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if "model" in found:
        m = found["model"]
        print(f"model {m['name']}: {m['summary']}")
        print(f"  parameters: {m['parameters']:,} (with the defaults)")
        print(f"  arguments:  {_signature_text(m['name']) or '(none)'}")
    if "example" in found:
        e = found["example"]
        if "model" in found:
            print()
        print(f"example {e['name']}: {e['title']}")
        print(f"  book:     {e['book']}, {e['section']}")
        print(f"  source:   {e['source']}")
        data = f"{e['data']} (stand-in {e['standin']})" if e["data"] else f"{e['standin']} (embedded)"
        print(f"  data:     {data}")
        figures = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                            for k, v in e["book_figures"].items())
        print(f"  book figures: {figures or '(none)'}")
        print(f"  run:      dlcore run {e['name']} [--quick]")


def main(argv: list[str] | None = None, *, cache: bool = False) -> int:
    """Run the command `argv` (default: `sys.argv[1:]`) in this process; returns the exit status.

    `cache` turns on the persistent compilation cache first (`compilation_cache`), as the console script
    does; left False, this process's JAX settings are not touched (tests and programs that call `main`).
    """
    args = _parser().parse_args(argv)

    def command():
        if cache:
            if args.command in ("run", "bench"):  # long-running: large blocks in huge pages (dlcore/memory.py)
                memory.relaunch()
            compilation_cache()
        _command(args)

    return runner.guarded(command)


def entry() -> None:
    """The console script: `main` with the compilation cache, then exit (at once after an interrupt, see
    `runner.exit_process`)."""
    runner.exit_process(main(cache=True))


def _command(args) -> None:
    if args.command == "list":
        _list(args.json, args.name)
    elif args.command == "run":
        runner.run(args.name, **runner.run_options(args))
    elif args.command == "bench":
        from dlcore import bench

        bench.run(args.names or None, vs=args.vs, quick=args.quick, json_path=args.json_path)
    elif args.command == "data":
        from dlcore.data import cli as data_cli

        data_cli.main(args)
    elif args.command == "export":
        _export(args)


if __name__ == "__main__":
    entry()
