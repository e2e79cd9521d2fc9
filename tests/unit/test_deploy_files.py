"""The production-stack files: docker-compose.yml, deploy/Dockerfile, deploy/k8s, the probes.

The compose file is checked twice: by the Compose CLI itself (``docker compose config``, or the
standalone ``docker-compose`` that the ``dev`` extra installs) where one exists, and always by
a structural check in Python that needs nothing but PyYAML.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.cli import DEFAULT_PORTS, TOPICS
from services.credit.settings import INBOUND_TOPICS as CREDIT_TOPICS
from services.dunning.settings import INBOUND_TOPICS as DUNNING_TOPICS
from services.ledger.settings import INBOUND_TOPICS as LEDGER_TOPICS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
K8S = ROOT / "deploy" / "k8s"
TOPICS_SCRIPT = ROOT / "deploy" / "kafka" / "create-topics.sh"
POSTGRES_INIT = ROOT / "deploy" / "postgres" / "init-databases.sql"
SERVICES = tuple(DEFAULT_PORTS)
INBOUND_TOPICS = ("ar.invoices", "ar.payments", "ar.disputes", "ar.customers", "ar.ratings")  # from outside
CONSUMED_TOPICS = {
    "ledger": LEDGER_TOPICS,
    "dunning": DUNNING_TOPICS,
    "credit": CREDIT_TOPICS,
}
# Secrets the stack must refuse to start without.
REQUIRED_VARIABLES = ("POSTGRES_PASSWORD", "RECEIVABLES_API_TOKENS_FILE", "RECEIVABLES_CONSOLE_SECRET",
                      "RECEIVABLES_CONSOLE_TOKEN")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _manifests(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if doc]


def _topic_table() -> dict[str, tuple[int, int]]:
    """{topic: (partitions, retention_ms)} as deploy/kafka/create-topics.sh creates them."""
    text = TOPICS_SCRIPT.read_text(encoding="utf-8")
    constants = dict(re.findall(r"^([A-Z_0-9]+)=(-?\d+)$", text, re.MULTILINE))
    table = {}
    for topic, partitions, retention in re.findall(r"^(ar\.[a-z.]+)\s+(\d+)\s+\$?(\S+)$", text, re.MULTILINE):
        table[topic] = (int(partitions), int(constants.get(retention, retention)))
    return table


# --- the Compose CLI ---------------------------------------------------------------------------


def _compose_cli() -> list[str] | None:
    """``docker compose`` if the plugin exists, else a standalone ``docker-compose``, else None."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    beside_python = Path(sys.executable).parent / "docker-compose"
    standalone = shutil.which("docker-compose") or (str(beside_python) if beside_python.exists() else None)
    return [standalone] if standalone else None


@pytest.fixture(scope="module")
def compose_cli() -> list[str]:
    cli = _compose_cli()
    if cli is None:
        message = (
            "\n" + "!" * 78
            + "\n  NO COMPOSE CLI: neither `docker compose` nor `docker-compose` is installed, so\n"
            "  `docker compose config` was NOT run on docker-compose.yml (the structural checks\n"
            "  below still ran). `pip install -e '.[dev]'` brings a standalone docker-compose.\n" + "!" * 78
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(reason="no compose CLI, `docker compose config` not run:" + message)
    return cli


def _compose_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in REQUIRED_VARIABLES and not key.startswith("COMPOSE_")}
    env.update(values)
    return env


def test_compose_cli_accepts_the_file_with_the_required_variables(
    compose_cli: list[str], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"a-token": ["ledger:read"]}', encoding="utf-8")
    env = _compose_env(POSTGRES_PASSWORD="0123abcd", RECEIVABLES_API_TOKENS_FILE=str(tokens),
                       RECEIVABLES_CONSOLE_SECRET="s" * 32, RECEIVABLES_CONSOLE_TOKEN="a-token")
    result = subprocess.run([*compose_cli, "-f", str(COMPOSE_FILE), "config", "-q"],
                            capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED_VARIABLES)
