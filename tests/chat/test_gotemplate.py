"""Ollama's Go templates: real library templates render the prompts Ollama renders.

The templates and most expected prompts are Ollama's own published files (see
data/go_templates/README.txt); the rest are derived by hand from the template text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from roost.chat import sandbox
from roost.chat.gotemplate import is_go_template, translate
from roost.chat.template import CHATML, TemplateRenderError, render
from roost.models.catalog import GEMMA_TEMPLATE
from tests.conftest import MODEL, Server, greedy

DATA = Path(__file__).parent / "data" / "go_templates"
NAMED = ["llama3-instruct", "mistral-instruct", "gemma-instruct", "gemma3-instruct", "phi-3", "chatml",
         "command-r", "llama2-chat", "zephyr", "alpaca", "vicuna", "codellama-70b-instruct",
         "granite-instruct"]
HELLO = {"role": "user", "content": "Hello, how are you?"}
GREAT = {"role": "assistant", "content": "I'm doing great. How can I help you today?"}
SHOW = {"role": "user", "content": "I'd like to show off how chat templating works!"}
# Ollama's three test conversations (template/template_test.go).
CONVERSATIONS = {
    "user": [HELLO],
    "user-assistant-user": [HELLO, GREAT, SHOW],
    "system-user-assistant-user": [{"role": "system", "content": "You are a helpful assistant."},
                                   HELLO, GREAT, SHOW],
}
# Ollama's test strips one trailing space from these templates' output before comparing.
TRAILING_SPACE = {"llama2-chat", "mistral-instruct", "vicuna"}


def template(name: str) -> str:
    return (DATA / f"{name}.gotmpl").read_text()


def tool_chat() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (json.loads((DATA / "tools-messages.json").read_text()),
            json.loads((DATA / "tools-tools.json").read_text()))


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", NAMED)
def test_library_templates_render_as_in_ollama(name: str, case: str) -> None:
    out = render(template(name), CONVERSATIONS[case])
    if name in TRAILING_SPACE and out.endswith(" "):
        out = out[:-1]
    assert out == (DATA / "expected" / f"{name}.{case}").read_text()


def test_llama3_hand_checked() -> None:
    assert render(template("llama3-instruct"), CONVERSATIONS["system-user-assistant-user"]) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nI'm doing great. How can I help you today?"
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "I'd like to show off how chat templating works!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("name", ["qwen2.5-tools", "llama3.2-tools"])
def test_tool_templates_with_a_call_and_its_result(name: str) -> None:
    messages, tools = tool_chat()
    assert render(template(name), messages, tools=tools) == \
        (DATA / "expected" / f"{name}.out").read_text()


def test_llama31_tools_hand_checked() -> None:
    messages, tools = tool_chat()
    tool = ('{"type":"function","function":{"name":"get_current_weather","description":'
            '"Get the current weather","parameters":{"type":"object","required":["location","format"],'
            '"properties":{"format":{"type":"string","description":"The temperature unit to use. '
            'Infer this from the user\'s location.","enum":["celsius","fahrenheit"]},"location":'
            '{"type":"string","description":"The city and state, e.g. San Francisco, CA"}}}}}')
    assert render(template("llama3.1-tools"), messages, tools=tools) == (
        "<|start_header_id|>system<|end_header_id|>\n\n"
        "You are a knowledgeable assistant. You can answer questions and perform tasks.\n\n"
        "Cutting Knowledge Date: December 2023\n\nWhen you receive a tool call response, use the output "
        "to format an answer to the orginal user question.\n\n"
        "You are a helpful assistant with tool calling capabilities.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat's the weather like today in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_current_weather", "parameters": {"format":"celsius","location":"Paris, France"}}'
        "<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n22<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "The current temperature in Paris, France is 22 degrees Celsius.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond "
        "with a JSON for a function call with its proper arguments that best answers the given prompt."
        '\n\nRespond in the format {"name": function name, "parameters": dictionary of argument name '
        "and its value}. Do not use variables.\n\n" + tool + "\n\n"
        "Question: What's the weather like today in San Francisco and Toronto?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_without_tools_the_tool_template_is_plain_chatml() -> None:
    out = render(template("qwen2.5-tools"), [{"role": "system", "content": "S"}, HELLO])
    assert out == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHello, how are you?<|im_end|>\n"
                   "<|im_start|>assistant\n")


# Ollama's legacy-template cases (template/template_test.go, TestExecuteWithMessages): a template
# without .Messages runs once per turn, and the last turn stops at its .Response.
MISTRAL_NO_RESPONSE = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
MISTRAL_RESPONSE = MISTRAL_NO_RESPONSE + "{{ .Response }}"
CHATML_RESPONSE = ("{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
                   "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
                   "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n")
FRIEND = [{"role": "user", "content": "Hello friend!"}, {"role": "assistant", "content": "Hello human!"},
          {"role": "user", "content": "What is your name?"}]


@pytest.mark.parametrize("source", [MISTRAL_NO_RESPONSE, MISTRAL_RESPONSE])
def test_legacy_template_runs_per_turn(source: str) -> None:
    assert translate(source).legacy
    assert render(source, FRIEND) == \
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
    system = [{"role": "system", "content": "You are a helpful assistant!"}, *FRIEND]
    assert render(source, system) == ("[INST] You are a helpful assistant!\n\nHello friend![/INST] "
                                      "Hello human![INST] What is your name?[/INST] ")


def test_legacy_template_stops_at_response_and_continues_a_prefill() -> None:
    system = [{"role": "system", "content": "You are a helpful assistant!"}, *FRIEND]
    assert render(CHATML_RESPONSE, system) == (
        "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n"
        "<|im_start|>user\nHello friend!<|im_end|>\n<|im_start|>assistant\nHello human!<|im_end|>\n"
        "<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n")
    prefill = [*FRIEND, {"role": "assistant", "content": "My name is"}]
    assert render("[INST] {{ .Prompt }}[/INST] {{ .Response }}", prefill) == \
        "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] My name is"


def test_trimming_and_comments() -> None:
    source = ("A  \n {{- .System -}} \n B {{/* gone */}}C {{- /* trims both */ -}}  D\n"
              "{{ range .Messages }}\n  {{- .Content }}  \t-}}{{ end }}|{{ .System   -}}\n  E")
    assert not translate(source).legacy
    out = render(source, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert out == "AsB CD\ns  \t-}}u  \t-}}|sE"


def test_go_functions_and_control_flow() -> None:
    source = """{{- $n := len .Messages -}}
{{ printf "%d messages, %05.1f%% %q" $n 12.345 "q" }}
{{ range $i, $m := .Messages }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ if ge $i 3 }}{{ break }}{{ end -}}
[{{ $i }}:{{ slice $m.Content 0 2 }}:{{ index $m.Content 0 }}]{{ end }}
{{ with .Missing }}never{{ else with .System }}system={{ . }}{{ end }}
{{ range .Tools }}{{ else }}no tools{{ end }}
{{ range $k, $v := (index .Messages 0).ToolCalls }}{{ $k }}{{ end }}
{{- define "role" }}<{{ .Role }}>{{ end }}
{{ template "role" index .Messages 2 }}{{ block "tail" . }}{{ len .Messages | print "n=" }}{{ end }}
{{ and .System "yes" }} {{ or .Missing "fallback" }} {{ not .Tools }} {{ eq .System "x" "sys" }}
{{ .Missing }} {{ json .System }} {{ print 1 2 "a" 3 }} {{ 3.0 }} {{ 1e6 }} {{ 0x1F }} {{ 'a' }}"""
    messages = [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "héllo"}, {"role": "user", "content": "end"}]
    assert render(source, messages) == """4 messages, 012.3% "q"
