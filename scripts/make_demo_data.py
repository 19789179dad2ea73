"""Build the embedded demo set under src/sjdl/demo_data/ from ../shared/data (reproducible).

- FVRID_syn: vehicle-reid-2cam (567 real vehicles, one image per roadside camera, Apache-2.0).
  Train ids / test ids as the source splits them; query = camera 1, gallery = camera 2 of the
  test ids. Crops downscaled to a longest side of 128 px; fog made with ``sjdl fog`` (paper
  ranges, built-in depth prior, seed 0). File names: PPPPP_cCCC_<type><id>.jpg.
- FVRID_real/train_foggy: unlabelled vehicle crops (car, bus, truck; both box sides >= 64 px)
  from the DAWN fog subset, downscaled the same way.

Usage: python scripts/make_demo_data.py [--shared ../shared/data] [--out src/sjdl/demo_data]
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

from sjdl.data.synthesis import fog_folder

MAX_SIDE = 128
DAWN_CLASSES = {"car", "bus", "truck"}
MIN_BOX = 64
NAME = re.compile(r"^(?P<type>[a-z]+)_(?P<id>\d+)_cam(?P<cam>\d)\.jpg$")


def downscale(src: Path, dst: Path, box=None) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        if box is not None:
            im = im.crop(box)
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        im.save(dst, quality=90)


def build_syn(source: Path, out: Path, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for split_dir, pid_base in (("train", 0), ("test", 1000)):
            files = sorted((source / "images" / split_dir).glob("*.jpg"))
            keys = sorted({NAME.match(f.name).group("type", "id") for f in files})
            pid_of = {k: pid_base + i for i, k in enumerate(keys)}
            for f in files:
                m = NAME.match(f.name)
                pid, cam = pid_of[m.group("type", "id")], int(m.group("cam"))
                split = "train" if split_dir == "train" else ("query" if cam == 1 else "gallery")
                name = f"{pid:05d}_c{cam:03d}_{m.group('type')}{m.group('id')}.jpg"
                downscale(f, tmp / split / name)
        fog_folder(tmp, out / "FVRID_syn", seed=seed, workers=2)  # manifest paths relative


def build_real(dawn: Path, out: Path) -> int:
    target = out / "FVRID_real" / "train_foggy"
    n = 0
    for xml in sorted((dawn / "voc").glob("*.xml")):
        image = dawn / "images" / f"{xml.stem}.jpg"
        if not image.is_file():
            continue
        objects = ET.parse(xml).getroot().findall("object")
        k = 0
        for obj in objects:
            if obj.findtext("name", "").strip().lower() not in DAWN_CLASSES:
                continue
            bb = obj.find("bndbox")
            box = [int(float(bb.findtext(t))) for t in ("xmin", "ymin", "xmax", "ymax")]
            if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX:
                continue
            downscale(image, target / f"dawn_{xml.stem}_{k:02d}.jpg", tuple(box))
            k += 1
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--shared", type=Path, default=root.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=root / "src" / "sjdl" / "demo_data")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for sub in ("FVRID_syn", "FVRID_real"):
        shutil.rmtree(args.out / sub, ignore_errors=True)
    build_syn(args.shared / "vehicle-reid-2cam", args.out, args.seed)
    n_real = build_real(args.shared / "dawn-fog", args.out)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"demo set in {args.out}: {n_real} real foggy crops, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
