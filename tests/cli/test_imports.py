"""The CLI's import graph is a budget: heavy libraries load only where they are used."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("fastapi", "uvicorn", "starlette", "llama_cpp", "jinja2", "gguf", "numpy",
         "huggingface_hub", "prompt_toolkit", "httpx2", "rich", "pydantic")


def test_cli_import_is_light() -> None:
    code = ("import sys, roost.cli.main; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_works() -> None:
    out = subprocess.run([sys.executable, "-m", "roost", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "run" in out.stdout
    out = subprocess.run([sys.executable, "-m", "roost", "serve", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "ROOST_HOST" in out.stdout