[0:sy:115][2:h\ufffd:104]
system=sys
no tools

<assistant>n=4
yes fallback true true
<no value> "sys" 1 2a3 3 1e+06 31 97"""


def test_variables_assigned_in_a_loop_outlive_it() -> None:
    # As gemma-instruct does: {{ $system = ... }} inside range changes the outer variable.
    source = ('{{ $all := "" }}{{ range .Messages }}{{ $all = printf "%s%s;" $all .Content }}{{ end }}'
              '{{ $all }}')
    assert render(source, CONVERSATIONS["user-assistant-user"]).count(";") == 3


def test_tool_arguments_and_properties_print_as_json() -> None:
    source = ("{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Arguments }} "
              "{{ range $k, $v := .Function.Arguments }}{{ $k }}={{ $v }},{{ end }}{{ end }}{{ end }}"
              "{{ range .Tools }} {{ .Function.Parameters.Properties }}{{ end }}")
    messages = [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": {"unit": "c<&>", "city": "Tokyo"}}}]}]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"unit": {"type": "string"}}}}}]
    assert render(source, messages, tools=tools) == (
        '{"city":"Tokyo","unit":"c\\u003c\\u0026\\u003e"} city=Tokyo,unit=c<&>, {"unit":{"type":"string"}}')


@pytest.mark.parametrize(("source", "message"), [
    ("{{ .Prompt ", "template: line 1: unclosed action"),
    ("a\n\n{{ foo .Messages }}", 'template: line 3: function "foo" not defined'),
    ("{{ range .Messages }}\n{{ $x }}{{ end }}", 'template: line 2: undefined variable "$x"'),
    ("{{ if .System }}x", "template: line 1: unexpected EOF"),
    ("x\n{{ end }}", "template: line 2: unexpected {{end}}"),
    ('{{ define "x" }}y{{ end }}{{ template "x" }}', "undefined template specified"),
    ('{{ define "x" }}{{ template "x" . }}{{ end }}{{ template "x" . }}', 'template "x" calls itself'),
    ("{{ .Messages | .Role }}", "can't give argument to non-function .Role"),
    ("{{ range .Messages }}{{ end }}{{ break }}", "{{break}} outside {{range}}"),
    ('{{ .Messages }}{{ "\\q" }}', "unknown escape sequence"),
])
def test_untranslatable_templates_fail_with_one_line(source: str, message: str) -> None:
    with pytest.raises(TemplateRenderError) as err:
        render(source, [HELLO])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_run_time_errors_are_template_errors() -> None:
    with pytest.raises(TemplateRenderError, match="index out of range: 5"):
        render("{{ index .Messages 5 }}", [HELLO])
    with pytest.raises(TemplateRenderError, match="builds a string of"):
        render('{{ $s := "xxxxxxxx" }}{{ range 40 }}{{ $s = print $s $s }}{{ end }}{{ .Messages }}', [])


def test_detection() -> None:
    for name in [*NAMED, "qwen2.5-tools", "llama3.1-tools"]:
        assert is_go_template(template(name)), name
    assert is_go_template("{{ json .Tools }}") and is_go_template("{{- /* c */}}{{ .Prompt }}")
    for jinja in (CHATML, GEMMA_TEMPLATE, "{{ messages[0].content }}", "{{ x.Foo }}", "plain text"):
        assert not is_go_template(jinja), jinja


def test_sandbox_renders_go_templates_and_refuses_bad_ones() -> None:
    try:
        assert sandbox.render(template("phi-3"), [HELLO]) == \
            "<|user|>\nHello, how are you?<|end|>\n<|assistant|>\n"
        with pytest.raises(TemplateRenderError, match="template: line 1: "):
            sandbox.render("{{ .Messages | nope }}", [HELLO])
    finally:
        sandbox.close()  # the shared pool's workers: tests/chat/test_sandbox.py counts them


def test_create_and_chat_with_a_go_template(pulled: Server) -> None:
    qwen = template("qwen2.5-tools")
    with pulled.client() as c:
        r = c.post("/api/create", json={"model": "go-qwen:1", "from": MODEL, "template": qwen,
                                        "stream": False})
        assert r.status_code == 200, r.text
        assert c.post("/api/show", json={"model": "go-qwen:1"}).json()["template"] == qwen
        r = c.post("/api/chat", json={"model": "go-qwen:1", "stream": False, "options": greedy(8),
                                      "messages": [{"role": "system", "content": "Answer in one word."},
                                                   {"role": "user", "content": "What color is the sky?"}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"]["content"].strip() and body["done"]
        assert body["prompt_eval_count"] > 15  # the system and user turns in ChatML, not a bare prompt
        r = c.post("/api/create", json={"model": "go-bad:1", "from": MODEL, "stream": False,
                                        "template": "{{ range .Messages }}\n{{ .Content }"})
        assert r.status_code == 400 and r.json()["error"].startswith("template: line 2: "), r.text
        assert c.post("/api/show", json={"model": "go-bad:1"}).status_code == 404
        assert c.request("DELETE", "/api/delete", json={"model": "go-qwen:1"}).status_code == 200


def test_think_values() -> None:
    source = "{{ range .Messages }}{{ end }}{{ if .Think }}T{{ end }}{{ .ThinkLevel }}{{ .IsThinkSet }}"
    assert render(source, [HELLO], think="high") == "Thightrue"
    assert render(source, [HELLO], think=False) == "true"
    assert render(source, [HELLO]) == "false"