def test_compose_cli_refuses_to_start_without_a_required_secret(
    compose_cli: list[str], tmp_path: Path, missing: str
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text("{}", encoding="utf-8")
    values = {"POSTGRES_PASSWORD": "0123abcd", "RECEIVABLES_API_TOKENS_FILE": str(tokens),
              "RECEIVABLES_CONSOLE_SECRET": "s" * 32, "RECEIVABLES_CONSOLE_TOKEN": "a-token"}
    del values[missing]
    result = subprocess.run([*compose_cli, "-f", str(COMPOSE_FILE), "config", "-q"],
                            capture_output=True, text=True, env=_compose_env(**values),
                            cwd=ROOT, timeout=60)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr


# --- the compose file, structurally (never skipped) ---------------------------------------------


def test_compose_runs_the_three_services_from_the_image_on_their_ports() -> None:
    services = _compose()["services"]
    for name, port in DEFAULT_PORTS.items():
        service = services[name]
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert service["command"] == ["serve", name, "--port", str(port)]
        assert any(str(mapping).endswith(f":{port}") for mapping in service["ports"]), service["ports"]
        environment = service["environment"]
        assert environment["RECEIVABLES_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert environment["RECEIVABLES_API_TOKENS_FILE"] == "/run/secrets/api_tokens"
        assert "api_tokens" in service["secrets"]
        # Each service its own database, named after it (deploy/postgres/init-databases.sql).
        url = environment[f"RECEIVABLES_{name.upper()}_DATABASE_URL"]
        assert url.startswith("postgresql+psycopg://") and url.endswith(f"@postgres:5432/{name}")
        assert service["read_only"] is True


def test_compose_dependencies_exist_and_wait_for_health_or_completion() -> None:
    services = _compose()["services"]
    one_shot = {name for name, service in services.items() if str(service.get("restart")) == "no"}
    assert one_shot == {"topics"}
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            expected = "service_completed_successfully" if target in one_shot else "service_healthy"
            assert rule == {"condition": expected}, f"{name} -> {target}: {rule}"
    for name in SERVICES:
        assert set(services[name]["depends_on"]) == {"kafka", "postgres", "topics"}


def test_every_long_running_compose_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        if str(service.get("restart")) == "no":
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name in SERVICES:
        # The probe asks /health/ready, which the service answers only after its migrations.
        assert services[name]["healthcheck"]["test"] == [
            "CMD", "python", "/usr/local/lib/receivables/healthcheck.py"]
        assert "/health/ready" in (ROOT / "deploy" / "healthcheck.py").read_text(encoding="utf-8")


def test_compose_requires_its_secrets_and_interpolates_nothing_else_silently() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    references = re.findall(r"(?<!\$)\$\{([^}]*)\}", text)
    assert references, "expected ${VAR:?message} references"
    named = set()
    for reference in references:
        name, _, rest = reference.partition(":")
        named.add(name)
        assert name in REQUIRED_VARIABLES, f"unexpected variable {name}"
        assert rest.startswith("?") and len(rest) > 1, f"${{{reference}}} must be ${{{name}:?message}}"
    assert named == set(REQUIRED_VARIABLES)
    # No bare $VAR either (a literal dollar is written $$).
    assert not re.search(r"(?<!\$)\$[A-Za-z_]", text)
    assert _compose()["secrets"]["api_tokens"]["file"].startswith("${RECEIVABLES_API_TOKENS_FILE:?")


def test_compose_images_are_pinned() -> None:
    for name, service in _compose()["services"].items():
        image = service.get("image")
        assert image, f"{name} names no image"
        repository, _, tag = image.partition("@")[0].rpartition(":")
        assert repository and tag and tag != "latest" and re.match(r"\d", tag), f"{name}: {image} not pinned"
    services = _compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["topics"]["image"] == services["kafka"]["image"]
    assert services["postgres"]["image"].startswith("postgres:")


def test_compose_kafka_runs_kraft_and_creates_no_topic_by_itself() -> None:
    environment = _compose()["services"]["kafka"]["environment"]
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in environment["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"


def test_compose_postgres_creates_a_database_per_service() -> None:
    postgres = _compose()["services"]["postgres"]
    assert any(volume.startswith("./deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/")
               for volume in postgres["volumes"])
    created = re.findall(r"CREATE DATABASE (\w+);", POSTGRES_INIT.read_text(encoding="utf-8"))
    assert sorted(created) == sorted(SERVICES)


# --- the topics ---------------------------------------------------------------------------------


def test_the_topic_script_creates_every_topic_the_services_use() -> None:
    table = _topic_table()
    assert set(table) == set(TOPICS)
    for topic in (*INBOUND_TOPICS, "ar.ledger.events"):
        partitions, retention = table[topic]
        # Long enough to replay from any position a service holds: kept until deleted by hand.
        assert retention == -1, topic
        assert partitions >= 12, topic
    assert all(retention == -1 or retention >= 7 * 86_400_000 for _, retention in table.values())


def test_the_topic_script_runs_under_a_posix_shell(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    fake = tmp_path / "kafka-topics.sh"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n', encoding="utf-8")
    fake.chmod(0o755)
    env = dict(os.environ, KAFKA_TOPICS=str(fake), BOOTSTRAP="kafka:9092",
               REPLICATION_FACTOR="3", MIN_INSYNC_REPLICAS="2")
    subprocess.run(["sh", str(TOPICS_SCRIPT)], env=env, check=True, timeout=30)
    creates = [line.split() for line in calls.read_text().splitlines() if "--create" in line]
    assert len(creates) == len(TOPICS)
    for args in creates:
        topic = args[args.index("--topic") + 1]
        assert args[args.index("--partitions") + 1] == str(_topic_table()[topic][0])
        assert args[args.index("--replication-factor") + 1] == "3"
        assert "min.insync.replicas=2" in args and "cleanup.policy=delete" in args


# --- the Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_pinned_unprivileged_and_healthchecked() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and not users[-1].startswith(("root", "0"))
    assert re.search(r"^HEALTHCHECK .*\n?.*healthcheck\.py", text, re.MULTILINE)
    assert "--no-cache-dir" in text
    assert re.search(r'^ENTRYPOINT \["receivables"\]$', text, re.MULTILINE)


# --- the Kubernetes manifests -------------------------------------------------------------------


def _deployment(service: str) -> dict[str, Any]:
    (deployment,) = [d for d in _manifests(f"{service}.yaml") if d["kind"] == "Deployment"]
    return deployment


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment_probes_ports_and_command(service: str) -> None:
    port = DEFAULT_PORTS[service]
    deployment = _deployment(service)
    assert deployment["metadata"]["name"] == f"receivables-{service}"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["serve", service, "--port", str(port)]
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    # Room for the migrations that run before the server listens.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment_is_non_root_read_only_and_bounded(service: str) -> None:
    pod = _deployment(service)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # The projections and outbox run in a child process: about two cores a replica.
    assert str(container["resources"]["requests"]["cpu"]) == "2"


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_deployment_takes_config_and_secrets(service: str) -> None:
    pod = _deployment(service)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": "receivables-config"}}]
    env = {item["name"]: item for item in container["env"]}
    database = env[f"RECEIVABLES_{service.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert database == {"name": f"receivables-{service}-database", "key": "url"}
    tokens_file = Path(env["RECEIVABLES_API_TOKENS_FILE"]["value"])
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["api-tokens"]["mountPath"] == str(tokens_file.parent) and mounts["api-tokens"]["readOnly"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["api-tokens"]["secret"]["secretName"] == "receivables-api-tokens"
    assert volumes["api-tokens"]["secret"]["items"] == [{"key": "tokens.json", "path": tokens_file.name}]
    assert "tmp" in mounts and "emptyDir" in volumes["tmp"]


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_service_routes_to_the_deployment(service: str) -> None:
    documents = _manifests(f"{service}.yaml")
    deployment = _deployment(service)
    (k8s_service,) = [d for d in documents if d["kind"] == "Service"]
    assert k8s_service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert k8s_service["spec"]["ports"] == [
        {"name": "http", "port": DEFAULT_PORTS[service], "targetPort": "http", "protocol": "TCP"}]
    (budget,) = [d for d in documents if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("service", SERVICES)
def test_k8s_replicas_do_not_exceed_the_partitions_they_consume(service: str) -> None:
    table = _topic_table()
    replicas = _deployment(service)["spec"]["replicas"]
    assert all(replicas <= table[topic][0] for topic in CONSUMED_TOPICS[service])


def test_k8s_replay_job_verifies_the_ledger() -> None:
    (job,) = _manifests("replay-job.yaml")
    assert job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] == 0
    (container,) = pod["containers"]
    assert container["args"] == ["replay", "ledger", "--verify"]
    (env,) = container["env"]
    assert env["name"] == "RECEIVABLES_LEDGER_DATABASE_URL"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_k8s_kustomization_lists_the_services_and_not_the_examples() -> None:
    (kustomization,) = _manifests("kustomization.yaml")
    resources = kustomization["resources"]
    assert all((K8S / name).exists() for name in resources)
    assert {"ledger.yaml", "dunning.yaml", "credit.yaml", "console.yaml", "config.yaml"} <= set(resources)
    assert "secrets.example.yaml" not in resources and "replay-job.yaml" not in resources
    secrets = {d["metadata"]["name"] for d in _manifests("secrets.example.yaml")}
    assert secrets == {"receivables-api-tokens", "receivables-console",
                       *(f"receivables-{s}-database" for s in SERVICES)}
    (config,) = _manifests("config.yaml")
    assert all(key.startswith("RECEIVABLES_") for key in config["data"])
    assert "RECEIVABLES_DATABASE_URL" not in config["data"]


# --- deploy/healthcheck.py ----------------------------------------------------------------------


def _healthcheck_module() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("command", "url"), [
    (["/usr/local/bin/python3", "/usr/local/bin/receivables", "serve", "ledger", "--port", "8001"],
     "http://127.0.0.1:8001/health/ready"),
    (["receivables", "serve", "dunning"], "http://127.0.0.1:8002/health/ready"),
    (["/sbin/docker-init", "--", "receivables", "serve", "credit", "--port=9003"],
     "http://127.0.0.1:9003/health/ready"),
])
def test_healthcheck_finds_the_port_of_the_served_service(command: list[str], url: str) -> None:
    assert _healthcheck_module().url_for(command) == url
    assert _healthcheck_module().DEFAULT_PORTS == DEFAULT_PORTS


@pytest.fixture
def health_server() -> Iterator[tuple[str, list[int]]]:
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status[0])
            self.end_headers()
            ready = status[0] == 200
            self.wfile.write(b'{"status": "ready"}' if ready else b'{"detail": "kafka unreachable"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/health/ready", status
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_exit_status_follows_readiness(health_server: tuple[str, list[int]]) -> None:
    url, status = health_server
    script = str(ROOT / "deploy" / "healthcheck.py")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, script], env=dict(os.environ, HEALTHCHECK_URL=url),
                              capture_output=True, text=True, timeout=30)

    assert run().returncode == 0
    status[0] = 503
    answer = run()
    assert answer.returncode == 1 and "503" in answer.stderr and "kafka unreachable" in answer.stderr
    closed = _healthcheck_module()
    assert closed.probe("http://127.0.0.1:9/health/ready", timeout=2) is False


# --- the console --------------------------------------------------------------------------------


def test_compose_and_k8s_run_the_console_on_its_port_with_its_secret() -> None:
    from services.cli import CONSOLE_PORT

    console = _compose()["services"]["console"]
    assert console["command"] == ["serve", "console", "--port", str(CONSOLE_PORT)]
    assert console["environment"]["RECEIVABLES_CONSOLE_SECRET"].startswith("${RECEIVABLES_CONSOLE_SECRET:?")
    assert {"ledger", "dunning", "credit"} <= set(console["depends_on"])
    deployment = _deployment("console")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "console", "--port", str(CONSOLE_PORT)]
    env = {item["name"]: item for item in container["env"]}
    assert env["RECEIVABLES_CONSOLE_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "receivables-console", "key": "secret"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert _healthcheck_module().url_for(["receivables", "serve", "console"]) == \
        f"http://127.0.0.1:{CONSOLE_PORT}/health/ready"
