"""A model as data: the spec is the constructor's arguments, always builds the same model, and
checks its values (prompt templates included) without loading anything."""

from __future__ import annotations

import dataclasses
import inspect
import pickle

import pytest

from autodistill_metaclip import TEMPLATE_PRESETS, MetaCLIP
from autodistill_metaclip.engine.spec import ModelSpec, resolve_templates


def test_the_spec_is_the_constructors_arguments() -> None:
    """One list of options: every constructor option is a ModelSpec field (device apart), so a
    spec always builds the same model; the CLI takes its model options from the same fields."""
    parameters = set(inspect.signature(MetaCLIP.__init__).parameters) - {"self", "device"}
    assert parameters == {f.name for f in dataclasses.fields(ModelSpec)}
    model = MetaCLIP({"a": "a", "b": "b"}, "demo", batch_size=3, prompt_templates="a {}")
    model.set_ontology({"x": "x", "y": "y"}, prompt_templates="openai")
    rebuilt = model.spec.build()
    assert (rebuilt.batch_size, rebuilt.classes) == (3, ["x", "y"])
    assert rebuilt.prompt_templates == model.prompt_templates and len(model.prompt_templates) == 80
    assert pickle.loads(pickle.dumps(model.spec)) == model.spec  # for Ray actors


def test_batch_size_changes_reach_the_spec(demo_model: MetaCLIP) -> None:
    try:
        demo_model.batch_size = 7
        assert demo_model.spec.batch_size == 7
        assert demo_model.spec.build().batch_size == 7
        with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
            demo_model.batch_size = 0
    finally:
        demo_model.batch_size = 32


def test_presets() -> None:
    assert len(TEMPLATE_PRESETS["openai"]) == 80
    assert TEMPLATE_PRESETS["openai"][0] == "a bad photo of a {}."
    model = MetaCLIP({"red circle": "rc", "blue square": "bs"}, "demo", prompt_templates="openai")
    assert model.prompt_templates == TEMPLATE_PRESETS["openai"]
    assert resolve_templates("simple") == TEMPLATE_PRESETS["simple"]
    assert resolve_templates("a {}") == ("a {}",) and resolve_templates(None) is None
    assert resolve_templates(["a {}", "the {}."]) == ("a {}", "the {}.")


@pytest.mark.parametrize(
    ("templates", "match"),
    [
        ("imagenet", "expected a preset"),
        (["a {} and {}"], "exactly one {}"),
        ([], "exactly one {}"),
        (["a {}", 3], "exactly one {}"),
    ],
)
def test_bad_templates(templates, match) -> None:
    with pytest.raises(ValueError, match=match):
        MetaCLIP(None, "demo", prompt_templates=templates)


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size: expected a positive integer, but got 0"),
        ({"batch_size": True}, ValueError, "batch_size: expected a positive integer"),
        ({"decode_memory": 1.5}, ValueError, "decode_memory: expected a positive integer"),
        ({"precision": "fp8"}, ValueError, "precision: expected one of fp32, fp16, bf16"),
        ({"draft_decoding": "yes"}, TypeError, "draft_decoding: expected True or False"),
        ({"prompt_templates": "x"}, ValueError, "prompt_templates: expected a preset"),
    ],
)
def test_a_spec_checks_its_values_without_loading(fields, error, match) -> None:
    with pytest.raises(error, match=match):
        ModelSpec(checkpoint="no-such-checkpoint", **fields)
    assert ModelSpec(checkpoint="no-such-checkpoint").checkpoint == "no-such-checkpoint"
