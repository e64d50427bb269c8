"""`roost show` as a user runs it: the summary, and `-v` with the metadata and the tensors."""

from __future__ import annotations

from tests.cli.test_run import roost
from tests.conftest import MODEL, Server


def test_show_verbose_lists_metadata_and_tensors(pulled: Server) -> None:
    plain = roost(pulled, "show", MODEL)
    r = roost(pulled, "show", "-v", MODEL)
    assert r.returncode == 0, r.stderr
    assert "Metadata" not in plain.stdout and "Tensors" not in plain.stdout
    assert "  Metadata" in r.stdout and "  Tensors" in r.stdout
    tokens = next(line for line in r.stdout.splitlines() if "tokenizer.ggml.tokens" in line)
    assert tokens.rstrip().endswith("more]")  # 151,936 of them, abbreviated as Ollama does
    embedding = next(line for line in r.stdout.splitlines() if "token_embd.weight" in line)
    assert embedding.split()[1:] == ["Q5_0", "[896", "151936]"]  # Ollama's spelling of a shape
