"""Finding the processes a test started, to prove that none outlived it (and to end any that did).

A process counts as the test's when its environment holds the test's tag (every child inherits
it: supervisord's programs, nginx, the Erlang VM, epmd) or when its working directory or command
line lies inside the test's directory (PostgreSQL rewrites the memory /proc shows as its
environment, but its processes work inside their data directory).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")
TAG_VARIABLE = "PAYMENTS_TEST_TAG"


def processes_of(directory: Path | str, tag: str | None = None) -> dict[int, str]:
    """pid → command line of every live process that is the test's (see the module docstring)."""
    inside = str(Path(directory).resolve())
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        command = _read(entry / "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        if not command or _state(entry) == "Z":
            continue
        tagged = tag is not None and f"{TAG_VARIABLE}={tag}".encode() in _read(entry / "environ")
        if tagged or inside in command or _cwd(entry).startswith(inside):
            found[int(entry.name)] = command
    return found


def wait_until_none(directory: Path | str, tag: str | None = None, within: float = 5) -> None:
    """Returns once no process of the test is left; fails the test with their list otherwise."""
    deadline = time.monotonic() + within
    while left := processes_of(directory, tag):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes left behind: {left}")
        time.sleep(0.05)


def kill_all(directory: Path | str, tag: str | None = None) -> None:
    """SIGKILL whatever of the test is still there (a finalizer's last resort)."""
    for pid in processes_of(directory, tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    members = []
    for entry in PROC.iterdir():
        fields = _stat_fields(entry) if entry.name.isdigit() else []
        if fields[2:3] == [str(pgid)] and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _cwd(entry: Path) -> str:
    try:
        return os.readlink(entry / "cwd")
    except OSError:
        return ""


def _stat_fields(entry: Path) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, session, …"""
    text = _read(entry / "stat").decode(errors="replace")
    return text.rsplit(")", 1)[1].split() if ")" in text else []


def _state(entry: Path) -> str:
    fields = _stat_fields(entry)
    return fields[0] if fields else "Z"
