"""Per-output claims, so that several processes on one folder (one machine, or many on a shared file
system) share the work instead of each doing all of it.

Before enhancing ``out/a.png`` a process creates ``out/.a.png.lock`` with ``O_CREAT | O_EXCL`` (atomic,
also on NFS v3+), holding its host, pid, start time and a random token, and removes it after the output
is in place. A second process finds the file and skips that output. While the work runs a thread
touches the file every :data:`HEARTBEAT` seconds, so a claim is stale, and taken over, when its holder
is dead (same host, pid gone) or has not touched it for :data:`STALE_AFTER` seconds (any host: a
crashed machine, a killed process whose pid was reused). The worst outcome of a race is that two
processes enhance the same image; the atomic write keeps the output whole either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from .errors import OutputError

HEARTBEAT = 60.0  # seconds between touches of a held claim
STALE_AFTER = 600.0  # seconds without a touch after which a claim counts as abandoned


class Busy(Exception):
    """Another live process holds the claim; ``holder`` says which (``host pid N``)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def lock_path(output: Path) -> Path:
    """The claim file of ``output``: hidden beside it, so folder walks and ``ls`` pass it by."""
    return output.with_name(f".{output.name}.lock")


class Claim:
    """A held claim: refreshed by a heartbeat thread until :meth:`release` (or the ``with`` block ends)."""

    def __init__(self, lock: Path, token: str) -> None:
        self.lock, self.token = lock, token
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            with contextlib.suppress(OSError):
                os.utime(self.lock)

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file, if it is still ours (a takeover may have replaced it)."""
        self._stop.set()
        self._beat.join()
        if (_read(self.lock) or {}).get("token") == self.token:
            with contextlib.suppress(OSError):
                self.lock.unlink()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(output: Path) -> Claim:
    """Claim ``output`` for this process. Raises :class:`Busy` when a live process holds it, OutputError
    when the claim file cannot be created (the folder is not writable)."""
    lock = lock_path(output)
    for _ in range(3):  # a stale claim removed, then a fresh try; a third for a lost race
        token = secrets.token_hex(8)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            held = _read(lock)
            try:
                stale = _is_stale(lock, held)
            except FileNotFoundError:  # released meanwhile: try again
                continue
            if not stale:
                raise Busy(_describe(held)) from None
            _take_over(lock, held)
            continue
        except OSError as e:
            raise OutputError(f"cannot write {output}: {e.strerror or e}", "check that the folder is writable") from e
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "token": token}, f)
        return Claim(lock, token)
    raise Busy("another process")


def _read(lock: Path) -> dict | None:
    """The claim's record; None when it cannot be read or is still being written (empty, partial)."""
    try:
        record = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _is_stale(lock: Path, held: dict | None) -> bool:
    if time.time() - lock.stat().st_mtime > STALE_AFTER:
        return True
    if held is None:  # being written right now
        return False
    return held.get("host") == socket.gethostname() and not _alive(held.get("pid"))


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _take_over(lock: Path, stale: dict | None) -> None:
    """Remove the claim judged stale (whose record is ``stale``). Renamed away first, so that of two
    processes taking it over only one removes it; if what was renamed is no longer that claim (another
    process replaced it in between), it is put back and that process keeps it."""
    private = lock.with_name(f"{lock.name}.stale-{secrets.token_hex(4)}")
    try:
        os.rename(lock, private)
    except FileNotFoundError:
        return
    if _read(private) != stale:
        with contextlib.suppress(OSError):
            os.link(private, lock)
    with contextlib.suppress(OSError):
        private.unlink()


def _describe(held: dict | None) -> str:
    if not held:
        return "another process"
    started = time.strftime("%H:%M:%S", time.localtime(held.get("time", 0)))
    return f"{held.get('host', '?')} pid {held.get('pid', '?')} since {started}"
