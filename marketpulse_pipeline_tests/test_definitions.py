import dagster as dg
import pytest

from marketpulse_pipeline.automation import DAILY_JOB
from marketpulse_pipeline.settings import DEFAULT_SYMBOLS, Settings, SettingsError


def test_definitions_load_and_validate(make_defs):
    defs = make_defs()
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def(DAILY_JOB)
    assert job.partitions_def.get_partition_keys() == list(DEFAULT_SYMBOLS)


def test_the_watchlist_comes_from_configuration(make_defs):
    defs = make_defs(MARKETPULSE_SYMBOLS="aapl, IBM ,AAPL")
    job = defs.resolve_job_def(DAILY_JOB)
    assert job.partitions_def.get_partition_keys() == ["AAPL", "IBM"]


@pytest.mark.parametrize("key", ["stock_prices", "injected_anomalies"])
def test_assets_are_documented(make_defs, key):
    spec = make_defs().resolve_assets_def(key).specs_by_key[dg.AssetKey(key)]
    assert spec.description and spec.group_name == "prices"
    assert spec.owners == ["team:marketpulse"]
    assert {"postgres", "pandas"} <= set(spec.kinds)
    schema = spec.metadata["dagster/column_schema"]
    columns = {column.name: column for column in schema.columns}
    assert {"symbol", "timestamp"} <= set(columns)
    assert spec.metadata["dagster/table_name"] == f"marketpulse.{key}"
    assert (columns["symbol"].type, columns["timestamp"].type) == ("text", "date")
    if key == "stock_prices":
        assert columns["low"].type == "float8"
        assert columns["low"].constraints.other == ["greater_than(0)", "must be a finite number"]
        assert schema.constraints.other == ["low <= min(open, close) and high >= max(open, close)"]


def test_settings_come_from_the_resources_shown_in_the_ui(make_defs, env):
    resources = make_defs(MARKETPULSE_SOURCE="sample").resources
    assert resources["price_source"].kind == "sample"
    # the database URL is wired as an environment variable, so the UI never shows it
    assert isinstance(resources["database"].url, dg.EnvVar)


@pytest.mark.parametrize(
    "variable,value",
    [
        ("MARKETPULSE_SOURCE", "bloomberg"),
        ("MARKETPULSE_CSV_DIR", "/does/not/exist"),
        ("MARKETPULSE_START_DATE", "last tuesday"),
        ("MARKETPULSE_SYMBOLS", "AAPL,not a symbol"),
        ("MARKETPULSE_SEED", "x"),
    ],
)
def test_bad_settings_name_the_variable(variable, value):
    environ = {variable: value}
    if variable == "MARKETPULSE_CSV_DIR":
        environ["MARKETPULSE_SOURCE"] = "csv"
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(environ)


def test_one_anomaly_asset_per_method_with_its_parameters_as_run_config(make_defs):
    defs = make_defs()
    expected = {
        "zscore": {"window": 30, "threshold": 2.5},
        "iqr": {"window": 30, "multiplier": 1.5},
        "isolation_forest": {"contamination": 0.1, "training_sessions": 252},
        "moving_average": {"window": 20, "threshold_pct": 5.0},
        "volume": {"window": 20, "threshold": 3.0},
        "technical": {"overbought": 70.0, "oversold": 30.0},
    }
    for method, defaults in expected.items():
        asset = defs.resolve_assets_def(f"anomalies_{method}")
        fields = asset.op.config_schema.config_type.fields
        assert {name: fields[name].default_value for name in defaults} == defaults
        spec = asset.specs_by_key[dg.AssetKey(f"anomalies_{method}")]
        assert spec.group_name == "detectors" and spec.description
        assert {dep.asset_key.to_user_string() for dep in spec.deps} == {
            "price_features",
            "stock_prices",
        }


def test_the_graph_flows_from_prices_to_consensus(make_defs):
    graph = make_defs().resolve_asset_graph()
    consensus = graph.get(dg.AssetKey("anomaly_consensus"))
    assert {key.to_user_string() for key in consensus.parent_keys} == {
        f"anomalies_{m}"
        for m in (
            "zscore",
            "iqr",
            "isolation_forest",
            "moving_average",
            "volume",
            "technical",
            "volatility_adjusted",
            "market_relative",
        )
    }
    features = graph.get(dg.AssetKey("price_features"))
    assert {key.to_user_string() for key in features.parent_keys} == {"stock_prices"}
    alerts = graph.get(dg.AssetKey("alerts"))
    parents = {key.to_user_string() for key in alerts.parent_keys}
    assert parents == {"stock_prices", "anomaly_consensus"}


def test_cli_runs_carry_the_code_locations_name():
    """The UI lists a job's runs by code location: the CLI's runs must name the one the UI
    loads (workspace.yaml, [tool.dagster])."""
    import tomllib
    from pathlib import Path

    import yaml

    from marketpulse_pipeline.automation import CODE_LOCATION
    from marketpulse_pipeline.runner import LOCATION_TAGS

    root = Path(__file__).parents[1]
    workspace = yaml.safe_load((root / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["location_name"] == CODE_LOCATION
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["tool"]["dagster"]["code_location_name"] == CODE_LOCATION
    assert LOCATION_TAGS[".dagster/repository"] == f"__repository__@{CODE_LOCATION}"
