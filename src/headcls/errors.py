"""The one exception type for mistakes a user can fix (bad input, bad flags, bad folders)."""


class HeadclsError(Exception):
    """A user error: the CLI prints its message on one line and exits with status 2."""


class Interrupted(HeadclsError):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint: exit status 130."""
