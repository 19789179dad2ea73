"""The study's evaluations: each row's model (trained, untrained ImageNet, defog-then-ReID,
BatchNorm statistics re-estimated) on each test set (clear, the training fog, unseen fog
kinds), with per-query arrays for paired intervals."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from ..config import resolve_device
from ..data import eval_loader, read_dataset
from ..evaluation.adapt import reestimate_bn
from ..evaluation.ranking import per_query_metrics
from ..retrieval.defog import defog_dcp
from ..storage import save_npz
from .runs import clear_records, evaluate_test, imagenet_model, load_run, sample_records
from .study_data import read_unseen
from .study_plan import (
    EVAL_COST,
    ROWS,
    TESTS,
    StudyError,
    eval_key,
    query_file,
    run_name,
    training_runs,
    write_table,
)

ADAPT_TRAIN_IMAGES = 512  # synthetic training images the "train" re-estimation sees


class DefogThenReID(torch.nn.Module):
    """Two-stage retrieval: defog the images, then embed them with a ReID model. Exposes the
    evaluator's interface; its ``restore`` is the defogging (scored like FIRM's)."""

    def __init__(self, reid: torch.nn.Module, defog):
        super().__init__()
        self.reid, self.defog = reid, defog
        self.firm = defog  # tells the evaluator that this model restores images

    @torch.no_grad()
    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.reid.extract_features(self.defog(images))

    @torch.no_grad()
    def restore(self, images: torch.Tensor):
        return None, self.defog(images)


def _dcp(size) -> callable:
    patch = max(3, (min(size) // 16) | 1)  # He et al.'s 15 px at 240 px, scaled to the image
    return lambda x: defog_dcp(x, patch=patch)


class StudyEvaluation:
    """Mixed into ``Study``: needs ``out``, ``s``, ``roots``, ``config``, ``table``, ``done``."""

    def _test_records(self, density: str) -> dict[str, tuple]:
        """test name -> (query, gallery) records of that density's test sets."""
        if density not in self._tests:
            data = read_dataset(self.config(("baseline", density, 0)).data, with_real=False)
            tests = {  # always: the foggy input's quality is reported for every density
                "clear": (clear_records(data.query), clear_records(data.gallery)),
                "foggy": (data.query, data.gallery),
            }
            for test in (t for t in TESTS[2:] if t in self.s.tests):
                q, g = read_unseen(self.roots[f"unseen-{test}"])
                # per-query arrays are paired across test sets: the same queries, same order
                if [(r.path.name, r.pid) for r in q] != [(r.path.name, r.pid) for r in data.query]:
                    raise StudyError(f"{self.roots[f'unseen-{test}']}: its queries differ")
                tests[test] = (q, g)
            self._tests[density] = tests
        return self._tests[density]

    def _base_model(self, row: str, density: str, seed: int):
        kind, defog, _ = ROWS[row]
        runs = training_runs(row, density, seed)
        if kind == "imagenet":
            cfg = self.config(("baseline", density, seed))
            return imagenet_model(cfg, self.device), cfg
        model, cfg = load_run(self.out / "runs" / run_name(runs[0]), self.device)
        if defog == "dcp":
            model = DefogThenReID(model, _dcp(self.s.size))
        elif defog == "firm":
            firm, _ = load_run(self.out / "runs" / run_name(runs[1]), self.device)
            model = DefogThenReID(model, lambda x: firm.restore(x)[1].float().clamp(0, 1))
        return model, cfg

    def _adapted(self, model, cfg, records):
        """A copy of the model with BN statistics re-estimated on ``records``' images."""
        loader = eval_loader(records, cfg.data, cfg.test.batch_size, self.device)
        return reestimate_bn(model, loader, self.device)[0]

    def _train_sample(self, density: str):
        """The synthetic foggy training images BN statistics are re-estimated on ("train")."""
        train = read_dataset(self.config(("baseline", density, 0)).data, with_real=False)
        return sample_records(train.train, ADAPT_TRAIN_IMAGES)

    def evaluate(self, row: str, density: str, seed: int) -> None:
        if self.device is None:
            self.device = resolve_device(self.config(("baseline", density, seed)).train.device)
        model, cfg = self._base_model(row, density, seed)
        adapt = ROWS[row][2]
        todo = {
            test: qg
            for test, qg in self._test_records(density).items()
            if test in self.s.tests and eval_key(row, density, test, seed) not in self.done
        }
        if adapt == "train" and todo:  # one re-estimation serves every test set
            model = self._adapted(model, cfg, self._train_sample(density))
        for test, (q, g) in todo.items():
            t = time.perf_counter()
            # "gallery": the test cameras' own images, without their labels
            used = self._adapted(model, cfg, g) if adapt == "gallery" else model
            result = evaluate_test(used, cfg, q, g, self.device)
            self._record(row, density, test, seed, q, result, time.perf_counter() - t)
        if self.progress is not None:
            self.progress.advance(
                EVAL_COST * len(self.s.tests), f"evaluated {row}, {density}, {seed}"
            )

    def _record(self, row, density, test, seed, q, result, seconds: float) -> None:
        per = per_query_metrics(
            result.distmat,
            result.query.pids,
            result.gallery.pids,
            result.query.camids,
            result.gallery.camids,
        )
        idx = result.query.indices.numpy()
        full = {k: np.full(len(q), np.nan) for k in per}
        for k, v in per.items():
            full[k][idx] = v
        pids = np.array([r.pid for r in q])
        save_npz(query_file(self.out, row, density, test, seed), pid=pids, **full)
        m = result.ranking.as_dict()
        self.table.append(
            {
                "row": row,
                "density": density,
                "test": test,
                "seed": str(seed),
                "mAP": f"{100 * m['mAP']:.4f}",
                "R1": f"{100 * m['R1']:.4f}",
                "R5": f"{100 * m['R5']:.4f}",
                "mINP": f"{100 * m['mINP']:.4f}",
                "PSNR": _num(result.quality.get("PSNR")),
                "SSIM": _num(result.quality.get("SSIM")),
                "queries": m["num_valid_queries"],
                "train_s": self._train_seconds(row, density, seed),
                "eval_s": f"{seconds:.2f}",
                "below_input": result.quality.get("below_input", ""),
                "restored": result.quality.get("num_images", ""),
            }
        )
        write_table(self.table_path, self.table)
        self.done.add(eval_key(row, density, test, seed))

    def _train_seconds(self, row, density, seed) -> str:
        runs = training_runs(row, density, seed)
        if not runs:
            return "0.0"
        info = json.loads(
            (self.out / "runs" / run_name(runs[0]) / "study_trained.json").read_text()
        )
        return f"{info['seconds']:.1f}"


def _num(v) -> str:
    return "" if v is None else f"{v:.4f}"
