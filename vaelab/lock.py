"""One writer per run folder: an OS advisory lock (``fcntl.flock``) held while a command writes it.

``train``, ``compare``, ``evaluate``, ``sweep`` and ``report`` wrap their work in :func:`hold`. The lock
is a file in the folder they write (``.vaelab.lock``; for a single output file ``FILE``, ``.FILE.lock``
beside it) holding the holder's PID. A second process does not wait: it gets one message naming the
folder and the holder's PID and exits non-zero (``LockedError``).

Stale locks take themselves over: the kernel releases a flock when its holder dies, kill -9
included, so a lock file left by a dead process is simply locked again (and its PID rewritten). The
lock file is removed on a clean exit; the remover still holds the lock while unlinking, and a taker
checks after locking that the path still names the file it locked (else it retries), so a removal
never lets two holders in. Under torchrun only rank 0 (the rank that writes) takes the lock.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from vaelab.errors import OutputError

LOCK_NAME = ".vaelab.lock"


class LockedError(OutputError):
    """Another live process holds the run folder's lock."""


def lock_path(target: str | os.PathLike, is_file: bool = False) -> Path:
    """The lock file of a folder ``target`` (``target/.vaelab.lock``), or of an output file (``.NAME.lock`` beside it)."""
    target = Path(target)
    return target.parent / f".{target.name}.lock" if is_file else target / LOCK_NAME


@contextlib.contextmanager
def hold(target: str | os.PathLike, command: str, *, is_file: bool = False, create: bool = True) -> Iterator[None]:
    """Hold the lock of ``target`` (a run folder, or an output file with ``is_file``) for the ``with`` block.

    Args:
        target: the folder the command writes (created when missing and ``create``; removed again on exit
            when the command left it empty), or the file it writes (``is_file``)
        command: the command's name, for the message ("train", "compare", ...)
        create: False for commands that only write into an existing folder (``report``): no folder, no lock
    Raises:
        LockedError when another live process holds it: names the folder and the holder's PID.
    """
    if os.environ.get("RANK", "0") != "0":         # torchrun: rank 0 writes and holds the lock
        yield
        return
    path = lock_path(target, is_file)
    folder = path.parent
    made = not folder.exists()
    if (made and not create) or (folder.exists() and not folder.is_dir()):
        yield                                      # nothing to lock: the command says what is wrong with it
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {folder}: {e.strerror or e}. Choose a writable --out.") from None
    fd = _acquire(path, folder, command)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()                          # still locked: nobody can take the file being removed
        os.close(fd)                               # releases the flock
        if made:
            with contextlib.suppress(OSError):
                folder.rmdir()                     # only when the command wrote nothing into it


def _acquire(path: Path, folder: Path, command: str) -> int:
    """Lock ``path`` (non-blocking) and write our PID into it; return the open descriptor."""
    import fcntl

    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write the lock file {path}: {e.strerror or e}. "
                              "Choose a writable --out.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _holder(path)
            raise LockedError(f"{folder} is in use by another vaelab process ({pid}); two commands must not write "
                              f"one folder. Wait for it to finish (or stop it), or choose another --out.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:                                   # else the holder removed it while we opened: take the new one
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{command}\n".encode())
    return fd


def _holder(path: Path) -> str:
    """ "PID n, vaelab COMMAND" from the lock file; a holder that just took it may not have written yet."""
    for _ in range(20):
        try:
            lines = path.read_text(encoding="utf-8").split()
        except OSError:
            lines = []
        if lines and lines[0].isdigit():
            return f"PID {lines[0]}" + (f", vaelab {lines[1]}" if len(lines) > 1 else "")
        time.sleep(0.05)
    return "PID unknown"
