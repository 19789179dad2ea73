import pytest

from sjdl.config import Config, ConfigError, load_config, parse_overrides


def test_defaults_are_the_paper_settings():
    cfg = load_config()
    assert cfg.preset == "paper" and cfg.method == "sjdl"
    assert (cfg.model.backbone, cfg.model.last_stride, cfg.model.split) == ("resnet50", 1, "conv2")
    assert (cfg.loss.lambda_restoration, cfg.loss.lambda_dc, cfg.loss.lambda_tv) == (
        1.0,
        1e-6,
        1e-6,
    )
    # Eq. 11 as calibrated (README), not as printed (preset printed)
    assert (cfg.loss.lambda_ce, cfg.loss.lambda_sc, cfg.loss.sc_mode) == (0.001, 0.01, "phase")
    assert cfg.loss.ce_grad and cfg.loss.sc_grad and cfg.loss.triplet_margin == 0.3
    assert (cfg.data.num_ids, cfg.data.num_instances) == (6, 6)
    assert cfg.train.steps == [20, 30, 45, 60, 75, 90, 105] and cfg.train.gamma == 0.6


def test_official_preset_switches_released_behaviour():
    cfg = load_config(overrides=["preset=official"])
    assert cfg.model.backbone == "resnet50_ibn_a"
    assert cfg.model.last_stride == 2 and cfg.model.neck == "dcn_attention"
    assert cfg.model.firm.output == "tanh" and cfg.test.feature == "pre_bn"
    assert cfg.loss.sc_mode == "phase" and cfg.loss.lambda_sc == 0.01
    assert cfg.train.real_every == 5
    assert cfg.train.steps[:4] == [20, 30, 45, 60] and cfg.train.steps[-1] == 255


def test_yaml_then_overrides_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: official\nmodel:\n  last_stride: 1\ntrain:\n  lr: 3.0e-4\n")
    cfg = load_config(f, ["train.lr=1e-3", "data.size_train=[256,128]"])
    assert cfg.model.backbone == "resnet50_ibn_a"  # from the preset in the file
    assert cfg.model.last_stride == 1  # file beats preset
    assert cfg.train.lr == pytest.approx(1e-3)  # command line beats file; "1e-3" is a float
    assert cfg.data.size_train == [256, 128]
    # the command-line preset beats the file's preset
    assert load_config(f, ["preset=paper"]).model.backbone == "resnet50"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.splitt=conv3", "unknown key 'model.splitt' (model allows: backbone, dsbn, firm,"),
        ("model.split=conv9", "model.split: got 'conv9', expected one of 'conv2', 'conv3'"),
        ("train.lr=fast", "train.lr: got 'fast', expected a float"),
        ("train.epochs=1.5", "train.epochs: got 1.5, expected an int"),
        ("train.amp=maybe", "train.amp: got 'maybe', expected a bool"),
        ("nope=1", "unknown key 'nope' (top level allows: data, loss, method"),
        ("model.firm=2", "model.firm: is a section"),
        ("method=jdll", "method: got 'jdll', expected one of 'baseline', 'jdl', 'sjdl_wo_sc'"),
        ("novalue", "override 'novalue' is not of the form key=value"),
        ("preset=mine", "preset: got 'mine', expected one of paper, official"),
    ],
)
def test_bad_keys_and_values_give_one_line_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_yaml_file_errors_name_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="config file not found: .*missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_cross_field_validation():
    with pytest.raises(ConfigError, match="data.size_train"):
        load_config(overrides=["data.size_train=[384]"])
    with pytest.raises(ConfigError, match="2048-channel backbone"):
        load_config(overrides=["model.backbone=resnet18", "model.neck=dcn_attention"])


@pytest.mark.parametrize("name", ["fvrid_syn", "fvrid_real", "configs/fvrid_syn.yaml"])
def test_bundled_configs_load(name):
    cfg = load_config(name)
    assert cfg.data.dataset == "fvrid" and cfg.train.epochs == 120
    assert cfg.data.test_set == ("real" if "real" in name else "syn")
    # the bundled files leave preset-controlled keys alone, so the preset switch works
    assert load_config(name, ["preset=official"]).model.backbone == "resnet50_ibn_a"


def test_yaml_round_trip(tmp_path):
    cfg = load_config(overrides=["preset=official", "model.split=conv4", "train.lr=2e-4"])
    f = tmp_path / "resolved.yaml"
    f.write_text(cfg.to_yaml())
    assert load_config(f) == cfg
    assert isinstance(cfg, Config)


def test_parse_overrides_types():
    assert parse_overrides(["a=1", "b=x", "c=[1, 2]", "d=true"]) == {
        "a": 1,
        "b": "x",
        "c": [1, 2],
        "d": True,
    }


@pytest.mark.parametrize(
    ("name", "preset"),
    [(n, p) for n in ("fvrid_syn", "fvrid_real") for p in ("official", "printed", "recommended")]
    + [("demo", "printed"), ("demo", "recommended")],  # the demo sets its backbone itself
)
def test_bundled_yaml_never_overrides_a_preset_key(name, preset):
    from sjdl.config import PRESET_VALUES

    cfg = load_config(name, [f"preset={preset}"])
    for key, value in PRESET_VALUES[preset].items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == value, f"{name}.yaml overrides {key} of preset {preset}"


# Every Eq. 11 weight and gradient switch per preset, written out (not read from PRESET_VALUES):
# lambda_CE, lambda_2 (DC), lambda_3 (TV), lambda_4 (SC), SC form, L_CE and L_SC gradients
EQ11 = {
    "paper": (0.001, 1e-6, 1e-6, 0.01, "phase", True, True),  # calibrated (README)
    "printed": (1.0, 1e-5, 1e-5, 300.0, "spectrum", True, True),  # as the paper prints them
    "official": (1.0, 1e-5, 1e-5, 0.01, "phase", False, False),  # as the released code runs
    "recommended": (0.001, 1e-6, 1e-6, 0.01, "phase", True, True),  # paper's + clear twins
}


@pytest.mark.parametrize("preset", sorted(EQ11))
def test_every_eq11_weight_and_gradient_switch_per_preset(preset):
    loss = load_config(overrides=[f"preset={preset}"]).loss
    got = (loss.lambda_ce, loss.lambda_dc, loss.lambda_tv, loss.lambda_sc, loss.sc_mode)
    assert got + (loss.ce_grad, loss.sc_grad) == EQ11[preset]
    assert loss.lambda_restoration == 1.0  # lambda_1 (Eq. 5) is the same in every preset


def test_printed_preset_changes_nothing_outside_eq11():
    assert load_config(overrides=["preset=printed"]).model.backbone == "resnet50"


def test_recommended_preset_is_reid_on_clear_twins_with_consistency():
    paper, rec = load_config(), load_config(overrides=["preset=recommended"])
    assert rec.method == "baseline" and rec.data.clear_twins and not paper.data.clear_twins
    assert (rec.loss.lambda_consistency, paper.loss.lambda_consistency) == (1.0, 0.0)
    rec.loss.lambda_consistency = 0.0
    assert rec.model == paper.model and rec.loss == paper.loss and rec.train == paper.train
    # the joint-defogging variant stays one key away
    assert load_config(overrides=["preset=recommended", "method=sjdl"]).method == "sjdl"
