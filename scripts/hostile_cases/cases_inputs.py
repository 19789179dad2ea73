"""Issue 17, hostile image files (items 7, 9, 15, 18): other formats named ``*.jpg`` (EPS),
FIFOs, decompression bombs (a ~70-byte PNG claiming 50000 x 50000), file names that are not
UTF-8 or carry a 30-digit id. Each reader refuses them by name, or skips and names them and
goes on; none blocks."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .world import ENV, Run, Snapshot, World, case, refused, succeeded, write_image

Q = "FVRID_syn/query_foggy"
FIFO_TIMEOUT = 60  # a blocking read would hang: the probe kills it and says "hang"


def png_bomb(path: Path, w: int = 50_000, h: int = 50_000) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + chunk(b"IEND", b""))
    return path


def eps_as_jpg(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "EPS")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


MAKERS = {"eps": eps_as_jpg, "fifo": fifo, "bomb": png_bomb}
NAMES = {"eps": "00050_c002_eps.jpg", "fifo": "00051_c002_fifo.jpg", "bomb": "00052_c002_bomb.png"}
SAID = {"eps": "EPS format", "fifo": "not a regular file", "bomb": "too large (50000 x 50000"}


def _gallery(w: World, kind: str) -> tuple[Path, Path]:
    g = w.new(f"gallery-{kind}")
    for i in range(3):
        write_image(g / f"{i:05d}_c001_000000_0.jpg", seed=i)
    return g, MAKERS[kind](g / NAMES[kind])


def _index_build_skips(w: World, kind: str):
    g, bad = _gallery(w, kind)
    out = w.new("idx")
    r = w.sjdl("index", "build", g, "--checkpoint", w.ckpt, "-o", out, timeout=FIFO_TIMEOUT)

    def check():
        if not r.said(SAID[kind]) or not r.said(bad.name):
            return f"{bad.name} not named as skipped ({SAID[kind]!r})"
        if not r.said("3 images"):
            return "the index does not hold the 3 good images"
        return None

    return succeeded(r, check)


@case("image-gate")
def case_index_build_eps_named_jpg(w):
    return _index_build_skips(w, "eps")


@case("image-gate")
def case_index_build_fifo_named_jpg(w):
    return _index_build_skips(w, "fifo")


@case("image-gate")
def case_index_build_decompression_bomb(w):
    return _index_build_skips(w, "bomb")


def _search_refuses(w: World, kind: str):
    query = MAKERS[kind](w.new("q") / NAMES[kind])
    png = w.new("ranks.png")
    r = w.sjdl("search", query, "--index", w.base_index(), "--png", png, timeout=FIFO_TIMEOUT)
    res = refused(r, names=(query.name, SAID[kind]), leftovers=(png,))
    return res


@case("image-gate")
def case_search_eps_query(w):
    return _search_refuses(w, "eps")


@case("image-gate")
def case_search_decompression_bomb(w):
    return _search_refuses(w, "bomb")


@case("image-gate")
def case_search_fifo_query(w):
    return _search_refuses(w, "fifo")


def _defog_skips(w: World, kind: str):
    src = w.new("foggy")
    write_image(src / "ok.jpg", seed=1)
    bad = MAKERS[kind](src / NAMES[kind])
    out = w.new("restored")
    r = w.sjdl("defog", src, "--method", "dcp", "-o", out, timeout=FIFO_TIMEOUT)

    def check():
        if not (out / "ok.jpg").is_file():
            return "the readable image was not restored"
        if not r.said(bad.name) or not r.said(SAID[kind]):
            return f"{bad.name} not named as skipped"
        return None

    return succeeded(r, check, intact=Snapshot(src) if kind != "fifo" else None)


@case("image-gate")
def case_defog_fifo_named_jpg(w):
    return _defog_skips(w, "fifo")


@case("image-gate")
def case_defog_decompression_bomb(w):
    return _defog_skips(w, "bomb")


@case("image-gate")
def case_fog_fifo_named_jpg(w):
    src = w.new("clear")
    for i in range(2):
        write_image(src / f"{i:05d}_c001_0.jpg", seed=i)
    bad = fifo(src / "00009_c001_0.jpg")
    dst = w.new("fogged")
    r = w.sjdl("fog", src, dst, "--workers", "1", timeout=FIFO_TIMEOUT)
    return refused(r, names=(bad.name, "not a regular file"))


def _eval_skips(w: World, kind: str):
    """An extra query that cannot be read: evaluation goes on and names it."""
    data = w.data(f"eval-{kind}")
    name = "00101_c001_000009_0.jpg" if kind != "bomb" else "00101_c001_000009_0.png"
    write_image(data / "FVRID_syn/query_clear" / name, seed=9)
    bad = MAKERS[kind](data / Q / name)
    out = w.new("eval")
    r = w.sjdl("eval", "--checkpoint", w.ckpt, f"data.root={data}", "-o", out, timeout=FIFO_TIMEOUT)

    def check():
        return None if r.said(bad.name) else f"{bad.name} skipped without being named"

    return succeeded(r, check)


@case("image-gate")
def case_eval_fifo_in_query(w):
    return _eval_skips(w, "fifo")


@case("image-gate")
def case_eval_decompression_bomb_in_query(w):
    return _eval_skips(w, "bomb")


@case("image-gate")
def case_index_build_name_not_utf8(w):
    g, _ = _gallery(w, "eps")
    (g / NAMES["eps"]).unlink()
    odd = os.fsencode(g) + b"/00010_c001_\xff\xfe.jpg"
    with open(odd, "wb") as f:
        f.write((g / "00000_c001_000000_0.jpg").read_bytes())
    out = w.new("idx")
    r = w.sjdl("index", "build", g, "--checkpoint", w.ckpt, "-o", out)

    def check():
        if out.with_name(out.name + ".writing").exists():
            return "left idx.writing/ behind"
        if not r.said("not valid UTF-8") or not r.said("00010_c001_\\xff\\xfe.jpg"):
            return "the file with the undecodable name was not named"
        return None if r.said("3 images") else "the index does not hold the 3 good images"

    return succeeded(r, check)


@case("image-gate")
def case_train_thirty_digit_id(w):
    data, out = w.data(), w.new("run")
    name = "1" * 30 + "_c001_000000_0.jpg"
    for kind in ("foggy", "clear"):
        write_image(data / f"FVRID_syn/train_{kind}" / name)
    r = w.sjdl(*w.train_args(data), "-o", out)
    return refused(r, names=(name,), leftovers=(out,))


def sjdl_in(w: World, cwd: Path, *args) -> Run:
    """``sjdl args`` run from ``cwd`` (World.sjdl runs from the world's root)."""
    argv = [str(a) for a in args]
    w.calls.append(f"(cd {w.show([cwd])[5:]} && {w.show(argv)})")
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            w.command + argv,
            cwd=cwd,
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            timeout=w.timeout,
        )
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = None, str(e.stdout or ""), str(e.stderr or "")
    run = Run(argv, rc, out, err, time.monotonic() - t0)
    w.runs.append(run)
    return run


@case("image-gate")
def case_index_build_output_dot(w):
    """``-o .`` with --overwrite from a folder of one's own files: refused, nothing deleted."""
    where = w.new("cwd")
    where.mkdir()
    (where / "notes.txt").write_text("mine")
    intact = Snapshot(where)
    gallery = w.base_data / "FVRID_syn" / "gallery_foggy"
    r = sjdl_in(
        w, where, "index", "build", gallery, "--checkpoint", w.ckpt, "-o", ".", "--overwrite"
    )
    return refused(r, names=("'.'",), intact=intact)
