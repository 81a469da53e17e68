"""The provider info Airflow registers is derived from the one declaration of every option."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_knative.provider_info import EXECUTOR_CLASS, PACKAGE_NAME, config_section, get_provider_info
from airflow_knative.settings import (
    SECTION,
    ExecutorSettings,
    OptionSpec,
    _option,
    option_specs,
)

AIRFLOW_SCHEMA = Path(airflow.__file__).parent / "provider_info.schema.json"
OPTIONS = option_specs()


def test_provider_info_is_valid_for_airflows_providers_manager() -> None:
    schema = json.loads(AIRFLOW_SCHEMA.read_text())
    info = get_provider_info()

    jsonschema.validate(info, schema)
    # The schema leaves an option's fields to a definition; check them as Airflow's docs tooling does.
    jsonschema.validate(
        info["config"][SECTION]["options"],
        {"additionalProperties": schema["definitions"]["option"], "definitions": schema["definitions"]},
    )
    assert info["package-name"] == PACKAGE_NAME
    assert info["executors"] == [EXECUTOR_CLASS]


def test_every_settings_field_is_a_registered_option() -> None:
    registered = config_section()["options"]

    assert list(registered) == [spec.name for spec in dataclasses.fields(ExecutorSettings)]


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_every_option_has_a_description_and_an_example_of_its_type(option: OptionSpec) -> None:
    assert option.description.strip(), f"[{SECTION}] {option.name}: add a description (_option doc)"
    assert option.example, f"[{SECTION}] {option.name}: add an example (_option example=...)"
    assert isinstance(option.parse(option.example), option.kind)


@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_the_default_airflow_shows_is_the_default_the_code_uses(option: OptionSpec) -> None:
    registered = config_section()["options"][option.name]

    assert registered["type"] == option.airflow_type
    if option.required:
        assert registered["default"] is None  # no default: Airflow shows it commented out
    else:
        assert option.parse(registered["default"]) == getattr(ExecutorSettings(), option.name)


@dataclass(frozen=True)
class GrownSettings(ExecutorSettings):
    """ExecutorSettings after a change adds options (what another change to settings.py would do)."""

    prewarm: bool = _option(True, "Send a warm-up request at start.", example="False")
    callback_url: str | None = _option(None, "Where callbacks go.")


def test_new_options_are_derived_with_their_type_and_a_missing_example_shows() -> None:
    grown = {option.name: option for option in option_specs(GrownSettings)}

    assert grown["prewarm"].airflow_type == "boolean"
    assert grown["prewarm"].default_text == "True"
    assert grown["prewarm"].parse("false") is False
    assert grown["callback_url"].airflow_type == "string"
    assert grown["callback_url"].default_text is None  # no default: Airflow lists it commented out
    assert grown["callback_url"].example is None  # what the example test above rejects


def test_an_option_type_airflow_cfg_cannot_hold_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd(ExecutorSettings):
        services: list[str] = _option(None, "A list.", example="a,b")  # noqa: RUF009  # a field spec

    with pytest.raises(TypeError, match=r"\[knative_executor\] services"):
        option_specs(Odd)
