"""The command line: each command parses its flags and calls one plain function.

Nothing heavy is imported at module level, so `fusionapp --help` answers without TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys

import click

from fusionapp import __version__
from fusionapp.errors import FusionError, one_line

TENSORFLOW_COMMANDS = ("train", "evaluate", "predict", "export", "serve", "backbones")


def _load_tensorflow(debug: bool = False) -> None:
    """Import TensorFlow with its start-up chatter on stderr hidden.

    TensorFlow's C++ core logs CUDA probes and oneDNN notes before any log level applies, so the
    only way to keep them from users is to point file descriptor 2 elsewhere during the import.
    """
    if debug or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    # Retracing and AutoGraph notes are for TensorFlow developers, not for our users.
    tensorflow.get_logger().setLevel("ERROR")


def setting_option(*declarations, name: str, help: str, **options):
    """A train flag whose accepted values are the setting's own rule (fusionapp.config): the rule
    is checked once, when the settings are built, and its words are shown in --help."""
    from fusionapp.config import requirement

    return click.option(*declarations, help=f"{help} [{requirement(name)}]", **options)


def column_options(function):
    """--image-col/--text-col/--label-col/--id-col/--split-col/--image-root, shared by every data command."""
    options = [
        click.option("--image-col", help="Column holding image paths (default: image)."),
        click.option("--text-col", help="Column holding the text (default: text)."),
        click.option("--label-col", help="Column holding the label (default: label)."),
        click.option("--id-col", help="Column holding row ids, copied to predictions (default: id)."),
        click.option("--split-col", help="Column holding train/val/test (default: split)."),
        click.option("--image-root", type=click.Path(file_okay=False),
                     help="Folder relative image paths resolve against (default: the table's folder)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="fusionapp")
def cli():
    """Train, evaluate and serve image + text (+ tabular) classifiers.

    \b
    fusionapp train                      # demo data, a few minutes on a laptop CPU
    fusionapp train my.csv --tabular-col price
    fusionapp evaluate checkpoints/RUN my.csv --split test
    fusionapp predict checkpoints/RUN --image cat.jpg --text "a photo of my cat"

    Add --debug to any command to see the full traceback of an error.
    """


@cli.command()
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder to write images/ and demo.csv into [default: data/demo, or data/demo-multilabel].")
@click.option("--rows", default=3000, show_default=True, type=click.IntRange(min=40), help="Number of examples.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--multi-label", is_flag=True, help="Label each pair with a set of tags (joined by |) instead.")
def demo(out, rows, seed, multi_label):
    """Write the synthetic demo set, whose label needs both the image and the text."""
    from fusionapp.data.demo import make_demo

    table = make_demo(out or ("data/demo-multilabel" if multi_label else "data/demo"), rows=rows, seed=seed,
                      multi_label=multi_label)
    click.echo(f"Wrote {rows} examples to {table} (with a split column: train / val / test)")


@cli.command()
@click.argument("data", required=False)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: checkpoints/<data>-<time>).")
@column_options
@setting_option("--tabular-col", name="tabular_col", multiple=True,
                help="Tabular column, repeatable; NAME:numeric or NAME:categorical forces its kind.")
@setting_option("--modalities", name="modalities", help="Inputs the model uses (default: all the data has).")
@setting_option("--multi-label/--no-multi-label", name="multi_label", default=None,
                help="Each row has a set of labels: a sigmoid and a tuned threshold per label (default: off).")
@setting_option("--label-sep", name="label_sep",
                help="What joins a row's labels in the label column; implies --multi-label (default: |).")
@setting_option("--min-label-count", name="min_label_count", type=int,
                help="Multi-label: drop labels found on fewer training rows (default: 2).")
@setting_option("--image-size", name="image_size", type=int,
                help="Image side in pixels; 0: 64, or 224 with a pretrained backbone (default: 0).")
@setting_option("--image-backbone", name="image_backbone",
                help="Image branch: multi-kernel (learnt from scratch, default) or a pretrained ImageNet model.")
@setting_option("--backbone-weights", name="backbone_weights",
                help="Pretrained weights: imagenet (Keras' cache, $KERAS_HOME/models), none (random), or a local "
                     "file (default: imagenet).")
@setting_option("--backbone-head", name="backbone_head",
                help="Over the backbone's feature map: global pooling alone, or a multi-kernel block before it "
                     "(default: pool).")
@setting_option("--feature-cache/--no-feature-cache", name="feature_cache", default=None,
                help="Compute each image's frozen backbone features once, kept across epochs and runs "
                     "(default: on; `fusionapp cache` shows and clears it).")
@setting_option("--fine-tune", name="fine_tune", type=int, is_flag=False, flag_value=30, metavar="[LAYERS]",
                help="Then unfreeze the top LAYERS backbone layers (30 if not given), batch norm excepted, "
                     "and train on (default: 0, off).")
@setting_option("--fine-tune-epochs", name="fine_tune_epochs", type=int,
                help="Maximum epochs of fine-tuning (default: 5).")
@setting_option("--fine-tune-learning-rate", name="fine_tune_learning_rate", type=float,
                help="Peak learning rate of fine-tuning (default: 0.0002).")
@setting_option("--image-kernels", name="image_kernels", help="Kernel sizes of each image block (default: 1,3,5).")
@setting_option("--image-filters", name="image_filters", help="Output channels of each image block (default: 48,96,192).")
@setting_option("--image-reduction", name="image_reduction", type=float,
                help="1x1 reductions before the larger kernels, as a share of each branch's channels; "
                     "0 for none (default: 0.5).")
@setting_option("--text-encoder", name="text_encoder",
                help="Text branch: bag (TF-IDF n-grams, default), cnn (1-D convolutions), mean (pooled embeddings).")
@setting_option("--wide/--no-wide", name="wide", default=None,
                help="Blend in a linear model on the TF-IDF text and tabular values, fitted after the network "
                     "(default: on).")
@setting_option("--calibrate/--no-calibrate", name="calibrate", default=None,
                help="Fit one temperature on the validation rows so that confidences match accuracy (default: on).")
@setting_option("--ngrams", name="ngrams", type=int,
                help="N-gram length for the bag encoder; 0: 5 for chars, 2 for words (default: 0).")
@setting_option("--text-tokens", name="text_tokens",
                help="Words or characters (for languages without spaces); auto: chars for bag, words otherwise.")
@setting_option("--max-tokens", name="max_tokens", type=int, help="Vocabulary size bound (default: 20000).")
@setting_option("--sequence-length", name="sequence_length", type=int, help="Tokens kept per text (default: 64).")
@setting_option("--dropout", name="dropout", type=float, help="Dropout rate (default: 0.3).")
@setting_option("--epochs", name="epochs", type=int, help="Maximum epochs (default: 15).")
@setting_option("--batch-size", name="batch_size", type=int,
                help="Batch size per replica; the global batch is this times the replicas (default: 64).")
@setting_option("--learning-rate", name="learning_rate", type=float, help="Peak learning rate (default: 0.002).")
@setting_option("--seed", name="seed", type=int, help="Random seed (default: 0).")
@setting_option("--val-split", name="val_split", type=float,
                help="Hold-out fraction when the data has no split column (default: 0.15).")
@setting_option("--patience", name="patience", type=int,
                help="Epochs without val-loss improvement before stopping (default: 4).")
@setting_option("--class-weight", name="class_weight",
                help="balanced: weight rows by the inverse frequency of their class; none: equally (default: balanced).")
@setting_option("--augment/--no-augment", name="augment", default=None,
                help="Random flips and shifts of training images (default: on).")
@setting_option("--cache", name="cache",
                help="Keep decoded, resized images after one pass (in memory, or in RUN/cache while training).")
@setting_option("--precision", name="precision",
                help="Compute precision; auto: bfloat16 where the hardware has it natively (default: auto).")
@setting_option("--jit/--no-jit", name="jit", default=None, help="XLA-compile the training step (default: off).")
@setting_option("--strategy", name="strategy",
                help="tf.distribute strategy: mirrored over this machine's GPUs, multi-worker across the machines "
                     "in TF_CONFIG; auto picks by what it finds (default: auto).")
@setting_option("--tune-decisions/--no-tune-decisions", name="tune_decisions", default=None,
                help="After training, shift per-class decision offsets to maximise validation macro-F1, or "
                     "(multi-label) tune each label's threshold for its F1 (default: on).")
@setting_option("--modality-dropout", name="modality_dropout", type=float,
                help="Share of training rows whose image (and, separately, text) is blanked, so the model "
                     "copes with missing inputs (default: 0.3).")
@setting_option("--on-bad-row", name="on_bad_row", help="Skip and count bad rows (default) or stop at the first.")
@click.option("--tensorboard", is_flag=True, default=None, help="Write TensorBoard logs into RUN/tensorboard.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON file with the same settings as these flags; flags win.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last epoch.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
def train(data, out, resume, overwrite, config_file, **flags):
    """Train a classifier on DATA (a CSV / JSON Lines table or tfds:NAME[:SPLIT]).

    With no DATA, trains on the demo set, creating it under data/demo first.
    """
    from fusionapp.config import RunSettings, SettingError, apply_flat
    from fusionapp.training import train as train_run

    flags["tabular_col"] = flags["tabular_col"] or None
    settings = RunSettings()
    if config_file:
        from fusionapp.config_file import read_config_file

        saved = read_config_file(config_file)
        for key in ("data", "out"):
            if not isinstance(saved.get(key, ""), str):
                raise FusionError(f"{config_file}: {key} = {saved[key]!r}: must be a path")
        data, out = data or saved.pop("data", None), out or saved.pop("out", None)
        saved.pop("data", None)
        saved.pop("out", None)
        try:
            settings = apply_flat(settings, saved)
        except SettingError as error:
            raise FusionError(f"{config_file}: {error.option} = {error.value!r}: must be {error.requirement}") from None
        except FusionError as error:
            raise FusionError(f"{config_file}: {error}") from None
    try:
        settings = apply_flat(settings, flags)
    except SettingError as error:
        raise click.BadParameter(f"{error.value!r}: must be {error.requirement}",
                                 param_hint=f"'--{error.option}'") from None
    train_run(data, out, resume=resume, overwrite=overwrite, settings=settings)


@cli.command()
@click.argument("action", type=click.Choice(["info", "clear"]), default="info")
def cache(action):
    """Show (info) or empty (clear) the feature cache of frozen backbones.

    It lives in $FUSIONAPP_CACHE_DIR (default ~/.cache/fusionapp/features) and keeps to
    $FUSIONAPP_CACHE_LIMIT_GB (default 10), dropping the least recently used features first.
    """
    from fusionapp.feature_cache import cache_usage, clear_cache

    if action == "clear":
        click.echo(f"Removed {clear_cache() / 1e6:.1f} MB of cached features from {cache_usage()['folder']}")
        return
    usage = cache_usage()
    click.echo(f"{usage['folder']}: {usage['entries']} feature files, {usage['bytes'] / 1e6:.1f} MB of "
               f"{usage['limit_bytes'] / 1e9:g} GB allowed, {usage['setups']} backbone setups")


@cli.command()
def backbones():
    """List the pretrained image backbones, the weights file each needs, and whether it is here."""
    from fusionapp.backbone_weights import keras_models_dir
    from fusionapp.model.backbones import BACKBONES

    folder = keras_models_dir()
    click.echo(f"ImageNet weights are read from {folder}")
    for backbone in BACKBONES.values():
        here = "present" if os.path.isfile(os.path.join(folder, backbone.weights_file)) else "missing"
        click.echo(f"{backbone.name:<20} {here:<8} {backbone.weights_file}\n{'':<30}{backbone.weights_url}")


@cli.command()
@click.argument("model")
@click.option("--out", required=True, type=click.Path(), help="Folder to write the SavedModel into.")
@click.option("--overwrite", is_flag=True, help="Replace what is already in --out.")
def export(model, out, overwrite):
    """Write the run MODEL as a TensorFlow SavedModel taking raw inputs (for TF Serving)."""
    from fusionapp.export import export_run

    export_run(model, out, overwrite=overwrite)
    click.echo(f"Wrote the SavedModel to {out} (signature serving_default)")


@cli.command()
@click.argument("model")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body-mb", default=16, show_default=True, type=click.IntRange(min=1), help="Request body limit.")
def serve(model, host, port, max_body_mb):
    """Serve the run MODEL over HTTP: /predict, /predict/batch, /health, /metadata and a page at /."""
    import uvicorn

    from fusionapp.artifacts import load_run
    from fusionapp.serve.app import create_app

    app = create_app(load_run(model), max_body_bytes=max_body_mb * 1024 * 1024)
    click.echo(f"Serving {model} on http://{host}:{port}/ (Ctrl+C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def info(model, as_json):
    """Show a run's classes, columns, settings, metrics and versions."""
    from fusionapp.run_info import format_info, run_info

    details = run_info(model)
    click.echo(json.dumps(details, indent=2, ensure_ascii=False) if as_json else format_info(details))


