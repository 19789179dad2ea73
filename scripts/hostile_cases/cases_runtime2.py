"""Issue 17 items 2, 6, 13, 16: ``search`` asked to write over its inputs or an existing
file, or into places it cannot write; ``search`` after a gallery image went away; weights
that are NaN, integer or overflow; ``serve`` reached under a foreign Host name (DNS
rebinding) and what its answers reveal of the server's folders. A server that answers a
foreign Host, or shows an absolute path, is classified silent-wrong with "SECURITY"."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import torch

from .cases_checkpoint import rewrite_checkpoint
from .world import Outcome, SetupError, Snapshot, World, case, refused, succeeded


def _query(w: World) -> Path:
    return w.base_data / "FVRID_syn" / "query_foggy" / "00100_c001_000000_0.jpg"


def _own_query(w: World, name: str = "query.jpg") -> Path:
    """A copy of the query under a fresh name (so its default ``<stem>_ranks.png`` is new)."""
    q = w.new(name)
    shutil.copy(_query(w), q)
    return q


def _search(w: World, query: Path, *extra, index: Path | None = None):
    return w.sjdl("search", query, "--index", index or w.base_index(), *extra)


# --- item 2: never over an input, never over an existing file --------------------------


@case("overwrite")
def case_search_png_onto_query(w):
    q = _own_query(w)
    intact = Snapshot(q)
    return refused(_search(w, q, "--png", q), names=(q.name,), intact=intact)


@case("overwrite")
def case_search_defog_out_onto_query(w):
    q = _own_query(w)
    intact = Snapshot(q)
    return refused(_search(w, q, "--defog-out", q), names=(q.name,), intact=intact)


@case("overwrite")
def case_search_png_onto_gallery_image(w):
    gallery = w.base_data / "FVRID_syn" / "gallery_foggy"
    victim = sorted(gallery.iterdir())[0]
    intact = Snapshot(gallery)
    r = _search(w, _own_query(w), "--png", victim)
    return refused(r, names=(victim.name,), intact=intact)


@case("overwrite")
def case_search_replaces_existing_default_png(w):
    q = _own_query(w)
    mine = w.root / f"{q.stem}_ranks.png"  # the default output, in the working folder
    mine.write_bytes(b"my own picture")
    intact = Snapshot(mine)
    return refused(_search(w, q), names=(mine.name, "--overwrite"), intact=intact)


# --- item 16: outputs that cannot be written; a gallery image gone since indexing -----------


def _refused_before_search(w: World, png: Path, names) -> Outcome:
    res = refused(_search(w, _own_query(w), "--png", png), names=names)
    if res.outcome == "clear-error" and w.runs[-1].said("distance"):
        res.detail += " [refused only after the search ran]"
    return res


@case("index")
def case_search_png_unsupported_suffix(w):
    png = w.new("ranks.xyz")
    res = _refused_before_search(w, png, (png.name,))
    if png.exists():
        res.detail += f" [left {png.name}]"
    return res


@case("index")
def case_search_png_missing_folder(w):
    png = w.new("no-such-folder") / "r.png"
    return _refused_before_search(w, png, (png.parent.name,))


@case("index")
def case_search_png_is_a_folder(w):
    folder = w.new("a-folder.png")
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    intact = Snapshot(folder)
    res = _refused_before_search(w, folder, (folder.name,))
    lost = intact.changes()
    return Outcome("data-loss", lost) if lost else res


def _index_of_copy(w: World) -> tuple[Path, Path]:
    gallery = w.new("gallery")
    shutil.copytree(w.base_data / "FVRID_syn" / "gallery_foggy", gallery)
    idx = w.new("index")
    r = w.sjdl("index", "build", gallery, "--checkpoint", w.ckpt, "-o", idx, setup=True)
    if r.rc != 0:
        raise SetupError(f"index build failed: {r.error_line()}")
    return gallery, idx


def _search_after(w: World, damage) -> Outcome:
    gallery, idx = _index_of_copy(w)
    victim = sorted(gallery.iterdir())[0]
    damage(victim)
    png = w.new("ranks.png")
    r = _search(w, _own_query(w), "--png", png, "--top-k", "4", index=idx)

    def check():
        if not png.is_file():
            return f"no rank list written at {png.name}"
        if not r.said("can no longer be read") or not r.said(victim.name):
            return f"exit 0 without saying that {victim.name} could not be shown"
        return None

    return succeeded(r, check)


@case("index")
def case_search_after_gallery_image_deleted(w):
    return _search_after(w, lambda p: p.unlink())


@case("index")
def case_search_after_gallery_image_truncated(w):
    return _search_after(w, lambda p: p.write_bytes(p.read_bytes()[:60]))


# --- item 13: weights that are not finite, not floating, or overflow ----------------------


def _first_conv(tensors) -> str:
    return next(k for k in sorted(tensors) if k.endswith("weight") and tensors[k].dim() == 4)


def _index_build_refused(w: World, ckpt: Path, names) -> Outcome:
    out = w.new("index")
    gallery = w.base_data / "FVRID_syn" / "gallery_foggy"
    r = w.sjdl("index", "build", gallery, "--checkpoint", ckpt, "-o", out)
    return refused(r, names=names, leftovers=(out,))


@case("checkpoint")
def case_index_build_nan_weights(w):
    def nan(tensors):
        tensors[_first_conv(tensors)][0] = float("nan")

    ckpt = rewrite_checkpoint(w, "nan.safetensors", tensor_change=nan)
    return _index_build_refused(w, ckpt, (ckpt.name, "non-finite"))


@case("checkpoint")
def case_index_build_int32_conv_weight(w):
    def ints(tensors):
        k = _first_conv(tensors)
        tensors[k] = tensors[k].round().to(torch.int32)

    ckpt = rewrite_checkpoint(w, "int32.safetensors", tensor_change=ints)
    return _index_build_refused(w, ckpt, (ckpt.name, "int32"))


@case("checkpoint")
def case_index_build_overflowing_weights(w):
    """Finite weights so large that every embedding overflows to inf/NaN."""

    def huge(tensors):
        k = _first_conv(tensors)
        tensors[k] = tensors[k].sign() * 3e38

    ckpt = rewrite_checkpoint(w, "huge.safetensors", tensor_change=huge)
    return _index_build_refused(w, ckpt, ("finite",))


# --- item 6: serve under a foreign Host name, and what its answers reveal -------------------


def _serve(w: World, *extra) -> tuple[subprocess.Popen, int]:
    log = w.new("serve.log")
    proc = w.start("serve", "--index", w.base_index(), "--port", "0", *extra, log=log)
    deadline = time.monotonic() + w.timeout
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"http://\[?[\w.:]+\]?:(\d+)/", log.read_text())
        if found:
            return proc, int(found.group(1))
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(f"sjdl serve did not start: {log.read_text()[-300:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.log_file.close()


def _request(port: int, host: str, method="GET", path="/api/info", body=None, ip="127.0.0.1"):
    conn = http.client.HTTPConnection(ip, port, timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def _foreign_host(w: World, bind: str, *extra) -> Outcome:
    try:
        proc, port = _serve(w, "--host", bind, *extra)
    except RuntimeError as e:
        return Outcome("clear-error", f"UNEXPECTED: {e}")
    try:
        ip = "127.0.0.1" if bind == "0.0.0.0" else bind
        status, body = _request(port, f"rebind.example:{port}", ip=ip)
        if status == 200:
            return Outcome("silent-wrong", "SECURITY: answered Host rebind.example (200)")
        own, _ = _request(port, f"{ip}:{port}", ip=ip)
        if own != 200:
            return Outcome("clear-error", f"UNEXPECTED: its own address got {own}")
        return Outcome("ok", f"Host rebind.example refused ({status}): {body[:120]}")
    finally:
        _stop(proc)


@case("security")
def case_serve_all_addresses_foreign_host(w):
    return _foreign_host(w, "0.0.0.0")


@case("security")
def case_serve_loopback_alias_foreign_host(w):
    return _foreign_host(w, "127.0.0.2")


@case("security")
def case_serve_answers_show_no_server_paths(w):
    try:
        proc, port = _serve(w)
    except RuntimeError as e:
        return Outcome("clear-error", f"UNEXPECTED: {e}")
    try:
        host = f"127.0.0.1:{port}"
        answers = [_request(port, host)]
        data = _query(w).read_bytes()
        answers.append(_request(port, host, "POST", "/api/search?k=4", data))
        answers.append(_request(port, host, "GET", "/thumb/99"))
    finally:
        _stop(proc)
    if answers[1][0] != 200:
        return Outcome("clear-error", f"UNEXPECTED: search answered {answers[1][0]}")
    for _, body in answers:
        if str(w.root) in body:
            where = body[body.find(str(w.root)) :][:80]
            return Outcome("silent-wrong", f"SECURITY: an answer shows a server path: {where}")
    paths = [x["path"] for x in json.loads(answers[1][1])["results"]]
    return Outcome("ok", f"paths shown: {', '.join(paths)}")
