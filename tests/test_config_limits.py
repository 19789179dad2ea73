"""Issue 17 items 8, 10, 17 (devices), 19 (config files): every numeric key has a declared
range, hostile YAML is refused at once, unreadable config files and absent devices are
one-line errors naming the file or key."""

import time

import pytest
import torch

from sjdl.config import ConfigError, load_config, numeric_keys, resolve_device
from sjdl.config_ranges import RANGES
from sjdl.config_yaml import MAX_DEPTH

LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_every_numeric_key_has_a_declared_range():
    keys = numeric_keys()
    assert "train.gamma" in keys and "data.size_train" in keys and "model.firm.width" in keys
    assert sorted(keys) == sorted(RANGES), "a numeric key without a range, or a stale range"
    load_config()  # the defaults are inside their ranges
    for name in ("fvrid_syn", "fvrid_real", "demo"):
        load_config(name)


BAD = [
    ("train.gamma=-1", "train.gamma"),
    ("train.gamma=0", "train.gamma"),
    ("loss.lambda_restoration=-1", "loss.lambda_restoration"),
    ("loss.lambda_sc=-0.5", "loss.lambda_sc"),
    ("loss.lambda_ce=nan", "loss.lambda_ce"),
    ("loss.lambda_dc=inf", "loss.lambda_dc"),
    ("loss.lambda_tv=-1e-6", "loss.lambda_tv"),
    ("loss.label_smoothing=2", "loss.label_smoothing"),
    ("loss.label_smoothing=1", "loss.label_smoothing"),
    ("loss.triplet_margin=-0.3", "loss.triplet_margin"),
    ("loss.dc_patch=0", "loss.dc_patch"),
    ("loss.dc_patch=34", "loss.dc_patch"),
    ("data.size_train=[1,1]", "data.size_train"),
    ("data.size_test=[100000,100000]", "data.size_test"),
    ("data.size_train=[40,40]", "data.size_train"),  # FIRM needs multiples of 32
    ("train.lr=inf", "train.lr"),
    ("train.lr=nan", "train.lr"),
    ("train.lr=1e6", "train.lr"),
    ("train.weight_decay=-1", "train.weight_decay"),
    ("train.warmup_epochs=-1", "train.warmup_epochs"),
    ("train.warmup_factor=0", "train.warmup_factor"),
    ("train.warmup_factor=2", "train.warmup_factor"),
    ("train.steps=[20,-5]", "train.steps"),
    ("train.seed=-1", "train.seed"),
    ("train.max_bad_steps=0", "train.max_bad_steps"),
    ("train.firm_lr_mult=-2", "train.firm_lr_mult"),
    ("data.num_instances=100000", "data.num_instances"),
    ("data.num_ids=100000", "data.num_ids"),
    ("data.pad=-1", "data.pad"),
    ("data.workers=100000", "data.workers"),
    ("model.firm.width=3", "model.firm.width"),
    ("model.firm.res_blocks=-1", "model.firm.res_blocks"),
    ("model.last_stride=3", "model.last_stride"),
    ("test.batch_size=0", "test.batch_size"),
    ("train.epochs=10000000", "train.epochs"),
]


@pytest.mark.parametrize(("override", "key"), BAD)
def test_out_of_range_values_are_one_line_errors_naming_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    msg = str(e.value)
    assert msg.startswith(key) and "\n" not in msg, msg
    assert "expected" in msg


def test_baseline_may_use_sizes_that_are_not_multiples_of_32():
    cfg = load_config(overrides=["method=baseline", "data.size_train=[40,48]"])
    assert cfg.data.size_train == [40, 48]


def _refused_fast(fn, *needles):
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        fn()
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg


def test_billion_laughs_in_a_file_an_override_and_checkpoint_text(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    assert len(LAUGHS) < 1200
    _refused_fast(lambda: load_config(path), str(path), "aliases expand")
    _refused_fast(lambda: load_config(text=LAUGHS), "config text", "aliases expand")
    override = "train.steps=" + "[" + ", ".join(["&a [1, 1, 1, 1, 1, 1, 1, 1]"] + ["*a"] * 5) + "]"
    deep = "train.steps=" + "[" * 40 + "]" * 40
    _refused_fast(lambda: load_config(overrides=[deep]), "train.steps", "nested deeper")
    # small, legitimate anchors still work
    cfg = load_config(text="data:\n  size_train: &s [64, 32]\n  size_test: *s\n")
    assert cfg.data.size_test == [64, 32]
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(overrides=[override])  # a list of lists is no list of integers


def test_deep_nesting_and_recursive_aliases_are_refused(tmp_path):
    deep = "a: " + "[" * (MAX_DEPTH + 5000) + "]" * (MAX_DEPTH + 5000) + "\n"
    _refused_fast(lambda: load_config(text=deep), "nested deeper")
    _refused_fast(lambda: load_config(text="a: &x [1, *x]\n"), "recursive alias")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("train:\n  lr: 0.1\n".encode("utf-16"), "UTF-16"),
        (b"\x00\x01\x02\x03binary\xff", "binary"),
        ("train:\n  output_dir: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_config_files_that_are_not_utf8_text(tmp_path, data, needle):
    path = tmp_path / "c.yaml"
    path.write_bytes(data)
    _refused_fast(lambda: load_config(path), str(path), needle)


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("train:\n  lr: 0.5\ntrain:\n  epochs: 2\n", 3, "train"),  # lr 0.5 was dropped
        ("data:\n  workers: 0\ntrain:\n  lr: 0.5\n  epochs: 2\n  lr: 0.1\n", 6, "lr"),
    ],
)
def test_a_key_given_twice_is_refused_not_silently_dropped(tmp_path, text, line, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    _refused_fast(lambda: load_config(path), str(path), f"line {line}: key '{key}' given twice")


def test_anchors_and_merge_keys_still_load():
    text = "data:\n  size_train: &s [64, 32]\n  size_test: *s\ntrain: {<<: {lr: 0.01}, epochs: 3}\n"
    cfg = load_config(text=text)
    assert cfg.data.size_test == [64, 32] and cfg.train.lr == 0.01 and cfg.train.epochs == 3


def test_a_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes("train:\n  lr: 0.01\n".encode("utf-8-sig"))
    assert load_config(path).train.lr == 0.01


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_machine_without_it_is_a_config_error_at_use():
    cfg = load_config(overrides=["train.device=cuda:7"])  # a checkpoint's config still loads
    assert cfg.train.device == "cuda:7"
    with pytest.raises(ConfigError, match=r"^train.device: cuda:7 .*no CUDA device"):
        resolve_device(cfg.train.device)
    with pytest.raises(ConfigError, match=r"^--device: cuda"):
        resolve_device("cuda", "--device")
    with pytest.raises(ConfigError, match="train.device: got 'tpu'"):
        load_config(overrides=["train.device=tpu"])
