"""Writing outputs so that the user's files are never harmed.

- `check_output(output, inputs)`: an output is never one of the inputs, nor holds one.
- `output_lock(path)`: one run at a time per output; a second run refuses at once.
- `check_replaceable(path)`: an existing output is replaced only with --overwrite, and only if headcls wrote it.
- `staged_folder(path)` / `staged_file(path)`: everything is written beside the output and moved into place at
  the end, so a run that fails or is killed leaves the previous output (or none), never half of one.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from headcls.errors import USER_ERRNOS, HeadclsError
from headcls.modeling.folder import written_by_headcls

if TYPE_CHECKING:
    from filelock import BaseFileLock


def target(path: str | Path) -> Path:
    """Where writing `path` lands: a symbolic link's target (the link stays), else the path itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def output_lock(output: Path, flag: str = "--output") -> Iterator[None]:
    """Hold an exclusive lock on `output` (and its checkpoints) while the block runs; refuse if another run has it.

    The lock is a file `.NAME.lock` beside the output (filelock's FileLock), removed on release. Missing parent
    folders are created and, if the block fails, removed again when they are still empty.
    """
    output = Path(output)
    parent = output.parent
    created = _make_parents(parent, flag, output)
    lock_path = parent / f".{output.name}.lock"
    lock = None
    ok = False
    try:
        lock = _acquire(lock_path, output, flag)
        yield
        ok = True
    finally:
        if lock is not None:
            with contextlib.suppress(OSError):
                lock_path.unlink()  # filelock keeps the file; unlinked before unlocking, a run that opened it retries
            lock.release()
        if not ok:
            for folder in reversed(created):
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _make_parents(parent: Path, flag: str, output: Path) -> list[Path]:
    missing = []
    for folder in [parent, *parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise HeadclsError(f"{flag} {output}: {folder} is a file, not a folder")
            break
        missing.append(folder)
    missing.reverse()
    for folder in missing:
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise HeadclsError(f"{flag} {output}: {folder} is a file, not a folder") from None
        except OSError as e:
            if e.errno not in USER_ERRNOS:
                raise
            raise HeadclsError(f"{flag} {output}: cannot create {folder} ({e.strerror})") from None
    return missing


def _acquire(lock_path: Path, output: Path, flag: str) -> BaseFileLock:
    from filelock import FileLock, Timeout

    # Not thread-local: the block may end in another thread than it began. filelock opens the file without
    # truncating it, so the holder's pid (written once it holds the lock) stays readable by the runs it refuses.
    lock = FileLock(lock_path, thread_local=False, on_acquired=_write_pid)
    while True:
        before = _identity(lock_path)
        try:
            lock.acquire(blocking=False)
            return lock
        except Timeout:  # a TimeoutError, so an OSError: caught before the clause below
            # Held, unless the file changed meanwhile: the holder removed it between filelock's open and its lock
            # (filelock then refuses the removed file), or another run came and went. Then try the new one.
            if before is None or _identity(lock_path) != before:
                continue
            owner = _read_pid(lock_path)
            raise HeadclsError(
                f"{flag} {output}: another headcls run{f' (pid {owner})' if owner else ''} is writing it; "
                "wait for it to finish or choose another output"
            ) from None
        except OSError as e:  # the first write into the output's folder: the place to say it is not writable
            if e.errno not in USER_ERRNOS:
                raise
            raise HeadclsError(f"{flag} {output}: cannot write in {lock_path.parent} ({e.strerror})") from None


def _write_pid(fd: int) -> None:
    """Say who holds the lock, for the message of the runs it refuses (what a crashed holder left is replaced)."""
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.isdigit() else ""


def check_replaceable(output: Path, overwrite: bool, flag: str = "--output") -> None:
    """Refuse to touch an existing output unless --overwrite, and refuse to replace a folder headcls did not write."""
    if not output.exists() and not output.is_symlink():
        return
    if not output.is_dir():
        raise HeadclsError(f"{flag} {output}: exists and is not a folder")
    entries = [p.name for p in output.iterdir()]
    if not entries:
        return
    if not overwrite:
        raise HeadclsError(f"{flag} {output}: already holds files; pass --overwrite to replace them")
    if not written_by_headcls(output):
        raise HeadclsError(
            f"{flag} {output}: holds files headcls did not write (no metrics.json, nor config.json beside model "
            "weights); --overwrite only replaces a folder headcls wrote: remove it yourself or choose another output"
        )


# How libraries that write from C++ or Rust report a full disk or a refused write (they raise no OSError).
WRITE_FAILURES = ("os error", "No space left", "file write failed", "unexpected pos", "Disk quota", "File too large",
                  "Read-only file system", "Permission denied")


def write_failure(e: BaseException, where: Path) -> HeadclsError | None:
    """The one-line error for a failed write under `where`, or None if `e` does not look like one (a bug)."""
    if isinstance(e, HeadclsError):
        return e
    if isinstance(e, OSError):
        if e.errno not in USER_ERRNOS:
            return None
        return HeadclsError(f"{e.filename or where}: cannot write ({e.strerror}); the previous output is kept")
    if isinstance(e, (RuntimeError, ValueError)) or type(e).__module__.startswith(("safetensors", "torch")):
        text = str(e)
        if any(s in text for s in WRITE_FAILURES) or free_bytes(where) < (1 << 20):
            return HeadclsError(f"{where}: cannot write ({type(e).__name__}: {text.splitlines()[0] if text else ''}); "
                                f"is the disk full? {free_bytes(where) >> 20} MB free")
    return None


def free_bytes(path: Path) -> int:
    for folder in [path, *path.parents]:
        if folder.exists():
            return shutil.disk_usage(folder).free
    return 0


def check_space(output: Path, needed: int, what: str, flag: str = "--output") -> None:
    """Refuse a run whose outputs cannot fit on the disk, before it starts."""
    free = free_bytes(output)
    if free < needed:
        raise HeadclsError(
            f"{flag} {output}: {what} needs about {needed / 1e6:.0f} MB and the disk has {free / 1e6:.0f} MB free; "
            "free some space or choose another output"
        )


@contextlib.contextmanager
def staged_folder(output: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `output`; on success swap it in for `output`, else remove it.

    A failed write into it (a full disk, a permission) is one line naming the folder.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(output, "staging")
    staging = output.with_name(f".{output.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        swap_in(staging, output)
    except Exception as e:
        failure = write_failure(e, output) if _about(e, staging, output) else None
        if failure is None or failure is e:
            raise
        raise failure from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _about(e: BaseException, *paths: Path) -> bool:
    """Whether an error concerns one of `paths` (or names no path at all, as writes to open files do)."""
    name = getattr(e, "filename", None)
    if name is None:
        return True
    return any(Path(name) == p or p in Path(name).parents for p in paths)


@contextlib.contextmanager
def staged_file(output: Path, overwrite: bool, flag: str = "--output") -> Iterator[Path]:
    """Yield a temporary path beside `output`; on success it replaces `output` in one rename, else it is removed."""
    if output.is_dir():
        raise HeadclsError(f"{flag} {output}: is a folder; give a file name")
    if output.exists() and not overwrite:
        raise HeadclsError(f"{flag} {output}: already exists; pass --overwrite to replace it")
    remove_stale(output, "partial")
    tmp = output.with_name(f".{output.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, output)
    except OSError as e:
        if e.errno not in USER_ERRNOS or not _about(e, tmp, output):
            raise
        raise HeadclsError(f"{flag} {output}: cannot write ({e.strerror}); the previous output is kept") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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


def remove_stale(output: Path, kind: str = "staging") -> None:
    """Remove staging folders (or partial files) that runs killed before they finished left beside `output`."""
    for path in output.parent.glob(glob.escape(f".{output.name}.{kind}-") + "*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputClash(HeadclsError, ValueError):
    """An output that would replace an input: a user error, and a ValueError for the option schemas' validators."""


def check_output(output: Path, inputs: dict[str, str], flag: str) -> None:
    """Refuse an output that is one of the inputs or holds one inside it (writing it would replace the input), or
    that is the current folder or holds it."""
    out = _real(output)
    cwd = _real(Path.cwd())
    if out == cwd or out in cwd.parents:
        raise OutputClash(f"{flag} {output} is the current folder or holds it; choose another output")
    for name, value in inputs.items():
        path = _real(Path(value))
        same = path == out or (path.exists() and out.exists() and os.path.samefile(path, out))
        if same or out in path.parents:
            what = "is" if same else "holds"
            flag_in = "--" + name.replace("_", "-")
            raise OutputClash(f"{flag} {output} {what} the input {flag_in} {value}; choose another output")


def _real(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        return path.absolute()
