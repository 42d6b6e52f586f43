"""dlcore.registry: the one name -> thing registry, and every by-name lookup failing the same way."""

from __future__ import annotations

import pytest

from dlcore.registry import Registry, UnknownNameError


def test_register_directly_and_as_decorator_then_get_names_in():
    reg = Registry("widget")

    @reg.register("spanner")
    def spanner():
        return "spanner"

    assert reg.register("hammer", "a hammer") == "a hammer"
    assert reg.get("spanner") is spanner and reg.get("hammer") == "a hammer"
    assert reg.names() == ["hammer", "spanner"] and len(reg) == 2
    assert "hammer" in reg and "saw" not in reg and 3 not in reg


def test_aliases_and_normalisation_resolve_to_the_registered_name():
    reg = Registry("schedule", normalize=str.lower)
    reg.register("cosine", "COS", aliases=["CosineAnnealingLR"])
    for spelling in ("cosine", "COSINE", " Cosine ", "cosineannealinglr", "CosineAnnealingLR"):
        assert reg.resolve(spelling) == "cosine" and reg.get(spelling) == "COS"
    assert reg.names() == ["cosine"]  # aliases are accepted, not listed


def test_registering_a_name_or_an_alias_twice_fails():
    reg = Registry("model", normalize=str.lower)
    reg.register("resnet18", 1, aliases=["rn18"])
    with pytest.raises(ValueError, match="model 'ResNet18' is registered twice"):
        reg.register("ResNet18", 2)
    with pytest.raises(ValueError, match="model 'rn18' is registered twice"):
        reg.register("rn18", 2)
    with pytest.raises(ValueError, match="model alias 'resnet18' is registered twice"):
        reg.register("resnet-18", 2, aliases=["resnet18"])
    assert reg.get("resnet18") == 1
    assert "resnet-18" not in reg  # a failed registration adds nothing


def test_unknown_name_names_close_matches_and_the_listing():
    reg = Registry("optimizer", listing="dlcore.optim.names()")
    for name in ("adam", "adamw", "nadam", "sgd"):
        reg.register(name, name)
    with pytest.raises(UnknownNameError) as err:
        reg.get("adamm")
    message = str(err.value)
    assert message.startswith("unknown optimizer 'adamm': did you mean 'adam'")
    assert "(4 known: see dlcore.optim.names())" in message
    assert isinstance(err.value, ValueError) and isinstance(err.value, KeyError)
    with pytest.raises(UnknownNameError, match=r"^unknown optimizer 'zzz' \("):  # nothing close: no guess
        reg.get("zzz")


def test_without_a_listing_the_error_lists_every_name():
    reg = Registry("benchmark")
    reg.register("loader", 1)
    reg.register("training", 2)
    with pytest.raises(ValueError, match=r"unknown benchmark 'lodaer': did you mean 'loader'\? "
                                         r"\(known: loader, training\)"):
        reg.get("lodaer")


def test_a_close_alias_is_suggested_by_its_registered_name():
    reg = Registry("activation")
    reg.register("relu_squared", 1, aliases=["relu2"])
    with pytest.raises(ValueError, match="did you mean 'relu_squared'"):
        reg.get("relu3")


@pytest.mark.parametrize("name", [3, None, ("a",)])
def test_a_name_that_is_not_a_string_is_a_clear_value_error(name):
    reg = Registry("metric")
    reg.register("accuracy", 1)
    with pytest.raises(ValueError, match=f"a metric name must be a string, got {type(name).__name__}"):
        reg.get(name)


def test_the_loader_fills_the_registry_once_on_first_use():
    calls = []
    reg = Registry("example", loader=lambda: (calls.append(1), reg.register("autograd", "mod")))
    assert calls == []
    assert reg.names() == ["autograd"] and "autograd" in reg and reg.get("autograd") == "mod"
    assert calls == [1]


# ---- every registry of dlcore fails a misspelt name the same way ---------------------------------------


def _model(name):
    from dlcore import models

    models.create(name)


def _optimizer(name):
    from dlcore import optim

    optim.create(name, lr=0.1)


def _schedule(name):
    from dlcore import schedules

    schedules.create(name, lr=0.1)


def _metric(name):
    from dlcore import metrics

    metrics.get(name)


def _activation(name):
    from dlcore.nn import activations

    activations.get(name)


def _dataset(name):
    from dlcore import data

    data.load(name)


def _example(name):
    from dlcore import runner

    runner.get(name)


def _benchmark(name):
    from dlcore import bench

    bench.run([name])


@pytest.mark.parametrize("lookup, misspelt, close", [
    (_model, "resnt18", "resnet18"),
    (_optimizer, "adamm", "adam"),
    (_schedule, "cosin", "cosine"),
    (_metric, "precison", "precision"),
    (_activation, "leaky_rel", "leaky_relu"),
    (_dataset, "mnsit", "mnist"),
    (_example, "thermometr", "thermometer"),
    (_benchmark, "lodaer", "loader"),
], ids=["model", "optimizer", "schedule", "metric", "activation", "dataset", "example", "benchmark"])
def test_every_registry_fails_a_misspelt_name_with_one_value_error_naming_it_and_a_close_match(
        lookup, misspelt, close):
    with pytest.raises(ValueError) as err:
        lookup(misspelt)
    message = str(err.value)
    assert f"'{misspelt}'" in message and f"'{close}'" in message
    assert "\n" not in message  # one line: the CLI prints it as `dlcore: error: ...`
