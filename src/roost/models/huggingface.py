"""GGUF models on the Hugging Face Hub: `hf.co/ORG/REPO[:QUANT]` names one file of a repo.

huggingface_hub lists the repo's files and builds their URLs, so HF_ENDPOINT, HF_TOKEN and
HF_HUB_OFFLINE mean what they mean to every other Hub client. The bytes are not downloaded
through its cache: `open_stream` hands them to the caller, which streams them into Roost's
store against the LFS sha256 the Hub publishes, so a model is never kept twice on disk.
huggingface_hub is imported inside the functions: only a pull from the Hub pays for it.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from roost import __version__
from roost.models.names import Name
from roost.models.registry_client import RegistryError

if TYPE_CHECKING:
    from huggingface_hub.hf_api import RepoSibling

HUB_HOSTS = frozenset({"hf.co", "huggingface.co"})
DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$", re.IGNORECASE)  # one shard of a split model


class HubError(RegistryError):
    """The Hub refused, or has nothing Roost can pull; `status` is the HTTP status to answer."""


@dataclass(frozen=True)
class HubFile:
    """One GGUF file of a repo, with what is needed to fetch and verify it."""

    repo: str
    path: str
    size: int
    sha256: str
    revision: str = "main"  # a commit once resolved, so the file cannot change mid-pull

    @property
    def digest(self) -> str:
        return f"sha256:{self.sha256}"

    @property
    def source(self) -> str:
        """Where the bytes come from, as a status line names it."""
        return f"{endpoint_label()}/{self.repo} ({self.path})"


def is_hub_name(name: Name) -> bool:
    return name.host.lower() in HUB_HOSTS


def endpoint() -> str:
    """HF_ENDPOINT read on each call (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT", "").strip().rstrip("/") or DEFAULT_ENDPOINT


def endpoint_label() -> str:
    value = endpoint()
    return "hf.co" if value == DEFAULT_ENDPOINT else value


def choose(files: Sequence[tuple[str, int]], repo: str, tag: str) -> str:
    """The file a tag names: the quant named (case-insensitive) or the whole file name;
    for `latest`, Q4_K_M if the repo has it, else the smallest GGUF."""
    ggufs = [(path, size) for path, size in files if _is_model_gguf(path)]
    if not ggufs:
        raise HubError(f"{endpoint_label()}/{repo} has no GGUF model file; Roost runs GGUF models "
                       "(repos that have them usually end in -GGUF)", 400)
    if tag.lower() == "latest":
        return _match(ggufs, DEFAULT_QUANT) or min(ggufs, key=lambda f: (f[1], f[0]))[0]
    found = _match(ggufs, tag)
    if found is None:
        names = ", ".join(sorted(path for path, _ in ggufs)[:12])
        raise HubError(f"the tag '{tag}' is not available in {endpoint_label()}/{repo}: no GGUF file "
                       f"names that quant (files: {names})", 400)
    return found


def _is_model_gguf(path: str) -> bool:
    """A GGUF that is a whole model: not a vision projector, not one shard of a split file."""
    base = path.rsplit("/", 1)[-1].lower()
    return base.endswith(".gguf") and not base.startswith("mmproj") and not _SPLIT.search(base)


def _match(files: Sequence[tuple[str, int]], tag: str) -> str | None:
    """The shortest path naming `tag` as a whole token (Q4_K is not Q4_K_M, F16 is not BF16)."""
    if tag.lower().endswith(".gguf"):
        hits = [f for f in files if f[0].rsplit("/", 1)[-1].lower() == tag.lower()]
    else:
        token = re.compile(rf"(?<![A-Za-z0-9]){re.escape(tag)}(?![A-Za-z0-9_])", re.IGNORECASE)
        hits = [f for f in files if token.search(f[0])]
    return min(hits, key=lambda f: (len(f[0]), f[1], f[0]))[0] if hits else None


def resolve(name: Name) -> HubFile:
    """List the repo's files on the Hub and pick the GGUF the name's tag asks for."""
    repo = f"{name.namespace}/{name.model}"
    siblings, commit = _list(repo)
    path = choose([(p, _size(s)) for p, s in siblings.items()], repo, name.tag)
    sibling = siblings[path]
    sha256 = sibling.lfs.sha256 if sibling.lfs else None
    if not sha256 or not _SHA256.match(sha256):
        raise HubError(f"{endpoint_label()}/{repo}: {path} has no LFS sha256 on the Hub, "
                       "so its download could not be verified", 400)
    return HubFile(repo, path, _size(sibling), sha256, commit)


def locate(repo: str, path: str, sha256: str, size: int) -> HubFile:
    """A file known by its sha256 (a catalog model's): found by content, so a renamed file
    (or one whose name differs in case) is still found, and nothing else is taken for it."""
    siblings, commit = _list(repo)
    found = [p for p, s in siblings.items() if s.lfs is not None and s.lfs.sha256 == sha256]
    if not found:
        raise HubError(f"pull model manifest: file does not exist: {endpoint_label()}/{repo} has "
                       f"no file with the sha256 of {path} ({sha256[:12]})", 404)
    best = path if path in found else sorted(found)[0]
    return HubFile(repo, best, size, sha256, commit)


def _list(repo: str) -> tuple[dict[str, RepoSibling], str]:
    """The repo's files with their sizes and LFS sha256, and the commit they were listed at."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint(), library_name="roost", library_version=__version__)
    with hub_errors(repo):
        info = api.model_info(repo, files_metadata=True, timeout=60)
    return {s.rfilename: s for s in info.siblings or ()}, info.sha or "main"


def _size(sibling: RepoSibling) -> int:
    if sibling.lfs is not None:
        return int(sibling.lfs.size)
    return int(sibling.size or 0)


def open_stream(file: HubFile, offset: int = 0) -> tuple[Iterator[bytes], int]:
    """The file's bytes from `offset` on, and where they start: `offset` when the Hub answered
    the Range request (206), 0 when it sends the whole file again (200). This is the shape
    `Store.write_blob_resumable` asks of a source, so a cut download resumes where it stopped.

    The token goes to the Hub only: httpx drops it when a redirect leaves for another host
    (the Hub sends large files to a CDN).
    """
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(file.repo, file.path, revision=file.revision, endpoint=endpoint())
    headers = build_hf_headers(library_name="roost", library_version=__version__)
    headers["Accept-Encoding"] = "identity"
    if offset:
        headers["Range"] = f"bytes={offset}-"
    session = get_session()
    with hub_errors(file.repo):
        resp = session.send(session.build_request("GET", url, headers=headers, timeout=_timeout()),
                            stream=True, follow_redirects=True)
    try:
        with hub_errors(file.repo):
            if resp.status_code >= 400:
                resp.read()
                hf_raise_for_status(resp)
        start = _start_of(resp.status_code, resp.headers.get("content-range", ""), offset, url)
    except BaseException:
        resp.close()
        raise
    return _chunks(resp, file), start


def _start_of(status: int, content_range: str, offset: int, url: str) -> int:
    if status == 200:
        return 0
    match = _CONTENT_RANGE.match(content_range)
    if status == 206 and offset and match and int(match.group(1)) == offset:
        return offset
    raise HubError(f"{url}: the Hub answered a request for byte {offset} on with {status} "
                   f"{content_range!r}", 502)


def _chunks(resp: Any, file: HubFile) -> Iterator[bytes]:
    """The body as it arrives; a broken connection is a cut-off the next pull resumes."""
    import httpx2 as httpx

    try:
        yield from resp.iter_bytes()  # as they arrive: a cut loses no buffered bytes
    except httpx.TransportError as exc:
        raise HubError(f"the download of {file.path} from {endpoint_label()}/{file.repo} was cut "
                       f"off (the next pull resumes it): {exc or type(exc).__name__}", 502) from exc
    finally:
        resp.close()


def _timeout() -> Any:
    import httpx2 as httpx

    return httpx.Timeout(60.0, connect=10.0)


@contextlib.contextmanager
def hub_errors(repo: str) -> Iterator[None]:
    """Turn huggingface_hub's and httpx's exceptions into one-line HubErrors with a status."""
    import httpx2 as httpx
    from huggingface_hub import errors

    where = f"{endpoint_label()}/{repo}"
    try:
        yield
    except errors.OfflineModeIsEnabled as exc:
        raise HubError(f"{where}: HF_HUB_OFFLINE is set, so the Hub is not asked", 503) from exc
    except errors.GatedRepoError as exc:
        raise HubError(f"{where} is gated: accept its terms on the Hub, then set HF_TOKEN", 403) from exc
    except errors.RepositoryNotFoundError as exc:
        raise HubError(f"pull model manifest: file does not exist: {where} not found "
                       "(a private repo needs HF_TOKEN)", 404) from exc
    except (errors.RevisionNotFoundError, errors.RemoteEntryNotFoundError) as exc:
        raise HubError(f"pull model manifest: file does not exist: {where}: {_first_line(exc)}",
                       404) from exc
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 502
        raise HubError(f"{where}: {_first_line(exc)}", status if 400 <= status < 600 else 502) from exc
    except httpx.TransportError as exc:
        raise HubError(f"could not reach {endpoint()} for {repo}: {exc or type(exc).__name__}",
                       500) from exc


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
