"""Child processes that can always be cleaned up: each starts a session of its own.

A terminal's Ctrl-C goes to the foreground process group; servers and supervisord started with
:func:`spawn` are outside it, so only their owner decides when and how they stop (supervisord
stops its programs, PostgreSQL shuts down fast, RabbitMQ flushes its queues). :func:`end` asks
politely first, then kills whatever is still in the session: a process that supervisord or a
server left behind shares the session id of the one we started, even after that one is gone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROC = Path("/proc")


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log: Path,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as the leader of a new session, its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(  # noqa: S603
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **identity(user),
        )


def identity(user: str | None) -> dict[str, Any]:
    """Popen arguments that run a child as ``user`` with that user's own groups, not ours."""
    if user is None:
        return {}
    account = pwd.getpwnam(user)
    groups = os.getgrouplist(user, account.pw_gid)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}


def end(process: subprocess.Popen[bytes], *signals: tuple[int, float]) -> None:
    """Send each ``(signal, seconds to wait)`` in turn until ``process`` exits, then kill what
    is left of its session (the leader too, if no signal made it exit) and reap it."""
    for signum, patience in signals:
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(patience)
    kill_session(process.pid)
    process.wait()


def kill_session(sid: int, grace: float = 5.0) -> None:
    """SIGTERM every process of session ``sid``, SIGKILL those still there after ``grace``."""
    if not PROC.is_dir():  # no /proc (not Linux): the leader's process group is the best guess
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        if _gone(members, grace):
            return
    raise RuntimeError(f"processes of session {sid} survived SIGKILL: {session_members(sid)}")


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is ``sid``."""
    return [pid for pid, (state, session) in _stats().items() if session == sid and state != "Z"]


def alive(pid: int) -> bool:
    state = _stat(PROC / str(pid))
    return state is not None and state[0] != "Z"


def _gone(pids: list[int], within: float) -> bool:
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stats() -> dict[int, tuple[str, int]]:
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (state := _stat(entry)) is not None:
            found[int(entry.name)] = state
    return found


def _stat(entry: Path) -> tuple[str, int] | None:
    """(state, session id) from /proc/<pid>/stat; None once the process is gone."""
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[3])
