"""`fusionapp info`: what a run is, read from its JSON files (no TensorFlow needed)."""

from __future__ import annotations

import os

from fusionapp.runs.files import read_json
from fusionapp.runs.layout import CONFIG_FILE, LEADERBOARD_FILE, METRICS_FILE, TEST_METRICS_FILE
from fusionapp.runs.load import resolve_run_dir


def run_info(model: str) -> dict:
    run_dir = resolve_run_dir(model)
    config = read_json(os.path.join(run_dir, CONFIG_FILE)) \
        if os.path.exists(os.path.join(run_dir, CONFIG_FILE)) else {}
    metrics_path = os.path.join(run_dir, METRICS_FILE)
    test_path = os.path.join(run_dir, TEST_METRICS_FILE)
    settings = config.get("settings", {})
    return {
        "run": os.path.abspath(run_dir),
        "status": config.get("status"),
        "created": config.get("created"),
        "data": config.get("data"),
        "class_names": config.get("class_names"),
        "modalities": settings.get("model", {}).get("modalities"),
        "columns": settings.get("columns"),
        "tabular_kinds": config.get("tabular_kinds"),
        "rows": {key: config.get(key) for key in ("n_train", "n_val", "n_skipped")},
        "epochs_run": config.get("epochs_run"),
        "best_epoch": config.get("best_epoch"),
        # absent from runs made before fusionapp 0.2, which trained on one device
        "distribution": {"strategy": config.get("strategy", "default"), "replicas": config.get("replicas", 1),
                         "workers": config.get("workers", 1),
                         "global_batch_size": config.get("global_batch_size",
                                                         settings.get("training", {}).get("batch_size"))},
        "settings": settings,
        "backbone": config.get("backbone"),  # a pretrained image backbone, where the weights came from
        "text_backbone": config.get("text_backbone"),  # a pretrained text backbone: its folder, class, digest
        "image_text_backbone": config.get("image_text_backbone"),  # a joint image-text model (CLIP, SigLIP)
        "calibration": config.get("calibration"),  # the temperature and the validation ECE / Brier around it
        "multi_label": settings.get("model", {}).get("multi_label", False),
        "label_sets": config.get("label_sets"),  # multi-label: separator, label counts, dropped labels
        "label_thresholds": config.get("label_thresholds"),
        "validation_metrics": read_json(metrics_path) if os.path.exists(metrics_path) else None,
        "test_metrics": read_json(test_path) if os.path.exists(test_path) else None,
        "versions": {key: config.get(f"{key}_version") for key in ("fusionapp", "tensorflow", "keras")},
        # a search's run (train --time-limit): its ensemble, the search, and one row per trial
        "ensemble": config.get("ensemble"),
        "search_summary": config.get("search_summary"),
        "leaderboard": read_leaderboard(run_dir),
    }


def read_leaderboard(run_dir: str) -> list[dict] | None:
    """A search's leaderboard.csv as dicts, best first (None: not a search's run)."""
    import csv

    path = os.path.join(run_dir, LEADERBOARD_FILE)
    if not os.path.exists(path):
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def format_info(info: dict) -> str:
    columns = info["columns"] or {}
    lines = [
        f"run          {info['run']} ({info['status']}, created {info['created']})",
        f"data         {info['data']}",
        f"{'labels' if info['multi_label'] else 'classes':<13}{', '.join(info['class_names'] or [])}"
        + (" (multi-label)" if info["multi_label"] else ""),
        f"modalities   {', '.join(info['modalities'] or [])}",
        f"columns      image={columns.get('image')} text={columns.get('text')} label={columns.get('label')}"
        + (f" tabular={', '.join(f'{k} ({v})' for k, v in (info['tabular_kinds'] or {}).items())}"
           if info["tabular_kinds"] else ""),
        f"rows         train {info['rows']['n_train']}, val {info['rows']['n_val']}, skipped {info['rows']['n_skipped']}",
        f"epochs       {info['epochs_run']} run, best {info['best_epoch']}",
    ]
    model, training = info["settings"].get("model", {}), info["settings"].get("training", {})
    lines += _model_lines(info, model, training)
    if training:
        distribution = info["distribution"]
        lines.append(f"training     lr {training.get('learning_rate')}, batch {training.get('batch_size')}, "
                     f"seed {training.get('seed')}, class weight {training.get('class_weight')}, "
                     f"precision {training.get('precision', 'float32')}")
        lines.append(f"devices      strategy {distribution['strategy']}, {distribution['replicas']} replica(s) on "
                     f"{distribution['workers']} worker(s), global batch {distribution['global_batch_size']}")
    calibration = info.get("calibration")
    if calibration:
        lines.append(f"calibration  temperature {calibration['temperature']:.3f}; validation ECE "
                     f"{calibration['val_ece']['before']:.4f} -> {calibration['val_ece']['after']:.4f}")
    label_sets, thresholds = info.get("label_sets"), info.get("label_thresholds")
    if label_sets:
        dropped = label_sets["dropped_labels"]
        lines.append(f"label sets   joined by {label_sets['label_sep']!r}, {label_sets['labels_per_train_row']:.2f} "
                     f"per training row; {len(dropped)} labels on fewer than {label_sets['min_label_count']} rows "
                     "dropped" + (f" ({', '.join(list(dropped)[:5])}{', ...' if len(dropped) > 5 else ''})"
                                  if dropped else ""))
    if thresholds:
        lines.append("thresholds   " + ", ".join(f"{name} {value:.2f}" for name, value in thresholds.items()))
    for title, key in (("validation", "validation_metrics"), ("test", "test_metrics")):
        if info[key]:
            m = info[key]
            if m.get("multi_label"):
                lines.append(f"{title:<12} micro-F1 {m['micro_f1']:.4f}, macro-F1 {m['macro_f1']:.4f}, samples-F1 "
                             f"{m['samples_f1']:.4f}, Hamming loss {m['hamming_loss']:.4f} ({m['n_examples']} rows)")
            else:
                lines.append(f"{title:<12} accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f} "
                             f"({m['n_examples']} rows)")
    lines += _search_lines(info)
    versions = info["versions"]
    lines.append(f"versions     fusionapp {versions['fusionapp']}, TensorFlow {versions['tensorflow']}, "
                 f"Keras {versions['keras']}")
    return "\n".join(lines)


