"""The Docker Registry v2 protocol on Roost's store, so one Roost can pull from or push to another.

Manifests are found under any host directory of the store (the URL carries no host); pushed
manifests are stored under the host the client addressed. Uploads go to a temporary file,
and the blob is kept only if its sha256 matches the digest the client commits with (and, if it
says it is a GGUF, only if its structure is sound); a manifest's model layers must be sound GGUFs.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from roost.models import gguf_check
from roost.models.names import DEFAULT_HOST, InvalidName, Name
from roost.models.store import (
    MANIFEST_MEDIA_TYPE,
    MODEL_MEDIA_TYPE,
    Manifest,
    Store,
    StoreError,
    parse_digest,
    wire_digest,
)

router = APIRouter(prefix="/v2", include_in_schema=False)
MAX_MANIFEST = 4 * 1024 * 1024


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status)


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _name(ns: str, model: str, tag: str = "latest", host: str = DEFAULT_HOST) -> Name:
    """Every path part from the URL goes through the one name validator before any path is built."""
    return Name.parse(f"{host}/{ns}/{model}:{tag}")


def _bad_name(ns: str, model: str) -> JSONResponse:
    return _error(400, "NAME_INVALID", f"invalid repository name: {ns}/{model}")


def _find(store: Store, name: Name) -> Path | None:
    """The manifest under any host directory: the URL names no host."""
    for _, found in store.entries_named(name.namespace, name.model, name.tag):
        return found
    return store.find_manifest_path(name)


@router.get("/")
async def base() -> Response:
    return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})


@router.api_route("/{ns}/{model}/manifests/{tag}", methods=["GET", "HEAD"])
async def get_manifest(request: Request, ns: str, model: str, tag: str) -> Response:
    try:
        path = _find(_store(request), _name(ns, model, tag))
    except InvalidName:
        return _bad_name(ns, model)
    if path is None:
        return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ns}/{model}:{tag}")
    raw = path.read_bytes()
    headers = {"Docker-Content-Digest": f"sha256:{hashlib.sha256(raw).hexdigest()}",
               "Content-Length": str(len(raw))}
    body = b"" if request.method == "HEAD" else raw
    return Response(body, media_type=MANIFEST_MEDIA_TYPE, headers=headers)


@router.api_route("/{ns}/{model}/blobs/{digest}", methods=["GET", "HEAD"])
async def get_blob(request: Request, ns: str, model: str, digest: str) -> Response:
    try:
        _name(ns, model)
    except InvalidName:
        return _bad_name(ns, model)
    try:
        path = _store(request).blob_path(digest)
    except StoreError:
        return _error(400, "DIGEST_INVALID", "invalid digest")
    if not path.is_file():
        return _error(404, "BLOB_UNKNOWN", f"blob unknown: {digest}")
    headers = {"Docker-Content-Digest": wire_digest(digest), "Accept-Ranges": "bytes"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(path.stat().st_size)
        return Response(media_type="application/octet-stream", headers=headers)
    return FileResponse(path, media_type="application/octet-stream", headers=headers)


def _uploads(store: Store) -> Path:
    path = store.root / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


@router.post("/{ns}/{model}/blobs/uploads/")
async def start_upload(request: Request, ns: str, model: str) -> Response:
    try:
        _name(ns, model)
    except InvalidName:
        return _bad_name(ns, model)
    upload = uuid.uuid4().hex
    (_uploads(_store(request)) / upload).touch()
    location = str(request.url_for("patch_upload", ns=ns, model=model, upload=upload))
    return Response(status_code=202, headers={"Location": location, "Range": "0-0",
                                              "Docker-Upload-UUID": upload})


@router.patch("/{ns}/{model}/blobs/uploads/{upload}", name="patch_upload")
async def patch_upload(request: Request, ns: str, model: str, upload: str) -> Response:
    path = _upload_path(request, ns, model, upload)
    if path is None:
        return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
    try:
        with path.open("ab") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except OSError as exc:
        path.unlink(missing_ok=True)
        return _error(507, "BLOB_UPLOAD_INVALID", f"could not store the upload: {exc.strerror or exc}")
    size = path.stat().st_size
    return Response(status_code=202, headers={"Location": str(request.url),
                                              "Range": f"0-{max(size - 1, 0)}"})


@router.put("/{ns}/{model}/blobs/uploads/{upload}")
async def finish_upload(request: Request, ns: str, model: str, upload: str) -> Response:
    path = _upload_path(request, ns, model, upload)
    if path is None:
        return _error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
    digest = request.query_params.get("digest", "")
    try:
        parse_digest(digest)
        with path.open("ab") as out:
            async for chunk in request.stream():
                out.write(chunk)

        def chunks() -> object:
            with path.open("rb") as src:
                while block := src.read(1 << 20):
                    yield block

        store = _store(request)
        await asyncio.to_thread(store.write_blob, chunks(), digest)  # type: ignore[arg-type]
        await asyncio.to_thread(_refuse_bad_gguf, store.blob_path(digest))
    except StoreError as exc:
        return _error(400, "DIGEST_INVALID", str(exc))
    except gguf_check.InvalidGGUF as exc:
        return _error(400, "BLOB_UPLOAD_INVALID", str(exc))
    except OSError as exc:
        return _error(507, "BLOB_UPLOAD_INVALID", f"could not store the blob: {exc.strerror or exc}")
    finally:
        path.unlink(missing_ok=True)
    location = str(request.url_for("get_blob", ns=ns, model=model, digest=digest))
    return Response(status_code=201, headers={"Location": location,
                                              "Docker-Content-Digest": wire_digest(digest)})


def _refuse_bad_gguf(path: Path) -> None:
    """A blob that says it is a GGUF must be a sound one; a malformed one is not kept."""
    try:
        gguf_check.check_upload(path)
    except gguf_check.InvalidGGUF:
        path.unlink(missing_ok=True)
        raise


def _upload_path(request: Request, ns: str, model: str, upload: str) -> Path | None:
    try:
        _name(ns, model)
    except InvalidName:
        return None
    if not (upload.isascii() and upload.isalnum()):
        return None
    path = _uploads(_store(request)) / upload
    return path if path.is_file() else None


@router.put("/{ns}/{model}/manifests/{tag}")
async def put_manifest(request: Request, ns: str, model: str, tag: str) -> Response:
    store = _store(request)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_MANIFEST:
            return _error(413, "MANIFEST_INVALID", f"a manifest is at most {MAX_MANIFEST >> 20} MiB")
    try:
        name = _name(ns, model, tag, host=request.headers.get("host", "localhost"))
        await asyncio.to_thread(_check_weights, store, raw)
        store.put_raw(name, raw)
    except gguf_check.InvalidGGUF as exc:
        return _error(400, "MANIFEST_INVALID", str(exc))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, InvalidName) as exc:
        return _error(400, "MANIFEST_INVALID", f"invalid manifest: {exc}")
    except StoreError as exc:
        return _error(400, "BLOB_UNKNOWN", str(exc))
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    return Response(status_code=201, headers={"Docker-Content-Digest": digest,
                                              "Location": str(request.url)})


def _check_weights(store: Store, raw: bytes) -> None:
    """A manifest's model layers are what runners open: each must be a sound GGUF. Layers not
    yet stored are left to put_raw, which refuses them."""
    for layer in Manifest.decode(raw).layers:
        if layer.media_type == MODEL_MEDIA_TYPE and store.has_blob(layer.digest):
            gguf_check.check(store.blob_path(layer.digest))
