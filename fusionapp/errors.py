"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single line on stderr and exit code 1; anything else is a bug and keeps
its traceback.
"""


class FusionError(Exception):
    """A problem with the user's data, model or settings, described in one line."""
