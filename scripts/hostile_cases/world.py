"""Machinery of the hostile-input probe: a temporary world with tiny data and a tiny trained
checkpoint, ``sjdl`` runs with timeouts, snapshots of files that must survive, and the
classification of what a run did into one outcome."""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

OUTCOMES = ("ok", "clear-error", "traceback", "silent-wrong", "data-loss", "hang")
TRACEBACK = "Traceback (most recent call last)"
DEFOG_RECORD = ".sjdl-defog.json"  # defog -o records how its images were made (--continue)
# ResNet-18 at 32x32, P x K = 2 x 2, two steps: a training run takes seconds on one core
TINY = [
    "model.backbone=resnet18",
    "data.size_train=[32,32]",
    "data.size_test=[32,32]",
    "data.num_ids=2",
    "data.num_instances=2",
    "train.epochs=1",
    "train.max_steps_per_epoch=2",
    "data.workers=0",
    "train.tensorboard=false",
]
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "250", "NO_COLOR": "1"}


class SetupError(RuntimeError):
    """Something the probe needs (data, a checkpoint) could not be made: the case is not run."""


@dataclass
class Outcome:
    outcome: str
    detail: str
    cmd: str = ""


@dataclass
class Case:
    category: str
    name: str
    fn: Callable[[World], Outcome]
    fast: bool = False  # needs no checkpoint and no training: used by the test of this script


CASES: list[Case] = []


def case(category: str, fast: bool = False):
    """Register ``fn(world) -> Outcome`` as a probe case named after the function."""

    def deco(fn):
        CASES.append(Case(category, fn.__name__.removeprefix("case_"), fn, fast))
        return fn

    return deco


@dataclass
class Run:
    args: list[str]
    rc: int | None  # None: killed by the probe's timeout
    out: str
    err: str
    secs: float

    @property
    def timed_out(self) -> bool:
        return self.rc is None

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.out or TRACEBACK in self.err

    def said(self, text: str) -> bool:
        """``text`` appears in stdout or stderr, ignoring where the console wrapped lines."""
        return "".join(str(text).split()) in "".join((self.out + self.err).split())

    def last_line(self, stream: str | None = None) -> str:
        text = {"out": self.out, "err": self.err}.get(stream or "", self.err + "\n" + self.out)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[-1] if lines else "(no output)"

    def error_line(self) -> str:
        """The ``error:`` line (the CLI's one-line error), else the last line of stderr."""
        for ln in self.err.splitlines() + self.out.splitlines():
            s = ln.strip()
            if s.lower().startswith("error") or s.startswith("Error:") or "│ Error" in s:
                return s
        return self.last_line("err") if self.err.strip() else self.last_line()


def default_command() -> list[str]:
    """The installed ``sjdl`` entry point beside this Python, else ``python -m sjdl``."""
    exe = Path(sys.executable).parent / "sjdl"
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("sjdl")
    return [found] if found else [sys.executable, "-m", "sjdl"]


class Snapshot:
    """Files (recursively, symlinks not followed) that must be the same after a command."""

    def __init__(self, *paths: Path):
        self.paths = [Path(p) for p in paths]
        self.before = self._take()

    def _take(self) -> dict[str, str]:
        state = {}
        for root in self.paths:
            files = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
            for f in files:
                if f.is_symlink():
                    state[str(f)] = "-> " + os.readlink(f)
                elif f.is_file():
                    state[str(f)] = _fingerprint(f)
        return state

    def changes(self) -> str:
        """'' if every file is still there unchanged, else what went or changed (first 3)."""
        now = self._take()
        gone = [p for p in self.before if p not in now]
        changed = [p for p in self.before if p in now and now[p] != self.before[p]]
        if not gone and not changed:
            return ""
        parts = [f"gone: {p}" for p in gone[:3]] + [f"changed: {p}" for p in changed[:3]]
        return f"{len(gone)} file(s) gone, {len(changed)} changed ({'; '.join(parts)})"


def _fingerprint(f: Path) -> str:
    st = f.stat()
    if st.st_size > 8 << 20:  # big checkpoints: a rewrite changes inode or mtime
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    return hashlib.sha256(f.read_bytes()).hexdigest()


