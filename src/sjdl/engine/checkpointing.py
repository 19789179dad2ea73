"""Saving and resuming a run: ``last_state.pt`` (training state with the weights, one
atomic file), ``last.safetensors`` / ``best.safetensors`` (weights + config for evaluation)."""

from __future__ import annotations

from pathlib import Path

from ..data.records import DatasetError, records_summary
from ..models.io import CheckpointError, load_into, read_checkpoint, save_weights
from .state import load_state, rng_state, save_state, set_rng_state


class Checkpointing:
    """Mixed into ``Trainer``: uses its model, parts, scaler, counters and ``_log``."""

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _stamp(self) -> dict[str, str]:
        return {"epoch": str(self.epoch), "global_step": str(self.global_step)}

    def _save_weights(self, name: str) -> None:
        p = self.parts
        path = self.ckpt_dir / f"{name}.safetensors"
        save_weights(self.model, path, self.cfg, p.num_syn_ids, p.num_real_ids, self._stamp())

    def _save(self, name: str, interrupted: bool = False) -> None:
        """``last``: the training state (with the weights, one atomic file) first, then
        ``last.safetensors`` for evaluation; a kill between the two loses nothing."""
        if not self.dist.is_main:
            return
        if name == "last":
            p = self.parts
            mid_epoch = interrupted and self.step_in_epoch > 0
            save_state(
                self.ckpt_dir / "last_state.pt",
                {
                    "epoch": self.epoch,
                    "step_in_epoch": self.step_in_epoch if interrupted else 0,
                    "global_step": self.global_step,
                    "best_map": float(self.best_map),
                    "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                    "optimizer": p.optimizer.state_dict(),
                    "scheduler": p.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "rng": rng_state(),
                    "syn_loader_gen": p.syn_loader.generator.get_state(),
                    "real_loader_gen": p.real_loader.generator.get_state()
                    if p.real_loader
                    else None,
                    "epoch_sums": dict(self.epoch_sums) if mid_epoch else {},
                    "epoch_counts": dict(self.epoch_counts) if mid_epoch else {},
                    "real_pos": self.real_pos if mid_epoch else 0,
                    "data": self._data_summary(),
                },
            )
        self._save_weights(name)

    def _resume_weights(self, st: dict) -> None:
        """Model weights from the state (or, for states without them, ``last.safetensors``
        when its epoch stamp agrees); ``last.safetensors`` is rewritten if it disagrees."""
        wpath, spath = self.ckpt_dir / "last.safetensors", self.ckpt_dir / "last_state.pt"
        ours = f"epoch {st['epoch']}, step {st['global_step']}"
        try:
            weights, meta = read_checkpoint(wpath)
            theirs = f"epoch {meta.get('epoch')}, step {meta.get('global_step', '?')}"
        except CheckpointError as e:
            weights, meta, theirs = None, {}, f"unreadable: {e}"
        if "model" not in st:  # written before the state held the weights
            if weights is None or meta.get("epoch") != str(st["epoch"]):
                raise CheckpointError(
                    f"{wpath} ({theirs}) does not match {spath} ({ours}): a save was "
                    "interrupted between the two files; start again or restore both"
                )
            load_into(self.model, weights, wpath)
            return
        load_into(self.model, st["model"], spath)
        if theirs != ours:
            self._log(
                f"{wpath} ({theirs}) does not match {spath} ({ours}), a save was interrupted: "
                f"resuming from {spath} (weights and state together) and rewriting {wpath.name}"
            )
            if self.dist.is_main:
                self.epoch, self.global_step = st["epoch"], st["global_step"]
                self._save_weights("last")

    def _data_summary(self) -> dict:
        """The training data this run learns from (records.records_summary per stream)."""
        d, real = self.parts.data, self.parts.real_loader is not None
        return {
            "synthetic": records_summary(d.train),
            "real": records_summary(d.real_train if real else []),
        }

    def _check_same_data(self, st: dict) -> None:
        """Refuse to resume on other training data: the same number of identities but other
        ones would silently give each classifier row another vehicle."""
        then, now = st.get("data"), self._data_summary()
        if then is None or then == now:  # states of older versions hold no summary
            return
        changes = []
        for stream in ("synthetic", "real"):
            a, b = then[stream], now[stream]
            if a == b:
                continue
            if (a["images"], a["ids"]) == (b["images"], b["ids"]):
                changes.append(
                    f"{stream}: {b['images']} images of {b['ids']} identities as before, "
                    "but other files or identities"
                )
            else:
                changes.append(
                    f"{stream}: {a['images']} images of {a['ids']} identities then, "
                    f"{b['images']} of {b['ids']} now"
                )
        raise DatasetError(
            f"{self.run_dir}: cannot resume: the training data are not those the run started "
            f"with ({'; '.join(changes)}); put them back, or start a new run with -o"
        )

    def _resume(self) -> None:
        st = load_state(self.ckpt_dir / "last_state.pt")
        self._check_same_data(st)
        self._resume_weights(st)
        self.parts.optimizer.load_state_dict(st["optimizer"])
        self.parts.scheduler.load_state_dict(st["scheduler"])
        if self.scaler.is_enabled() and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        elif self.scaler.is_enabled():
            self._log("the run was saved without AMP: gradient scaling starts afresh")
        self.epoch_sums = dict(st.get("epoch_sums") or {})
        self.epoch_counts = dict(st.get("epoch_counts") or {})
        self.real_pos = int(st.get("real_pos") or 0)  # states of older versions: 0
        set_rng_state(st["rng"])
        self.parts.syn_loader.generator.set_state(st["syn_loader_gen"])
        if self.parts.real_loader is not None and st.get("real_loader_gen") is not None:
            self.parts.real_loader.generator.set_state(st["real_loader_gen"])
        self.epoch, self.step_in_epoch = st["epoch"], st["step_in_epoch"]
        self.global_step, self.best_map = st["global_step"], st["best_map"]
        where = (
            f" step {self.step_in_epoch} of epoch {self.epoch + 1}" if self.step_in_epoch else ""
        )
        self._log(f"resumed from {self.ckpt_dir} after epoch {self.epoch}{where}")
