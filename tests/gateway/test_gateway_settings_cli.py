"""The gateway's command line: option names, environment variables, defaults, validation."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from airflow_knative import options
from airflow_knative.gateway import cli
from airflow_knative.gateway.settings import GatewaySettings

ENV_VARS = {
    "AIRFLOW_KNATIVE_GATEWAY_HOST": "0.0.0.0",
    "PORT": "9999",
    "AIRFLOW_KNATIVE_AIRFLOW_URL": "http://airflow:8080/",
    "AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT": "12.5",
    "AIRFLOW_KNATIVE_GATEWAY_MAX_BODY_BYTES": "2048",
    "AIRFLOW_KNATIVE_GATEWAY_POLL_INTERVAL": "0.2",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for opt in options.cli_options(GatewaySettings):
        for name in opt.spec.env:
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings.from_args(parse([]))
    assert settings == GatewaySettings()
    assert (settings.host, settings.port, settings.airflow_url) == (
        "127.0.0.1",
        8000,
        "http://127.0.0.1:8080",
    )
    assert (settings.wait_timeout, settings.max_body_bytes, settings.poll_interval) == (300, 1048576, 0.05)


def test_environment_variables(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in ENV_VARS.items():
        clean_env.setenv(name, value)
    settings = GatewaySettings.from_args(parse([]))
    assert settings.host == ENV_VARS["AIRFLOW_KNATIVE_GATEWAY_HOST"]
    assert settings.port == 9999
    assert settings.airflow_url == "http://airflow:8080"  # trailing slash dropped
    assert settings.wait_timeout == 12.5
    assert settings.max_body_bytes == 2048
    assert settings.poll_interval == 0.2


def test_flags_win_over_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "9999")
    args = parse(
        ["--port", "1234", "--airflow-url", "https://x", "--wait-timeout", "5", "--max-body-bytes", "7"]
    )
    settings = GatewaySettings.from_args(args)
    assert (settings.port, settings.airflow_url, settings.wait_timeout, settings.max_body_bytes) == (
        1234,
        "https://x",
        5,
        7,
    )


def test_bad_environment_value_is_a_usage_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "eighty")
    with pytest.raises(SystemExit):
        parse([])


@pytest.mark.parametrize(
    "changes",
    [
        {"wait_timeout": 0},
        {"poll_interval": -1},
        {"max_body_bytes": 0},
        {"token_ttl": -1},
        {"airflow_url": "airflow:8080"},
        {"airflow_max_connections": 0},
    ],
)
def test_invalid_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GatewaySettings(**changes)  # type: ignore[arg-type]


def test_run_reports_invalid_settings_with_exit_status_2(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.run(parse(["--wait-timeout", "0"])) == 2
    assert "wait_timeout" in capsys.readouterr().err


def test_cli_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, airflow_knative.gateway.cli; "
        "heavy = [m for m in ('airflow', 'starlette', 'httpx', 'uvicorn') if m in sys.modules]; "
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_console_script_has_the_gateway_command() -> None:
    from airflow_knative.cli import build_parser

    args = build_parser().parse_args(["gateway", "--port", "8123"])
    assert args.module == "airflow_knative.gateway.cli"
    assert args.port == 8123
