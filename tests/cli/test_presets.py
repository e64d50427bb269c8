"""Presets: flat YAML files, kept by the server, applied by `roost run -p` and `roost chat -p`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MODEL, Server, one_line_error
from tests.conftest import roost_cli as roost


def test_a_preset_reaches_the_model(pulled: Server, tmp_path: Path) -> None:
    path = tmp_path / "fruit.yaml"
    path.write_text("system: 'Whatever the user says, reply with exactly one word: PINEAPPLE.'\n"
                    "temperature: 0\nmax_tokens: 8\nstop: [\"\\n\\n\"]\n")
    assert roost(pulled, "presets", "create", "fruit", "--from-file", str(path)).returncode == 0
    listed = roost(pulled, "presets", "list").stdout
    assert "fruit" in listed and "Whatever the user says" in listed and '"num_predict": 8' in listed
    shown = roost(pulled, "presets", "show", "fruit").stdout
    assert "Whatever the user says" in shown and "num_predict: 8" in shown
    r = roost(pulled, "run", "-p", "fruit", MODEL, "Hello there, how are you today?")
    assert r.returncode == 0 and "PINEAPPLE" in r.stdout.upper(), r.stdout
    r = roost(pulled, "chat", "-p", "fruit", MODEL, "-m", "Hello there, how are you today?")
    assert r.returncode == 0 and "PINEAPPLE" in r.stdout.upper(), r.stdout
    assert roost(pulled, "presets", "set", "fruit", "temperature", "0.5").returncode == 0
    assert "temperature: 0.5" in roost(pulled, "presets", "show", "fruit").stdout
    assert roost(pulled, "presets", "rm", "fruit").stdout.strip() == "deleted preset 'fruit'"
    one_line_error(roost(pulled, "run", "-p", "fruit", MODEL, "hi"), "not found")


@pytest.mark.parametrize("text,words", [
    ("system: [unclosed\n", ["not valid YAML"]),
    ("- a list\n- not a mapping\n", ["flat mapping"]),
    ("colour: blue\n", ["unknown preset key 'colour'"]),
    ("temperature: hot\n", ["temperature"]),
    ("num_ctx: 2147483648\n", ["num_ctx"]),
])
def test_bad_preset_files_are_one_line(pulled: Server, tmp_path: Path, text: str,
                                       words: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    one_line_error(roost(pulled, "presets", "create", "bad", "--from-file", str(path)), *words)
    assert "bad" not in roost(pulled, "presets", "list").stdout.split()


def test_the_api_checks_options_too(pulled: Server) -> None:
    with pulled.client() as c:
        r = c.put("/v1/presets/x", json={"system": "", "options": {"top_p": 7}})
        assert r.status_code == 400 and "top_p" in r.json()["message"]
        r = c.put("/v1/presets/x", json={"system": "", "colour": "blue"})
        assert r.status_code == 400 and set(r.json()) == {"message"}
        assert c.get("/v1/presets/x").status_code == 404


def test_cortex_pre_prompt_is_the_system_prompt(pulled: Server, tmp_path: Path) -> None:
    """Found by a tester: Cortex's `pre_prompt:` was an unknown preset key."""
    path = tmp_path / "cortex.yaml"
    path.write_text("pre_prompt: You are a terse assistant.\nmax_tokens: 8\n")
    assert roost(pulled, "presets", "create", "cortex-style", "--from-file", str(path)).returncode == 0
    try:
        with pulled.client() as c:
            preset = c.get("/v1/presets/cortex-style").json()
        assert preset["system"] == "You are a terse assistant." and preset["options"] == {"num_predict": 8}
        assert roost(pulled, "presets", "set", "cortex-style", "pre_prompt", "Be kind.").returncode == 0
        assert roost(pulled, "presets", "show", "cortex-style").stdout.startswith("system: Be kind.")
        path.write_text("system: one\npre_prompt: two\n")
        one_line_error(roost(pulled, "presets", "create", "cortex-style", "--from-file", str(path)),
                       "'system' and 'pre_prompt'", "keep one")
        assert "Be kind." in roost(pulled, "presets", "show", "cortex-style").stdout  # unchanged
    finally:
        roost(pulled, "presets", "rm", "cortex-style")


@pytest.mark.parametrize("name", ["bad name/x", "a/b", "..", "x" * 65, "tab\there"])
def test_a_bad_preset_name_is_refused_by_its_rule(pulled: Server, tmp_path: Path, name: str) -> None:
    """Found by a tester: these said `Error: Not Found`."""
    path = tmp_path / "p.yaml"
    path.write_text("temperature: 0\n")
    rule = "letters, digits, '-', '_' or '.'"
    for args in (("presets", "create", name, "--from-file", str(path)), ("presets", "show", name),
                 ("presets", "rm", name), ("presets", "set", name, "temperature", "1"),
                 ("run", "-p", name, MODEL, "hi"), ("chat", "-p", name, MODEL, "-m", "hi")):
        one_line_error(roost(pulled, *args), f"invalid preset name {name!r}", rule)


def test_the_api_answers_a_bad_name_with_its_rule(pulled: Server) -> None:
    from urllib.parse import quote

    with pulled.client() as c:
        for name in ("a/b", "bad name", "x" * 65, "é"):
            url = f"/v1/presets/{quote(name, safe='')}"
            for r in (c.get(url), c.delete(url), c.put(url, json={"system": "hi"})):
                assert r.status_code == 400, (name, r.request.method, r.text)
                assert r.json() == {"message": f"invalid preset name {name!r}: a preset name is "
                                               "1 to 64 letters, digits, '-', '_' or '.', and not only dots"}
        assert c.get("/v1/presets/no-such-preset").status_code == 404
