from __future__ import annotations

import pytest

from roost.models.names import InvalidName, Name


def test_defaults_and_short_form() -> None:
    name = Name.parse("qwen2.5-coder")
    assert (name.host, name.namespace, name.model, name.tag) == (
        "registry.ollama.ai", "library", "qwen2.5-coder", "latest")
    assert name.short == "qwen2.5-coder:latest"


def test_namespace_host_and_tag() -> None:
    name = Name.parse("example.com:5000/team/model:q4")
    assert (name.host, name.namespace, name.model, name.tag) == (
        "example.com:5000", "team", "model", "q4")
    assert Name.parse("team/model").short == "team/model:latest"


def test_comparison_is_case_insensitive() -> None:
    assert Name.parse("Qwen2.5-Coder:0.5B").key == Name.parse("qwen2.5-coder:0.5b").key


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "a/b/c/d", "model:../x", "-x", "m:t/..",
                                 "model name", "..:x"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        Name.parse(bad)
