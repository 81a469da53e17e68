"""The ``[knative_executor]`` section: environment overrides, required options, the secret file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from airflow_knative.settings import SECTION, ExecutorSettings, SettingsError, load_settings, read_secret


def env_name(option: str) -> str:
    return f"AIRFLOW__{SECTION.upper()}__{option.upper()}"


@pytest.fixture(autouse=True)
def clean_knative_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for spec in dataclasses.fields(ExecutorSettings):
        monkeypatch.delenv(env_name(spec.name), raising=False)


@pytest.fixture
def required(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(env_name("routing_file"), str(tmp_path / "routing.yaml"))
    monkeypatch.setenv(env_name("secret_file"), str(tmp_path / "secret"))


def test_env_overrides_are_read_with_their_types(
    required: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(env_name("dispatch_deadline"), "12.5")
    monkeypatch.setenv(env_name("accept_timeout"), "3")
    monkeypatch.setenv(env_name("inline_max_bytes"), "1024")
    monkeypatch.setenv(env_name("inline_cache_max_bytes"), "2048")

    settings = load_settings()

    assert settings.routing_file == str(tmp_path / "routing.yaml")
    assert settings.routing_path == tmp_path / "routing.yaml"
    assert settings.secret_file == str(tmp_path / "secret")
    assert settings.dispatch_deadline == 12.5
    assert settings.accept_timeout == 3.0
    assert isinstance(settings.accept_timeout, float)
    assert settings.inline_max_bytes == 1024
    assert isinstance(settings.inline_max_bytes, int)
    assert settings.inline_cache_max_bytes == 2048


def test_unset_options_keep_their_defaults(required: None) -> None:
    settings = load_settings()
    defaults = ExecutorSettings()

    for option in (
        "connect_timeout",
        "accept_timeout",
        "dispatch_deadline",
        "retry_initial_backoff",
        "retry_max_backoff",
        "stream_idle_timeout",
        "inline_max_bytes",
        "inline_cache_max_bytes",
    ):
        assert getattr(settings, option) == getattr(defaults, option), option


def test_empty_value_counts_as_unset(required: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(env_name("accept_timeout"), "")

    assert load_settings().accept_timeout == ExecutorSettings().accept_timeout


@pytest.mark.parametrize(
    ("option", "raw"), [("dispatch_deadline", "five minutes"), ("inline_max_bytes", "1.5")]
)
def test_wrongly_typed_value_names_the_option(
    required: None, monkeypatch: pytest.MonkeyPatch, option: str, raw: str
) -> None:
    monkeypatch.setenv(env_name(option), raw)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert f"[{SECTION}] {option}" in str(caught.value)
    assert repr(raw) in str(caught.value)


@pytest.mark.parametrize("missing", ["routing_file", "secret_file"])
def test_missing_required_option_names_the_env_var(
    required: None, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv(env_name(missing))

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert env_name(missing) in str(caught.value)
    assert f"[{SECTION}] {missing}" in str(caught.value)


def test_read_secret_strips_white_space(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("  0123456789abcdef-secret \n")

    assert read_secret(path, what="[knative_executor] secret_file") == "0123456789abcdef-secret"


@pytest.mark.parametrize("text", ["", "short", "   fifteen-chars  \n", "0123456789abcde"])
def test_read_secret_rejects_short_secrets(tmp_path: Path, text: str) -> None:
    path = tmp_path / "secret"
    path.write_text(text)

    with pytest.raises(SettingsError) as caught:
        read_secret(path, what="worker --secret-file")

    assert "worker --secret-file" in str(caught.value)
    assert str(path) in str(caught.value)
    assert "16" in str(caught.value)


def test_read_secret_accepts_exactly_sixteen_characters(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("0123456789abcdef")

    assert read_secret(path, what="x") == "0123456789abcdef"


def test_read_secret_on_a_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "no-secret-here"

    with pytest.raises(SettingsError) as caught:
        read_secret(path, what="[knative_executor] secret_file")

    assert str(path) in str(caught.value)
    assert "[knative_executor] secret_file" in str(caught.value)


def test_default_time_limits_fit_airflows_default_workload_token() -> None:
    """A fresh install must not warn at every scheduler start: the defaults agree with Airflow's."""
    from airflow.configuration import conf

    from airflow_knative.executor.retry_policy import time_limits_outlast_token

    defaults = ExecutorSettings()
    token_life = float(conf.get_default_value("scheduler", "task_queued_timeout"))
    assert not time_limits_outlast_token(
        defaults.dispatch_deadline, defaults.accept_timeout, defaults.token_margin, token_life
    )
    assert time_limits_outlast_token(300.0, 300.0, defaults.token_margin, token_life)
