"""``python -m gateway``: render nginx's configuration from the environment into ``RUN_DIR``, then
become nginx in the foreground. The one gateway command: supervisord (``make run``), compose and
Kubernetes all run it, so the configuration is rendered and checked by the same code everywhere.
``python -m gateway healthcheck`` asks the running gateway's ``/healthz``.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path
from typing import NoReturn

from gateway import render

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx")


def nginx_binary() -> str:
    for candidate in NGINX_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light or nginx)")


def command(values: dict[str, str]) -> list[str]:
    run_dir = values["RUN_DIR"]
    return [nginx_binary(), "-c", f"{run_dir}/nginx.conf", "-p", run_dir, "-e", "stderr"]


def serve() -> int:
    try:
        values = render.settings(os.environ)
    except render.InvalidSetting as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(values["RUN_DIR"])
    render.prepare_run_dir(run_dir)
    (run_dir / "nginx.conf").write_text(render.render(values))
    return _become(command(values))


def _become(argv: list[str]) -> NoReturn:
    # nginx takes this process over: its signals and its exit status are the gateway's.
    os.execv(argv[0], argv)  # noqa: S606


def healthcheck() -> int:
    port = render.settings(os.environ)["GATEWAY_PORT"].rsplit(":", 1)[-1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(healthcheck() if sys.argv[1:] == ["healthcheck"] else serve())