def write_image(path: Path, size=(32, 32), seed: int = 0, fmt: str | None = None) -> Path:
    """A random RGB image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_fvrid(root: Path, train_ids=(3, 7, 9), per_id=4, test_ids=(100, 101)) -> Path:
    """README's FVRID layout, 32x32: FVRID_syn train/query/gallery (foggy + clear pairs) and
    FVRID_real train/query/gallery foggy. Query = camera 1, gallery = cameras 2 and 3."""
    syn, real = root / "FVRID_syn", root / "FVRID_real"
    seed = 0
    for pid in train_ids:
        for k in range(per_id):
            name = f"{pid:05d}_c{k % 2 + 1:03d}_{k:06d}_0.jpg"
            for kind in ("foggy", "clear"):
                write_image(syn / f"train_{kind}" / name, seed=seed)
            seed += 1
    for pid in test_ids:
        for split, cam in (("query", 1), ("gallery", 2), ("gallery", 3)):
            name = f"{pid:05d}_c{cam:03d}_000000_0.jpg"
            for kind in ("foggy", "clear"):
                write_image(syn / f"{split}_{kind}" / name, seed=seed)
            write_image(real / f"{split}_foggy" / name, seed=seed + 1000)
            seed += 1
    for pid in (20, 21):
        for k in range(per_id):
            write_image(real / "train_foggy" / f"{pid:05d}_c001_{k:06d}_0.jpg", seed=seed)
            seed += 1
    return root


class World:
    """A temporary folder where every case makes its own inputs; the tiny trained run and its
    gallery index are made once, on first use, and copied by cases that change them."""

    def __init__(self, root: Path, timeout: float = 120, command: list[str] | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.command = command or default_command()
        self.runs: list[Run] = []
        self.calls: list[str] = []  # every command line, as shown to the user, in order
        self._n = 0
        self._cache: dict[str, Path] = {}

    # --- paths and commands ---------------------------------------------------------------

    def new(self, name: str) -> Path:
        """A fresh, not yet existing path under the world."""
        self._n += 1
        return self.root / f"{self._n:03d}-{name}"

    def show(self, args) -> str:
        """``sjdl args`` as a user would type it ($TMP = the world folder)."""
        return shlex.join(["sjdl", *map(str, args)]).replace(str(self.root), "$TMP")

    def sjdl(
        self, *args, timeout: float | None = None, max_file_mb: int = 0, setup: bool = False
    ) -> Run:
        """Run ``sjdl args``; ``max_file_mb`` caps the size of files it may write (a write
        past it fails with EFBIG, a stand-in for a full disk); ``setup``: making a shared
        input, not part of the case that asked for it."""
        argv = [str(a) for a in args]
        if not setup:
            self.calls.append(self.show(argv))
        t0 = time.monotonic()
        try:
            p = subprocess.run(
                self.command + argv,
                cwd=self.root,
                env={**os.environ, **ENV},
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
                preexec_fn=_file_limit(max_file_mb) if max_file_mb else None,
            )
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = None, _text(e.stdout), _text(e.stderr)
        run = Run(argv, rc, out, err, time.monotonic() - t0)
        self.runs.append(run)
        return run

    def start(self, *args, log: Path) -> subprocess.Popen:
        """Start ``sjdl args`` in the background, stdout+stderr to ``log``."""
        self.calls.append(self.show(args) + " &")
        f = open(log, "w")  # noqa: SIM115 (closed by the caller: proc.log_file.close())
        proc = subprocess.Popen(
            self.command + [str(a) for a in args],
            cwd=self.root,
            env={**os.environ, **ENV},
            stdout=f,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=_terminal_signals,
        )
        proc.log_file = f
        return proc

    # --- shared inputs --------------------------------------------------------------------

    def data(self, name: str = "data") -> Path:
        return make_fvrid(self.new(name))

    def train_args(self, data: Path, *extra) -> list[str]:
        return ["train", f"data.root={data}", *TINY, *extra]

    def base_run(self) -> Path:
        """A tiny trained run (1 epoch, 2 steps): made once."""
        if "run" not in self._cache:
            data = self.data("base-data")
            run_dir = self.root / "base-run"
            r = self.sjdl(*self.train_args(data), "-o", run_dir, timeout=300, setup=True)
            if r.rc != 0:
                raise SetupError(f"training the base run failed: {r.error_line()}")
            self._cache["run"], self._cache["data"] = run_dir, data
        return self._cache["run"]

    @property
    def base_data(self) -> Path:
        self.base_run()
        return self._cache["data"]

    @property
    def ckpt(self) -> Path:
        return self.base_run() / "checkpoints" / "last.safetensors"

    def copy_run(self, name: str = "run") -> Path:
        dst = self.new(name)
        shutil.copytree(self.base_run(), dst)
        return dst

    def base_index(self) -> Path:
        """An index of the base data's foggy gallery (4 images): made once."""
        if "index" not in self._cache:
            idx = self.root / "base-index"
            gallery = self.base_data / "FVRID_syn" / "gallery_foggy"
            r = self.sjdl(
                "index", "build", gallery, "--checkpoint", self.ckpt, "-o", idx, setup=True
            )
            if r.rc != 0:
                raise SetupError(f"building the base index failed: {r.error_line()}")
            self._cache["index"] = idx
        return self._cache["index"]

    def copy_index(self, name: str = "index") -> Path:
        dst = self.new(name)
        shutil.copytree(self.base_index(), dst)
        return dst


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int] | None:
    """Exit codes of background ``World.start`` processes, or None when one outlives
    ``timeout`` (all are then killed); their log files are closed either way."""
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    except subprocess.TimeoutExpired:
        codes = None
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.log_file.close()
    return codes