def _model_lines(info: dict, model: dict, training: dict) -> list[str]:
    """The lines on the network and the pretrained models it starts from."""
    lines = []
    joint = info.get("image_text_backbone")
    if joint:
        lines.append(f"model        image {model.get('image_size')} px and text through the image-text model "
                     f"{joint['class']} from a {joint['source']} folder (sha256 {joint['weights_sha256'][:16]}...), "
                     f"frozen")
    elif model:
        lines.append(f"model        image {model.get('image_size')} px, kernels {model.get('image_kernels')}, "
                     f"filters {model.get('image_filters')}, 1x1 reductions {model.get('image_reduction', 0)}, "
                     + (f"text backbone {model['text_backbone']}" if model.get("text_backbone")
                        else f"text encoder {model.get('text_encoder')}"))
    backbone = info.get("backbone")
    if backbone:
        source = {"none": "random weights", "imagenet": f"ImageNet weights {backbone['weights_file']}",
                  "file": f"weights {backbone['weights_file']}"}[backbone["weights"]]
        lines.append(f"backbone     {backbone['name']}, {source}"
                     + (f" (sha256 {backbone['sha256'][:16]}...)" if backbone.get("sha256") else "")
                     + f", head {model.get('backbone_head')}, fine-tuned layers {training.get('fine_tune', 0)}")
    text_backbone = info.get("text_backbone")
    if text_backbone:
        lines.append(f"text model   {text_backbone['class']} from a {text_backbone['source']} folder "
                     f"(sha256 {text_backbone['weights_sha256'][:16]}...), {text_backbone['sequence_length']} tokens, "
                     f"{text_backbone['pooling']}-pooled, "
                     + (f"rank-{training['text_lora']} LoRA adapters" if training.get("text_lora") else
                        f"fine-tuned layers {training.get('fine_tune_text', 0)}"))
    return lines


# The leaderboard rows `info` prints (leaderboard.csv holds them all).
LEADERBOARD_LINES = 10


def _search_lines(info: dict) -> list[str]:
    """A search's run: the ensemble, the search, and the top of the leaderboard."""
    ensemble, search, board = info.get("ensemble"), info.get("search_summary"), info.get("leaderboard")
    if not ensemble:
        return []
    members = ", ".join(f"trial {member['trial']} x{member['weight']:.2f}" for member in ensemble["members"])
    lines = [f"ensemble     {members}; temperature {ensemble['temperature']:.3f} (held-out log loss "
             f"{ensemble['held_out_log_loss']:.4f} on {ensemble['held_out_rows']} rows no trial saw); the lines "
             "above on the model are its heaviest member's"]
    if search:
        counts = ", ".join(f"{count} {state}" for state, count in search["trial_states"].items())
        lines.append(f"search       preset {search['preset']}, limit {search['time_limit_s']:g} s; trials: {counts}")
    if board:
        columns = ("trial", "state", "in_ensemble", "held_out_log_loss", "held_out_score", "test_macro_f1",
                   "seconds")
        settings = [name for name in board[0] if name not in columns and name not in
                    ("val_accuracy", "val_macro_f1", "test_accuracy", "val_micro_f1", "test_micro_f1", "epochs_run",
                     "run", "note")]
        lines.append("leaderboard  " + "  ".join(columns) + "  settings")
        for row in board[:LEADERBOARD_LINES]:
            values = "  ".join(f"{row.get(name, '')[:8]:>{len(name)}}" for name in columns)
            chosen = ", ".join(f"{name}={row[name][:10]}" for name in settings if row.get(name))
            lines.append(f"             {values}  {chosen or row.get('note', '')}")
        if len(board) > LEADERBOARD_LINES:
            lines.append(f"             ... {len(board) - LEADERBOARD_LINES} more in leaderboard.csv")
    return lines
