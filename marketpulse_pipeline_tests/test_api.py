"""The REST API over real HTTP (uvicorn on 127.0.0.1, in a thread) and a real materialized
database: every route answers what the CLI's `--json` and the SQL functions answer, writes need
the token, bad input and a dead database are one-line JSON errors, and the process stays up."""

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter

from marketpulse_pipeline.api import models
from marketpulse_pipeline.api.app import create_app
from marketpulse_pipeline.api.config import ApiSettings
from marketpulse_pipeline.api.load import free_port, run_load
from marketpulse_pipeline.api.pool import Pools
from marketpulse_pipeline.cli import main
from marketpulse_pipeline.cli.reads import MAX_DAYS, MAX_LIMIT
from marketpulse_pipeline.settings import Settings
from marketpulse_pipeline.storage.database import connect, start_embedded, stop_embedded
from marketpulse_pipeline_tests.conftest import CLOCK, TODAY, create_database, drop_database

if TYPE_CHECKING:
    from playwright.sync_api import Route

SYMBOLS = ["AAPL", "MSFT", "SPY", "TSLA"]
START = "2025-05-01"  # 170 sessions: enough history for the alert layer to flag a few
TOKEN = "write-token-0123456789abcdef"
READ_TOKEN = "read-token-0123456789abcdef"
ROUTES = {
    "/anomalies",
    "/anomalies/stats",
    "/anomalies/{anomaly_id}",
    "/anomalies/{anomaly_id}/feedback",
    "/alerts",
    "/stocks/{symbol}/latest",
    "/stocks/{symbol}/history",
    "/health",
    "/metrics",
}


def environment(url: str, home: str) -> dict[str, str]:
    return {
        "MARKETPULSE_DATABASE_URL": url,
        "MARKETPULSE_HOME": home,
        "MARKETPULSE_SYMBOLS": ",".join(SYMBOLS),
        "MARKETPULSE_NOW": CLOCK,
    }


