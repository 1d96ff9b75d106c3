"""The HTTP API and web page over an index: `create_app(index_path)`; `lookalike serve` runs it.

No logic of its own beyond HTTP: every answer comes from `Index` and `Embedder` calls. Inference and
SQLite run in the thread pool (sync endpoints), never on the event loop.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import hmac
import io
import json
import logging
import os
import re
import socket
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import List, Optional

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ..catalog import Product as CatalogProduct
from ..errors import FilterError, ImageError, LookalikeError, ModelError, NotFoundError
from ..index.database import DatabaseUnavailable
from ..images import MAX_FILE_BYTES, image_header, load_image, sniff_format
from ..remote import is_remote, read_bytes
from ..search import Result
from . import schemas
from .state import IndexHolder

STATIC = Path(__file__).parent / "static"
RESERVED_PARAMS = {"k", "exclude_self", "agree", "same", "q"}
FACET_LIMIT = 60       # columns with more distinct values than this are not offered as filter chips
THUMB = 256
#: Uploads over this many pixels are refused from their header, before decoding: a 95 KB PNG can declare
#: 7000x7000 16-bit pixels (1.3 GB to decode). A 24-megapixel camera photo passes; the model needs far fewer.
UPLOAD_MAX_PIXELS = 25_000_000
SAME = Query([], description="only products with the query's value of this column (repeatable): a product's own, "
                              "an upload's predicted one; e.g. same=articleType searches the predicted article type")
AGREE = Query(True, description="re-rank the nearest so that products agreeing with the query's likely "
                                "articleType, baseColour and gender come first (lookalike.rerank); false: "
                                "similarity order")
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ACCESS = logging.getLogger("lookalike.access")
ERRORS = logging.getLogger("lookalike.serve")
# The page and /docs load only their own files: scripts and styles from /static, images from the API, the
# upload previews from blob: URLs and Swagger UI's icons from data: URLs. No inline script anywhere.
CSP = "; ".join(["default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
                 "object-src 'none'", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"])
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", CSP.encode())]


class UploadLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` with 413 before they are parsed.

    A body sent without Content-Length (chunked) is counted as it arrives and cut off at the limit. The app sees
    the cut as an error while parsing its form (FastAPI answers that with 400), so its answer is held back and
    the client gets the 413 instead."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        seen, over, started = 0, False, False

        async def limited():
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                over = True
                raise _TooLarge()
            return message

        async def held(message):
            nonlocal started
            if over and not started:
                return          # the app's answer to a body cut off at the limit: replaced by the 413 below
            started = True
            await send(message)

        try:
            await self.app(scope, limited, held)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"upload too large: the limit is {self.max_bytes // (1 << 20)} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class SecurityHeaders:
    """ASGI middleware: the same security headers on every response (page, API, static files, errors), so that
    no route can forget them: no MIME sniffing, no framing, and the CSP above."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


class AccessLog:
    """ASGI middleware: one line per request on the `lookalike.access` logger: method, path, status, milliseconds.
    Logged by the app rather than by uvicorn so that every worker and the tests log alike. The path only: a
    query string may carry a customer's search, and request bodies (uploads) are never read here."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500  # 500: what the client gets when the app raises

        async def watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            ACCESS.info("%s %s %d %.1f ms", scope["method"], request_path(scope), status,
                        (time.perf_counter() - start) * 1000)


def request_path(scope) -> str:
    """The path as sent (percent-encoded, so a logged line cannot be split by a decoded newline), cut at 300
    characters."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else scope["path"].encode("unicode_escape").decode("ascii")
    return path if len(path) <= 300 else path[:300] + "..."


