"""glibc told to keep freed memory: large buffers reused from the heap instead of a fresh ``mmap`` each.

By default glibc serves every block over 128 KiB (its threshold then grows with what is freed, up to
32 MiB) by ``mmap`` and gives it back by ``munmap`` when freed. A network's feature maps are such
blocks, allocated and freed once per layer, so every layer pays for fresh zeroed pages (minor page
faults) and the kernel's time rivals the arithmetic: system time was 1.0-1.6x user time for MIRNet
and NEID (bench/bench_speed.py, bench/bench_train.py). Raising the mmap threshold to its maximum and
never trimming the heap keeps freed blocks for the next layer; the peak memory is the same (the same
tensors are alive at once), the pages stay mapped after a peak. Blocks over 32 MiB still come by mmap.

A no-op where the C library is not glibc (musl, macOS, Windows).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform
from collections.abc import Iterator

# mallopt parameters from glibc's malloc.h; the largest mmap threshold on 64-bit systems; the defaults.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 2**20
DEFAULT_THRESHOLD = 128 * 2**10
NEVER_TRIM = 2**31 - 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def available() -> bool:
    """Whether this process's C library is glibc, whose allocator these settings tune."""
    return _libc() is not None


def keep_freed_memory() -> bool:
    """Set the process's allocator to keep freed memory (module docstring); returns whether it could."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def restore_defaults() -> None:
    """glibc's default thresholds again, and the kept memory returned to the system."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD)
        libc.malloc_trim(0)


@contextlib.contextmanager
def kept_freed_memory() -> Iterator[bool]:
    """:func:`keep_freed_memory` inside, the defaults after (benches compare modes in one process)."""
    try:
        yield keep_freed_memory()
    finally:
        restore_defaults()
