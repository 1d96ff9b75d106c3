"""The HTTP API through the ASGI test client: every endpoint, every error code, admin keys, live writes."""

import io
import logging
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import DEMO, DEMO_CSV, run_cli

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is needed for the API")
from fastapi.testclient import TestClient  # noqa: E402


from lookalike import Index  # noqa: E402
from lookalike.serve.app import create_app  # noqa: E402

KEY = "s3cret-key"


@pytest.fixture
def index_path(tmp_path):
    Index.build(DEMO, DEMO_CSV, out=tmp_path / "demo.idx", model="classic")
    return tmp_path / "demo.idx"


@pytest.fixture
def client(index_path):
    return TestClient(create_app(index_path, api_key=KEY, max_upload_mb=1))


def photo(cls="hat", i=0):
    return sorted((DEMO / cls).glob("*.jpg"))[i]


def upload(path):
    return {"image": (path.name, path.read_bytes(), "image/jpeg")}


def test_health_and_facets(client):
    health = client.get("/api/health").json()
    assert health["products"] == 200 and health["model"] == "classic-v1" and health["admin"] is True
    facets = client.get("/api/facets").json()
    assert {f["value"]: f["count"] for f in facets["columns"]["class"]}["hat"] == 20


def test_search_by_upload_with_filters(client):
    hat = photo("hat", 3)
    data = client.post("/api/search?k=5", files=upload(hat)).json()
    assert data["results"][0]["id"] == hat.stem and len(data["results"]) == 5
    shoes = client.post("/api/search?k=30&class=shoes,skirt", files=upload(hat)).json()
    assert len(shoes["results"]) == 30 and {r["metadata"]["class"] for r in shoes["results"]} <= {"shoes", "skirt"}
    assert shoes["filters"] == {"class": ["shoes", "skirt"]}


def test_similar_product_details_random(client):
    pid = photo("dress", 2).stem
    data = client.get(f"/api/products/{pid}/similar?k=8&class=dress").json()
    ids = [r["id"] for r in data["results"]]
    assert pid not in ids and len(ids) == 8 and data["query"]["id"] == pid
    assert all(r["metadata"]["class"] == "dress" for r in data["results"])
    plain = client.get(f"/api/products/{pid}/similar?k=8&agree=false&class=dress").json()
    assert plain["filters"] == {"class": ["dress"]} and len(plain["results"]) == 8
    assert client.get(f"/api/products/{pid}").json()["metadata"] == {"class": "dress"}
    same = client.get(f"/api/products/{pid}/similar?k=40&same=class").json()
    assert len(same["results"]) == 19 and {r["metadata"]["class"] for r in same["results"]} == {"dress"}
    assert client.get(f"/api/products/{pid}/similar?same=colour").status_code == 400
    for _ in range(5):
        assert client.get("/api/products/random?class=skirt").json()["metadata"]["class"] == "skirt"


