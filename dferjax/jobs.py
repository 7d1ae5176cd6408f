"""What a job on a shared machine needs: one writer per folder, a clean stop on a scheduler's signal,
and disk errors said in one line. Used by the shard build (``--out``) and by training (``--workdir``).

Exit statuses of ``python -m dferjax.train`` and ``python -m data_prep.build`` (README, "Runs on a cluster"):

- ``0``: done.
- ``1``: an error to fix (the one line on stderr says what); running again as it is fails again.
- ``2``: a usage or config error, refused before anything was written.
- ``75`` (:data:`EXIT_REQUEUE`, ``EX_TEMPFAIL`` of sysexits.h): stopped by SIGTERM or SIGINT after
  saving; re-queue the same command and it resumes where it stopped.
- ``128 + N``: a second signal N during the stop: exited at once; the same command resumes from the
  last complete save.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

EXIT_REQUEUE = 75
"""Exit status after a stop on SIGTERM/SIGINT with everything saved: re-queue the same command."""

LOCK_FILE = ".dferjax.lock"
"""In a locked folder: held (``flock``) while a build or run writes there; holds its owner as JSON."""


class FolderError(RuntimeError):
    """An output folder that cannot be used: a file, read-only, or in use by another process."""


def check_output_folder(path: str | Path, option: str) -> Path:
    """Make sure ``path`` can be a folder this process writes into, creating it (and its parents).

    Args:
      path: the output folder (a build's ``--out``, a run's ``--workdir``).
      option: the command-line option that named it, for the message.
    Returns:
      The folder, which exists now.
    Raises:
      FolderError: ``path`` is a file, or it (or the parent it would go into) is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FolderError(f"{option} {path} is a file, not a folder: name a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FolderError(f"{option} {path} cannot be created ({error.strerror}): name a folder you can "
                          "write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise FolderError(f"{option} {path} is not writable by this user: name a folder you can write to")
    return path


def disk_error(error: OSError, path: str | Path | None = None) -> str:
    """One line for an OSError met while writing: the path, what happened, the free space there.

    Args:
      error: the error (ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, ...).
      path: the file or folder being written when ``error.filename`` does not say.
    """
    where = Path(error.filename) if getattr(error, "filename", None) else (Path(path) if path else None)
    text = error.strerror or str(error) or type(error).__name__
    free = ""
    probe = where
    while probe is not None and not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe is not None:
        try:
            free = f"; {shutil.disk_usage(probe).free / 2**30:.2f} GiB free there"
        except OSError:
            pass
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space or raise the quota",
            errno.EFBIG: "the file size limit (ulimit -f) is too low", errno.EROFS: "the file system is read-only",
            errno.EACCES: "it is not writable by this user"}.get(error.errno, "")
    return f"writing {where or 'an output file'} failed: {text}{free}" + (f" ({hint})" if hint else "")


def is_disk_error(error: BaseException) -> bool:
    """An OSError of writing that a user fixes on the machine (full disk, quota, size limit, read-only)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS,
                                                         errno.EACCES, errno.EPERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """One writer per folder: an exclusive ``flock`` on ``FOLDER/.dferjax.lock``, held until release.

    The kernel drops the lock when its process ends, however it ends (kill -9 included), so a lock
    left by a dead process is taken over, with a note naming it. The file holds its owner (pid, host,
    command, start time) so that a refused second process can name the first. On a file system without
    ``flock`` the owner's pid is checked instead (same host). ``flock`` rather than the ``filelock``
    package: that one truncates the file when it tries to lock, erasing the owner it would have to name.

    Use as a context manager; :meth:`acquire` raises FolderError naming the folder and the process.
    """

    def __init__(self, folder: str | Path, option: str):
        self.folder, self.option = Path(folder), option
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(os.pread(self._fd, 65536, 0).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "FolderLock":
        """Take the lock and write this process as its owner.

        Returns:
          self.
        Raises:
          FolderError: another process holds the lock (the message names it), or the lock file cannot
            be opened for writing.
          OSError: writing the owner record failed (a full disk: ``error.filename`` is the lock file);
            the lock is not held then.
        """
        if self._fd is not None:
            return self
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise FolderError(f"{self.option} {self.folder}: its lock file {self.path} cannot be opened for "
                              f"writing ({error.strerror}): name a folder you can write to") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            owner = self._owner()
            self._close()
            raise FolderError(self._in_use(owner)) from None
        except OSError:                         # no flock here (some network file systems)
            locked = False
        owner = self._owner()
        if owner.get("pid") and int(owner["pid"]) != os.getpid():
            same_host = owner.get("host") == socket.gethostname()
            if not locked and same_host and _alive(int(owner["pid"])):
                self._close()
                raise FolderError(self._in_use(owner))
            if locked or same_host:
                print(f"note: {self.folder}: taking over the lock left by process {owner['pid']} on "
                      f"{owner.get('host', '?')}, which is no longer running", file=sys.stderr, flush=True)
        # orig_argv: the command as typed (python -m data_prep.build ...); argv would name the module file
        command = " ".join(getattr(sys, "orig_argv", sys.argv))[:500]
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(me) + "\n").encode(), 0)
        except OSError as error:            # a full disk: say which file, and do not keep the lock
            self._close()
            error.filename = str(self.path)
            raise
        return self

    def _in_use(self, owner: dict[str, Any]) -> str:
        who = (f"process {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}: "
               f"{owner.get('command', '?')}") if owner else "another process"
        return (f"{self.option} {self.folder} is in use by {who}; wait for it to end, or use another folder "
                f"(lock file {self.path})")

    def release(self) -> None:
        """Empty the owner record and drop the lock (the file stays: removing it would race)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)          # closing drops the flock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class Interrupted(Exception):
    """Raised by :class:`StopSignals` in ``raise`` mode at the first signal; ``.signal`` is its name."""

    def __init__(self, name: str):
        super().__init__(name)
        self.signal = name


class StopSignals:
    """Turn SIGTERM and SIGINT into a clean stop; a second signal exits at once (status 128 + N).

    In the default mode the first signal only sets :attr:`received` (its name), which the job checks
    at a safe point (training: after the current step, then saves). With ``raise_first`` the first
    signal raises :class:`Interrupted` where the main thread is (the shard build discards the shard
    in progress). Handlers are installed in the main thread only, and the previous ones come back on
    exit.

    Args:
      first: what the job does now, said in one line after the signal's name.
      signals: the signals handled (default SIGTERM, SIGINT).
      raise_first: raise Interrupted at the first signal instead of only recording it.
    """

    def __init__(self, first: str, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
                 raise_first: bool = False):
        self.first, self.signals, self.raise_first = first, signals, raise_first
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            print(f"{name} again: exiting at once (status {128 + signum}); the same command resumes from the "
                  "last complete save", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received = name
        print(f"{name}: {self.first} (send it again to exit at once)", file=sys.stderr, flush=True)
        if self.raise_first:
            raise Interrupted(name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            # None: the previous handler was not installed from Python; the default is what is left.
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
