"""The `dlcore` command: list, run, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest

from dlcore import cli, models


def test_list_json_has_every_example_with_book_and_section_and_models_with_counts(capsys):
    assert cli.main(["list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = {e["name"] for e in out["examples"]}
    assert {"thermometer", "autograd", "gradient_clipping", "mnist_convnet", "fashion_mlp"} <= names
    for e in out["examples"]:
        assert e["book"] and e["section"] and e["source"] and e["standin"]
    counts = {m["name"]: m["parameters"] for m in out["models"]}
    assert counts["mnist_convnet"] == 300_426  # torch: 160 + 4,640 + 294,976 + 650
    assert counts["mlp"] == 266_610           # 784*300+300 + 300*100+100 + 100*10+10


def test_list_plain(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist_convnet" in out and "300,426" in out


def test_list_shows_each_models_arguments_with_defaults(capsys):
    assert cli.main(["list", "--json"]) == 0
    mods = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert mods["resnet18"]["arguments"] == [{"name": "num_classes", "default": 1000},
                                             {"name": "in_channels", "default": 3}]
    assert mods["mlp"]["arguments"] == [{"name": "sizes", "default": [784, 300, 100, 10]},  # a tuple, as JSON
                                        {"name": "activation", "default": "relu"}]
    assert all("rngs" not in {a["name"] for a in m["arguments"]} for m in mods.values())
    assert cli.main(["list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.split()[:1] == ["mlp"])
    assert "266,610 parameters" in line and "(sizes=(784, 300, 100, 10), activation='relu')" in line


def test_list_one_model(capsys):
    assert cli.main(["list", "ResNet18"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model resnet18: ResNet-18: basic units (2, 2, 2, 2)")
    assert "parameters: 11,689,512" in out and "num_classes=1000, in_channels=3" in out
    assert "example" not in out
    assert cli.main(["list", "resnet18", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["model"]
    assert m["parameters"] == 11_689_512 and m["summary"].startswith("ResNet-18")
    assert m["arguments"][0] == {"name": "num_classes", "default": 1000}


def test_list_one_example(capsys):
    from dlcore import runner

    assert cli.main(["list", "thermometer"]) == 0
    out = capsys.readouterr().out
    ex = runner.EXAMPLES.get("thermometer")[1]
    assert out.startswith(f"example thermometer: {ex.title}")
    assert ex.book in out and ex.section in out and ex.source in out and "data:     thermometer" in out
    assert "gd_w 5.3671" in out  # a book figure
    assert cli.main(["list", "Thermometer", "--json"]) == 0  # any case, as model names
    assert json.loads(capsys.readouterr().out) == {"example": ex.as_dict()}
    # a name that is both a model and an example shows both
    assert cli.main(["list", "mnist_convnet", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"model", "example"}


def test_list_unknown_name_is_one_line_with_close_matches(capsys):
    assert cli.main(["list", "resnet9000"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("dlcore: error: unknown model or example 'resnet9000': did you mean 'resnet50'")
    assert cli.main(["list", "thermomter"]) == 2
    assert "did you mean 'thermometer'?" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "no_such_example"], "unknown example 'no_such_example'"),
    (["run", "mnist_convnet", "--data", "cifar10"], "runs on mnist or digits, not 'cifar10'"),
    (["run", "mnist_convnet", "--resume"], "--resume needs --checkpoint"),
    (["run", "thermometer", "--epochs", "0"], "--epochs must be >= 1"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("dlcore: error:")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'resnet9000': did you mean 'resnet50'.*see dlcore list"):
        models.create("resnet9000")


def test_model_names_are_case_insensitive():
    assert models.count_params(models.create("MLP")) == 266_610


def test_listed_parameter_counts_are_cached_and_equal_count_params(tmp_path, monkeypatch):
    from flax import nnx

    from dlcore.models import registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    wanted = ["mlp", "lenet5", "resnet18", "mnist_convnet"]
    truth = {n: models.count_params(nnx.eval_shape(lambda: models.create(n))) for n in wanted}
    assert registry.param_counts(wanted) == truth  # computed, then written
    cache = tmp_path / "dlcore" / "param_counts.json"
    assert set(json.loads(cache.read_text())) == set(wanted)
    monkeypatch.setattr(registry, "count_params", None)  # a second call must not build anything
    assert registry.param_counts(wanted) == truth
    # a stale key (another version or changed model code) is recomputed, not trusted
    data = json.loads(cache.read_text())
    data["mlp"] = ["stale", 1]
    cache.write_text(json.dumps(data))
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert registry.param_counts(["mlp"]) == {"mlp": truth["mlp"]}
    assert json.loads(cache.read_text())["mlp"][1] == truth["mlp"]


def test_list_reads_examples_without_importing_them(capsys):
    import sys

    from dlcore import runner

    before = {m for m in sys.modules if m.startswith("dlcore.examples.")}
    listed = runner.examples()
    assert {m for m in sys.modules if m.startswith("dlcore.examples.")} == before
    imported = [runner.get(e.name).EXAMPLE for e in listed]
    assert listed == imported


def test_run_writes_the_json_contract(tmp_path, capsys):
    path = tmp_path / "out.json"
    assert cli.main(["run", "autograd", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert set(report) >= {"example", "dataset", "metrics", "book", "seconds", "device"}
    assert report["metrics"] == {"f": -3.0, "df_dx": 3.0, "df_dy": 3.0, "df_dz": -1.0}
    assert capsys.readouterr().out.splitlines()[0].startswith("data: ")
