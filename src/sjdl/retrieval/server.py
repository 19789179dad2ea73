"""The local search page of ``sjdl serve``: a Starlette app over a ``Gallery``.

Routes: ``GET /`` (the page; its ``app.js`` and ``style.css`` are package data, no CDN),
``GET /api/info``, ``POST /api/search?k=10`` (body: the image file, raw or as the multipart
field ``image``; JSON answer), ``GET /thumb/{row}`` (a JPEG thumbnail of gallery row ``row``).

Safe by default: only gallery images named in the index are ever read (thumbnails are
addressed by row number, so no path from a request reaches the file system); uploads are
capped in bytes and in pixels, and a bad one gets a 4xx JSON ``{"error": ...}`` while the
server keeps serving; requests must name this server in their Host header (no DNS
rebinding, see ``hosts.py``); the page loads nothing from elsewhere (Content-Security-Policy
``'self'``). Answers carry no absolute server path: gallery images are named by their path
relative to the gallery root (the folder that holds them all) and their row number, the
checkpoint by its file name and fingerprint, and error messages show the gallery, index and
checkpoint folders as ``<gallery>``, ``<index>``, ``<checkpoint>``.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import threading
import time
from collections import OrderedDict
from importlib import resources

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..data.io import (
    ALLOWED_TEXT,
    ImageFormatError,
    ImageReadError,
    ImageTooLargeError,
    open_image,
    to_uint8,
)
from ..data.records import parse_name
from ..data.transforms import resize
from .gallery import Gallery, _disk_state
from .hosts import HostCheck, HostPolicy, normalise
from .index import IndexError_
from .reid import load_image

MAX_UPLOAD = 10 * 2**20  # bytes
MAX_PIXELS = 40_000_000  # decoded size of an upload
MAX_K = 100
RESTORE_SIDE = 1024  # the page's restoration preview is computed at most this large
THUMB_SIDE = 192
FRAMING = 16 * 1024  # multipart headers and boundaries allowed above the upload limit
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class UploadError(Exception):
    """A request the page should explain: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SearchService:
    """The gallery behind the page; one search at a time (the model is not thread-safe).
    An index rewritten on disk (``sjdl index add``) is reopened before the next search."""

    def __init__(self, gallery: Gallery, max_upload: int, max_pixels: int):
        self.gallery, self.max_upload, self.max_pixels = gallery, max_upload, max_pixels
        self.lock = threading.Lock()
        self.thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._root_of: tuple[int, str] | None = None  # (gallery size, its root folder)

    def _refresh(self) -> None:
        g = self.gallery
        if not g._changed_on_disk():
            return
        try:
            self.gallery = Gallery.open(g.folder, g.reid)
        except (IndexError_, ValueError, OSError):
            g._state = _disk_state(g.folder)  # keep serving the one in memory

    def root(self) -> str:
        """The deepest folder that holds every gallery image (paths are shown below it)."""
        g = self.gallery
        if self._root_of is None or self._root_of[0] != len(g):
            rows = g._index.rows
            try:
                root = os.path.commonpath([os.path.dirname(r["path"]) for r in rows])
            except ValueError:  # no rows, or relative and absolute paths mixed
                root = ""
            self._root_of = (len(g), root)
        return self._root_of[1]

    def relative(self, path: str) -> str:
        """``path`` relative to the gallery root (its file name when outside it)."""
        root = self.root()
        if root and os.path.isabs(path):
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                return rel.replace(os.sep, "/")
        return os.path.basename(path)

    def redact(self, text: str) -> str:
        """``text`` with the gallery, index and checkpoint folders replaced by labels."""
        g = self.gallery
        folders = [(self.root(), "<gallery>")]
        if g.folder is not None:
            folders += [(str(g.folder.absolute()), "<index>"), (str(g.folder), "<index>")]
            folders += [(str(g.folder.resolve()), "<index>")]
        ckpt = g._checkpoint
        if ckpt is not None:
            folders += [(str(ckpt.absolute().parent), "<checkpoint>")]
            folders += [(str(ckpt.resolve().parent), "<checkpoint>")]
        for folder, label in sorted(folders, key=lambda f: -len(f[0])):
            if len(folder) > 1:
                text = text.replace(folder, label)
        return text

    def info(self) -> dict:
        with self.lock:
            self._refresh()
            g = self.gallery
            m = g._manifest
            return {
                "images": len(g),
                "dim": m["dim"],
                "kind": m["kind"],
                "metric": m["metric"],
                "checkpoint": os.path.basename(m.get("checkpoint", "")),
                "fingerprint": m["fingerprint"],
                "firm": g.reid.has_firm,
                # images the BatchNorm statistics were re-estimated on (index build --adapt-bn)
                "bn_images": (m.get("bn_statistics") or {}).get("images"),
                "max_upload": self.max_upload,
                "max_pixels": self.max_pixels,
                "max_k": MAX_K,
            }

    def _check(self, data: bytes) -> tuple[int, int]:
        if not data:
            raise UploadError(400, f"the upload is empty: send an image file ({ALLOWED_TEXT})")
        try:
            with open_image(io.BytesIO(data), "the upload") as im:
                w, h = im.size
        except ImageTooLargeError as e:
            detail = str(e).split("too large ", 1)[-1]
            raise UploadError(
                413, f"image too large {detail}; the limit is {self.max_pixels / 1e6:.0f} MP"
            ) from None
        except ImageFormatError as e:
            raise UploadError(415, f"{e}; send a {ALLOWED_TEXT} file") from None
        except ImageReadError:
            raise UploadError(
                415, f"the upload is not an image that can be read (send a {ALLOWED_TEXT} file)"
            ) from None
        if w * h > self.max_pixels:
            raise UploadError(
                413,
                f"image too large: {w}x{h} pixels ({w * h / 1e6:.0f} MP); the limit is "
                f"{self.max_pixels / 1e6:.0f} MP",
            )
        return w, h

    def search(self, data: bytes, k: int, name: str, restore: bool) -> dict:
        t0 = time.perf_counter()
        w, h = self._check(data)
        parsed = parse_name(name) if name else None
        qpid, qcam = parsed if parsed else (None, None)
        with self.lock:
            self._refresh()
            g = self.gallery
            if not len(g):
                raise UploadError(409, "the index is empty (0 images): add images first")
            try:
                matches = g.search(data, k)
                restored = _restore(g, data) if restore and g.reid.has_firm else None
            except ImageReadError as e:
                detail = str(e).split(": ", 1)[-1]
                raise UploadError(400, f"the uploaded image is damaged: {detail}") from None
            except ValueError as e:  # e.g. an embedding that is not finite
                raise UploadError(422, self.redact(str(e))) from None
            shown = [self.relative(m.path) for m in matches]
        results = [
            {
                "rank": m.rank,
                "distance": round(m.distance, 6),
                "path": rel,
                "name": rel.rsplit("/", 1)[-1],
                "pid": m.pid,
                "camid": m.camid,
                "row": m.row,
                "thumbnail": f"/thumb/{m.row}",
                "same_id": None if qpid is None or m.pid is None else m.pid == qpid,
            }
            for m, rel in zip(matches, shown, strict=True)
        ]
        return {
            "query": {"name": name, "width": w, "height": h, "pid": qpid, "camid": qcam},
            "k": k,
            "results": results,
            "restored": restored,
            "took_ms": round(1000 * (time.perf_counter() - t0), 1),
        }

    def thumbnail(self, row: int) -> bytes | None:
        with self.lock:
            self._refresh()
            path = self.gallery._path_of(row)
            if path is None:
                return None
            if path in self.thumbs:
                self.thumbs.move_to_end(path)
                return self.thumbs[path]
            shown = self.relative(path)
        data = _thumbnail(path, f"gallery image {row} ({shown})")  # outside the lock
        with self.lock:
            self.thumbs[path] = data
            while len(self.thumbs) > 1024:
                self.thumbs.popitem(last=False)
        return data


