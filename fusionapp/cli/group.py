"""The click group and the option helpers its commands share. Nothing heavy is imported here, so
`fusionapp --help` answers without TensorFlow."""

from __future__ import annotations

import click

from fusionapp import __version__


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


def setting_option(*declarations, name: str, help: str, **options):
    """A train flag whose accepted values are the setting's own rule (fusionapp.settings): the rule
    is checked once, when the settings are built, and its words are shown in --help."""
    from fusionapp.settings import requirement

    return click.option(*declarations, help=f"{help} [{requirement(name)}]", **options)


COLUMN_FLAGS = ("image_col", "text_col", "label_col", "id_col", "split_col", "image_root")


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


def prediction_options(function):
    """--on-bad-row and --batch-size of evaluate and predict, their defaults the settings' own."""
    from fusionapp.settings import PredictionSettings

    defaults = PredictionSettings()
    options = [
        click.option("--on-bad-row", help=f"skip: leave unusable rows out (predict lists them with an error); "
                                          f"error: stop at the first [default: {defaults.on_bad_row}]."),
        click.option("--batch-size", type=int, help=f"Rows per prediction batch [default: {defaults.batch_size}]."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def checked_prediction_options(**values):
    """evaluate / predict options checked by their settings' rules; a refused one is a usage error."""
    from fusionapp.settings import SettingError, prediction_settings

    try:
        return prediction_settings(**values)
    except SettingError as error:
        raise click.BadParameter(f"{error.value!r}: must be {error.requirement}",
                                 param_hint=f"'--{error.option}'") from None