@contextmanager
def serving(app: FastAPI, http: str = "auto") -> Iterator[str]:
    """`app` behind uvicorn on a free local port, in a thread; its base URL. `http="h11"` is
    what the image runs (uvicorn without its `standard` extra has no httptools)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def materialized(server_url, template_database, tmp_path_factory) -> Iterator[dict[str, str]]:
    """A backfill of four symbols from START, shared by the module: its environment."""
    name, url = create_database(server_url, template_database)
    env = environment(url, str(tmp_path_factory.mktemp("home")))
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in env.items():
            patch.setenv(variable, value)
        patch.delenv("DAGSTER_HOME", raising=False)
        patch.delenv("MARKETPULSE_SOURCE", raising=False)
        assert main(["backfill", "--start", START]) == 0
    yield env
    drop_database(server_url, name)


@pytest.fixture(scope="module")
def settings(materialized) -> Settings:
    return Settings.from_env(materialized)


@pytest.fixture(scope="module")
def http(settings) -> Iterator[httpx.Client]:
    """A client of the app with writes on (MARKETPULSE_API_TOKEN set), reads open."""
    with (
        serving(create_app(settings, ApiSettings(write_token=TOKEN))) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def cli(materialized, monkeypatch, capsys):
    """`marketpulse ... --json` on the same database: the parsed output."""
    for variable, value in materialized.items():
        monkeypatch.setenv(variable, value)

    def call(*args: str) -> list[dict]:
        capsys.readouterr()
        code = main([*args, "--json"])
        out = capsys.readouterr().out
        assert code in (0, 1), out
        return json.loads(out)

    return call


def sql(materialized, query: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(materialized["MARKETPULSE_DATABASE_URL"]) as conn:
        return conn.execute(query, params).fetchall()


def answer(http: httpx.Client, path: str, status: int = 200, **params: object) -> object:
    response = http.get(path, params=params)
    assert response.status_code == status, response.text
    return response.json()


# Every route equals the CLI and the SQL function --------------------------------------------


@pytest.mark.parametrize(
    "path,params,command",
    [
        ("/anomalies", {"days": 60, "limit": 500}, ["anomalies", "--days", "60", "--limit", "500"]),
        (
            "/anomalies",
            {"symbol": "tsla", "method": "zscore", "days": 400},
            ["anomalies", "--symbol", "TSLA", "--method", "zscore", "--days", "400"],
        ),
        (
            "/anomalies",
            {"anomaly_type": "trend_break_up", "days": 90, "limit": 5},
            ["anomalies", "--type", "trend_break_up", "--days", "90", "--limit", "5"],
        ),
        ("/anomalies/stats", {"days": 90}, ["stats", "--days", "90"]),
        ("/alerts", {"days": 400}, ["alerts", "--days", "400"]),
        ("/stocks/MSFT/history", {"days": 20}, ["history", "MSFT", "--days", "20"]),
    ],
)
def test_a_route_answers_what_the_cli_prints(http, cli, path, params, command):
    body = answer(http, path, **params)
    assert body and body == cli(*command)


def test_the_answers_hold_to_their_response_models(http):
    checks = [
        ("/anomalies?days=400&limit=1000", list[models.Anomaly]),
        ("/alerts?days=400", list[models.Alert]),
        ("/anomalies/stats", list[models.StatRow]),
        ("/stocks/AAPL/latest", models.LatestBar),
        ("/stocks/AAPL/history", list[models.Bar]),
        ("/health", models.Health),
    ]
    for path, model in checks:
        TypeAdapter(model).validate_python(http.get(path).json(), strict=False)


def test_anomalies_are_the_sql_functions_rows(http, materialized):
    body = answer(http, "/anomalies", symbol="AAPL", days=120, limit=10)
    rows = sql(
        materialized,
        "SELECT id FROM marketpulse.recent_anomalies('AAPL', NULL, NULL, 120, 10, %s)",
        [TODAY],
    )
    assert [a["id"] for a in body] == [r[0] for r in rows] and len(rows) == 10


def test_latest_and_one_anomaly(http, cli):
    assert answer(http, "/stocks/aapl/latest") == cli("latest", "AAPL")[0]
    assert answer(http, "/stocks/AAPL/latest")["timestamp"] == TODAY.isoformat()
    [first] = answer(http, "/anomalies", days=30, limit=1)
    assert answer(http, f"/anomalies/{first['id']}") == first


def test_alerts_exist_here(http):
    """The module's data is long enough for the alert layer: /alerts is tested on real rows."""
    alerts = answer(http, "/alerts", days=400)
    assert alerts and all(a["p_value"] <= 0.001 for a in alerts)
    assert answer(http, "/alerts", symbol=alerts[0]["symbol"], days=400)


def test_health_is_the_clis_verdict(http, cli):
    body = answer(http, "/health")
    assert body["status"] == "ok" and body["reasons"] == [] and body["detail"] is None
    assert body["symbols"] == cli("health")


# Pagination ---------------------------------------------------------------------------------


def test_offset_pages_cover_the_rows_once(http):
    everything = [a["id"] for a in answer(http, "/anomalies", days=400, limit=MAX_LIMIT)]
    assert len(everything) > 50
    pages, offset = [], 0
    while True:
        response = http.get("/anomalies", params={"days": 400, "limit": 37, "offset": offset})
        page = [a["id"] for a in response.json()]
        pages += page
        if len(page) < 37:
            assert "link" not in response.headers
            break
        assert f"offset={offset + 37}" in response.headers["link"]
        offset += 37
    assert pages == everything and len(set(pages)) == len(pages)


# Bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,status,says",
    [
        ("/stocks/NOPE/latest", 404, "no prices stored for symbol 'NOPE'"),
        ("/stocks/NOPE/history", 404, "no prices stored for symbol 'NOPE'"),
        ("/anomalies?symbol=NOPE", 404, "no prices stored for symbol 'NOPE'"),
        ("/alerts?symbol=NOPE", 404, "no prices stored for symbol 'NOPE'"),
        ("/anomalies/123", 404, "no anomaly with id 123"),
        ("/anomalies?method=magic", 422, "method: Input should be 'zscore'"),
        ("/anomalies?anomaly_type=crash", 422, "anomaly_type: Input should be"),
        ("/anomalies?days=0", 422, "days: Input should be greater than or equal to 1"),
        (f"/anomalies?days={MAX_DAYS + 1}", 422, f"less than or equal to {MAX_DAYS}"),
        (f"/anomalies?limit={MAX_LIMIT + 1}", 422, f"less than or equal to {MAX_LIMIT}"),
        ("/anomalies?limit=ten", 422, "limit: Input should be a valid integer"),
        ("/anomalies?offset=-1", 422, "offset: Input should be greater than or equal to 0"),
        ("/anomalies/stats?days=-5", 422, "days:"),
        ("/alerts?days=99999999", 422, "days:"),
        ("/stocks/AAPL/history?days=0", 422, "days:"),
        ("/anomalies/abc", 422, "anomaly_id: Input should be a valid integer"),
        ("/anomalies/99999999999999999999", 422, "anomaly_id:"),
        ("/stocks/AAPL,MSFT/latest", 422, "is not one ticker symbol"),
        ("/stocks/AAPL' OR '1'='1/latest", 422, "symbol: \"AAPL' OR '1'='1\" is not a ticker"),
        ("/stocks/%C3%84PFEL/latest", 422, "symbol: 'ÄPFEL' is not a ticker symbol"),
        ("/anomalies?symbol=", 422, "symbol: '' is not a ticker symbol"),
        ("/anomalies?limit=0", 422, "limit: Input should be greater than or equal to 1"),
        ("/anomalies?symbol=AAPL&symbol=MSFT", 422, "symbol: given more than once"),
        ("/anomalies?limit=1&limit=100", 422, "limit: given more than once"),
        ("/anomalies?sybmol=AAPL", 422, "sybmol: unknown parameter; this route takes symbol,"),
        ("/health?verbose=1", 422, "verbose: unknown parameter; this route takes none"),
        ("/anomalies?symbol=AAPL'; DROP TABLE anomalies; --", 422, "symbol:"),
        ("/anomalies?method=zscore' OR 1=1 --", 422, "method:"),
        ("/nowhere", 404, "Not Found"),
    ],
)
def test_bad_input_is_a_one_line_reason(http, path, status, says):
    response = http.get(path)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and says in detail
    assert "\n" not in detail and "Traceback" not in response.text


def test_an_error_does_not_echo_a_long_value(http):
    response = http.get("/stocks/" + "A" * 5000 + "/latest")
    assert response.status_code == 422 and len(response.json()["detail"]) < 200


def test_head_answers_what_get_does_without_a_body(http):
    """Uptime monitors and `curl -I` ask HEAD: the same status and headers as GET."""
    for path in ("/health", "/anomalies?days=400&limit=5", "/stocks/NOPE/latest", "/docs"):
        get, head = http.get(path), http.head(path)
        assert head.status_code == get.status_code and head.content == b"", path
        assert head.headers.get("link") == get.headers.get("link"), path
        assert head.headers["content-length"] == get.headers["content-length"], path
    assert http.head("/anomalies/1/feedback").status_code == 405
    counted = 'http_requests_total{method="HEAD",route="/health",status="200"}'
    assert counted in http.get("/metrics").text


