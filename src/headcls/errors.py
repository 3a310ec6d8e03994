"""The one exception type for mistakes a user can fix (bad input, bad flags, bad folders, a full disk)."""

import errno

# OSErrors a user fixes (a path, a permission, a full disk), as opposed to bugs: one line and exit 2.
USER_ERRNOS = {
    errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENOSPC, errno.EDQUOT, errno.EROFS,
    errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY, errno.ELOOP, errno.EFBIG, errno.EMFILE, errno.ENFILE,
    errno.ETXTBSY, errno.EBUSY, errno.EXDEV,
}


class HeadclsError(Exception):
    """A user error: the CLI prints its message on one line and exits with status 2."""


class Interrupted(HeadclsError):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint: exit status 130."""


def first_line(e: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
