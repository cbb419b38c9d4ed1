"""gateway/render.py: the template rendered from the environment, nginx's own variables kept."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import render

ROOT = Path(render.__file__).resolve().parent.parent


def test_the_cli_renders_every_variable_and_prepares_the_run_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    environment = {**os.environ, "RUN_DIR": str(run_dir), "GATEWAY_PORT": "18080"}
    out = tmp_path / "conf" / "nginx.conf"

    subprocess.run(
        [sys.executable, "-m", "gateway.render", str(out)], cwd=ROOT, env=environment, check=True
    )

    text = out.read_text()
    assert "listen 18080;" in text
    assert f"pid {run_dir}/nginx.pid;" in text
    assert not re.search(r"\$\{[A-Z_]+\}", text), "a variable was left unrendered"
    assert "$remote_addr" in text
    assert "$request_id" in text
    assert all((run_dir / sub).is_dir() for sub in render.RUN_SUBDIRS)


def test_defaults_point_at_the_local_services() -> None:
    values = render.settings({})

    assert values["ORDER_UPSTREAM"] == "127.0.0.1:8001"
    assert values["CHECKOUT_UPSTREAM"] == "127.0.0.1:8002"
    assert Path(values["STOREFRONT_ROOT"], "index.html").is_file()


def test_only_the_known_variables_are_substituted() -> None:
    text = render.render({**render.settings({}), "uri": "HIJACKED"})

    assert "HIJACKED" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOSS_CLIENT_KEY", 'x"; alert(1); "'),
        ("GATEWAY_TRUSTED_PROXY", "0.0.0.0/0; allow all"),
        ("PAYMENTS_MODE", "production"),
        ("SANDBOX_PUBLIC_URL", "http://evil.example/'; script-src *"),
        ("RUN_DIR", "relative/path"),
        ("GATEWAY_RATE_LIMIT", "0"),
    ],
)
def test_a_value_that_would_break_the_config_is_refused(name: str, value: str) -> None:
    with pytest.raises(render.InvalidSetting):
        render.settings({name: value})


LIVE = {
    "PAYMENTS_MODE": "live",
    "TOSS_CLIENT_KEY": "live_ck_0123456789abcdef",
    "SANDBOX_PUBLIC_URL": "https://js.tosspayments.com",
}


def test_live_mode_renders_with_a_live_key_and_the_real_sdk() -> None:
    assert render.settings(LIVE)["PAYMENTS_MODE"] == "live"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOSS_CLIENT_KEY", "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq"),
        ("SANDBOX_PUBLIC_URL", "http://localhost:8090"),
    ],
)
def test_live_mode_refuses_a_setting_and_names_it(name: str, value: str) -> None:
    with pytest.raises(render.InvalidSetting, match=name):
        render.settings({**LIVE, name: value})


def test_sandbox_mode_refuses_a_live_client_key() -> None:
    with pytest.raises(render.InvalidSetting, match="TOSS_CLIENT_KEY is a live key"):
        render.settings({"TOSS_CLIENT_KEY": "live_ck_0123456789abcdef"})


def test_the_cli_refuses_live_mode_with_a_test_key_in_one_line(tmp_path: Path) -> None:
    environment = {**os.environ, **LIVE, "TOSS_CLIENT_KEY": "test_ck_x", "RUN_DIR": str(tmp_path)}

    done = subprocess.run(
        [sys.executable, "-m", "gateway.render", str(tmp_path / "nginx.conf")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert "TOSS_CLIENT_KEY" in line
    assert "live" in line
