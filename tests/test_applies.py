"""A setting given where it means nothing is refused in one line, before anything is written, by the
flags, config files and the Python API alike; settings recorded by earlier runs still load."""

import json
import os

import pytest

from conftest import TINY_MODEL, assert_usage_error, assert_user_error, run_cli, write_csv
from fusionapp.settings import NotApplicable, RunSettings, apply_flat, check_applies

# (what else is given, the setting given where it does not apply, its value, words of the refusal)
NOT_APPLICABLE = [
    ({"text_encoder": "cnn"}, "ngrams", 3, "applies to --text-encoder bag"),
    ({"text_encoder": "mean"}, "ngrams", 3, "applies to --text-encoder bag"),
    ({"text_backbone": "/nowhere/bert"}, "max_tokens", 500, "not with --text-backbone"),
    ({"text_backbone": "/nowhere/bert"}, "ngrams", 3, "applies to --text-encoder bag"),
    ({"text_backbone": "/nowhere/bert"}, "text_tokens", "words", "not with --text-backbone"),
    ({}, "backbone_head", "multi-kernel", "with a pretrained --image-backbone"),
    ({}, "backbone_weights", "none", "with a pretrained --image-backbone"),
    ({}, "feature_cache", False, "with a pretrained --image-backbone, --text-backbone"),
    ({}, "fine_tune_epochs", 2, "with --fine-tune, --fine-tune-text or --text-lora"),
    ({}, "fine_tune_learning_rate", 0.01, "with --fine-tune, --fine-tune-text or --text-lora"),
    ({}, "min_label_count", 3, "with --multi-label"),
    ({"multi_label": True}, "min_class_rows", 2, "without --multi-label"),
    ({}, "text_embedding_dim", 8, "to --text-encoder cnn or mean"),
    ({}, "text_widths", "2,3", "to --text-encoder cnn"),
    ({}, "text_filters", 8, "to --text-encoder cnn"),
    ({"text_encoder": "mean"}, "text_widths", "2,3", "to --text-encoder cnn"),
    ({"text_backbone": "/nowhere/bert"}, "text_embedding_dim", 8, "to --text-encoder cnn or mean"),
    ({"text_backbone": "/nowhere/bert"}, "text_filters", 8, "to --text-encoder cnn"),
    ({"text_backbone": "/nowhere/bert"}, "text_encoder", "cnn", "not with --text-backbone"),
    ({"image_backbone": "mobilenet_v3_small"}, "image_kernels", "1,3", "or with --backbone-head multi-kernel"),
    ({"image_backbone": "mobilenet_v3_small"}, "image_reduction", 0.0, "or with --backbone-head multi-kernel"),
    ({"image_backbone": "mobilenet_v3_small"}, "image_stem_filters", 8, "which a pretrained backbone replaces"),
    ({"image_backbone": "mobilenet_v3_small"}, "augment", True, "not when a frozen backbone trains on cached"),
    ({"image_backbone": "mobilenet_v3_small"}, "pixel_cache", "memory", "not when a frozen backbone trains"),
    ({"data_service": "localhost:5050"}, "pixel_cache", "disk", "nor with --data-service"),
    ({}, "fine_tune", 3, "with a pretrained --image-backbone"),
    ({"modalities": "text"}, "image_backbone", "mobilenet_v3_small", "when the model reads images"),
    ({}, "fine_tune_text", 1, "with --text-backbone"),
    ({}, "text_lora", 4, "with --text-backbone"),
    ({"modalities": "text"}, "modality_dropout", 0.2, "when the model reads both images and text"),
    ({"modalities": "image,text"}, "tabular_units", 8, "when the model reads tabular columns"),
    ({"modalities": "image"}, "max_text_chars", 100, "when the model reads text"),
]


def _flag(name, value):
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [option if value else f"--no-{option[2:]}"]
    return [option, str(value)]


@pytest.mark.parametrize("context,name,value,words", NOT_APPLICABLE,
                         ids=[f"{name}-{'-'.join(map(str, context.values())) or 'default'}"
                              for context, name, _, _ in NOT_APPLICABLE])
