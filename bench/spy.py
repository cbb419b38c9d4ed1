"""``--profile``: py-spy attached to every Python process of the stack while the redirects run.

One ``py-spy record --format raw`` per process (sampling 100 times a second without pausing the
process); SIGINT stops each one, and py-spy writes its collapsed stacks as it exits.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType

RATE = 100
# The gateway is nginx: nothing for py-spy there.
NOT_PYTHON = {"gateway"}


def executable() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise RuntimeError("--profile needs py-spy (a dev dependency: make deps)")
    return found


class Recorders:
    """``with Recorders(...) as files:`` samples from entry to exit; ``files``: name → raw file."""

    def __init__(self, processes: list[tuple[str, int]], out_dir: Path, max_seconds: float):
        self.targets = [(name, pid) for name, pid in processes if name not in NOT_PYTHON]
        self.out_dir = out_dir
        # A backstop only: each recorder is stopped with SIGINT long before this.
        self.max_seconds = max(1, int(max_seconds))
        self.files: dict[str, Path] = {}
        self._running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def pids(self) -> list[int]:
        return [process.pid for _, process in self._running]

    def __enter__(self) -> dict[str, Path]:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        py_spy = executable()
        for name, pid in self.targets:
            output = self.out_dir / f"{name}.txt"
            log = (self.out_dir / f"{name}.log").open("wb")
            command = [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--nonblocking",
                "--duration",
                str(self.max_seconds),
                "--output",
                str(output),
            ]
            with log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self._running.append((name, process))
            self.files[name] = output
        return self.files

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for _, process in self._running:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for name, process in self._running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if not self.files[name].exists():
                del self.files[name]
                log = self.out_dir / f"{name}.log"
                print(f"py-spy wrote nothing for {name}; see {log}", file=sys.stderr)
        self._running = []
