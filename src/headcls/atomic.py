"""Writing output folders so that a run that dies leaves the previous folder (or none), never half of one."""

from __future__ import annotations

import ctypes
import os
import shutil
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(output: Path):
    """Yield an empty staging folder beside `output`; on success swap it in for `output`, else remove it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output)
    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        swap_in(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def swap_in(staging: Path, output: Path) -> None:
    """Replace `output` by `staging`: one atomic exchange where the OS has it, else two renames.

    After the exchange `staging` holds the previous folder, which the caller removes.
    """
    if not output.exists():
        staging.rename(output)
        return
    if _exchange(staging, output):
        return
    old = output.with_name(f".{output.name}.old-{os.getpid()}")
    output.rename(old)
    staging.rename(output)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale(output: Path) -> None:
    """Remove staging folders that runs killed before they finished left beside `output`."""
    for path in output.parent.glob(f".{output.name}.staging-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
