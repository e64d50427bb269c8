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
