"""One process per run folder: a lock held from opening the folder until the process ends.

    folder_lock.acquire(path)   # UserInputError naming the holder if another process has it
    folder_lock.release(path)   # at the end of the run (or when the process exits)

The lock is an exclusive `flock` on `<folder>/.lock`, which also records who
holds it (PID, host, since when) for the error another process prints. The
operating system drops a flock when its process ends, however it ends (even
SIGKILL); a process that ends normally also empties the file, so a lock file
that still names a holder was left by a process that died, and is taken over
with a line saying so. Within one process the lock is taken once per folder, so that a
notebook or a test may open the same run again. A folder on a network
filesystem without flock support runs unlocked, with a line saying so.
"""

import atexit
import datetime
import errno
import fcntl
import os
import pathlib
import socket

from common.cli import UserInputError

LOCK = ".lock"

_held = {}  # resolved folder -> open file descriptor of its lock, for this process


def acquire(path):
    """Locks run folder `path` (created if missing) for this process, until it exits."""
    folder = pathlib.Path(path).resolve()
    if folder in _held:
        return
    created = not folder.exists()
    for _ in range(10):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UserInputError(f"--save_path={path}: cannot create the run folder's lock "
                                 f"({error.strerror}); choose another --save_path")
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _read(descriptor)
            os.close(descriptor)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise UserInputError(
                    f"--save_path={path}: in use by {holder or 'another process'}; wait for it "
                    "to end, or use another --save_path")
            print(f"note: {folder}: this filesystem cannot lock files ({error.strerror}); "
                  "running without a lock: start one run at a time into this folder", flush=True)
            return
        if _still_the_folders(descriptor, folder / LOCK):
            break
        os.close(descriptor)  # its holder removed it meanwhile: lock the folder's new one
    previous = _read(descriptor)
    if previous:
        print(f"note: {folder}: taking over the lock of {previous}, which is no longer running",
              flush=True)
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    try:
        os.ftruncate(descriptor, 0)
        holder = f"PID {os.getpid()} on {socket.gethostname()} since {since}\n"
        os.pwrite(descriptor, holder.encode(), 0)
    except OSError as error:
        os.close(descriptor)
        raise UserInputError(f"--save_path={path}: cannot write the run folder's lock "
                             f"({error.strerror}); make room, or choose another --save_path")
    _held[folder] = descriptor
    atexit.register(_release, folder, created)


def release(path):
    """Ends this process's lock on folder `path`, at the end of its run (no-op if not held)."""
    _release(pathlib.Path(path).resolve(), created=False)


def _release(folder, created):
    descriptor = _held.pop(folder, None)
    if descriptor is None:
        return
    try:
        # Emptied, not removed, while still locked: a process that opened the file
        # meanwhile then locks the same file, never a second one.
        os.ftruncate(descriptor, 0)
        if created and [entry.name for entry in folder.iterdir()] == [LOCK]:
            (folder / LOCK).unlink()  # stopped before anything was saved: no empty folder
            folder.rmdir()
    except OSError:
        pass
    os.close(descriptor)


def _still_the_folders(descriptor, lock_path):
    """True when the locked file is still the one at `lock_path` (not removed since)."""
    try:
        return os.fstat(descriptor).st_ino == os.stat(lock_path).st_ino
    except OSError:
        return False


def _read(descriptor):
    try:
        return os.pread(descriptor, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""