def test_a_setting_given_where_it_does_not_apply_is_refused(context, name, value, words, demo_table, tmp_path,
                                                           capsys):
    option = "--" + name.replace("_", "-")
    out = tmp_path / "run"
    context_flags = [part for key, given in context.items() for part in _flag(key, given)]
    # a flag: a usage error (exit 2), nothing written
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, *context_flags, *_flag(name, value))
    assert_usage_error(code, err, f"{option} applies", words)
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    assert not out.exists()
    # a config file: one line naming the file (exit 1)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**context, name: value}))
    code, _, err = run_cli(capsys, "train", demo_table, "--out", out, "--config", config)
    assert_user_error(code, err, "train.json", f"{option[2:]} applies", words)
    assert not out.exists()
    # the Python API: the same refusal, as flat keyword arguments or as settings
    from fusionapp import train

    with pytest.raises(NotApplicable, match=words.replace("(", r"\(")):
        train(demo_table, str(out), verbose=0, **context, **{name: value})
    with pytest.raises(NotApplicable, match=words.replace("(", r"\(")):
        train(demo_table, str(out), verbose=0, settings=apply_flat(RunSettings(), {**context, name: value}))
    assert not out.exists()


@pytest.mark.parametrize("context,name,value", [
    ({"text_encoder": "bag"}, "ngrams", 3),
    ({"text_encoder": "cnn"}, "text_widths", "2,5"),
    ({"text_encoder": "mean"}, "text_embedding_dim", 8),
    ({"text_encoder": "cnn"}, "sequence_length", 32),
    ({"image_backbone": "resnet50_v2", "backbone_head": "multi-kernel"}, "image_filters", "8"),
    ({"image_backbone": "resnet50_v2", "feature_cache": False}, "augment", True),
    ({"multi_label": True}, "min_label_count", 3),
    ({"image_backbone": "resnet50_v2", "fine_tune": 4}, "fine_tune_epochs", 2),
    ({"text_backbone": "/nowhere/bert"}, "sequence_length", 32),
])
def test_a_setting_where_it_applies_is_taken(context, name, value):
    settings = apply_flat(RunSettings(), {**context, name: value})
    check_applies(settings, [*context, name])


def test_overwrite_does_not_apply_to_a_resume(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--resume", "--overwrite")
    assert_usage_error(code, err, "--overwrite applies to a new run, not with --resume")
    from fusionapp import train

    with pytest.raises(NotApplicable, match="--overwrite applies to a new run"):
        train(out=str(tmp_path / "run"), resume=True, overwrite=True, verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_resume_refuses_what_does_not_apply_to_the_recorded_run(tmp_path):
    """--fine-tune-epochs may change on a resume, but only of a run that fine-tunes."""
    from fusionapp.settings.resume import resumed_settings

    recorded = RunSettings().resolved(("image", "text"))
    with pytest.raises(NotApplicable, match="--fine-tune-epochs applies with --fine-tune"):
        resumed_settings(recorded, {"fine_tune_epochs": 9})
    assert resumed_settings(recorded, {"epochs": 30}).training.epochs == 30


def test_settings_recorded_by_earlier_runs_still_load():
    """A run's config.json records resolved values (a cnn run's n-gram length, say), and runs of
    earlier versions recorded values that are refused today: they load as recorded."""
    recorded = RunSettings().to_dict()
    recorded["model"].update(text_encoder="cnn", image_backbone="resnet50_v2", image_kernels=[1, 3, 7])
    recorded["text"].update(ngrams=2, tokens="words")
    recorded["training"].update(fine_tune_epochs=3, min_label_count=4, augment=True)
    settings = RunSettings.from_dict(json.loads(json.dumps(recorded)))
    assert settings.model.image_kernels == (1, 3, 7) and settings.text.ngrams == 2
    assert settings.training.augment is True


@pytest.mark.integration
def test_what_the_data_leaves_out_is_refused_once_it_is_read(tmp_path, capsys):
    """Without --modalities, what the model reads is known once the table is: an image setting for a
    table with no image column is refused then, in one line."""
    rows = [{"text": f"item {i} {'red' if i % 2 else 'blue'}", "label": "ab"[i % 2]} for i in range(40)]
    table = write_csv(tmp_path / "texts.csv", rows)
    code, _, err = run_cli(capsys, "train", table, "--out", tmp_path / "run", "--modality-dropout", "0.2")
    assert_usage_error(code, err, "--modality-dropout applies when the model reads both images and text")
    from fusionapp import train

    # left at its default, it is recorded as what it does there: nothing
    sizes = {name: value for name, value in TINY_MODEL.items() if not name.startswith("image")}
    run = train(table, str(tmp_path / "text"), epochs=1, verbose=0, **sizes)
    recorded = json.load(open(os.path.join(run, "config.json")))["settings"]["training"]
    assert recorded["modality_dropout"] == 0.0 and recorded["augment"] is False


def test_help_says_when_each_setting_applies(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    out = " ".join(out.split())
    assert code == 0 and "--ngrams INTEGER N-grams up to this length for the bag encoder." in out
    assert "applies to --text-encoder bag]" in out and "default: 0: 5 for chars, 2 for words" in out
