"""Image decode throughput on the demo set: Pillow full decode vs Pillow JPEG draft mode
(vs OpenCV when installed), same files, same run. Usage: python benchmarks/bench_decode.py"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import header  # noqa: E402

from sjdl.data import demo_root  # noqa: E402
from sjdl.data.io import read_image  # noqa: E402


def rate(fn, files, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for f in files:
            fn(f)
        best = min(best, time.perf_counter() - t)
    return len(files) / best


def main():
    print(header("decode throughput (images/s, one process, best of 3)"))
    demo = sorted((demo_root() / "FVRID_syn" / "train_foggy").glob("*.jpg"))[:500]
    dawn = Path(__file__).resolve().parents[2] / "shared/data/dawn-fog/images"
    big = sorted(dawn.glob("*.jpg"))[:60]
    sets = [("demo crops (<=128 px)", demo)]
    if big:
        sets.append(("DAWN frames (~1280 px)", big))
    for name, files in sets:
        rows = {
            "pillow": rate(lambda f: np.asarray(Image.open(f).convert("RGB")), files),
            "sjdl read_image": rate(lambda f: read_image(f), files),
            "sjdl read_image draft<=384": rate(lambda f: read_image(f, 384), files),
        }
        try:
            import cv2

            rows["opencv imread"] = rate(lambda f: cv2.imread(str(f)), files)
        except ImportError:
            rows["opencv imread"] = None
        print(f"\n{name}: {len(files)} files")
        base = rows["pillow"]
        for k, v in rows.items():
            print(f"  {k:28s} " + (f"{v:8.0f} img/s  x{v / base:.2f}" if v else "not installed"))


if __name__ == "__main__":
    main()
