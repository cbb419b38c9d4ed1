"""The container files, checked without a Docker engine: docker-compose.yml against the compose
specification (check-jsonschema's built-in copy), its PostgreSQL sized for eight approval workers,
the Dockerfile's shape, and every command compose and the image run being the one `make run`
runs natively under supervisord."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import ROOT, StackConfig, render_supervisord
from services.approval.config import Settings as ApprovalSettings
from services.checkout.config import Settings as CheckoutSettings
from services.ops.config import Settings as OpsSettings
from services.order.config import Settings as OrderSettings
from services.sandbox.config import Settings as SandboxSettings
from shared import metrics
from shared.settings import CommonSettings

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
OUR_SERVICES = ("sandbox", "order", "checkout", "approval", "ops", "gateway")
POOLED_ROLES: dict[str, type[CommonSettings]] = {
    "approval": ApprovalSettings,
    "order": OrderSettings,
    "checkout": CheckoutSettings,
    "sandbox": SandboxSettings,
    "ops": OpsSettings,
}
# Roles that run an outbox relay, which LISTENs on a connection of its own.
RELAYING = {"approval", "order", "checkout"}
SCALED_APPROVAL = 8
SUPERUSER_RESERVED = 3
OPERATOR_CONNECTIONS = 10


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def stages() -> list[tuple[str, list[str]]]:
    """(stage name, its instructions with continuation lines joined), in order."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if match := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE):
            found.append((match.group(1), []))
        elif line and not line.startswith("#") and found:
            found[-1][1].append(line)
    return found


def stage(name: str) -> list[str]:
    return dict(stages())[name]


def native_commands(tmp_path: Path) -> dict[str, str]:
    """supervisord's program commands, with this interpreter spelled ``python`` as in images."""
    config = StackConfig(tmp_path, "postgresql://db/payments", "amqp://broker/")
    parser = configparser.RawConfigParser()
    parser.read_string(render_supervisord(config))
    programs = (s for s in parser.sections() if s.startswith("program:"))
    return {
        section.removeprefix("program:"): parser[section]["command"].replace(
            sys.executable, "python"
        )
        for section in programs
    }


def test_docker_compose_yml_follows_the_compose_specification() -> None:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(COMPOSE)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_each_role_with_the_command_make_run_runs(tmp_path: Path) -> None:
    native = native_commands(tmp_path)
    services = compose()["services"]

    for name in OUR_SERVICES:
        assert " ".join(services[name]["command"]) == native[name], name


def test_the_image_runs_a_command_make_run_runs(tmp_path: Path) -> None:
    native = set(native_commands(tmp_path).values())

    for name in ("app", "gateway"):
        (cmd,) = [i for i in stage(name) if i.startswith("CMD")]
        assert " ".join(re.findall(r'"([^"]+)"', cmd)) in native, name


def test_postgresql_max_connections_fits_eight_approval_workers_with_every_pool() -> None:
    services = compose()["services"]
    needed = SUPERUSER_RESERVED + OPERATOR_CONNECTIONS
    for role, settings in POOLED_ROLES.items():
        replicas = SCALED_APPROVAL if role == "approval" else 1
        pool = _pool_max(services[role], settings)
        needed += replicas * (pool + (role in RELAYING) + 1)  # + 1: its migration at start

    command = " ".join(services["postgres"]["command"])
    (granted,) = re.findall(r"max_connections=(\d+)", command)
    assert int(granted) >= needed


def _pool_max(service: dict[str, Any], settings: type[CommonSettings]) -> int:
    environment = service.get("environment") or {}
    default = settings.model_fields["db_pool_max"].default
    return int(environment.get("DB_POOL_MAX", default))


def test_the_dockerfile_builds_in_stages_with_uv_from_its_official_image() -> None:
    names = [name for name, _ in stages()]
    text = DOCKERFILE.read_text()

    assert names[-1] == "app", "the default target is the Python roles' image"
    assert {"uv", "build", "gateway", "app"} <= set(names)
    assert re.search(r"^FROM ghcr\.io/astral-sh/uv:[0-9.]+ AS uv$", text, re.MULTILINE)
    assert any(i.startswith("COPY --from=uv") for i in stage("build"))
    assert not re.search(r"pip3? install[^\n]*\buv\b", text)


@pytest.mark.parametrize("name", ["app", "gateway"])
def test_each_final_image_runs_as_an_unprivileged_user(name: str) -> None:
    users = [i.split()[1] for i in stage(name) if i.startswith("USER ")]

    assert users, f"{name} has no USER"
    assert users[-1].split(":")[0] not in ("0", "root")


@pytest.mark.parametrize("name", ["app", "gateway"])
def test_each_final_image_has_a_healthcheck(name: str) -> None:
    assert any(i.startswith("HEALTHCHECK") and " CMD " in i for i in stage(name))


@pytest.mark.parametrize("name", ["app", "gateway"])
def test_each_final_image_writes_only_under_tmp(name: str) -> None:
    instructions = " ".join(stage(name))
    places = re.findall(r"(?:HEALTH_DIR|HEARTBEAT_FILE|RUN_DIR)=(\S+)", instructions)

    assert "PYTHONDONTWRITEBYTECODE=1" in instructions
    assert places
    assert all(place.startswith("/tmp/") for place in places)


def test_compose_runs_our_containers_on_a_read_only_root_with_tmp_writable() -> None:
    services = compose()["services"]

    for name in OUR_SERVICES:
        assert services[name]["read_only"] is True, name
        assert "/tmp" in services[name]["tmpfs"], name


def test_compose_roles_serve_metrics_on_make_runs_ports_and_publish_none() -> None:
    services = compose()["services"]
    for role in ("order", "checkout", "sandbox", "approval"):
        env = services[role]["environment"]
        published = {str(p).rsplit(":", 1)[-1] for p in services[role].get("ports", [])}
        assert env["METRICS_PORT"] == str(metrics.DEFAULT_PORTS[role]), role
        assert env["METRICS_HOST"] == "0.0.0.0", role
        assert env["METRICS_PORT"] not in published, role


def test_prometheus_and_grafana_run_only_under_the_observability_profile() -> None:
    services = compose()["services"]
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    assert all(services[name]["profiles"] == ["observability"] for name in profiled)


def test_compose_prometheus_scrapes_every_role_on_its_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text())
    static = [
        target
        for job in config["scrape_configs"]
        for group in job.get("static_configs", [])
        for target in group["targets"]
    ]
    found = [
        f"{name}:{sd['port']}"
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    ]
    expected = {f"{role}:{port}" for role, port in metrics.DEFAULT_PORTS.items()}
    assert set(static + found) == expected
