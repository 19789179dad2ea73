"""The embedded demo set (built by scripts/make_demo_data.py), found after ``pip install``."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo_data"


def demo_root() -> Path:
    """Folder holding the demo ``FVRID_syn/`` and ``FVRID_real/`` (see its NOTICE.md)."""
    if not (DEMO_DIR / "FVRID_syn").is_dir():
        raise FileNotFoundError(
            f"{DEMO_DIR}: demo data missing; rebuild it with scripts/make_demo_data.py"
        )
    return DEMO_DIR
