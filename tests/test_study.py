import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sjdl.cli import app
from sjdl.data import demo_root, read_fvrid
from sjdl.experiments.study import Study
from sjdl.experiments.study_data import prepare_clear, prepare_density, prepare_split, split_ids
from sjdl.experiments.study_eval import DefogThenReID
from sjdl.experiments.study_plan import QUICK, StudyError, StudySettings, training_runs


def test_split_is_reproducible_disjoint_and_complete():
    pids = list(range(567))
    train, test = split_ids(pids, 160, seed=0)
    assert (train, test) == split_ids(pids, 160, seed=0)
    assert split_ids(pids, 160, seed=1)[1] != test
    assert len(test) == 160 and not set(train) & set(test) and set(train) | set(test) == set(pids)


def test_study_data_is_an_fvrid_set_per_density(tmp_path):
    data = tmp_path / "data"
    split = prepare_split(data, 150, seed=0)
    assert len(split["test_ids"]) == 150 and len(split["train_ids"]) == 567 - 150
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        roots = {d: prepare_density(data, d, fog_seed=0) for d in ("paper", "dense")}
        assert torch.get_num_threads() == 2  # the fog synthesis must not leave 1 thread
    finally:
        torch.set_num_threads(threads)
    sets = {d: read_fvrid(r, real_labelled=False) for d, r in roots.items()}
    for s in sets.values():
        assert {r.pid for r in s.query} == {r.pid for r in s.gallery} == set(split["test_ids"])
        assert {r.camid for r in s.query} == {0} and {r.camid for r in s.gallery} == {1}
        assert {r.pid for r in s.train} and len(s.train) == 2 * len(split["train_ids"])
        assert len(s.real_train) == 864  # the embedded real foggy crops, linked
    # same clear images, denser fog: lower mean dark-channel contrast to the clear partner
    from sjdl.data.io import read_image

    q = {d: s.query[0] for d, s in sets.items()}
    assert q["paper"].path.name == q["dense"].path.name
    clear = read_image(q["paper"].clear)
    err = {d: float((read_image(r.path) - clear).abs().mean()) for d, r in q.items()}
    assert 0 < err["paper"] < err["dense"]
    clear_set = read_fvrid(prepare_clear(data), with_real=False)
    img = clear_set.train[0]
    assert img.path.resolve() == img.clear.resolve()  # "foggy" = clear for clear training
    # the same folder with another split is refused, not overwritten
    with pytest.raises(ValueError, match="split differently"):
        prepare_split(data, 151, seed=0)
    assert json.loads((data / "split.json").read_text()) == split


def test_two_stage_rows_train_what_they_need():
    assert training_runs("dcp_reid", "dense", 2) == [("clear", "", 2)]
    assert training_runs("firm_reid", "paper", 1) == [("clear", "", 1), ("jdl", "paper", 1)]
    assert training_runs("sjdl", "paper", 0) == [("sjdl", "paper", 0)]


def test_defog_then_reid_embeds_the_defogged_images():
    class Reid(torch.nn.Module):
        def extract_features(self, x):
            return x.mean((2, 3))

    model = DefogThenReID(Reid(), lambda x: 1 - x)
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(model.extract_features(x), (1 - x).mean((2, 3)))
    assert torch.equal(model.restore(x)[1], 1 - x) and model.firm is not None