def _restore(g: Gallery, data: bytes) -> str:
    """FIRM's restoration of the upload (at most RESTORE_SIDE pixels a side), as a data URL."""
    img = load_image(data, "the upload")
    h, w = img.shape[-2:]
    scale = RESTORE_SIDE / max(h, w)
    if scale < 1:
        img = resize(img, (max(1, round(h * scale)), max(1, round(w * scale))))
    buf = io.BytesIO()
    Image.fromarray(to_uint8(g.reid.defog(img))).save(buf, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def _thumbnail(path: str, shown: str) -> bytes:
    try:
        with open_image(path) as im:
            im.draft("RGB", (THUMB_SIDE, THUMB_SIDE))
            im = im.convert("RGB")
            im.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=88)
    except (ImageReadError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise UploadError(404, f"{shown} cannot be read") from None
    return buf.getvalue()


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 past ``limit`` bytes (the rest is read and dropped, up to a
    bound, so that the browser receives the answer instead of a reset connection)."""
    too_big = UploadError(
        413, f"the upload is larger than {limit / 2**20:g} MiB; send a smaller image"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FRAMING:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > 8 * limit:
            break
        if size <= limit + FRAMING:  # multipart framing may add a little
            chunks.append(chunk)
    if size > limit + FRAMING:
        raise too_big
    body = b"".join(chunks)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        body = await _multipart_image(request, body)
    if len(body) > limit:
        raise too_big
    return body


async def _multipart_image(request: Request, body: bytes) -> bytes:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=10)
    except Exception as e:  # malformed multipart: python-multipart's own error types
        raise UploadError(400, f"malformed multipart upload ({e})") from None
    part = form.get("image")
    if part is None or isinstance(part, str):
        raise UploadError(400, "multipart upload without a file field named 'image'")
    data = await part.read()
    request.state.filename = part.filename or ""
    return data


def _k(request: Request) -> int:
    raw = request.query_params.get("k", "10")
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if not 1 <= k <= MAX_K:
        raise UploadError(400, f"k must be an integer from 1 to {MAX_K}, got {raw!r}")
    return k


class _SecurityHeaders:
    """Adds ``HEADERS`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def with_headers(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in HEADERS.items()
                    if k.lower().encode() not in names
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    gallery: Gallery,
    *,
    max_upload: int = MAX_UPLOAD,
    max_pixels: int = MAX_PIXELS,
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS,
    hosts: HostPolicy | None = None,
) -> Starlette:
    """The search page's app. Requests are answered only when their Host header is allowed:
    by ``hosts`` (``HostPolicy.for_bind``), else by the names ``allowed_hosts``."""
    if hosts is None:
        if "*" in allowed_hosts:
            raise ValueError("allowed_hosts '*' would answer any Host (DNS rebinding)")
        hosts = HostPolicy(frozenset(normalise(h) for h in allowed_hosts))
    service = SearchService(gallery, max_upload, max_pixels)
    static = {
        route: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
        for route, (name, kind) in STATIC.items()
    }

    async def page(request: Request) -> Response:
        body, kind = static[request.url.path]
        return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(service.info))

    async def search(request: Request) -> JSONResponse:
        k = _k(request)
        data = await _read_body(request, max_upload)
        name = request.query_params.get("name") or getattr(request.state, "filename", "")
        restore = request.query_params.get("restore", "1") not in ("0", "false", "no")
        return JSONResponse(await run_in_threadpool(service.search, data, k, name, restore))

    async def thumb(request: Request) -> Response:
        row = request.path_params["row"]
        data = await run_in_threadpool(service.thumbnail, row)
        if data is None:
            raise UploadError(404, f"no gallery image number {row}")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    async def explain(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, UploadError):
            return JSONResponse({"error": service.redact(str(exc))}, status_code=exc.status)
        status = getattr(exc, "status_code", 500)
        text = getattr(exc, "detail", None)
        if not text:
            print(f"sjdl serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            text = f"internal error: {type(exc).__name__}: {service.redact(str(exc))}"
        return JSONResponse({"error": text}, status_code=status)

    routes = [Route(path, page) for path in STATIC]
    routes += [
        Route("/api/info", info),
        Route("/api/search", search, methods=["POST"]),
        Route("/thumb/{row:int}", thumb),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders), Middleware(HostCheck, policy=hosts)],
        exception_handlers={UploadError: explain, 404: explain, 405: explain, Exception: explain},
    )
    app.state.service = service
    return app
