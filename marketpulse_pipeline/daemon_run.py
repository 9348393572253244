"""A daily run launched the way the schedule launches it, timed: `marketpulse bench`'s `daemon`.

`dagster dev` (webserver, daemon and code server) runs on a throw-away Dagster home; the run is
submitted through Dagster's GraphQL API with the schedule's own request (`watchlist_run_request`),
queued, dequeued by the daemon and executed by the run launcher in a fresh process — the path of
a scheduled or UI-launched run. The wall time is from submission to the run's end.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from marketpulse_pipeline.automation import CODE_LOCATION, DAILY_JOB
from marketpulse_pipeline.instance import LOCAL_INSTANCE

START_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 600.0
WORKSPACE = f"""load_from:
  - python_module:
      module_name: marketpulse_pipeline.definitions
      location_name: {CODE_LOCATION}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def dagster_dev(home: Path, env: Mapping[str, str]) -> Iterator[str]:
    """`dagster dev` on `home` with `env` (the pipeline's settings); yields the webserver's URL
    once the code location has loaded."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(LOCAL_INSTANCE)
    (home / "workspace.yaml").write_text(WORKSPACE)
    port = free_port()
    log = (home / "dagster-dev.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)],
        cwd=home,
        env={**env, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_location(url, server, home)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for_location(url: str, server: subprocess.Popen, home: Path) -> None:
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name"
        " locationOrLoadError { __typename } } } } }"
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster dev exited; see {home / 'dagster-dev.log'}")
        try:
            answer = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            entries = answer["data"]["workspaceOrError"]["locationEntries"]
            kinds = {e["name"]: (e["locationOrLoadError"] or {}).get("__typename") for e in entries}
            if kinds.get(CODE_LOCATION) == "RepositoryLocation":
                return
            if kinds.get(CODE_LOCATION) == "PythonError":
                raise RuntimeError(f"the code location failed to load; see {home}")
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"dagster dev did not load the code location; see {home}")


def launch_daily_run(url: str, symbols: list[str], day: dt.date) -> dict[str, float]:
    """Submit the schedule's request for `day` and wait for the run's end: seconds from
    submission to the end, and of it the wait before the run's process started."""
    import dagster as dg
    from dagster_graphql import DagsterGraphQLClient

    from marketpulse_pipeline.automation import watchlist_run_request

    request = watchlist_run_request(dg.StaticPartitionsDefinition(symbols), day)
    host, port = url.removeprefix("http://").split(":")
    client = DagsterGraphQLClient(host, port_number=int(port))
    began = time.time()
    run_id = client.submit_job_execution(
        DAILY_JOB,
        repository_location_name=CODE_LOCATION,
        repository_name="__repository__",
        run_config=request.run_config,
        tags=dict(request.tags),
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id)
        if status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
            break
        time.sleep(0.2)
    else:
        raise RuntimeError(f"run {run_id} did not finish within {RUN_TIMEOUT_S:.0f} s")
    ended = time.time()
    if status != dg.DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"run {run_id} failed: see the Dagster UI of the bench's home")
    started = _run_started(url, run_id)
    return {"wall_seconds": ended - began, "queued_seconds": max(started - began, 0.0)}


def _run_started(url: str, run_id: str) -> float:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { startTime } } }"
    answer = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": {"id": run_id}}, timeout=10
    ).json()
    return float(answer["data"]["runOrError"]["startTime"])
