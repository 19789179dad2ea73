"""The Eq. 11 calibration's development split (issue 16, item 2): its queries and gallery are
held-out training ids, none of them a test id of the demo or of the study."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import calibrate_eq11  # noqa: E402

from sjdl.config import load_config  # noqa: E402
from sjdl.data import demo_root, read_dataset  # noqa: E402
from sjdl.experiments.study_data import source_images, split_ids  # noqa: E402


def test_dev_split_holds_no_test_id_of_the_demo_or_the_study():
    cfg = load_config("demo", ["train.val_ids=100"])
    data = read_dataset(cfg.data, with_real=False)
    query, gallery = calibrate_eq11.evaluation_split(data, cfg, "dev")
    ids = {r.pid for r in query}
    assert ids == {r.pid for r in gallery} and len(ids) == len(query) > 50
    _, study_test = split_ids(source_images(demo_root() / "FVRID_syn"), 160, 0)
    assert not ids & set(study_test)
    assert not ids & {r.pid for r in data.query + data.gallery}
    test_q, _ = calibrate_eq11.evaluation_split(data, cfg, "test")
    assert test_q == data.query
