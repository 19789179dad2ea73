"""Issue 17 item 6: ``sjdl serve`` checks the Host header on every bind (DNS rebinding) and
its answers hold no absolute server path."""

import http.client
import json
import os
import re
import subprocess
import sys

import pytest
from starlette.testclient import TestClient

import sjdl
from sjdl.retrieval.hosts import HostPolicy, check_name
from sjdl.retrieval.server import create_app

from .conftest import cli, one_line_error
from .test_serve import setup  # noqa: F401 - the module fixture


@pytest.mark.parametrize(
    ("bind", "extra", "allowed", "refused"),
    [
        (
            "127.0.0.1",
            (),
            ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:80", "localhost."],
            ["evil.example", "evil.example:8000", "10.0.0.2", "", "127.0.0.1.evil.example"],
        ),
        ("127.0.0.2", (), ["127.0.0.2:8000", "localhost:8000"], ["evil.example", "mybox.lan"]),
        (
            "0.0.0.0",
            ("mybox.lan",),
            ["192.168.1.5:8000", "mybox.lan:8000", "localhost", "[fe80::1]:8000"],
            # names of public rebinding services that resolve to a chosen address are names,
            # not IP literals: refused (a browser sends an address only when the user typed it)
            ["evil.example", "mybox.lan.evil.example", "other.lan", "[nonsense]"]
            + ["127.0.0.1.nip.io", "7f000001.c0a80105.rbndr.us", "2130706433", "0x7f000001"],
        ),
        ("192.168.1.5", (), ["192.168.1.5:8000"], ["localhost", "10.0.0.1", "evil.example"]),
        ("::1", (), ["[::1]:8000", "localhost"], ["evil.example"]),
    ],
)
def test_host_policy_per_bind(bind, extra, allowed, refused):
    policy = HostPolicy.for_bind(bind, extra)
    for host in allowed:
        assert policy.allows(host), (bind, host)
    for host in refused:
        assert not policy.allows(host), (bind, host)


@pytest.mark.parametrize("bad", ["*", "*.lan", "http://mybox.lan", "mybox.lan/x", "a b", ""])
def test_allow_host_refuses_patterns_and_malformed_names(bad):
    with pytest.raises(ValueError, match="--allow-host"):
        check_name(bad)


def test_serve_refuses_a_bad_allow_host_in_one_line(setup):  # noqa: F811
    _, idx, _ = setup
    one_line_error(cli("serve", "--index", idx, "--allow-host", "*"), "--allow-host '*'")


def test_app_refuses_foreign_hosts_and_answers_without_absolute_paths(setup):  # noqa: F811
    reid, idx, syn = setup
    gallery = sjdl.Gallery.open(idx, reid)
    policy = HostPolicy.for_bind("0.0.0.0", ("mybox.lan",))
    app = create_app(gallery, hosts=policy)
    with TestClient(app, base_url="http://evil.example:8000") as c:
        r = c.get("/api/info")
        assert r.status_code == 400 and "evil.example" in r.json()["error"]
    with pytest.raises(ValueError, match="DNS rebinding"):
        create_app(gallery, allowed_hosts=("*",))
    secret = [str(idx.parent), str(syn), str(reid.checkpoint.parent)]
    with TestClient(app, base_url="http://mybox.lan:8000") as c:
        info = c.get("/api/info")
        assert info.status_code == 200
        assert info.json()["checkpoint"] == reid.checkpoint.name
        query = next((syn / "query_foggy").iterdir())
        found = c.post("/api/search", params={"k": 4}, content=query.read_bytes())
        paths = [x["path"] for x in found.json()["results"]]
        assert sorted(paths) == sorted(p.name for p in (syn / "gallery_foggy").iterdir())
        for text in (info.text, found.text):
            assert not any(s in text for s in secret), text
        row = gallery._index.rows[0]
        os.rename(row["path"], row["path"] + ".gone")
        try:
            gone = c.get("/thumb/0")
        finally:
            os.rename(row["path"] + ".gone", row["path"])
        assert gone.status_code == 404 and "cannot be read" in gone.json()["error"]
        assert not any(s in gone.text for s in secret), gone.text


def _get(port, host):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/info", headers={"Host": host})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_serve_on_all_addresses_still_checks_the_host_header(setup):  # noqa: F811
    _, idx, _ = setup
    argv = ["serve", "--index", str(idx), "--port", "0", "--host", "0.0.0.0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sjdl", *argv, "--allow-host", "mybox.lan"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        lines = []
        while not (url := re.search(r"http://127\.0\.0\.1:(\d+)/", lines[-1] if lines else "")):
            lines.append(proc.stdout.readline())
            assert lines[-1], "".join(lines)
        port = int(url.group(1))
        assert _get(port, f"127.0.0.1:{port}")[0] == 200
        status, body = _get(port, f"mybox.lan:{port}")
        assert status == 200 and not body["checkpoint"].startswith("/")
        for host in ("evil.example", f"evil.example:{port}", "mybox.lan.evil.example"):
            status, body = _get(port, host)
            assert status == 400 and "not one of this server's names" in body["error"]
    finally:
        proc.terminate()
        proc.wait(30)
