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
