"""The deployment files, checked as far as a machine without Docker or Kubernetes can:
against the public schemas, Dagster's own config validation, and the Dockerfile's inputs."""

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from marketpulse_pipeline_tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = {"postgres", "user_code", "webserver", "daemon", "grafana", "api"}
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "MARKETPULSE_DB_PASSWORD",
    "DAGSTER_DB_PASSWORD",
    "GRAFANA_DB_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    "API_READER_DB_PASSWORD",
}


def open_schema(name: str) -> dict:
    """A reference schema with remote Kubernetes `$ref`s opened up (no network here) and, for
    Helm values, `required` dropped: the chart merges a partial file over its defaults."""
    schema = json.loads(shared_file(f"reference/schemas/{name}").read_text())

    def visit(node):
        if isinstance(node, dict):
            if str(node.get("$ref", "")).startswith("http"):
                node.pop("$ref")
            if name.startswith("dagster"):
                node.pop("required", None)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def errors(schema: dict, document: object) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(document)]


# docker compose -------------------------------------------------------------------------------


def test_compose_file_follows_the_compose_specification():
    assert errors(open_schema("compose-spec.schema.json"), COMPOSE) == []


def test_compose_runs_the_whole_stack_with_healthchecks_in_order():
    services = COMPOSE["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    for name in ("user_code", "webserver", "daemon", "grafana", "api"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["user_code"]["condition"] == "service_healthy"
    assert {"postgres-data", "grafana-data"} <= set(COMPOSE["volumes"])
    assert "postgres-data:/var/lib/postgresql" in services["postgres"]["volumes"]
    assert services["postgres"]["image"].startswith("postgres:18")


def test_compose_commits_no_secret_and_fails_fast_without_one():
    text = (ROOT / "docker-compose.yml").read_text()
    for service in COMPOSE["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{(\w+):\?.+\}", value), key
                assert re.fullmatch(r"\$\{(\w+):\?.+\}", value)[1] in SECRET_VARIABLES
    referenced = set(re.findall(r"\$\{(\w+):\?", text))
    assert referenced == SECRET_VARIABLES
    example = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert set(example) == SECRET_VARIABLES and set(example.values()) == {""}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_pipeline_and_grafana_use_their_own_roles():
    services = COMPOSE["services"]
    url = services["user_code"]["environment"]["MARKETPULSE_DATABASE_URL"]
    assert url.startswith("postgresql://marketpulse:${MARKETPULSE_DB_PASSWORD")
    datasource = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/marketpulse.yaml").read_text()
    )["datasources"][0]
    assert datasource["user"] == "grafana_reader"
    assert datasource["uid"] == "marketpulse-postgres"
    assert datasource["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"


def test_the_api_serves_reads_through_a_read_only_role_and_probes_health():
    api = COMPOSE["services"]["api"]
    assert api["image"] == COMPOSE["services"]["user_code"]["image"]  # the pipeline's image
    assert api["command"][:2] == ["marketpulse", "serve"]
    assert api["command"][api["command"].index("--host") + 1] == "0.0.0.0"
    environment = api["environment"]
    read_url = environment["MARKETPULSE_API_READ_DATABASE_URL"]
    assert read_url.startswith("postgresql://api_reader:${API_READER_DB_PASSWORD")
    assert environment["MARKETPULSE_API_TOKEN"] == "${MARKETPULSE_API_TOKEN:-}"  # off unless set
    assert "/health" in " ".join(api["healthcheck"]["test"])
    roles = (ROOT / "infra/postgres/init-roles.sh").read_text()
    assert "CREATE ROLE api_reader" in roles and "GRANT SELECT ON TABLES TO api_reader" in roles
    assert "default_transaction_read_only = on" in roles
    assert "API_READER_DB_PASSWORD" in COMPOSE["services"]["postgres"]["environment"]


# Kubernetes ------------------------------------------------------------------------------------

VALUES = yaml.safe_load((ROOT / "infra/helm/values.yaml").read_text())


def test_helm_values_follow_the_chart_schema():
    assert errors(open_schema("dagster-helm-values.schema.json"), VALUES) == []
    subchart = open_schema("dagster-user-deployments-values.schema.json")
    assert (
        errors(subchart, {"deployments": VALUES["dagster-user-deployments"]["deployments"]}) == []
    )


def test_a_misspelled_helm_key_is_caught():
    broken = copy.deepcopy(VALUES)
    broken["runLauncher"]["type"] = "K8sRunLaucher"
    broken["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = []
    problems = errors(open_schema("dagster-helm-values.schema.json"), broken)
    assert len(problems) == 2, problems


def test_helm_values_run_pods_per_run_with_secrets_not_inline():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    assert VALUES["postgresql"]["enabled"] is False
    assert "postgresqlPassword" not in VALUES["postgresql"]
    assert (
        VALUES["global"]["postgresqlSecretName"] and not VALUES["generatePostgresqlPasswordSecret"]
    )
    deployment = VALUES["dagster-user-deployments"]["deployments"][0]
    assert deployment["envSecrets"] == [{"name": "marketpulse-database"}]
    assert VALUES["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"] == [
        {"name": "marketpulse-database"}
    ]
    assert "marketpulse_pipeline.definitions" in deployment["codeServerArgs"]


# Dagster instance -----------------------------------------------------------------------------


def test_dagster_yaml_passes_dagsters_instance_validation(tmp_path, monkeypatch):
    shutil.copy(ROOT / "infra/dagster/dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    postgres = config["storage"]["postgres"]["postgres_db"]
    assert postgres["scheme"] == "postgresql+psycopg2"
    assert postgres["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_coordinator"]["config"]["max_concurrent_runs"] == 2

    (tmp_path / "dagster.yaml").write_text(
        (ROOT / "infra/dagster/dagster.yaml").read_text().replace("scheme:", "schema:")
    )
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))


# Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = (ROOT / "infra/Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_copies_files_that_exist():
    copies = [
        args.split() for instruction, args in dockerfile_instructions() if instruction == "COPY"
    ]
    assert copies
    for *sources, _destination in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".venv" in ignored and ".env" in ignored


def test_dockerfile_and_compose_commands_are_installed_entry_points():
    [command] = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    commands = [json.loads(command)]
    commands += [s["command"] for s in COMPOSE["services"].values() if "command" in s]
    bin_dir = Path(sys.executable).parent  # where pip put the console scripts
    for argv in commands:
        assert (bin_dir / argv[0]).exists(), argv[0]
    assert json.loads(command)[-1] == "marketpulse_pipeline.definitions"


def test_the_image_installs_the_api_extra_that_compose_serves():
    """The compose `api` service runs `marketpulse serve` in this image: without the extra, it
    exits 2 (`serve needs the api extra`) and restarts forever."""
    installs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    extras = {
        extra.strip()
        for args in installs
        for spec in re.findall(r"pip install [\"']?\.\[([^\]]+)\]", args)
        for extra in spec.split(",")
    }
    assert "api" in extras, installs
    assert COMPOSE["services"]["api"]["command"][:2] == ["marketpulse", "serve"]


def test_compose_workspace_points_at_the_code_server():
    workspace = yaml.safe_load((ROOT / "infra/dagster/workspace.yaml").read_text())
    server = workspace["load_from"][0]["grpc_server"]
    [command] = [args for instruction, args in dockerfile_instructions() if instruction == "CMD"]
    argv = json.loads(command)
    assert server["host"] == "user_code" and str(server["port"]) == argv[argv.index("--port") + 1]


@pytest.mark.slow
def test_dagsters_dg_cli_loads_the_project(env):
    """`dg check defs` (what Dagster's own warnings point users to) finds and loads it."""
    import subprocess

    dg = Path(sys.executable).with_name("dg")
    if not dg.exists():
        pytest.skip("dagster-dg-cli is not installed (it is in the dev extra)")
    result = subprocess.run(
        [str(dg), "check", "defs"],
        cwd=Path(__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully." in result.stdout + result.stderr


def test_runs_on_the_postgres_instance_batch_their_partition_events():
    """dagster-postgres writes a step's partition materializations in one insert only when
    DAGSTER_EVENT_BATCH_SIZE is set in the run's process (58 s -> 7 s on 300 symbols)."""
    assert COMPOSE["services"]["user_code"]["environment"]["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    deployment = VALUES["dagster-user-deployments"]["deployments"][0]
    assert {"name": "DAGSTER_EVENT_BATCH_SIZE", "value": "1000"} in deployment["env"]