def test_settings_errors_name_the_value(tmp_path):
    with pytest.raises(StudyError, match="'tabl4'"):
        Study(tmp_path, StudySettings(rows=["tabl4"]))
    with pytest.raises(StudyError, match="multiples of 32"):
        Study(tmp_path, StudySettings(size=(64, 48)))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "mine.txt").write_text("keep")
    with pytest.raises(StudyError, match="not a study folder"):
        Study(tmp_path / "x", QUICK).prepare_data()
    assert (tmp_path / "x" / "mine.txt").read_text() == "keep"
    # a setting found wrong at the start leaves no trace: the folder stays usable
    with pytest.raises(ValueError, match="test ids: got 600"):
        Study(tmp_path / "y", StudySettings(test_ids=600)).prepare_data()
    assert not (tmp_path / "y").exists()


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_quick_study_writes_outputs_and_resumes_without_retraining(tmp_path):
    out = tmp_path / "study"
    runner = CliRunner()
    result = runner.invoke(app, ["study", "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = _rows(out / "metrics.csv")
    tests = ("clear", "foggy", "patchy", "scatter")  # the last two: fog no training uses
    assert {(r["row"], r["density"], r["test"], r["seed"]) for r in rows} == {
        (row, "dense", test, "0") for row in QUICK.rows for test in tests
    }
    for r in rows:
        assert 0 <= float(r["mAP"]) <= 100 and r["queries"] == "160"
        # rows that restore are scored on every test set (a clear image is its own target)
        restores = r["row"] in ("dcp_reid", "sjdl")
        assert (r["PSNR"] != "") == restores
        if restores:  # and each restoration is compared with its own foggy input
            assert 0 <= int(r["below_input"]) <= int(r["restored"]) and int(r["restored"]) > 0
        else:
            assert r["below_input"] == r["restored"] == ""
        ap = np.load(out / "per_query" / f"{r['row']}-dense-{r['test']}-s0.npz")["AP"]
        assert ap.shape == (160,) and float(r["mAP"]) == pytest.approx(100 * ap.mean(), abs=1e-3)
    summary = (out / "summary.md").read_text()
    assert "At a glance" in summary and "unseen fog" in summary and "DCP defog" in summary
    assert "ΔmAP vs Baseline" in summary and "Δ vs ImageNet" in summary and "[" in summary
    assert "| dense | unseen | ImageNet features" in summary
    assert "unseen patchy fog PSNR" in summary
    assert ", 160 test ids, fog densities" in summary.split("\n", 1)[0]
    assert (out / "summary.csv").is_file() and (out / "study.png").stat().st_size > 1000
    trained = sorted((out / "runs").glob("*/study_trained.json"))
    assert [p.parent.name for p in trained] == ["baseline-dense-s0", "clear-s0", "sjdl-dense-s0"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}

    # an interrupted evaluation (its rows missing) is redone; nothing is retrained
    keep = [r for r in rows if r["row"] != "sjdl"]
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    result = runner.invoke(app, ["study", "--quick", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "training" not in result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    again = _rows(out / "metrics.csv")
    assert len(again) == len(rows) and again[: len(keep)] == keep
    assert {r["row"] for r in again[len(keep) :]} == {"sjdl"}

    # a finished study is not redone at all; other settings in the same folder are refused
    before = (out / "metrics.csv").read_bytes()
    result = runner.invoke(app, ["study", "--quick", "-o", str(out)])
    assert result.exit_code == 0 and (out / "metrics.csv").read_bytes() == before
    result = runner.invoke(app, ["study", "--quick", "--size", "64x64", "-o", str(out)])
    assert result.exit_code == 2
    assert "size" in result.output and "another output folder" in result.output
    assert "Traceback" not in result.output


def test_study_refuses_a_run_trained_with_another_config(tmp_path):
    s = StudySettings(seeds=[0], rows=["baseline"], densities=["dense"], epochs=1, max_steps=1)
    s = StudySettings(**{**s.__dict__, "size": (64, 32), "val_ids": 10})
    study = Study(tmp_path, s, log=lambda *a: None)
    study.prepare_data()
    run = ("baseline", "dense", 0)
    run_dir = tmp_path / "runs" / "baseline-dense-s0"
    run_dir.mkdir(parents=True)
    cfg = study.config(run)
    (run_dir / "config.yaml").write_text(cfg.to_yaml().replace("lr: 0.00035", "lr: 0.001"))
    (run_dir / "study_trained.json").write_text('{"seconds": 1}')
    with pytest.raises(StudyError, match=r"train.lr=0.001.*another output folder"):
        study.ensure_trained(run)


def test_demo_root_is_the_default_source(tmp_path):
    split = prepare_split(tmp_path / "d", 150, seed=3)
    assert split["source"] == str(demo_root().resolve())


def test_summary_pairs_rows_with_baseline_by_seed_and_query(tmp_path):
    from sjdl.experiments.study_plan import query_file
    from sjdl.experiments.study_report import markdown, summarize
    from sjdl.storage import save_npz

    rng = np.random.default_rng(0)
    table = []
    for seed in (0, 1, 2):
        base = rng.uniform(0, 0.8, 50)
        for row, ap in (("baseline", base), ("jdl", base.copy()), ("sjdl", base + 0.1)):
            r1 = (ap > 0.5).astype(float)
            save_npz(query_file(tmp_path, row, "dense", "foggy", seed), AP=ap, R1=r1)
            restores = {"below_input": str(seed), "restored": "50"} if row == "sjdl" else {}
            table.append(
                {"row": row, "density": "dense", "test": "foggy", "seed": str(seed)}
                | {"mAP": str(100 * ap.mean()), "R1": str(100 * r1.mean()), "PSNR": ""}
                | {"SSIM": ""}
                | restores
            )
    settings = StudySettings(rows=["baseline", "jdl", "sjdl"], densities=["dense"], seeds=[0, 1])
    got = {s["row"]: s for s in summarize(tmp_path, table, settings)}
    assert got["baseline"]["seeds"] == 2 and "dmAP" not in got["baseline"]
    assert (got["jdl"]["dmAP"], got["jdl"]["dmAP_low"], got["jdl"]["dmAP_high"]) == (0, 0, 0)
    d = got["sjdl"]
    assert d["dmAP"] == pytest.approx(10) and d["dmAP_low"] == pytest.approx(10)
    assert d["dmAP_high"] == pytest.approx(10) and d["dR1"] >= 0
    text = markdown(list(got.values()), {"dense": {"PSNR": 12.0, "SSIM": 0.5}})
    assert "+10.00 [+10.00, +10.00]" in text and "+0.00 [+0.00, +0.00]" in text
    assert "dense fog PSNR 12.00 dB" in text
    # restorations below their input, summed over the seeds (0 + 1); rows without: none
    assert got["sjdl"]["below_input"] == "1 of 100" and got["jdl"]["below_input"] is None
    glance = text.split("### At a glance")[1].split("###")[0]
    assert "| SJDL | " in glance and "| +10.00 [+10.00, +10.00] | – |" in glance


def test_dev_split_leaves_out_the_test_and_demo_ids(tmp_path):
    from sjdl.experiments.study_data import demo_test_ids

    test = prepare_split(tmp_path / "t", 160, seed=0)
    dev = prepare_split(tmp_path / "d", 160, seed=0, dev_ids=100)
    demo = set(demo_test_ids())
    assert len(demo) == 60 and len(dev["test_ids"]) == 100 and dev["split"] == "dev"
    used = set(dev["train_ids"]) | set(dev["test_ids"])
    assert not used & set(test["test_ids"]) and not used & demo
    assert set(dev["excluded_ids"]) == set(test["test_ids"]) | demo
    assert used | set(dev["excluded_ids"]) == set(test["train_ids"]) | set(test["test_ids"])
    assert not set(dev["train_ids"]) & set(dev["test_ids"])


def test_study_refuses_overrides_of_the_keys_it_sets(tmp_path):
    for item in ("train.seed=5", "method=jdl", "data.root=/x", "train.epochs=3"):
        with pytest.raises(StudyError, match=item.split("=")[0] + ": the study sets"):
            Study(tmp_path, StudySettings(overrides=[item]))
    result = CliRunner().invoke(app, ["study", "-o", str(tmp_path / "s"), "train.seed=5"])
    assert result.exit_code == 2 and "--seeds" in result.output
    assert not (tmp_path / "s").exists()


def test_unknown_row_error_lists_the_rows(tmp_path):
    with pytest.raises(StudyError, match=r"unknown row 'sjdl\+bn_nowhere'.*\+bn_gallery or"):
        Study(tmp_path, StudySettings(rows=["sjdl+bn_nowhere"]))
    # a seed (row, density, test) named twice would count twice in the paired statistics
    for kw, flag in ((dict(seeds=[0, 1, 0]), "--seeds: 0"), (dict(rows=["jdl", "jdl"]), "'jdl'")):
        with pytest.raises(StudyError, match=f"{flag}.* given twice"):
            Study(tmp_path / "d", StudySettings(**kw))
    assert not (tmp_path / "d").exists()
    assert training_runs("imagenet", "dense", 0) == []
    assert training_runs("baseline+bn_gallery", "paper", 1) == [("baseline", "paper", 1)]


def test_unseen_summary_is_the_mean_over_kinds_paired_with_baseline_and_imagenet(tmp_path):
    from sjdl.experiments.study_plan import query_file
    from sjdl.experiments.study_report import markdown, summarize
    from sjdl.storage import save_npz as save_arrays

    rng = np.random.default_rng(1)
    table = []
    for seed in (0, 1):
        for test, shift in (("foggy", 0.0), ("patchy", 0.2), ("scatter", 0.4)):
            base = rng.uniform(0, 0.5, 40)
            rows = (("imagenet", base - 0.05), ("baseline", base), ("sjdl", base + shift))
            for row, ap in rows:
                r1 = (ap > 0.3).astype(float)
                save_arrays(query_file(tmp_path, row, "dense", test, seed), AP=ap, R1=r1)
                table.append(
                    {"row": row, "density": "dense", "test": test, "seed": str(seed)}
                    | {"mAP": str(100 * ap.mean()), "R1": str(100 * r1.mean())}
                    | {"PSNR": "", "SSIM": ""}
                )
    settings = StudySettings(rows=["imagenet", "baseline", "sjdl"], densities=["dense"])
    got = {(s["row"], s["test"]): s for s in summarize(tmp_path, table, settings)}
    u = got[("sjdl", "unseen")]
    assert u["dmAP"] == pytest.approx(30) and u["dmAP_low"] == pytest.approx(30)  # (20+40)/2
    assert u["dmAP_imagenet"] == pytest.approx(35) and u["seed_dmAP"] == "+30.00 +30.00"
    kinds = [got[("sjdl", k)]["mAP_mean"] for k in ("patchy", "scatter")]
    assert u["mAP_mean"] == pytest.approx(np.mean(kinds))
    assert ("sjdl", "foggy") in got and got[("sjdl", "foggy")]["dmAP"] == pytest.approx(0)
    glance = markdown(list(got.values()), {}).split("### At a glance")[1].split("###")[0]
    line = next(x for x in glance.splitlines() if x.startswith("| SJDL |"))
    assert line.endswith("| +30.00 [+30.00, +30.00] | +35.00 [+35.00, +35.00] |")


def test_study_folder_survives_a_reinstalled_package(tmp_path):
    """A folder split when the embedded data lived elsewhere keeps its ids, with new links;
    a recorded source that is not the embedded data is still refused."""
    data = tmp_path / "data"
    split = prepare_split(data, 150, seed=0)
    moved = {**split, "source": "/gone/site-packages/sjdl/demo_data"}
    (data / "split.json").write_text(json.dumps(moved))
    link = next((data / "source" / "query").iterdir())
    link.unlink()
    link.symlink_to("/gone/site-packages/sjdl/demo_data/FVRID_syn/x.jpg")  # dangling
    assert prepare_split(data, 150, seed=0) == split
    assert json.loads((data / "split.json").read_text()) == split
    assert all(p.exists() for p in (data / "source" / "query").iterdir())
    (data / "split.json").write_text(json.dumps({**split, "source": "/my/own/set"}))
    with pytest.raises(ValueError, match="split differently"):
        prepare_split(data, 150, seed=0)


def test_twice_the_steps_control_has_the_clear_twins_schedule_in_steps(tmp_path):
    """baseline_2x trains 2x the epochs with warm-up and LR steps at the same fraction of
    training, so it takes as many steps, on the same schedule, as a clear-twins row."""
    from sjdl.experiments.study import Study
    from sjdl.experiments.study_plan import StudySettings

    study = Study(tmp_path / "s", StudySettings(epochs=6).resolved())
    study.roots = {"dense": tmp_path / "d"}
    base, long = (study.config((k, "dense", 0)) for k in ("baseline_clear", "baseline_2x"))
    assert (base.train.epochs, long.train.epochs) == (6, 12)
    assert long.train.warmup_epochs == 2 * base.train.warmup_epochs
    assert long.train.steps == [2 * e for e in base.train.steps]
    assert long.method == "baseline" and not long.data.clear_twins and base.data.clear_twins
    longer, recipe2 = (study.config((k, "dense", 0)) for k in ("baseline_4x", "recommended_2x"))
    assert (longer.train.epochs, longer.train.warmup_epochs) == (24, 4 * base.train.warmup_epochs)
    assert longer.train.steps == [4 * e for e in base.train.steps]
    assert recipe2.train.epochs == 12 and recipe2.train.steps == long.train.steps
    assert recipe2.data.clear_twins and recipe2.loss.lambda_consistency == 1.0


def test_recommended_row_trains_the_presets_keys_and_the_preset_is_no_study_override():
    from sjdl.config import PRESET_VALUES
    from sjdl.experiments.study_plan import TRAININGS, StudyError, check_overrides

    keys = {x.split("=", 1)[0] for x in TRAININGS["recommended"]}
    assert keys == set(PRESET_VALUES["recommended"])
    assert "method=baseline" in TRAININGS["recommended"]
    with pytest.raises(StudyError, match="use --rows recommended"):
        check_overrides(["preset=recommended"])
    check_overrides(["preset=official"])  # every row in the released code's setting is fine


def test_epoch_length_factor_matches_the_configs_clear_twins_and_the_sjdl_recipe_row(tmp_path):
    """The time-left bar's 2x epoch length is set for exactly the kinds whose config trains on
    the clear twins; the SJDL-with-recipe row is the recipe with SJDL's method."""
    from sjdl.experiments.study import Study
    from sjdl.experiments.study_plan import EPOCH_LENGTH, TRAININGS, StudySettings

    study = Study(tmp_path / "s", StudySettings().resolved())
    study.roots = {"dense": tmp_path / "d"}
    for kind in TRAININGS:
        if kind != "imagenet":
            assert study.config((kind, "dense", 0)).data.clear_twins == (kind in EPOCH_LENGTH)
    cons = dict(x.split("=", 1) for x in TRAININGS["sjdl_clear_cons"])
    assert cons == {**dict(x.split("=", 1) for x in TRAININGS["recommended"]), "method": "sjdl"}


def test_tests_are_selectable_and_may_grow_in_one_folder(tmp_path):
    """--tests clear,foggy fogs and evaluates nothing else; a later --tests patchy in the same
    folder adds that test set only, without retraining; unknown names are refused."""
    out = tmp_path / "study"
    runner = CliRunner()
    quick = ["study", "--quick", "--rows", "imagenet,baseline", "-o", str(out)]
    result = runner.invoke(app, [*quick, "--tests", "clear,foggy"])
    assert result.exit_code == 0, result.output
    assert {(r["row"], r["test"]) for r in _rows(out / "metrics.csv")} == {
        (row, test) for row in ("imagenet", "baseline") for test in ("clear", "foggy")
    }
    assert not list((out / "data").glob("*patchy*")) and not list((out / "data").glob("*scatter*"))
    assert "| dense | unseen |" not in (out / "summary.md").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    result = runner.invoke(app, [*quick, "--tests", "patchy"])
    assert result.exit_code == 0, result.output
    assert "training" not in result.output
    assert stamps == {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*") if p.is_file()}
    tests = [r["test"] for r in _rows(out / "metrics.csv")]
    assert tests.count("patchy") == 2 and "scatter" not in tests
    assert "| dense | patchy | Baseline" in (out / "summary.md").read_text()
    result = runner.invoke(app, [*quick, "--tests", "fog"])
    assert result.exit_code == 2 and "unknown test 'fog'" in result.output


def test_cfsm_grad_rows_are_sjdl_with_the_scaled_restoration_gradient(tmp_path):
    from sjdl.experiments.study import Study
    from sjdl.experiments.study_plan import StudyError, StudySettings, check_overrides

    study = Study(tmp_path / "s", StudySettings(epochs=6).resolved())
    study.roots = {"paper": tmp_path / "d"}
    cfgs = {k: study.config((k, "paper", 0)) for k in ("sjdl", "sjdl_detach", "sjdl_grad01")}
    assert {k: (c.method, c.model.firm.cfsm_grad) for k, c in cfgs.items()} == {
        "sjdl": ("sjdl", 1.0),
        "sjdl_detach": ("sjdl", 0.0),
        "sjdl_grad01": ("sjdl", 0.1),
    }
    with pytest.raises(StudyError, match="--rows"):
        check_overrides(["model.firm.cfsm_grad=0.5"])


def test_affine_rows_set_firm_output_and_scale(tmp_path):
    from sjdl.experiments.study import Study
    from sjdl.experiments.study_plan import StudyError, StudySettings, check_overrides

    study = Study(tmp_path / "s", StudySettings(epochs=6).resolved())
    study.roots = {"paper": tmp_path / "d"}
    rows = ("sjdl", "sjdl_affine", "sjdl_affine2", "sjdl_affine4")
    firm = {k: study.config((k, "paper", 0)).model.firm for k in rows}
    assert {k: (f.output, f.scale) for k, f in firm.items()} == {
        "sjdl": ("residual", 1),
        "sjdl_affine": ("affine", 1),
        "sjdl_affine2": ("affine", 2),
        "sjdl_affine4": ("affine", 4),
    }
    pairs = study.config(("recommended_pairs", "paper", 0)).data
    assert (pairs.clear_twins, pairs.twins_in_batch, pairs.num_ids) == (True, True, 8)
    with pytest.raises(StudyError, match=r"model.firm.scale: .*sjdl_affine2"):
        check_overrides(["model.firm.scale=2"])


def test_a_development_study_says_which_ids_it_was_evaluated_on(tmp_path):
    """The header of a --split dev summary names the development ids, not the held-out test
    ids (a dev study never sees them)."""
    out = tmp_path / "dev"
    cmd = ["study", "--quick", "--split", "dev", "--rows", "imagenet", "--tests", "foggy"]
    result = CliRunner().invoke(app, [*cmd, "-o", str(out)])
    assert result.exit_code == 0, result.output
    first = (out / "summary.md").read_text().split("\n", 1)[0]
    assert "evaluated on 100 development ids (the 160 test ids held out)" in first
    assert {r["queries"] for r in _rows(out / "metrics.csv")} == {"100"}