def log_config() -> dict:
    """uvicorn's logging settings plus the access logger above, writing to stderr; `serve` passes it to
    uvicorn.run, which applies it in every worker process too (logging set up in the parent would not reach
    them). uvicorn's own access log stays off (`access_log=False`), so each request is logged once."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["lookalike"] = {"format": "%(asctime)s %(message)s", "datefmt": "%Y-%m-%d %H:%M:%S"}
    config["handlers"]["lookalike"] = {"class": "logging.StreamHandler", "formatter": "lookalike",
                                       "stream": "ext://sys.stderr"}
    config["loggers"][ACCESS.name] = {"handlers": ["lookalike"], "level": "INFO", "propagate": False}
    config["loggers"][ERRORS.name] = {"handlers": ["lookalike"], "level": "WARNING", "propagate": False}
    return config


def send(model) -> Response:
    """A response model built (and so validated) once, serialised by pydantic's Rust JSON encoder: FastAPI's
    response_model would validate it again and serialise it in Python, which costs more than a search."""
    return Response(model.model_dump_json(), media_type="application/json")


def documented(model, more: dict) -> dict:
    """Route arguments that keep `model` as the documented 200 response without FastAPI re-validating it."""
    return {"response_model": None, "responses": {200: {"model": model}, **more}}


def create_app(index_path: str | Path, *, api_key: str | None = None, max_upload_mb: float = 10,
               uploads_dir: str | Path | None = None) -> FastAPI:
    """The app for one index. `api_key` enables admin writes (add/remove products); uploaded product photos
    are kept in `uploads_dir` (default: INDEX.uploads beside the index)."""
    holder = IndexHolder(index_path)
    if uploads_dir:
        uploads = Path(uploads_dir)
    elif holder.live:   # several servers share the database: give them a shared folder (serve --uploads)
        uploads = Path(f"{holder.index.db.table}.uploads").absolute()
    else:
        uploads = Path(str(Path(index_path).absolute()) + ".uploads")
    max_bytes = int(max_upload_mb * (1 << 20))
    app = FastAPI(title="lookalike", version="0.1.0",
                  description="Visual search over a fashion catalog: upload a photo or pick a product, get the "
                              "most similar products. Filters: any metadata column as a query parameter "
                              "(`?gender=Women&subCategory=Topwear,Bottomwear`; several values match any).",
                  docs_url=None, redoc_url=None)  # /docs below serves a local Swagger UI: FastAPI's loads from a CDN
    app.state.holder = holder
    app.add_middleware(UploadLimit, max_bytes=max_bytes)
    app.add_middleware(SecurityHeaders)   # outside UploadLimit: its 413 gets the headers too
    app.add_middleware(AccessLog)         # outermost: logs every answer, 413s included
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LookalikeError)
    async def user_error(request: Request, exc: LookalikeError):
        if isinstance(exc, DatabaseUnavailable):    # the server's problem: its address stays in the server's log
            ERRORS.warning("%s", exc)
            return JSONResponse({"detail": "the catalog database is unavailable; try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})
        status = {NotFoundError: 404, FilterError: 400, ImageError: 422, ModelError: 409}.get(type(exc), 400)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    def product(r: Result) -> schemas.Product:
        return schemas.Product(id=r.id, score=None if r.score is None else round(float(r.score), 5), metadata=r.metadata,
                               image=f"/api/images/{r.id}", thumbnail=f"/api/images/{r.id}?size=thumb")

    def filters(request: Request) -> dict[str, list[str]]:
        where: dict[str, list[str]] = {}
        for key, value in request.query_params.multi_items():
            if key not in RESERVED_PARAMS:
                where.setdefault(key, []).extend(v.strip() for v in value.split(",") if v.strip())
        return where

    async def read_upload(request: Request, image: UploadFile) -> bytes:
        """The uploaded photo's bytes, once its header shows an image within `UPLOAD_MAX_PIXELS`. FastAPI would
        silently take the last of several files sent in the `image` field, so more than one is refused."""
        if len((await request.form()).getlist("image")) > 1:   # the form FastAPI parsed (starlette caches it)
            raise HTTPException(400, "send one photo in the image field")
        data = await image.read()
        name = image.filename or "upload"
        if not data:
            raise HTTPException(422, "the uploaded file is empty")
        header = image_header(data, name)      # ImageError (422) for a decompression bomb
        if header is None:
            raise HTTPException(415, f"{name}: not an image type lookalike reads (JPEG, PNG, WebP, BMP, GIF, ...)")
        width, height = header[1]
        if width * height > UPLOAD_MAX_PIXELS:
            raise HTTPException(422, f"{name}: {width}x{height} pixels is over the limit of {UPLOAD_MAX_PIXELS:,} "
                                     "for an upload")
        return data

    errors = {404: {"model": schemas.Error}, 400: {"model": schemas.Error}}
    upload_errors = {413: {"model": schemas.Error}, 415: {"model": schemas.Error}, 422: {"model": schemas.Error},
                     400: {"model": schemas.Error}}

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs():
        """Swagger UI from static/swagger (a copy of npm's swagger-ui-dist), so the docs work offline."""
        return FileResponse(STATIC / "docs.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", response_model=schemas.Health, tags=["catalog"])
    def health():
        idx = holder.index
        m = idx.manifest
        return schemas.Health(status="ok", products=len(idx), model=m["model"]["id"], heads=list(idx.model.heads),
                              updated=m.get("updated") or m.get("created"), admin=api_key is not None,
                              text=idx.answers_words)

    @app.get("/api/facets", response_model=schemas.Facets, tags=["catalog"])
    def facets():
        idx = holder.index
        cols = {}
        for column in idx.columns:
            values = idx.facets(column)
            if 1 < len(values) <= FACET_LIMIT:
                cols[column] = [schemas.FacetValue(value=v, count=n) for v, n in values]
        return schemas.Facets(products=len(idx), columns=cols)

    @app.get("/api/search", **documented(schemas.SearchResponse, {**errors, 409: {"model": schemas.Error}}),
             tags=["search"])
    async def search_words(request: Request, q: str = Query(..., description='words, e.g. "white sneakers"'),
                           k: int = Query(12, ge=1, le=200), agree: bool = AGREE, same: List[str] = SAME):
        """Products that fit the words. Filters: metadata columns as query parameters."""
        where = filters(request)
        start = time.perf_counter()
        results = await run_in_threadpool(lambda: holder.index.search(text=q, k=k, where=where, agree=agree,
                                                                      same=same))
        return send(schemas.SearchResponse(query={"text": q}, filters=where, results=[product(r) for r in results],
                                           took_ms=round((time.perf_counter() - start) * 1000, 2)))

    @app.post("/api/search", **documented(schemas.SearchResponse, {**upload_errors, 409: {"model": schemas.Error}}),
              tags=["search"])
    async def search_upload(request: Request, image: Optional[UploadFile] = File(None, description="a photo"),
                            q: Optional[str] = Query(None, description='words that refine the photo, e.g. "in red"'),
                            k: int = Query(12, ge=1, le=200), agree: bool = AGREE, same: List[str] = SAME):
        """Most similar products to an uploaded photo, refined by words `q` when given (a form field `q` works
        too). Filters: metadata columns as query parameters."""
        form = await request.form()
        words = q if q is not None else form.get("q") if isinstance(form.get("q"), str) else None
        if image is None and words is None:
            raise HTTPException(400, "send a photo in the image field, words in q, or both")
        data = await read_upload(request, image) if image is not None else None
        where = filters(request)
        start = time.perf_counter()
        results = await run_in_threadpool(lambda: holder.index.search(data, k=k, text=words,
                                                                      where=where, agree=agree, same=same))
        query = {**({"upload": image.filename} if image is not None else {}), **({"text": words} if words else {})}
        return send(schemas.SearchResponse(query=query, filters=where, results=[product(r) for r in results],
                                           took_ms=round((time.perf_counter() - start) * 1000, 2)))

    @app.post("/api/classify", response_model=schemas.ClassifyResponse, responses={**upload_errors, 409: {"model": schemas.Error}},
              tags=["search"])
    async def classify(request: Request, image: UploadFile = File(...), top: int = Query(3, ge=1, le=10),
                       catalog: bool = Query(False, description="blend the model's prediction with the labels of the "
                                             "nearest catalog products, in the catalog's vocabulary (helps most in "
                                             "a large catalog)")):
        """Predicted attributes (category, colour, gender, ...) of an uploaded photo, when the model has heads."""
        data = await read_upload(request, image)
        start = time.perf_counter()
        if catalog:
            preds = [await run_in_threadpool(lambda: holder.index.classify(data, top=top))]
        else:
            preds = await run_in_threadpool(lambda: holder.index.model.predict([data], top=top))
        return schemas.ClassifyResponse(
            attributes={h: [schemas.Label(label=l, p=round(p, 4)) for l, p in zip(pr.labels, pr.probs)]
                        for h, pr in preds[0].items()},
            took_ms=round((time.perf_counter() - start) * 1000, 2))

    @app.post("/api/look", **documented(schemas.LookResponse, upload_errors), tags=["search"])
    async def shop_the_look(request: Request,
                            image: UploadFile = File(..., description="a photo of a person wearing an outfit"),
                            k: int = Query(6, ge=1, le=50), gender: str = Query("soft", pattern="^(soft|strict|off)$")):
        """Shop the look: each garment in the photo (box, kind, attributes) with similar products of its kind."""
        data = await read_upload(request, image)
        result = await run_in_threadpool(lambda: holder.index.look(data, k=k, name=image.filename, gender_filter=gender))
        return send(schemas.LookResponse(
            image=image.filename, size=list(result.size), full_shot=result.full_shot, took_ms=round(result.seconds * 1000, 1),
            garments=[schemas.Garment(kind=g.kind, box=list(g.box), score=g.score, attributes=g.attributes,
                                      results=[product(r) for r in g.results], note=g.note) for g in result.garments]))

    @app.get("/api/products/random", response_model=schemas.Product, tags=["catalog"])
    def random_product(request: Request):
        """A random product (matching the filters, if any)."""
        idx = holder.index
        where = filters(request)
        pid = idx.random_id(where)
        if pid is None:
            raise HTTPException(404, "no product matches these filters" if where else "the catalog is empty")
        return product(idx.get(pid))

    @app.get("/api/products/{pid}", response_model=schemas.Product, responses=errors, tags=["catalog"])
    def get_product(pid: str):
        return product(holder.index.get(pid))

    @app.get("/api/products/{pid}/similar", **documented(schemas.SearchResponse, errors), tags=["search"])
    def similar(pid: str, request: Request, k: int = Query(12, ge=1, le=200), agree: bool = AGREE,
                same: List[str] = SAME, q: Optional[str] = Query(None, description='words that refine the product, '
                                                                   'e.g. "in red"')):
        """Most similar products to a catalog product (itself left out), refined by words `q` when given.
        Filters as query parameters."""
        idx = holder.index
        where = filters(request)
        start = time.perf_counter()
        idx.row(pid)       # an id of the index, never read as a file path
        results = idx.search(pid, k=k, text=q, where=where, agree=agree, same=same)
        return send(schemas.SearchResponse(query={"id": pid, "product": product(idx.get(pid)).model_dump(),
                                                  **({"text": q} if q is not None else {})},
                                           filters=where, results=[product(r) for r in results],
                                           took_ms=round((time.perf_counter() - start) * 1000, 2)))

    @lru_cache(maxsize=4096)
    def thumbnail(path: str, digest: str | None) -> bytes:
        img = load_image(path)
        img.thumbnail((THUMB, THUMB))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        return buf.getvalue()

    @app.get("/api/images/{pid}", responses={404: {"model": schemas.Error}, 200: {"content": {"image/jpeg": {}}}},
             tags=["catalog"])
    def image(pid: str, request: Request, size: str = Query("full", pattern="^(full|thumb)$")):
        """A product's photo, by product id only (never by path). `size=thumb` gives a small JPEG."""
        idx = holder.index
        row = idx.row(pid)
        rec = idx.meta.records([row]).get(row)
        if rec is None:
            raise NotFoundError(f"no product with id {pid!r}")
        path, digest = rec.get("path"), rec.get("sha1")
        etag = f'"{digest or pid}-{size}"'
        headers = {"Cache-Control": "public, max-age=86400", "ETag": etag}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        if not path or not (is_remote(path) or os.path.isfile(path)):
            raise HTTPException(404, f"the photo of product {pid} is missing on the server")
        try:
            if size == "thumb":
                return Response(thumbnail(path, digest), media_type="image/jpeg", headers=headers)
            if is_remote(path):      # on object storage: read through (a CDN in front of the bucket does better)
                data = read_bytes(path, MAX_FILE_BYTES)
                return Response(data, media_type=f"image/{(sniff_format(data) or 'jpeg').lower()}", headers=headers)
        except ImageError:
            raise HTTPException(404, f"the photo of product {pid} cannot be read") from None
        except LookalikeError as exc:        # the bucket cannot be opened from this server (or pyarrow is missing)
            ERRORS.warning("%s", exc)
            raise HTTPException(503, f"the photo of product {pid} cannot be fetched now") from None
        return FileResponse(path, headers=headers)

    # ---- admin writes ------------------------------------------------------------------------------
    def admin(x_api_key: Optional[str] = Header(None, description="the server's API key")):
        if api_key is None:
            raise HTTPException(403, "admin writes are disabled: start the server with an API key "
                                     "(LOOKALIKE_API_KEY or --api-key-file)")
        if not x_api_key or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key")

    @app.post("/api/admin/products", status_code=201, response_model=schemas.Product, dependencies=[Depends(admin)],
              responses={**upload_errors, 401: {"model": schemas.Error}, 403: {"model": schemas.Error},
                         409: {"model": schemas.Error}}, tags=["admin"])
    async def add_product(request: Request, image: UploadFile = File(...),
                          id: str = Form(..., description="the new product's id"),
                          metadata: str = Form("{}", description='JSON object of metadata, e.g. {"gender": "Women"}'),
                          replace: bool = Form(False)):
        """Add (or with `replace`, update) a product: its photo and metadata. Searchable when this returns."""
        if not ID_PATTERN.fullmatch(id):
            raise HTTPException(400, "product id: letters, digits, '.', '_' or '-' (at most 128)")
        try:
            meta = json.loads(metadata)
            if not isinstance(meta, dict):
                raise ValueError
            meta = {str(k): (None if v is None else str(v)) for k, v in meta.items()}
        except ValueError:
            raise HTTPException(400, "metadata must be a JSON object") from None
        data = await read_upload(request, image)
        await run_in_threadpool(load_image, data, image.filename)  # 422 now rather than a skipped product later
        uploads.mkdir(parents=True, exist_ok=True)
        fmt = (sniff_format(data) or "jpg").lower().replace("jpeg", "jpg")
        tmp = Path(tempfile.mkstemp(dir=uploads, suffix=f".{fmt}")[1])
        tmp.write_bytes(data)
        # named by content too: servers sharing a database and an uploads folder never overwrite each other's photo
        target = uploads / f"{id}-{hashlib.sha1(data).hexdigest()[:12]}.{fmt}"
        exists = HTTPException(409, f"product {id} already exists (send replace=true to update it)")

        def write(idx):
            if id in idx and not replace:
                raise exists
            os.replace(tmp, target)
            report = idx.add_products([CatalogProduct(id, target, meta)], replace=replace)
            if report.skipped:
                raise ImageError(report.skipped[0][1])
            if report.already_indexed:       # another server added it meanwhile
                raise exists
            return idx

        try:
            await run_in_threadpool(holder.write, write)
        finally:
            tmp.unlink(missing_ok=True)
        return product(holder.index.get(id))

    @app.delete("/api/admin/products/{pid}", status_code=204, dependencies=[Depends(admin)],
                responses={404: {"model": schemas.Error}, 401: {"model": schemas.Error}, 403: {"model": schemas.Error}},
                tags=["admin"])
    def remove_product(pid: str):
        holder.write(lambda idx: idx.remove([pid]))
        return Response(status_code=204)

    return app


def check_port(host: str, port: int) -> None:
    """Fail with one line before anything is printed or loaded when `serve` could not listen on host:port:
    uvicorn would only find out after the "serving ..." line, and then log its own error."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closed server's port is free
            sock.bind(address)
    except socket.gaierror as exc:
        raise LookalikeError(f"cannot serve on host {host}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise LookalikeError(f"port {port} on {host} is in use: pick another with --port") from None
        raise LookalikeError(f"cannot listen on port {port} of {host}: {exc.strerror or exc}") from None


def app_from_env() -> FastAPI:
    """App factory for multi-process serving (`lookalike serve --workers N`): settings come from the
    environment that `serve` sets: LOOKALIKE_INDEX, LOOKALIKE_API_KEY_FILE, LOOKALIKE_MAX_UPLOAD_MB, LOOKALIKE_UPLOADS."""
    return create_app(os.environ["LOOKALIKE_INDEX"], api_key=api_key_from(file=os.environ.get("LOOKALIKE_API_KEY_FILE")),
                      max_upload_mb=float(os.environ.get("LOOKALIKE_MAX_UPLOAD_MB", "10")),
                      uploads_dir=os.environ.get("LOOKALIKE_UPLOADS") or None)


def api_key_from(env: str = "LOOKALIKE_API_KEY", file: str | Path | None = None) -> str | None:
    """The admin key: the text of `file` (stripped) when given, else the environment variable `env`.
    A key file that cannot be read is a one-line error, never a traceback at start-up."""
    if file:
        try:
            key = Path(file).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise LookalikeError(f"{file}: no such API key file") from None
        except IsADirectoryError:
            raise LookalikeError(f"{file}: a folder, not an API key file") from None
        except OSError as exc:
            raise LookalikeError(f"{file}: cannot read the API key file ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise LookalikeError(f"{file}: the API key file is not UTF-8 text") from None
        return key or None
    return os.environ.get(env) or None
