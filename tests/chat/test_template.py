from __future__ import annotations

import pytest

from roost.chat.template import TemplateRenderError, render
from roost.models.catalog import GEMMA_TEMPLATE


def test_gemma_turns() -> None:
    text = render(GEMMA_TEMPLATE, [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ])
    assert text == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                    "<start_of_turn>model\nHello!<end_of_turn>\n"
                    "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")


def test_default_chatml_and_tojson() -> None:
    assert render(None, [{"role": "user", "content": "x"}]) == (
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")
    out = render("{{ tools | tojson }}", [], tools=[{"name": "é<"}])
    assert out == '[{"name": "é<"}]'


@pytest.mark.parametrize("evil", [
    "{{ messages.__class__.__mro__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{% set x = messages.append(1) %}",
])
def test_sandbox_refuses_escapes(evil: str) -> None:
    with pytest.raises(TemplateRenderError):
        render(evil, [{"role": "user", "content": "x"}])


def test_raise_exception_and_bad_syntax() -> None:
    with pytest.raises(TemplateRenderError, match="nope"):
        render("{{ raise_exception('nope') }}", [])
    with pytest.raises(TemplateRenderError):
        render("{% if %}", [])
