"""``python -m shared.healthcheck [live | ready]``: the image's HEALTHCHECK, whatever its role.

An HTTP role (``HEALTH_PORT`` set) is asked ``/livez`` or ``/readyz``; a worker's heartbeat file
is read (``HEALTH_DIR/<HEALTH_ROLE>.live|ready``, touched by ``shared.runner``). Without an
argument: ready. Exit 0 when healthy, 1 when not, 2 on bad usage.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PATHS = {"live": "/livez", "ready": "/readyz"}
# A heartbeat is touched every 2 s (shared.runner): this much silence means a stuck loop.
HEALTH_MAX_AGE_SECONDS = 15.0


def fresh(path: Path, max_age: float = HEALTH_MAX_AGE_SECONDS) -> bool:
    """Whether ``path`` was touched within ``max_age`` seconds (a heartbeat file)."""
    try:
        return time.time() - path.stat().st_mtime < max_age
    except OSError:
        return False


def health_file(directory: Path, role: str, kind: str) -> Path:
    return directory / f"{role}.{kind}"


def http_answers(port: str, kind: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATHS[kind]}", timeout=3) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def heartbeat_fresh(kind: str) -> bool:
    directory = Path(
        os.environ.get("HEALTH_DIR") or Path(tempfile.gettempdir()) / "payments-health"
    )
    role = os.environ.get("HEALTH_ROLE") or "approval"
    return fresh(health_file(directory, role, kind))


def main(argv: list[str]) -> int:
    kind = argv[0] if argv else "ready"
    if kind not in PATHS or len(argv) > 1:
        print("usage: python -m shared.healthcheck [live | ready]", file=sys.stderr)
        return 2
    port = os.environ.get("HEALTH_PORT")
    healthy = http_answers(port, kind) if port else heartbeat_fresh(kind)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
