"""claims.py: one process per output; live claims respected, stale ones (dead holder, no heartbeat) taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lowlight_cli import claims
from lowlight_cli.errors import OutputError


def _hold(output, *, host=None, pid=None, age=0.0):
    """A claim file as another process would leave it; ``age`` seconds since its last heartbeat."""
    lock = claims.lock_path(output)
    record = {"host": host or socket.gethostname(), "pid": pid or os.getppid(), "time": time.time() - age, "token": "other"}
    lock.write_text(json.dumps(record))
    os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_claim_is_a_hidden_file_removed_on_release(tmp_path):
    output = tmp_path / "a.png"
    with claims.acquire(output) as claim:
        assert claim.lock == tmp_path / ".a.png.lock"
        record = json.loads(claim.lock.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(claims.Busy):  # the same output twice, even from this process
            claims.acquire(output)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("holder", [
    {},  # this host, a live process
    {"host": "other-machine", "age": claims.STALE_AFTER / 2},  # another host, heartbeat recent
])
def test_a_live_claim_is_respected(tmp_path, holder):
    lock = _hold(tmp_path / "a.png", **holder)
    before = lock.read_text()
    with pytest.raises(claims.Busy) as busy:
        claims.acquire(tmp_path / "a.png")
    assert "pid" in busy.value.holder and lock.read_text() == before


@pytest.mark.parametrize("holder", [
    {"pid": "dead"},  # this host, the process is gone
    {"host": "other-machine", "age": claims.STALE_AFTER + 5},  # no heartbeat for too long
    {"age": claims.STALE_AFTER + 5},  # this host, a pid alive again but reused by another program
])
def test_a_stale_claim_is_taken_over(tmp_path, holder):
    if holder.get("pid") == "dead":
        holder = {"pid": _dead_pid()}
    _hold(tmp_path / "a.png", **holder)
    with claims.acquire(tmp_path / "a.png") as claim:
        assert json.loads(claim.lock.read_text())["pid"] == os.getpid()
    assert os.listdir(tmp_path) == []


def test_a_claim_being_written_counts_as_live(tmp_path):
    claims.lock_path(tmp_path / "a.png").write_text("")  # created, its record not written yet
    with pytest.raises(claims.Busy):
        claims.acquire(tmp_path / "a.png")


def test_release_leaves_a_claim_that_another_process_took_over(tmp_path):
    claim = claims.acquire(tmp_path / "a.png")
    lock = _hold(tmp_path / "a.png", host="other-machine")  # replaced ours (we were judged stale)
    claim.release()
    assert json.loads(lock.read_text())["host"] == "other-machine"


def test_the_heartbeat_keeps_a_long_job_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT", 0.05)
    with claims.acquire(tmp_path / "a.png") as claim:
        os.utime(claim.lock, (0, 0))
        time.sleep(0.5)
        assert time.time() - claim.lock.stat().st_mtime < 5


def test_an_unwritable_folder_is_an_output_error(tmp_path, read_only):
    read_only(tmp_path)
    with pytest.raises(OutputError, match="Read-only file system"):
        claims.acquire(tmp_path / "a.png")
