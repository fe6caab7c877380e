"""The one exception type that means "the user gave us something we cannot use".

The CLI turns it into a single line on stderr and exit code 1; anything else is a bug and keeps
its traceback.
"""


class FusionError(Exception):
    """A problem with the user's data, model or settings, described in one line."""


class UsageProblem(FusionError):
    """Arguments that do not fit together (a flag given where it does not apply, a table and a single
    pair at once): on the command line, a usage error with exit code 2."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception's message as one line for users: its first line, or its type when empty."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
