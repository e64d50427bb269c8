"""The Modelfile parser and writer: each instruction, quoting, paths, and line-numbered errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from roost.models.modelfile import ModelfileError, parse, render

GGUF = b"GGUF" + b"\0" * 20  # the magic is all the parser looks at


def gguf(path: Path) -> Path:
    path.write_bytes(GGUF)
    return path


def test_every_instruction(tmp_path: Path) -> None:
    gguf(tmp_path / "lora.gguf")
    text = '''# a comment, then a blank line

from qwen2.5-coder:0.5b
Parameter temperature 0.2
PARAMETER num_ctx 4096
PARAMETER stop "<|im_end|>"
PARAMETER stop <|endoftext|>
parameter use_mmap false
TEMPLATE {{ messages }}
SYSTEM """You are terse."""
ADAPTER ./lora.gguf
MESSAGE user Hi there
MESSAGE assistant """Hello.
How can I help?"""
LICENSE """MIT"""
LICENSE Apache-2.0
'''
    mf = parse(text, tmp_path)
    assert mf.model == "qwen2.5-coder:0.5b" and mf.weights is None
    assert mf.parameters == {"temperature": 0.2, "num_ctx": 4096,
                             "stop": ["<|im_end|>", "<|endoftext|>"], "use_mmap": False}
    assert mf.template == "{{ messages }}"
    assert mf.system == "You are terse."
    assert mf.adapters == [tmp_path / "lora.gguf"]
    assert mf.messages == [{"role": "user", "content": "Hi there"},
                           {"role": "assistant", "content": "Hello.\nHow can I help?"}]
    assert mf.license == ["MIT", "Apache-2.0"]
    fields = mf.request_fields()
    assert fields["from"] == "qwen2.5-coder:0.5b" and fields["license"] == ["MIT", "Apache-2.0"]


def test_multi_line_values_keep_their_text(tmp_path: Path) -> None:
    text = ('FROM m\nTEMPLATE """\n{{ system }}  \n\n# not a comment\n  indented"""\n'
            'SYSTEM "one\ntwo"\nPARAMETER stop """\n\n"""\n')
    mf = parse(text, tmp_path)
    assert mf.template == "\n{{ system }}  \n\n# not a comment\n  indented"
    assert mf.system == "one\ntwo"
    assert mf.parameters["stop"] == ["\n\n"]


def test_the_last_template_and_system_count(tmp_path: Path) -> None:
    mf = parse("FROM m\nSYSTEM a\nSYSTEM b\nTEMPLATE x\ntemplate y\n", tmp_path)
    assert (mf.system, mf.template) == ("b", "y")


def test_from_a_file_a_folder_or_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dir").mkdir()
    weights = gguf(tmp_path / "dir" / "m.gguf")
    assert parse("FROM ./dir/m.gguf", tmp_path).weights == weights
    assert parse(f"FROM {weights}", Path("/")).weights == weights
    assert parse("FROM dir", tmp_path).weights == weights  # the one GGUF in the folder
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse("FROM ~/dir/m.gguf", Path("/")).weights == weights
    assert parse("FROM qwen2.5-coder:0.5b", tmp_path).model == "qwen2.5-coder:0.5b"
    assert parse("FROM hf.co/org/repo:Q4_K_M", tmp_path).model == "hf.co/org/repo:Q4_K_M"


@pytest.mark.parametrize("value", ["./missing.gguf", "../up/model", "/no/such/file", "~/nope-roost",
                                   "m.gguf", "dir/weights.GGUF", "model.safetensors", "."])
def test_a_from_that_looks_like_a_path_must_exist(tmp_path: Path, value: str) -> None:
    """Found by a tester: `FROM ./missing.gguf` said "invalid model name"; Ollama's client
    says the file is missing (its stat error)."""
    folder = tmp_path / "empty"  # so "." names a folder that holds no GGUF
    folder.mkdir()
    with pytest.raises(ModelfileError) as caught:
        parse(f"# weights\nFROM {value}\n", folder)
    message = str(caught.value)
    if value == ".":
        assert "no .gguf file" in message, message
    else:
        assert message == f"line 2: {value}: no such file or directory", message