@cli.command()
@click.argument("model")
@click.argument("data")
@click.option("--split", help="Use only the rows of this split (e.g. test).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the report as JSON here.")
@click.option("--predictions", type=click.Path(dir_okay=False), help="Write per-row predictions (CSV) here.")
@click.option("--skipped", type=click.Path(dir_okay=False), help="List the skipped bad rows (CSV) here.")
@click.option("--ablate", is_flag=True, help="Also score with each modality blanked, to show what each contributes.")
@click.option("--plots", type=click.Path(file_okay=False),
              help="Write confusion-matrix (single-label), ROC, precision-recall and reliability PNGs here.")
@click.option("--on-bad-row", default="skip", show_default=True, help="skip: drop and count bad rows; error: stop.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Rows per prediction batch.")
@column_options
def evaluate(model, data, on_bad_row, batch_size, **options):
    """Score the run MODEL on the labelled rows of DATA (scikit-learn metrics)."""
    from fusionapp.evaluation import evaluate as evaluate_run

    checked = _prediction_options(on_bad_row=on_bad_row, batch_size=batch_size)
    evaluate_run(model, data, on_bad_row=checked.on_bad_row, batch_size=checked.batch_size, **options)


@cli.command()
@click.argument("model")
@click.argument("data", required=False)
@click.option("--image", type=str, help="Image file of a single pair.")
@click.option("--text", type=str, help="Text of a single pair.")
@click.option("--tabular", multiple=True, metavar="COL=VALUE", help="Tabular value of a single pair (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the single-pair result as JSON.")
@click.option("--split", help="Use only the rows of this split.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the predictions CSV here (default: stdout).")
@click.option("--top-k", type=int, default=1, show_default=True, help="Also list the K likeliest labels.")
@click.option("--explain", is_flag=True, help="Explain a single pair: what each input, word, image region and "
                                             "column did for the prediction (with --json: the full object).")