def test_injection_strings_are_only_values(http, materialized):
    before = sql(materialized, "SELECT count(*) FROM marketpulse.anomalies")
    note = "'); DROP TABLE marketpulse.anomalies; --"
    [target] = answer(http, "/anomalies", days=30, limit=1)
    response = http.post(
        f"/anomalies/{target['id']}/feedback",
        json={"label": "confirmed", "note": note},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 201 and response.json()["note"] == note
    assert answer(http, f"/anomalies/{target['id']}")["note"] == note
    assert sql(materialized, "SELECT count(*) FROM marketpulse.anomalies") == before


# Writes -------------------------------------------------------------------------------------


def test_feedback_needs_the_token_and_follows_the_label_rules(http, materialized):
    [target] = answer(http, "/anomalies", days=60, limit=1, method="technical")
    path = f"/anomalies/{target['id']}/feedback"
    body = {"label": "false_positive", "note": "earnings day"}
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
    ):
        refused = http.post(path, json=body, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    recorded = http.post(path, json=body, headers=authorized)
    assert recorded.status_code == 201
    assert recorded.json() == {
        "anomaly_id": target["id"],
        "label": "false_positive",
        "note": "earnings day",
        "labelled_by": "api",
        "labelled_at": dt.datetime.fromisoformat(CLOCK).isoformat(),
    }
    assert answer(http, f"/anomalies/{target['id']}")["label"] == "false_positive"
    stored = sql(
        materialized,
        "SELECT label, note, labelled_by, on_alert FROM marketpulse.anomaly_feedback"
        " WHERE anomaly_id = %s",
        [target["id"]],
    )
    assert stored == [("false_positive", "earnings day", "api", False)]

    assert http.post("/anomalies/123/feedback", json=body, headers=authorized).status_code == 404
    for wrong in ({"label": "maybe"}, {"note": "no label"}, {**body, "extra": 1}):
        refused = http.post(path, json=wrong, headers=authorized)
        assert refused.status_code == 422 and "\n" not in refused.json()["detail"]
    as_json = {**authorized, "Content-Type": "application/json"}
    bad_json = http.post(path, content=b"{not json", headers=as_json)
    assert bad_json.status_code == 422 and bad_json.json()["detail"].startswith(
        "body: invalid JSON"
    )
    nul = http.post(path, json={"label": "confirmed", "note": "a\x00b"}, headers=authorized)
    assert nul.status_code == 422 and nul.json()["detail"].startswith("note:")


def test_a_huge_body_is_refused_before_it_is_read(http):
    """Without a limit, any client could make the server hold gigabytes: the body is read
    before the token is checked."""
    huge = b"x" * (8 * 1024 * 1024)
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}):
        refused = http.post("/anomalies/1/feedback", content=huge, headers=headers)
        assert refused.status_code == 413 and refused.text == "Content Too Large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * 131072

    streamed = http.post("/anomalies/1/feedback", content=chunks(), headers={})
    assert streamed.status_code == 413


def test_concurrent_feedback_on_one_id_is_all_recorded(http, materialized):
    [target] = answer(http, "/anomalies", days=90, limit=1, method="iqr")
    authorized = {"Authorization": f"Bearer {TOKEN}"}

    def label(i: int) -> int:
        body = {"label": ("confirmed", "false_positive")[i % 2], "note": f"n{i}"}
        path = f"/anomalies/{target['id']}/feedback"
        return http.post(path, json=body, headers=authorized).status_code

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(label, range(48))) == {201}
    [(count, last_note)] = sql(
        materialized,
        "SELECT count(*), (array_agg(note ORDER BY id DESC))[1]"
        " FROM marketpulse.anomaly_feedback WHERE anomaly_id = %s",
        [target["id"]],
    )
    assert count == 48 and answer(http, f"/anomalies/{target['id']}")["note"] == last_note


