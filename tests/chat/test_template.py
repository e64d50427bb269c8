from __future__ import annotations

import re
import resource
import time
from datetime import datetime

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


# Qwen2.5-Instruct's chat template, as its GGUF files carry it.
QWEN25 = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are \
provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments \
within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": \
<args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\
<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or \
(message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOL_CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "sunny, 21°C"},
]
QWEN25_TOOL_PROMPT = (
    '<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user '
    'query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n'
    '{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", '
    '"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}\n'
    '</tools>\n\nFor each function call, return a json object with function name and arguments within '
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    '<args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n'
    '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\nsunny, 21°C\n</tool_response><|im_end|>\n'
    '<|im_start|>assistant\n')
STRFTIME = "{{ strftime_now('%Y') }}|{{ '%d-%s' % (1700000000, 'x') }}|{{ '{}:{:>4}'.format(7, 'ab') }}"
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}{}{% endfor %}{% endfor %}"

# Templates that ask for unbounded memory, each with the cause its error must name.
HOSTILE = [
    ("{{ 'x' * 10**10 }}", "builds a string of 10000000000 characters"),
    ("{{ [0] * 10**10 }}", "builds a list of 10000000000 items"),
    ("{{ 10 ** (10 ** 10) }}", "builds a number of about"),
    ("{{ 'x' | center(10**10) }}", "asks for a size of 10000000000"),
    ("{{ 'x'.ljust(9999999999) }}", "asks for a size of 9999999999"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
     "{{ ns.s|length }}", "builds a string of 16777216 characters"),
    ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
     "builds a string of 16777216 characters"),
    ("{{ ('x' * 1000000).replace('', 'y' * 1000000) }}", "builds a string of 1000002000000 characters"),
    ("{{ ('x' * 1000000) | replace('', 'y' * 1000000) }}", "builds a string of 1000002000000 characters"),
    ("{{ (['x' * 1000000] * 1000000) | join }}", "builds a string of"),
    ("{{ (['x' * 1000000] * 1000000) | tojson }}", "builds a string of"),
    ("{{ '%*s' % (10**10, 'x') }}", "asks for a size of 10000000000"),
    ("{{ '{:>999999999}'.format('x') }}", "formats a field millions of characters wide"),
    ("{{ ('\\n' * 1000000) | indent(1000000) }}", "builds a string of"),
    ("{{ ['x' * 1000000] * 1000000 }}", "output is larger than 8 MiB"),
    (NESTED.replace("{}", "xxxxxxxxxx"), "output is larger than 8 MiB"),
]


def _max_rss_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def test_qwen25_with_tools() -> None:
    assert render(QWEN25, TOOL_CHAT, tools=TOOLS) == QWEN25_TOOL_PROMPT
    assert render(QWEN25, [{"role": "user", "content": "Hi"}], add_generation_prompt=False) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n")


def test_strftime_now_and_formatting() -> None:
    assert render(STRFTIME, []) == f"{datetime.now():%Y}|1700000000-x|7:  ab"


def test_ten_to_the_ten_to_the_ten_is_small() -> None:
    # Jinja's ** groups to the left: (10**10)**10, a 101-digit number, harmless.
    assert render("{{ 10 ** 10 ** 10 }}", []) == "1" + "0" * 100


@pytest.mark.parametrize(("evil", "cause"), HOSTILE)
def test_hostile_templates_fail_fast_and_small(evil: str, cause: str) -> None:
    before, started = _max_rss_mib(), time.monotonic()
    with pytest.raises(TemplateRenderError, match=re.escape(cause)):
        render(evil, [{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 5
    assert _max_rss_mib() - before < 200
