"""The command line: each command parses its flags and calls one plain function.

Nothing heavy is imported at module level, so `fusionapp --help` answers without TensorFlow.
"""

from __future__ import annotations

import os
import sys

import click

from fusionapp.cli import audit, scoring, service, tools, train  # noqa: F401 - each registers its commands
from fusionapp.cli.group import cli
from fusionapp.console import load_tensorflow
from fusionapp.errors import FusionError, UsageProblem, one_line

__all__ = ["cli", "main"]

TENSORFLOW_COMMANDS = ("train", "audit", "evaluate", "predict", "export", "serve", "backbones")


def main(argv=None):
    """Entry point: user mistakes become one line on stderr and exit code 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("FUSIONAPP_DEBUG") == "1"
    args = [arg for arg in args if arg != "--debug"]
    try:
        if args and args[0] in TENSORFLOW_COMMANDS and not {"-h", "--help"} & set(args):
            load_tensorflow(debug)
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
    except UsageProblem as error:
        if debug:
            raise
        click.echo(f"Error: {error} (see fusionapp {args[0] if args else ''} --help)", err=True)
        sys.exit(2)
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