@click.option("--explain-dir", type=click.Path(file_okay=False),
              help="Explain every row of DATA into this folder: a heat map PNG per row and explanations.csv.")
@click.option("--on-bad-row", default="skip", show_default=True,
              help="List unreadable rows with an error (skip) or stop at the first (error).")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Rows per prediction batch.")
@column_options
def predict(model, data, image, text, tabular, as_json, split, out, top_k, explain, explain_dir, on_bad_row,
            batch_size, **options):
    """Label one pair (--image/--text) or every row of DATA with the run MODEL."""
    from fusionapp.prediction import format_pair, predict as predict_run

    checked = _prediction_options(top_k=top_k, on_bad_row=on_bad_row, batch_size=batch_size)
    options.update(on_bad_row=checked.on_bad_row, batch_size=checked.batch_size)
    top_k = checked.top_k
    if data is None:
        if image is None and text is None and not tabular:
            raise click.UsageError("give DATA (a table) or a single pair with --image/--text")
        values = {}
        for item in tabular:
            name, separator, value = item.partition("=")
            if not separator or not name:
                raise click.UsageError(f"--tabular expects COL=VALUE (got '{item}')")
            values[name] = value
        if explain_dir:
            raise click.UsageError("--explain-dir explains a table (DATA); use --explain for a single pair")
        result = predict_run(model, image=image, text=text, tabular=values, top_k=top_k, explain=explain)
        click.echo(json.dumps(result, ensure_ascii=False) if as_json else format_pair(result))
        return
    if image or text or tabular:
        raise click.UsageError("give either DATA or --image/--text/--tabular, not both")
    if explain:
        raise click.UsageError("--explain explains a single pair; use --explain-dir DIR for a table")
    predict_run(model, data, split=split, out=out, top_k=top_k, explain_dir=explain_dir, **options)


def _prediction_options(**values):
    """evaluate / predict options checked by their settings' rules; a refused one is a usage error."""
    from fusionapp.config import SettingError, prediction_settings

    try:
        return prediction_settings(**values)
    except SettingError as error:
        raise click.BadParameter(f"{error.value!r}: must be {error.requirement}",
                                 param_hint=f"'--{error.option}'") from None


def main(argv=None):
    """Entry point: user mistakes become one line on stderr and exit code 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FUSIONAPP_DEBUG") == "1"
    args = [arg for arg in args if arg != "--debug"]
    try:
        if args and args[0] in TENSORFLOW_COMMANDS and not {"-h", "--help"} & set(args):
            _load_tensorflow(debug)
        cli.main(args=args, prog_name="fusionapp", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except FusionError as error:
        if debug:
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - a last line of defence: no traceback for users
        if debug:
            raise
        click.echo(f"error: {type(error).__name__}: {one_line(error)} (rerun with --debug for details)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