def _terminal_signals() -> None:
    """Ctrl-C as at a terminal: a probe started in the background (``nohup ... &``) would
    otherwise pass on SIGINT ignored, and the Ctrl-C cases would test nothing."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _file_limit(mb: int):
    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (mb << 20, mb << 20))

    return limit


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


# --- classification ---------------------------------------------------------------------


def _common(run: Run, intact: Snapshot | None) -> Outcome | None:
    if intact is not None and (lost := intact.changes()):
        return Outcome("data-loss", lost)
    if run.timed_out:
        return Outcome("hang", f"no exit after {run.secs:.0f} s (killed by the probe)")
    if run.traceback:
        return Outcome("traceback", run.last_line("err"))
    return None


def refused(
    run: Run,
    names: tuple[str, ...] = (),
    intact: Snapshot | None = None,
    leftovers: tuple[Path, ...] = (),
) -> Outcome:
    """The right answer is a refusal: a one-line error naming ``names``, ``intact`` unchanged,
    none of ``leftovers`` created."""
    bad = _common(run, intact)
    if bad:
        return bad
    if run.rc == 0:
        return Outcome("silent-wrong", f"exit 0, expected a refusal; said: {run.last_line('out')}")
    detail = run.error_line()
    missing = [n for n in names if not run.said(n)]
    if missing:
        detail += f" [does not name {missing[0]}]"
    left = [p for p in leftovers if p.exists()]
    if left:
        detail += f" [left behind {left[0].name}]"
    return Outcome("clear-error", detail)


def succeeded(
    run: Run, check: Callable[[], str | None] | None = None, intact: Snapshot | None = None
) -> Outcome:
    """The right answer is success: exit 0 and ``check()`` returning no problem."""
    bad = _common(run, intact)
    if bad:
        return bad
    if run.rc != 0:
        return Outcome("clear-error", f"UNEXPECTED refusal: {run.error_line()}")
    try:
        problem = check() if check else None
    except Exception as e:  # the result is not what it should be (a file missing, ...)
        problem = f"check failed: {type(e).__name__}: {e}"
    if problem:
        return Outcome("silent-wrong", problem)
    return Outcome("ok", run.last_line("out"))


def refused_or_ok(run: Run, check: Callable[[], str | None], intact: Snapshot | None = None):
    """Either answer is right: a clear refusal, or success that passes ``check``."""
    return refused(run, intact=intact) if run.rc not in (0, None) else succeeded(run, check, intact)
