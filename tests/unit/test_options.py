"""Command-line options declared once per component: flags, environment variables, defaults, docs."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from airflow_knative import options
from airflow_knative.cli import build_parser
from airflow_knative.gateway.settings import GatewaySettings
from airflow_knative.local.config import StackConfig, environment_variable
from airflow_knative.worker.cli import WorkerOptions

COMPONENTS = {"worker": WorkerOptions, "gateway": GatewaySettings, "dev": StackConfig}

#: Names the chart templates, the local stack, tests and docs already use: they must keep working.
KNOWN_FLAGS_AND_ENV = {
    "worker": {
        "--host": "AIRFLOW_KNATIVE_WORKER_HOST",
        "--port": "PORT",
        "--concurrency": "AIRFLOW_KNATIVE_WORKER_CONCURRENCY",
        "--secret-file": "AIRFLOW_KNATIVE_SECRET_FILE",
        "--execution-api-url": "AIRFLOW_KNATIVE_EXECUTION_API_URL",
        "--grace-period": "AIRFLOW_KNATIVE_WORKER_GRACE_PERIOD",
    },
    "gateway": {
        "--host": "AIRFLOW_KNATIVE_GATEWAY_HOST",
        "--port": "PORT",
        "--airflow-url": "AIRFLOW_KNATIVE_AIRFLOW_URL",
        "--wait-timeout": "AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT",
        "--airflow-max-connections": "AIRFLOW_KNATIVE_GATEWAY_AIRFLOW_MAX_CONNECTIONS",
    },
    "dev": {
        "--home": "AIRFLOW_KNATIVE_DEV_HOME",
        "--database-url": "AIRFLOW_KNATIVE_DEV_DATABASE_URL",
        "--api-port": "AIRFLOW_KNATIVE_DEV_API_PORT",
        "--gateway-port": "AIRFLOW_KNATIVE_DEV_GATEWAY_PORT",
        "--worker-base-port": "AIRFLOW_KNATIVE_DEV_WORKER_BASE_PORT",
        "--admin-user": "AIRFLOW_KNATIVE_DEV_USER",
        "--admin-password": "AIRFLOW_KNATIVE_DEV_PASSWORD",
        "--activator-port": "AIRFLOW_KNATIVE_DEV_ACTIVATOR_PORT",
    },
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for cls in COMPONENTS.values():
        for opt in options.cli_options(cls):
            for name in opt.spec.env:
                monkeypatch.delenv(name, raising=False)
    return monkeypatch


def parse(command: str, *argv: str) -> argparse.Namespace:
    return build_parser().parse_args([command, *argv])


@pytest.mark.parametrize("command", sorted(COMPONENTS))
def test_every_option_has_an_environment_variable_and_help(command: str) -> None:
    for opt in options.cli_options(COMPONENTS[command]):
        assert opt.spec.env and all(name.isupper() for name in opt.spec.env), opt.name
        assert len(opt.spec.help) > 10, opt.name


@pytest.mark.parametrize("command", sorted(KNOWN_FLAGS_AND_ENV))
def test_existing_flag_and_environment_names_keep_working(command: str) -> None:
    declared = {opt.spec.flag: opt.spec.env[0] for opt in options.cli_options(COMPONENTS[command])}
    assert KNOWN_FLAGS_AND_ENV[command].items() <= declared.items()


def test_defaults_come_from_the_declaration(clean_env: pytest.MonkeyPatch) -> None:
    del clean_env
    worker = parse("worker")
    assert (worker.host, worker.port, worker.concurrency, worker.heartbeat_interval) == (
        "127.0.0.1",
        8080,
        1,
        5.0,
    )
    assert worker.name == socket.gethostname()
    dev = parse("dev")
    assert (dev.home, dev.workers, dev.scale_to_zero, dev.prewarm) == (Path(".run"), 2, False, True)


def test_environment_sets_defaults_and_flags_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AIRFLOW_KNATIVE_WORKER_HEARTBEAT_INTERVAL", "0.5")
    clean_env.setenv("K_REVISION", "double-00001")
    clean_env.setenv("AIRFLOW_KNATIVE_DEV_WORKERS", "3")
    assert parse("worker").heartbeat_interval == 0.5
    assert parse("worker").name == "double-00001"  # Knative's variable, as before
    assert parse("worker", "--name", "mine").name == "mine"
    assert parse("dev").workers == 3
    assert parse("dev", "--workers", "1").workers == 1


def test_boolean_options_flip_with_their_flag_or_environment(clean_env: pytest.MonkeyPatch) -> None:
    assert parse("dev", "--scale-to-zero", "--no-prewarm").scale_to_zero is True
    assert parse("dev", "--no-prewarm").prewarm is False
    clean_env.setenv("AIRFLOW_KNATIVE_DEV_PREWARM", "false")
    clean_env.setenv("AIRFLOW_KNATIVE_DEV_SCALE_TO_ZERO", "yes")
    args = parse("dev")
    assert (args.prewarm, args.scale_to_zero) == (False, True)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("AIRFLOW_KNATIVE_DEV_PREWARM", "maybe"), ("AIRFLOW_KNATIVE_DEV_WORKERS", "two")],
)
def test_a_bad_environment_value_is_a_usage_error_naming_the_option(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(SystemExit):
        parse("dev")
    assert value in capsys.readouterr().err


def test_dev_options_build_the_stack_config(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    del clean_env
    config = StackConfig.from_args(
        parse("dev", "--home", str(tmp_path), "--no-prewarm", "--api-port", "18080")
    )
    assert config.home == tmp_path.resolve()
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'airflow' / 'airflow.db'}"
    assert (config.api_port, config.prewarm, config.task_heartbeat_timeout) == (18080, False, None)
    assert environment_variable("--api-port") == "AIRFLOW_KNATIVE_DEV_API_PORT"


def test_docs_table_lists_every_option() -> None:
    table = options.markdown_table(WorkerOptions)
    for opt in options.cli_options(WorkerOptions):
        assert f"| `{opt.spec.flag}` | `{opt.spec.env[0]}`" in table
    assert "the host name" in table
