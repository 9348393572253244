"""A bounded load test of the API: N requests from C concurrent clients over a mix of the read
routes, with throughput, latency percentiles and errors, overall and per route.

`served` starts `marketpulse serve` in a subprocess on a free local port (the database is the
one the environment configures) and `run_load` drives any running server; `marketpulse bench`
calls both. `python -m marketpulse_pipeline.api.load` does the same from a shell.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import httpx
import numpy as np

START_TIMEOUT_S = 60.0
"""How long `served` waits for the server to answer (the embedded server may start first)."""


def route_mix(client: httpx.Client) -> list[tuple[str, str]]:
    """(route template, URL) pairs, in the proportions a dashboard asks: lists of anomalies
    (filtered and not), one anomaly, stats, alerts, and each symbol's latest bar and history.
    The symbols and an anomaly id are read from the server itself."""
    health = client.get("/health").json()  # 200, or 503 with the symbols when data is stale
    symbols = [row["symbol"] for row in health["symbols"]]
    if not symbols:
        raise RuntimeError(f"the server cannot serve the load: {health['detail']}")
    recent = client.get("/anomalies", params={"days": 3650, "limit": 1}).raise_for_status().json()
    mix = [
        ("/anomalies", "/anomalies?days=30&limit=50"),
        ("/anomalies", "/anomalies?days=365&limit=20&offset=20"),
        ("/anomalies", "/anomalies?method=zscore&days=365"),
        ("/anomalies/stats", "/anomalies/stats?days=30"),
        ("/alerts", "/alerts?days=365"),
    ]
    if recent:
        mix.append(("/anomalies/{anomaly_id}", f"/anomalies/{recent[0]['id']}"))
    for symbol in symbols:
        mix += [
            ("/anomalies", f"/anomalies?symbol={symbol}&days=90"),
            ("/stocks/{symbol}/latest", f"/stocks/{symbol}/latest"),
            ("/stocks/{symbol}/history", f"/stocks/{symbol}/history?days=30"),
        ]
    return mix


def run_load(base_url: str, requests: int = 5000, clients: int = 16) -> dict:
    """Send `requests` GETs from `clients` threads, each with its own keep-alive connection
    (httpx's sync client costs a third of the CPU of its async one, and the load generator
    shares the machine with the server), to the server at `base_url`, cycling through
    `route_mix`; a non-2xx answer or a failed request is an error.

    Returns throughput (requests/s over the wall time), p50_ms, p99_ms, errors, seconds,
    requests, clients and by_route ({template: {requests, p50_ms, p99_ms, errors}})."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        mix = route_mix(client)
    latencies = np.zeros(requests)
    failed = np.zeros(requests, dtype=bool)
    routes = np.array([mix[i % len(mix)][0] for i in range(requests)])
    next_request = iter(range(requests))  # shared: each thread takes the next index
    lock = threading.Lock()

    def one_client() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while True:
                with lock:
                    i = next(next_request, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    failed[i] = not client.get(mix[i % len(mix)][1]).is_success
                except httpx.HTTPError:
                    failed[i] = True
                latencies[i] = time.perf_counter() - start

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return {
        "requests": requests,
        "clients": clients,
        "seconds": round(seconds, 3),
        "throughput": round(requests / seconds, 1),
        **_summary(latencies, failed),
        "by_route": {
            route: _summary(latencies[routes == route], failed[routes == route])
            for route in dict.fromkeys(routes.tolist())
        },
    }


def _summary(latencies: np.ndarray, failed: np.ndarray) -> dict:
    return {
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2),
        "errors": int(failed.sum()),
    }


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's choice) on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(env: Mapping[str, str] | None = None, workers: int = 1) -> Iterator[str]:
    """`marketpulse serve` in a subprocess on a free 127.0.0.1 port, with `env` over this
    process's environment (e.g. MARKETPULSE_DATABASE_URL or MARKETPULSE_HOME of a demo
    database); yields its base URL once it answers, and stops it (SIGTERM, then SIGKILL)."""
    port = free_port()
    command = [sys.executable, "-m", "marketpulse_pipeline", "serve", "--port", str(port)]
    command += ["--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:  # not a pipe: nobody reads it while serving
        server = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_until_answering(server, url, log)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_until_answering(server: subprocess.Popen, url: str, log: IO[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            last = log.read().strip().splitlines() or [f"exit code {server.returncode}"]
            raise RuntimeError(f"marketpulse serve exited: {last[-1]}")
        try:
            httpx.get(f"{url}/openapi.json", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"marketpulse serve did not answer within {START_TIMEOUT_S:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--url", help="a running server (default: start one)")
    args = parser.parse_args()
    if args.url:
        print(json.dumps(run_load(args.url, args.requests, args.clients), indent=2))
        return
    with served(workers=args.workers) as url:
        print(json.dumps(run_load(url, args.requests, args.clients), indent=2))


if __name__ == "__main__":
    main()
