"""The one user-facing error type (as pipx does): caught at the top of cli.main(),
printed as a single line without a traceback, and turned into its exit code."""

from waitfor import exitcodes


class WaitforError(Exception):
    exit_code = exitcodes.USAGE

    def __init__(self, message: str, exit_code: "int | None" = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(WaitforError):
    """Bad flags, environment variables or config. Exit 2, nothing is started."""

    exit_code = exitcodes.USAGE


class UsageErrors(UsageError):
    """Every error `validate` found in a config, in order: one line each."""

    def __init__(self, errors: "list[UsageError]"):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def at(where: str, message: str) -> UsageError:
    """A UsageError that names where the problem is: `file:line: key`, a flag or a variable."""
    return UsageError(f"{where}: {message}" if where else message)
