"""Render ``nginx.conf.template`` from the environment: ``python -m gateway.render OUT_PATH``.

Only the variables in :data:`DEFAULTS` are substituted (``string.Template.safe_substitute``), so
nginx's own ``$variables`` pass through untouched. Each takes its value from the environment when
set, else the default. The run directory (pid file, temp files, access log) is created.
Then: ``nginx -c OUT_PATH -p RUN_DIR -e stderr`` runs the gateway in the foreground.
``PAYMENTS_MODE=live`` refuses a test client key and any SDK but the real one
(:mod:`shared.posture`).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from string import Template

from shared import posture

GATEWAY_DIR = Path(__file__).resolve().parent
TEMPLATE = GATEWAY_DIR / "nginx.conf.template"

DEFAULTS: dict[str, str] = {
    "GATEWAY_PORT": "8080",
    "ORDER_UPSTREAM": "127.0.0.1:8001",
    "CHECKOUT_UPSTREAM": "127.0.0.1:8002",
    "OPS_UPSTREAM": "127.0.0.1:8003",
    "STOREFRONT_ROOT": str(GATEWAY_DIR / "storefront"),
    "RUN_DIR": str(GATEWAY_DIR.parent / ".run" / "gateway"),
    "SANDBOX_PUBLIC_URL": "http://localhost:8090",
    "TOSS_CLIENT_KEY": "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq",
    "PAYMENTS_MODE": "sandbox",
    # Per client address: a buyer's page loads and result polling fit well inside these.
    "GATEWAY_RATE_LIMIT": "10",
    "GATEWAY_RATE_BURST": "20",
    "GATEWAY_CONN_LIMIT": "10",
    "GATEWAY_TRUSTED_PROXY": "unix:",
}

# What each value may look like: they land inside nginx directives and a quoted JS string.
_SHAPES: dict[str, re.Pattern[str]] = {
    "GATEWAY_PORT": re.compile(r"([0-9.]+:|\[[0-9a-fA-F:]+\]:)?[0-9]{1,5}"),
    "ORDER_UPSTREAM": re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}"),
    "CHECKOUT_UPSTREAM": re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}"),
    "OPS_UPSTREAM": re.compile(r"[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}"),
    "STOREFRONT_ROOT": re.compile(r"/[A-Za-z0-9._/\-]*"),
    "RUN_DIR": re.compile(r"/[A-Za-z0-9._/\-]*"),
    "SANDBOX_PUBLIC_URL": re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+"),
    "TOSS_CLIENT_KEY": re.compile(r"[A-Za-z0-9_\-]{1,200}"),
    "PAYMENTS_MODE": re.compile(r"sandbox|live"),
    "GATEWAY_RATE_LIMIT": re.compile(r"[1-9][0-9]{0,6}"),
    "GATEWAY_RATE_BURST": re.compile(r"[0-9]{1,7}"),
    "GATEWAY_CONN_LIMIT": re.compile(r"[1-9][0-9]{0,4}"),
    "GATEWAY_TRUSTED_PROXY": re.compile(r"unix:|[0-9a-fA-F.:]+(/[0-9]{1,3})?"),
}

RUN_SUBDIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


class InvalidSetting(ValueError):
    """A variable's value would break the rendered configuration."""


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Every variable's value: the environment's when set and non-empty, else the default."""
    values = {name: environ.get(name) or default for name, default in DEFAULTS.items()}
    values["SANDBOX_PUBLIC_URL"] = values["SANDBOX_PUBLIC_URL"].rstrip("/")
    for name, value in values.items():
        if not _SHAPES[name].fullmatch(value):
            raise InvalidSetting(f"{name}={value!r} is not a valid value")
    mode = posture.PaymentsMode(values["PAYMENTS_MODE"])
    found = posture.problems(
        posture.client_key_problem(mode, values["TOSS_CLIENT_KEY"]),
        posture.sdk_origin_problem(mode, values["SANDBOX_PUBLIC_URL"]),
    )
    if found:
        raise InvalidSetting(f"refusing to start in {mode} mode: {'; '.join(found)}")
    return values


def render(values: Mapping[str, str]) -> str:
    """The template with the known variables substituted; anything else in ``values`` ignored."""
    known = {name: values[name] for name in DEFAULTS}
    return Template(TEMPLATE.read_text()).safe_substitute(known)


def prepare_run_dir(run_dir: Path) -> None:
    """The run directory and nginx's temp folders (nginx hands these to its workers' user)."""
    for sub in RUN_SUBDIRS:
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    # Workers may run as another user (when the master is root): they must reach the temp folders.
    run_dir.chmod(0o755)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gateway.render OUT_PATH", file=sys.stderr)
        return 2
    try:
        values = settings(os.environ)
    except InvalidSetting as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(values))
    prepare_run_dir(Path(values["RUN_DIR"]))
    print(f"nginx -c {out.resolve()} -p {values['RUN_DIR']} -e stderr")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