def test_images_by_id_with_caching(client):
    pid = photo("shoes").stem
    full = client.get(f"/api/images/{pid}")
    assert full.status_code == 200 and full.content == photo("shoes").read_bytes()
    assert "max-age" in full.headers["cache-control"] and full.headers["etag"]
    thumb = client.get(f"/api/images/{pid}?size=thumb")
    assert thumb.headers["content-type"] == "image/jpeg" and max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    again = client.get(f"/api/images/{pid}?size=thumb", headers={"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/api/images/..%2F..%2Fetc%2Fpasswd").status_code == 404


@pytest.mark.parametrize("case,status", [("text", 415), ("truncated", 422), ("empty", 422), ("huge", 413)])
def test_bad_uploads(client, case, status):
    data = {"text": b"hello, not an image", "truncated": photo().read_bytes()[:3000], "empty": b"",
            "huge": b"\xff\xd8" + b"0" * (2 << 20)}[case]
    response = client.post("/api/search", files={"image": ("x.jpg", data, "image/jpeg")})
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_lookup_errors(client):
    assert client.get("/api/products/ghost/similar").status_code == 404
    assert client.get("/api/products/ghost").status_code == 404
    bad = client.get(f"/api/products/{photo().stem}/similar?colour=red")
    assert bad.status_code == 400 and "columns are: class" in bad.json()["detail"]
    assert client.get(f"/api/products/{photo().stem}/similar?class=sock").status_code == 400
    assert client.get(f"/api/products/{photo().stem}/similar?k=0").status_code == 422
    assert client.post("/api/classify", files=upload(photo())).status_code == 409  # classic has no heads


def test_admin_is_disabled_without_a_key(index_path):
    client = TestClient(create_app(index_path))
    r = client.post("/api/admin/products", data={"id": "x"}, files=upload(photo()))
    assert r.status_code == 403 and "disabled" in r.json()["detail"]
    assert client.delete(f"/api/admin/products/{photo().stem}").status_code == 403


def test_admin_writes_are_visible_to_the_next_search(client, index_path):
    new = photo("shoes", 5)
    form = {"id": "new-shoe", "metadata": '{"class": "shoes", "brand": "Acme"}'}
    assert client.post("/api/admin/products", data=form, files=upload(new)).status_code == 401
    assert client.post("/api/admin/products", data=form, files=upload(new), headers={"X-API-Key": "wrong"}).status_code == 401
    added = client.post("/api/admin/products", data=form, files=upload(new), headers={"X-API-Key": KEY})
    assert added.status_code == 201, added.text
    assert added.json()["metadata"] == {"class": "shoes", "brand": "Acme"}
    found = client.post("/api/search?k=3&brand=Acme", files=upload(new)).json()["results"]
    assert [r["id"] for r in found] == ["new-shoe"]
    assert client.get("/api/images/new-shoe").content == new.read_bytes()
    dup = client.post("/api/admin/products", data=form, files=upload(new), headers={"X-API-Key": KEY})
    assert dup.status_code == 409
    bad = client.post("/api/admin/products", data={"id": "x", "metadata": "[1]"}, files=upload(new), headers={"X-API-Key": KEY})
    assert bad.status_code == 400
    assert client.delete("/api/admin/products/new-shoe", headers={"X-API-Key": KEY}).status_code == 204
    assert client.get("/api/products/new-shoe").status_code == 404
    assert client.delete("/api/admin/products/new-shoe", headers={"X-API-Key": KEY}).status_code == 404
    assert len(Index.load(index_path)) == 200


def test_writes_by_another_process_are_picked_up(index_path, tmp_path):
    app = create_app(index_path)
    app.state.holder._check_every = 0
    client = TestClient(app)
    assert client.get("/api/health").json()["products"] == 200
    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(photo("hat"), extra / "hat-copy-99.jpg")
    Index.load(index_path).add(extra)  # e.g. `lookalike add` from a shell while the server runs
    assert client.get("/api/health").json()["products"] == 201
    assert client.get("/api/products/hat-copy-99").status_code == 200


def test_an_open_index_keeps_its_version_after_a_swap(index_path):
    reader = Index.load(index_path)
    removed = reader.ids[1]
    Index.load(index_path).remove([removed])
    # the reader still answers from the version it opened: rows and metadata stay paired
    assert reader.search(removed, k=1, exclude_self=False)[0].id == removed
    assert reader.get(reader.ids[2]).id == reader.ids[2]
    assert removed not in Index.load(index_path)


def test_openapi_schema_and_page(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/search", "/api/products/{pid}/similar", "/api/facets", "/api/admin/products"} <= set(schema["paths"])
    page = client.get("/")
    assert page.status_code == 200 and "lookalike" in page.text
    assert client.get("/static/app.js").status_code == 200


def local_urls(html: str) -> list[str]:
    """Every src and href of a page, each asserted to stay on the server (no CDN, no other host)."""
    urls = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert urls and not [u for u in urls if re.match(r"(?i)([a-z]+:)?//", u)], urls
    return urls


def test_docs_work_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    urls = local_urls(docs.text)
    assert any(u.endswith("swagger-ui-bundle.js") for u in urls) and any(u.endswith("swagger-ui.css") for u in urls)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        kind = {".js": "javascript", ".css": "text/css", ".png": "image/png"}[Path(url).suffix]
        assert kind in response.headers["content-type"], (url, response.headers["content-type"])
    assert client.get("/redoc").status_code == 404      # ReDoc would load from a CDN too
    assert client.get("/static/swagger/LICENSE").status_code == 200


def csp(response) -> dict[str, set[str]]:
    policy = response.headers["content-security-policy"]
    return {d.split()[0]: set(d.split()[1:]) for d in policy.split(";") if d.strip()}


def test_security_headers_on_every_response(client):
    responses = [client.get(p) for p in ("/", "/docs", "/static/app.js", "/static/swagger/swagger-ui.css",
                                         "/api/health", "/api/products/ghost", "/openapi.json", "/nowhere")]
    responses.append(client.post("/api/search", files={"image": ("x.jpg", b"\xff\xd8" + b"0" * (2 << 20), "image/jpeg")}))
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 404, 200, 404, 413]
    for r in responses:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["x-frame-options"] == "DENY", r.url
        policy = csp(r)
        assert policy["script-src"] == {"'self'"} and policy["style-src"] == {"'self'"}, policy
        assert policy["img-src"] == {"'self'", "data:", "blob:"} and policy["default-src"] == {"'self'"}
        assert policy["frame-ancestors"] == {"'none'"} and policy["object-src"] == {"'none'"}


@pytest.mark.parametrize("name", ["index.html", "docs.html"])
def test_pages_need_no_inline_script_or_style(client, name):
    """What the CSP forbids is absent: inline <script>s, <style> blocks, style="" attributes, on*="" handlers."""
    html = client.get("/" if name == "index.html" else "/docs").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I)
    local_urls(html)


