"""Settings are checked once: the flags, config files and the Python API refuse the same values,
each with one line naming the setting, the value and what is allowed."""

import json

import pytest

from conftest import assert_usage_error, assert_user_error, run_cli
from fusionapp.settings import ModelSettings, RunSettings, SettingError, apply_flat

# (flat name, refused value as a config file / the API gives it, as a flag gives it, words of the rule)
REFUSED = [
    ("text_encoder", "lstm", "lstm", "one of bag, cnn, mean"),
    ("modality_dropout", 0.9, "0.9", "a number from 0.0 to 0.5"),
    ("epochs", 0, "0", "an integer at least 1"),
    ("learning_rate", -0.1, "-0.1", "a number above 0.0"),
    ("val_split", 1.0, "1.0", "a number above 0.0 and below 1.0"),
    ("image_kernels", [1, 0], "1,0", "a non-empty list of integers of at least 1"),
    ("image_reduction", 1.5, "1.5", "a number from 0.0 to 1.0"),
    ("modalities", "image,sound", "image,sound", "a comma list from image, text, tabular"),
    ("pixel_cache", "gpu", "gpu", "one of none, memory, disk"),
    ("precision", "float8", "float8", "one of auto, float32, mixed_bfloat16, mixed_float16"),
    ("text_tokens", "bytes", "bytes", "one of auto, words, chars"),
    ("dropout", 0.99, "0.99", "a number from 0.0 to 0.95"),
]


@pytest.mark.parametrize("name,value,flag_value,words", REFUSED, ids=[case[0] for case in REFUSED])
def test_flags_config_files_and_the_api_refuse_the_same_values(name, value, flag_value, words, demo_table,
                                                               tmp_path, capsys):
    option = name.replace("_", "-")
    out = tmp_path / "run"
    # a flag: a usage error (exit 2)
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, f"--{option}", flag_value)
    assert_usage_error(code, err, f"'--{option}'", words)
    # a config file: a one-line error naming the file (exit 1)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({option: value}))
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, "--config", config)
    assert_user_error(code, err, "train.json", f"{option} = {value!r}", words)
    # the Python API: the same error type and words
    from fusionapp import train

    with pytest.raises(SettingError, match=words.replace("(", r"\(")):
        train(demo_table, str(out), verbose=0, **{name: value})
    assert not out.exists() or not any(out.iterdir())  # nothing written


@pytest.mark.parametrize("values,words", [
    ({"batch_size": "64"}, "an integer at least 1"),  # a string where a number belongs
    ({"augment": "yes"}, "true or false"),
    ({"epochs": True}, "an integer at least 1"),
    ({"tabular_col": ["price", "price:numeric"]}, "'price' is named twice"),
    ({"tabular_col": ["label"]}, "other than the image, text and label columns"),
    ({"image_col": ""}, "a column name"),
])
def test_wrong_types_and_inconsistent_columns_are_refused(values, words):
    with pytest.raises(SettingError, match=words):
        apply_flat(RunSettings(), values)


def test_config_file_values_are_normalised_as_flags_are():
    settings = apply_flat(RunSettings(), {"image_kernels": [1, 3, 5, 7], "modalities": "image, text",
                                          "tabular_col": "price", "learning_rate": 1})
    assert settings.model.image_kernels == (1, 3, 5, 7) and settings.model.modalities == ("image", "text")
    assert settings.columns.tabular == ("price",) and settings.training.learning_rate == 1.0
    assert apply_flat(RunSettings(), {"image_kernels": "1,3"}).model.image_kernels == (1, 3)


def test_saved_settings_round_trip():
    settings = apply_flat(RunSettings(), {"image_filters": "8,16", "tabular_col": ["price:numeric"], "seed": 3})
    assert RunSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings


def test_help_shows_each_settings_rule(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    out = " ".join(out.split())
    assert code == 0 and "one of bag, cnn, mean" in out and "from 0.0 to 0.5" in out


def test_the_dataclasses_check_themselves():
    with pytest.raises(SettingError, match=r"image_size=8: must be 0 \(64 px, or 224 with a pretrained "
                                           r"backbone\) or an integer from 16 to 1024"):
        ModelSettings(image_size=8)


def test_a_run_saved_before_the_wide_path_means_no_wide_path():
    saved = RunSettings().to_dict()
    del saved["model"]["wide"]  # as fusionapp 0.3.0 wrote config.json
    assert RunSettings.from_dict(saved).model.wide is False
    assert RunSettings().model.wide is True and apply_flat(RunSettings(), {"wide": False}).model.wide is False


def test_image_size_zero_means_64_or_224_with_a_pretrained_backbone():
    from fusionapp.settings import ModelSettings

    assert ModelSettings().resolved().image_size == 64
    assert ModelSettings(image_backbone="resnet50_v2").resolved().image_size == 224
    assert ModelSettings(image_backbone="resnet50_v2", image_size=96).resolved().image_size == 96
    with pytest.raises(SettingError, match="image_size=20: must be at least 32 with a pretrained image backbone"):
        ModelSettings(image_backbone="resnet50_v2", image_size=20)
