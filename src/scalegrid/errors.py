"""One error type for everything a user can get wrong.

A `UserError` is printed as one line (`scalegrid: error: ...`) and exits with code 2; it is raised
before anything is written, so a bad spec, flag or file never touches the results directory.
"""


class UserError(Exception):
    """Bad user input: the message names the field or file and how to fix it."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))  # always one line


class StorageError(UserError):
    """The results' storage stopped taking writes (full, over quota, read-only, failing): one line
    naming the path and what to do.

    Not bad input: the run stops (exit code 1) with everything written so far intact, and the
    same command finishes the rest once there is room."""

    exit_code = 1