def test_one_access_log_line_per_request(client, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.access")
    hat = photo("hat")
    client.get("/api/health?gender=Secret")
    client.post("/api/search?k=3&class=hat", files=upload(hat))
    client.get("/api/products/ghost")
    client.post("/api/search", files={"image": ("big.jpg", b"\xff\xd8" + b"0" * (2 << 20), "image/jpeg")})
    lines = [r.getMessage() for r in caplog.records if r.name == "lookalike.access"]
    assert len(lines) == 4, lines
    for line, (method, path, status) in zip(lines, [("GET", "/api/health", 200), ("POST", "/api/search", 200),
                                                    ("GET", "/api/products/ghost", 404), ("POST", "/api/search", 413)]):
        assert re.fullmatch(rf"{method} {re.escape(path)} {status} \d+\.\d ms", line), line
    text = "\n".join(lines)
    assert "Secret" not in text and "class=hat" not in text and hat.name not in text   # no query strings, no uploads


run = run_cli


def test_serve_on_a_port_in_use_fails_in_one_line(index_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", index_path, "--port", port, code=2)
    assert f"port {port} on 127.0.0.1 is in use: pick another with --port" in result.output
    assert "serving" not in result.output and len(result.output.strip().splitlines()) == 1, result.output


def start_serve(index_path, stderr, first_path="/api/health"):
    """`lookalike serve INDEX` in a subprocess on a free port, once its first answer (to `first_path`) is 200:
    (process, base URL). The caller terminates it."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", "from lookalike.cli import main; main()", "serve",
                               str(index_path), "--port", str(port)], stderr=stderr, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            assert httpx.get(url + first_path).status_code == 200
            return server, url
        except httpx.TransportError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                raise AssertionError("the server did not start") from None
            time.sleep(0.2)


def test_serve_logs_each_request_once(index_path):
    """`lookalike serve` as run from a shell: the app's access line for each request, and not uvicorn's too."""
    import httpx

    server, url = start_serve(index_path, subprocess.PIPE, "/api/health?gender=Secret")
    try:
        assert httpx.get(f"{url}/api/products/ghost").status_code == 404
    finally:
        server.terminate()
        try:
            _, stderr = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert f"{url}/" in stderr
    requests = [line for line in stderr.splitlines() if "/api/" in line]
    assert len(requests) == 2, stderr
    assert re.search(r"GET /api/health 200 \d+\.\d ms$", requests[0]) and "Secret" not in stderr
    assert re.search(r"GET /api/products/ghost 404 \d+\.\d ms$", requests[1])


def chunks(data: bytes, size: int = 1 << 16):
    """A body httpx sends chunked: a generator has no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def multipart(*parts: tuple[str, str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body of (field, file name, content) parts, and its Content-Type."""
    boundary = "lookalike-test-boundary"
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
                    for field, name, content in parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def test_an_oversized_chunked_upload_gets_413(client):
    body, kind = multipart(("image", "big.jpg", b"\xff\xd8" + b"0" * (2 << 20)))
    response = client.post("/api/search", content=chunks(body), headers={"Content-Type": kind})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and "upload too large" in response.json()["detail"], response.text
    small, kind = multipart(("image", "hat.jpg", photo("hat", 3).read_bytes()))
    fine = client.post("/api/search?k=1", content=chunks(small, 4096), headers={"Content-Type": kind})
    assert fine.status_code == 200 and fine.json()["results"][0]["id"] == photo("hat", 3).stem


@pytest.mark.parametrize("route", ["/api/search", "/api/classify", "/api/look", "/api/admin/products"])
def test_two_photos_in_the_image_field_are_refused(client, route):
    files = [("image", ("a.jpg", photo("hat").read_bytes(), "image/jpeg")),
             ("image", ("b.jpg", photo("shoes").read_bytes(), "image/jpeg"))]
    response = client.post(route, files=files, data={"id": "two"}, headers={"X-API-Key": KEY})
    assert response.status_code == 400 and response.json()["detail"] == "send one photo in the image field"


def png(size: tuple[int, int], mode: str) -> bytes:
    """A PNG of `size` (width, height) in `mode` (I;16 or RGBA): all zeros, so a 49-megapixel one is 95 KB."""
    import numpy as np

    width, height = size
    shape, dtype = {"I;16": ((height, width), np.uint16), "RGBA": ((height, width, 4), np.uint8)}[mode]
    img = Image.fromarray(np.zeros(shape, dtype))
    assert img.mode == mode
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_upload_pixel_budget_is_checked_from_the_header(client):
    big = client.post("/api/search", files={"image": ("deep.png", png((7000, 7000), "I;16"), "image/png")})
    assert big.status_code == 422
    assert big.json()["detail"] == "deep.png: 7000x7000 pixels is over the limit of 25,000,000 for an upload"
    # a decompression bomb: a header declaring 400 megapixels, which Pillow refuses to open
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    bomb = client.post("/api/search", files={"image": ("bomb.png", buf.getvalue(), "image/png")})
    assert bomb.status_code == 422 and "too many pixels" in bomb.json()["detail"], bomb.text


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory (VmRSS) or its peak so far (VmHWM), in MB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Start a process's VmHWM afresh from its current RSS (Linux 4.0+), so a peak measures what came after; an
    older kernel keeps the start-up peak, which only makes the bounds below looser."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        pass


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc (Linux)")
def test_large_uploads_cost_the_server_little_memory(index_path):
    """The fault probe's attack on a running server: four concurrent 95 KB uploads declaring 7000x7000 16-bit
    pixels (1.3 GB each to decode) are refused from their headers; a 20-megapixel RGBA photo, under the budget,
    is decoded and searched at a bounded cost."""
    import threading

    import httpx

    server, url = start_serve(index_path, subprocess.DEVNULL)
    try:
        hat = photo("hat")
        assert httpx.post(f"{url}/api/search?k=1", files=upload(hat), timeout=60).status_code == 200  # warm
        idle = rss_mb(server.pid)
        reset_peak(server.pid)
        deep = png((7000, 7000), "I;16")
        answers: list = []

        def send_deep():
            answers.append(httpx.post(f"{url}/api/search", files={"image": ("deep.png", deep, "image/png")},
                                      timeout=60))

        threads = [threading.Thread(target=send_deep) for _ in range(4)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - start
        assert [a.status_code for a in answers] == [422] * 4, [a.text for a in answers]
        assert all("over the limit of 25,000,000" in a.json()["detail"] for a in answers)
        assert took < 10, f"four refusals took {took:.1f} s"
        peak = rss_mb(server.pid, "VmHWM")
        # measured: +0.3 MB; decoded as before the pixel budget, the four raise the peak by 1 GB (5 GB without
        # the decoding semaphore and the 16-bit conversion without float64)
        assert peak < idle + 150, f"idle {idle:.0f} MB, peak {peak:.0f} MB after four refused uploads"
        rgba = png((5000, 4000), "RGBA")
        reset_peak(server.pid)
        ok = httpx.post(f"{url}/api/search?k=3", files={"image": ("rgba.png", rgba, "image/png")}, timeout=120)
        assert ok.status_code == 200 and len(ok.json()["results"]) == 3, ok.text
        cost = rss_mb(server.pid, "VmHWM") - idle
        # 20 megapixels of RGBA are 80 MB decoded, reduced in their own mode before RGB conversion: measured +230 MB
        assert cost < 350, f"a 20-megapixel RGBA upload raised the peak by {cost:.0f} MB over idle ({idle:.0f} MB)"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