def test_requires_is_a_version_sent_and_printed_again(tmp_path: Path) -> None:
    mf = parse("FROM m\nREQUIRES 0.5.0\n", tmp_path)
    assert mf.requires == "0.5.0" and mf.request_fields()["requires"] == "0.5.0"
    assert parse("FROM m\nrequires v0.14\n", tmp_path).requires == "0.14"  # Ollama drops the v
    assert parse("FROM m\nREQUIRES 1.2.3-rc.1+build.5\n", tmp_path).requires == "1.2.3-rc.1+build.5"
    assert "requires" not in parse("FROM m\n", tmp_path).request_fields()
    text = render("m", requires="0.5.0")
    assert "\nREQUIRES 0.5.0\n" in text and parse(text, tmp_path).requires == "0.5.0"
    assert "REQUIRES" not in render("m")


@pytest.mark.parametrize(("text", "words"), [
    ("FROM m\nFORM x\n", ["line 2", "FORM", "command must be one of", "FROM", "MESSAGE"]),
    ("FROM m\n\nPARAMETER temprature 1\n", ["line 3", "unknown parameter", "temprature"]),
    ("FROM m\nPARAMETER temperature hot\n", ["line 2", "temperature", "number"]),
    ("FROM m\nPARAMETER top_p 2\n", ["line 2", "top_p", "between"]),
    ("FROM m\nPARAMETER temperature\n", ["line 2", "PARAMETER needs a value"]),
    ("FROM m\nMESSAGE robot hello\n", ["line 2", "role must be one of"]),
    ("FROM m\nSYSTEM \"\"\"never\nclosed\n", ["line 2", "never closed"]),
    ("FROM m\nADAPTER ./missing.gguf\n", ["line 2", "ADAPTER", "does not exist"]),
    ("FROM m\nREQUIRES soon\n", ["line 2", "REQUIRES 'soon'", "semantic version", "0.14.0"]),
    ("FROM m\nREQUIRES 1.02.3\n", ["line 2", "REQUIRES '1.02.3'"]),
    ("FROM m\nREQUIRES 1.2-beta\n", ["line 2", "REQUIRES '1.2-beta'"]),
    ("FROM m\nREQUIRES\n", ["line 2", "REQUIRES needs a value"]),
    ("FROM a\nFROM b\n", ["line 2", "second FROM"]),
    ("FROM\n", ["line 1", "FROM needs a value"]),
    ("SYSTEM hi\n", ["no FROM line"]),
])
def test_errors_name_the_line(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse(text, tmp_path)
    message = str(caught.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_folders_and_files_that_are_not_one_gguf(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "two").mkdir()
    gguf(tmp_path / "two" / "a.gguf")
    gguf(tmp_path / "two" / "b.gguf")
    (tmp_path / "notes.txt").write_text("hello")
    for text, words in (("FROM empty", ["no .gguf file"]),
                        ("FROM two", ["several", "a.gguf, b.gguf"]),
                        ("# c\nFROM notes.txt", ["line 2", "not a GGUF file"])):
        with pytest.raises(ModelfileError) as caught:
            parse(text, tmp_path)
        assert all(w in str(caught.value) for w in words), caught.value


def test_render_is_read_back_as_written(tmp_path: Path) -> None:
    """What `show --modelfile` prints parses into the same fields, awkward values included."""
    parts = {
        "template": '{% for m in messages %}{{ m.content }}\n{% endfor %}  ',
        "system": ' starts with a blank and says "hi"',
        "parameters": {"temperature": 0.7, "num_ctx": 2048, "use_mmap": True,
                       "stop": ["<|im_end|>", "\n\n", ' "quoted"', "a b"]},
        "messages": [{"role": "user", "content": "plain"},
                     {"role": "assistant", "content": "two\nlines"},
                     {"role": "user", "content": '"starts with a quote'},
                     {"role": "system", "content": ""}],
        "license": "MIT License\n\nCopyright (c) someone",
    }
    weights = gguf(tmp_path / "w.gguf")
    text = render(str(weights), **parts)  # type: ignore[arg-type]
    mf = parse(text, Path("/"))
    assert mf.weights == weights
    assert (mf.template, mf.system) == (parts["template"], parts["system"])
    assert mf.parameters == parts["parameters"]
    assert mf.messages == parts["messages"]
    assert mf.license == [parts["license"]]
