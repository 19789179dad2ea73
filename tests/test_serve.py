"""``sjdl serve`` (issue 12): the JSON API with Starlette's TestClient, hostile requests, the
command itself, and the page in a real headless chromium."""

import base64
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient
from typer.testing import CliRunner

import sjdl
import sjdl.data.io as gate
from sjdl.cli import app as cli_app
from sjdl.retrieval.server import create_app

from . import browser
from .conftest import make_fvrid
from .test_deploy import _checkpoint

LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny checkpoint, its index of the 4 make_fvrid gallery images, the data tree."""
    root = tmp_path_factory.mktemp("serve")
    ckpt, _ = _checkpoint(root)
    syn = make_fvrid(root / "data") / "FVRID_syn"
    reid = sjdl.ReID.from_checkpoint(ckpt, device="cpu")
    idx = sjdl.Gallery.build([syn / "gallery_foggy"], reid).save(root / "idx")
    return reid, idx, syn


@pytest.fixture
def client(setup):
    reid, idx, _ = setup
    gallery = sjdl.Gallery.open(idx, reid)
    app = create_app(gallery, max_upload=20_000, max_pixels=100_000)
    with TestClient(app, base_url=LOCAL) as c:
        c.gallery = gallery
        yield c


def _post(client, data, k=10, **params):
    return client.post("/api/search", params={"k": k, **params}, content=data)


def test_search_order_equals_gallery_search(setup, client):
    _, _, syn = setup
    queries = sorted((syn / "query_foggy").iterdir()) + sorted((syn / "gallery_foggy").iterdir())
    for query in queries:
        expected = client.gallery.search(query, k=3)
        r = _post(client, query.read_bytes(), k=3, name=query.name)
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        assert [x["path"] for x in got] == [Path(m.path).name for m in expected]  # relative
        assert [x["rank"] for x in got] == [1, 2, 3]
        for x, m in zip(got, expected, strict=True):
            assert x["distance"] == pytest.approx(m.distance, abs=1e-4)
            assert x["thumbnail"] == f"/thumb/{m.row}" and x["pid"] == m.pid
            assert x["same_id"] == (m.pid == int(query.name[:5]))
    form = client.post(
        "/api/search",
        params={"k": 2},
        files={"image": (query.name, query.read_bytes(), "image/jpeg")},
    )
    assert form.status_code == 200, form.text
    body = form.json()
    assert [x["path"] for x in body["results"]] == [Path(m.path).name for m in expected[:2]]
    assert body["query"]["pid"] == int(query.name[:5])  # from the multipart file name
    restored = body["restored"]  # the tiny model has FIRM: the restoration comes along
    assert restored.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(restored.split(",", 1)[1])))
    assert img.size == Image.open(query).size
    assert _post(client, query.read_bytes(), restore="0").json()["restored"] is None


def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(setup, client):
    _, _, syn = setup
    good = next((syn / "query_foggy").iterdir()).read_bytes()
    photo = io.BytesIO()
    Image.effect_noise((160, 120), 60).convert("RGB").save(photo, "JPEG")
    big = io.BytesIO()
    Image.new("RGB", (400, 300)).save(big, "PNG")  # 120 000 pixels > 100 000, tiny file
    cases = [
        (b"%PDF-1.4 not an image", {}, 415, "not an image"),
        (b"", {}, 400, "the upload is empty"),
        (os.urandom(30_000), {}, 413, "larger than"),  # max_upload 20 000 bytes
        (big.getvalue(), {}, 413, "400x300 pixels"),
        (photo.getvalue()[:4000], {}, 400, "damaged"),  # a truncated JPEG
        (good, {"k": "ten"}, 400, "k must be an integer from 1 to 100"),
        (good, {"k": 0}, 400, "k must be an integer"),
    ]
    for data, params, status, message in cases:
        r = client.post("/api/search", params={"k": 5, **params}, content=data)
        assert r.status_code == status, (message, r.text)
        assert message in r.json()["error"]
        assert _post(client, good).status_code == 200  # still serving
    r = client.post("/api/search", files={"other": ("a.txt", b"x")})
    assert r.status_code == 400 and "field named 'image'" in r.json()["error"]
    r = client.post("/api/search", files={"image": ("big.bin", os.urandom(30_000))})
    assert r.status_code == 413
    assert client.get("/api/search").status_code == 405
    assert client.get("/api/info").json()["images"] == 4


def test_an_internal_error_is_a_json_500_and_the_server_keeps_serving(setup, monkeypatch):
    reid, idx, syn = setup
    gallery = sjdl.Gallery.open(idx, reid)
    good = next((syn / "query_foggy").iterdir()).read_bytes()
    app = create_app(gallery)
    with TestClient(app, base_url=LOCAL, raise_server_exceptions=False) as c:
        real = gallery.search
        monkeypatch.setattr(gallery, "search", lambda *a: 1 / 0)
        r = _post(c, good)
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]
        monkeypatch.setattr(gallery, "search", real)
        assert _post(c, good).status_code == 200


TRAVERSALS = [
    "/thumb/-1",
    "/thumb/4",
    "/thumb/99999999999999999999",
    "/thumb/0/../../../../etc/passwd",
    "/thumb/..%2F..%2F..%2Fetc%2Fpasswd",
    "/thumb/%2e%2e/%2e%2e/etc/passwd",
    "/thumb//etc/passwd",
    "/thumb/0%00.jpg",
    "/..%2f..%2fpyproject.toml",
    "/static/../../../etc/passwd",
    "/app.js/../../../../etc/passwd",
]


def test_thumbnails_serve_only_index_images(setup, client, monkeypatch):
    _, idx, _ = setup
    allowed = {row["path"] for row in sjdl.retrieval.GalleryIndex.load(idx).rows}
    opened = []
    real_open = gate._open_file  # every image file sjdl reads is opened here

    def spy(path):
        opened.append(str(path))
        return real_open(path)

    monkeypatch.setattr(gate, "_open_file", spy)
    r = client.get("/thumb/0")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size[0] > 0
    for path in TRAVERSALS:
        r = client.get(path)
        assert r.status_code in (400, 404), path
        assert b"root:" not in r.content and b"[project]" not in r.content
    assert opened and set(opened) <= allowed  # nothing else was ever opened


def test_page_is_self_contained_and_refuses_foreign_hosts(setup, client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/", "/app.js", "/style.css"):  # no CDN, no remote font
        assert "://" not in client.get(asset).text
    gallery = client.gallery
    with TestClient(create_app(gallery), base_url="http://attacker.example") as other:
        assert other.get("/api/info").status_code == 400  # DNS rebinding: refused


def test_an_index_extended_on_disk_is_reopened(setup, tmp_path):
    reid, idx, syn = setup
    copy = sjdl.Gallery.open(idx, reid).save(tmp_path / "idx")
    with TestClient(create_app(sjdl.Gallery.open(copy, reid)), base_url=LOCAL) as c:
        assert c.get("/api/info").json()["images"] == 4
        more = sjdl.Gallery.open(copy, reid)
        more.add(syn / "query_foggy")
        more.save()
        assert c.get("/api/info").json()["images"] == 6
        query = next((syn / "query_foggy").iterdir())
        top = _post(c, query.read_bytes(), k=1).json()["results"][0]
        assert top["path"] == f"query_foggy/{query.name}"  # relative to the gallery root
        assert c.get(top["thumbnail"]).status_code == 200


# --- the command --------------------------------------------------------------------------


def test_serve_command_errors_are_one_line(setup, tmp_path):
    _, idx, _ = setup
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve", "--index", str(tmp_path / "none")])
    assert r.exit_code == 2 and "not an index folder" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = runner.invoke(cli_app, ["serve", "--index", str(idx), "--port", str(port)])
    assert r.exit_code == 2 and "cannot listen on 127.0.0.1" in r.stderr


def test_serve_command_answers_on_localhost(setup):
    _, idx, syn = setup
    proc = subprocess.Popen(
        [sys.executable, "-m", "sjdl", "serve", "--index", str(idx), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, line
        info = urllib.request.urlopen(url.group(0) + "api/info", timeout=30).read()
        assert b'"images":4' in info
        query = next((syn / "query_foggy").iterdir())
        req = urllib.request.Request(url.group(0) + "api/search?k=2", query.read_bytes())
        assert b'"rank":2' in urllib.request.urlopen(req, timeout=60).read()
    finally:
        proc.terminate()
        proc.wait(30)


# --- the page in a real browser -----------------------------------------------------------


def test_page_in_headless_chromium(setup, tmp_path):
    if browser.chromium_paths() is None:
        message = "chromium and chromedriver not installed (apt-get install chromium-driver)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run installs them")
        pytest.skip(message)
    reid, idx, syn = setup
    gallery = sjdl.Gallery.open(idx, reid)
    query = sorted((syn / "gallery_foggy").iterdir())[1]
    expected = [m.path.rsplit("/", 1)[-1] for m in gallery.search(query, k=4)]
    assert expected[0] == query.name  # a gallery image finds itself first
    with browser.running_server(create_app(gallery)) as url, browser.headless_chromium() as s:
        t = time.monotonic()
        cards = browser.search_page(s, url, query)
        assert time.monotonic() - t < 60
        assert [c[0] for c in cards] == [1, 2, 3, 4]
        assert [c[1] for c in cards] == expected
        assert all(c[2] > 0 for c in cards)  # every thumbnail was decoded and drawn
        assert "4 nearest of 4 gallery images" in browser.page_text(s, "status")
        assert s.execute_script("return !document.getElementById('restored').hidden")
        shot = tmp_path / "serve.png"
        s.save_screenshot(str(shot))
        bad = tmp_path / "notes.jpg"
        bad.write_text("not an image")
        s.find_element("id", "file").send_keys(str(bad))
        assert "not an image" in browser.wait_for_text(s, "error", "not an image")
        assert browser.page_text(s, "results") == ""  # the old matches are gone
        assert "could not be searched" in browser.page_text(s, "status")
        assert not s.find_element("id", "restored").is_displayed()  # nor the old restoration
    assert Image.open(shot).size == (1280, 860)