def test_feedback_on_an_alert_marks_it(http, materialized):
    [alert] = answer(http, "/alerts", days=400, limit=1)
    response = http.post(
        f"/anomalies/{alert['id']}/feedback",
        json={"label": "confirmed"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 201
    assert sql(
        materialized,
        "SELECT symbol, on_alert FROM marketpulse.anomaly_feedback WHERE anomaly_id = %s",
        [alert["id"]],
    ) == [(alert["symbol"], True)]


def test_without_the_token_variable_writes_are_off_and_reads_can_be_closed(settings):
    api = ApiSettings(read_token=READ_TOKEN, cors_origins=("https://dash.example.com",))
    with serving(create_app(settings, api)) as url, httpx.Client(base_url=url) as client:
        off = client.post(
            "/anomalies/1/feedback",
            json={"label": "confirmed"},
            headers={"Authorization": f"Bearer {READ_TOKEN}"},
        )
        assert off.status_code == 403 and "MARKETPULSE_API_TOKEN" in off.json()["detail"]
        assert client.get("/stocks/AAPL/latest").status_code == 401
        assert client.get("/metrics").status_code == 401
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert client.get("/stocks/AAPL/latest", headers=read).status_code == 200
        assert client.get("/health").status_code == 200  # the probe stays open
        preflight = client.options(
            "/anomalies",
            headers={"Origin": "https://dash.example.com", "Access-Control-Request-Method": "GET"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://dash.example.com"


def test_cors_is_off_by_default(http):
    response = http.get("/anomalies/stats", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_a_bad_api_variable_stops_serve_in_one_line_without_its_value(materialized, monkeypatch):
    for variable, value in materialized.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("MARKETPULSE_API_TOKEN", "short secret")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from marketpulse_pipeline.cli import main; sys.exit(main(['serve']))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "MARKETPULSE_API_TOKEN" in line and "short secret" not in line


# Operations ---------------------------------------------------------------------------------


def test_metrics_parse_and_count_requests(http):
    def samples() -> dict:
        text = http.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    key = (
        "http_requests_total",
        (("method", "GET"), ("route", "/stocks/{symbol}/latest"), ("status", "200")),
    )
    before = samples().get(key, 0)
    for symbol in SYMBOLS:
        http.get(f"/stocks/{symbol}/latest")
    after = samples()
    assert after[key] == before + len(SYMBOLS)
    assert after[("marketpulse_database_up", ())] == 1
    sessions = {
        dict(labels)["symbol"]: value
        for (name, labels), value in after.items()
        if name == "marketpulse_last_session_timestamp_seconds"
    }
    midnight = dt.datetime.combine(TODAY, dt.time(), dt.UTC).timestamp()
    assert sessions == dict.fromkeys(SYMBOLS, midnight)
    stored = sum(v for (n, _), v in after.items() if n == "marketpulse_anomalies_total")
    assert stored == sql_count(http)
    assert any(n == "marketpulse_anomalies_recent" for n, _ in after)
    assert ("marketpulse_rows_rejected_total", ()) in after
    assert any(n == "marketpulse_detection_f1" for n, _ in after)
    assert any(n == "http_request_duration_seconds_count" for n, _ in after)


def test_metrics_labels_stay_bounded_whatever_the_method(settings):
    """h11 (the image's HTTP parser) accepts any method name: each must not become a series."""
    with serving(create_app(settings), http="h11") as url, httpx.Client(base_url=url) as client:
        for i in range(20):
            assert client.request(f"PROBE{i}", "/health").status_code == 405
        text = client.get("/metrics").text
    assert "PROBE" not in text
    assert 'http_requests_total{method="other",route="/health",status="405"} 20.0' in text


def sql_count(http: httpx.Client) -> int:
    stats = answer(http, "/anomalies/stats", days=MAX_DAYS)
    return next(row["anomalies"] for row in stats if row["dimension"] == "total")


def test_docs_and_the_openapi_schema_list_every_route(http):
    docs = http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert not re.search(r"(src|href)=.https?:", docs.text)  # Swagger UI's files are ours
    for asset in re.findall(r"(?:src|href)=.(/[^'\"]+)", docs.text):
        assert http.get(asset).status_code == 200, asset
    assert http.get("/redoc").status_code == 404  # ReDoc would load its logo from redoc.ly
    schema = answer(http, "/openapi.json")
    assert set(schema["paths"]) == ROUTES
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"] or "201" in operation["responses"], path
    assert schema["components"]["schemas"]["Anomaly"]["examples"]
    assert "examples" in schema["components"]["schemas"]["Feedback"]


@pytest.mark.slow
def test_the_docs_render_in_a_browser_without_the_internet(http):
    """/docs in headless Chromium with every request off 127.0.0.1 refused, as on a machine
    without the internet: Swagger UI renders the routes, and the console has no error."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no Chromium: apt-get install -y chromium")
    base = str(http.base_url).rstrip("/")
    outside: list[str] = []
    errors: list[str] = []

    def local_only(route: "Route") -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", local_only)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/docs")
            for route in ("/anomalies/{anomaly_id}", "/anomalies/{anomaly_id}/feedback"):
                page.get_by_text(route, exact=True).first.wait_for(timeout=10_000)
        finally:
            browser.close()
    assert outside == [] and errors == []


def test_read_connections_are_read_only_and_time_limited(materialized):
    pools = Pools(materialized["MARKETPULSE_DATABASE_URL"], None, size=1, statement_timeout_ms=250)
    pools.open()
    try:
        with pools.reading() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("250ms",)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(1)")
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM anomalies")
    finally:
        pools.close()


def test_a_database_that_is_down_is_a_503_and_the_process_stays_up(materialized):
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/marketpulse"
    settings = Settings.from_env({**materialized, "MARKETPULSE_DATABASE_URL": dead})
    app = create_app(settings, ApiSettings(write_token=TOKEN), pool_wait_s=0.3)
    with serving(app) as url, httpx.Client(base_url=url) as client:
        for _ in range(2):  # and again: still up
            down = client.get("/anomalies")
            assert down.status_code == 503
            assert down.json() == {"detail": "database unreachable: no connection available"}
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "unhealthy"
        assert health.json()["reasons"] == ["database unreachable: no connection available"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "marketpulse_database_up 0.0" in metrics.text
        feedback = client.post(
            "/anomalies/1/feedback",
            json={"label": "confirmed"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert feedback.status_code == 503 and "nobody" not in feedback.text


def test_a_database_lost_while_serving_and_stale_data(server_url, template_database, tmp_path):
    """An empty database is unhealthy as `marketpulse health` says; dropped under the running
    app, its pooled connections break: 503s, not a crash."""
    name, url = create_database(server_url, template_database)
    settings = Settings.from_env(environment(url, str(tmp_path)))
    with serving(create_app(settings, pool_wait_s=0.3)) as base, httpx.Client(base_url=base) as c:
        health = c.get("/health")
        assert health.status_code == 503
        assert health.json()["reasons"] == [f"{s}: no prices stored" for s in sorted(SYMBOLS)]
        drop_database(server_url, name)
        assert c.get("/anomalies/stats").status_code == 503
        assert c.get("/health").status_code == 503
        assert c.get("/openapi.json").status_code == 200


def test_the_pool_recovers_from_a_database_restart(embedded_home):
    """The server restarted under the running app: a 503 while it is down, then every
    request answers again at once — the pooled connections it broke are not handed out."""
    url = start_embedded(embedded_home)
    connect(url).close()  # the migrations
    env = {**environment("", str(embedded_home)), "MARKETPULSE_DATABASE_URL": ""}
    settings = Settings.from_env(env)
    app = create_app(settings, pool_wait_s=0.5)
    with serving(app) as base, httpx.Client(base_url=base) as client:
        for _ in range(3):  # the pool holds several connections now
            assert client.get("/anomalies/stats").status_code == 200
        stop_embedded(embedded_home)
        down = client.get("/anomalies/stats")
        assert down.status_code == 503 and down.json()["detail"].startswith("database unreachable")
        start_embedded(embedded_home)
        answers = [client.get("/anomalies/stats").status_code for _ in range(10)]
        assert answers == [200] * 10


def test_the_cli_never_imports_the_api_stack():
    code = "import sys, marketpulse_pipeline.cli;"
    code += " print(sorted({'fastapi', 'uvicorn'} & {*sys.modules}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_a_small_load_has_no_errors(http):
    """The load test itself belongs to `marketpulse bench --scenarios api`; this is its smoke."""
    result = run_load(str(http.base_url).rstrip("/"), requests=200, clients=4)
    assert result["errors"] == 0 and result["requests"] == 200 and result["throughput"] > 0
    assert {"/anomalies", "/stocks/{symbol}/latest", "/alerts"} <= set(result["by_route"])
