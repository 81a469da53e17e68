"""Command-line options declared once per component, as fields of a frozen dataclass.

Each component (``worker``, ``gateway``, ``dev``) declares its options as the fields
of one dataclass, each field made with :func:`option`: its name, type, default,
environment variable and help text. From that one declaration come the argparse
flags (:func:`add_arguments`), the environment variables behind their defaults, the
value the component runs with (:func:`from_namespace`) and its options table in the
README or docs/gateway.md (:func:`markdown_table`, written by ``make docs-tables``).

Only the standard library is imported here: the top-level CLI builds every
sub-command's parser, and a component's heavy imports happen when it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_METADATA_KEY = "airflow_knative.option"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
T = TypeVar("T")


@dataclass(frozen=True)
class OptionSpec:
    """How one dataclass field is set from the command line and the environment."""

    flag: str
    #: Environment variables that set the default, first set one wins (``PORT`` is Knative's).
    env: tuple[str, ...]
    help: str
    choices: tuple[str, ...] | None = None
    #: What the docs show as the default when it is computed (e.g. the host name).
    default_doc: str | None = None


@dataclass(frozen=True)
class CliOption:
    """One resolved option: the field's name, type and default with its :class:`OptionSpec`."""

    name: str
    kind: type
    default: Any
    spec: OptionSpec

    @property
    def default_text(self) -> str:
        """The default as the docs and ``--help`` show it."""
        if self.spec.default_doc is not None:
            return self.spec.default_doc
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return str(self.default)


def option(
    flag: str,
    env: str | Sequence[str],
    help: str,
    *,
    default: Any = dataclasses.MISSING,
    default_factory: Callable[[], Any] | None = None,
    choices: Sequence[str] | None = None,
    default_doc: str | None = None,
) -> Any:
    """A dataclass field that is also a command-line option with an environment variable."""
    spec = OptionSpec(
        flag=flag,
        env=(env,) if isinstance(env, str) else tuple(env),
        help=help,
        choices=tuple(choices) if choices is not None else None,
        default_doc=default_doc,
    )
    metadata = {_METADATA_KEY: spec}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def cli_options(cls: type) -> list[CliOption]:
    """The fields of ``cls`` made with :func:`option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(_METADATA_KEY)
        if spec is None:
            continue
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        found.append(CliOption(name=field.name, kind=hints[field.name], default=default, spec=spec))
    return found


def parse_bool(text: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off) as environment variables spell them."""
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class _StoreConst(argparse.Action):
    """A flag without a value whose default (an environment variable's text) is still type-converted."""

    def __init__(self, option_strings: list[str], dest: str, const: Any, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, const=const, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, self.const)


def _environment_text(names: Sequence[str]) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per option of ``cls``; its default is the environment variable, else the field's.

    Environment values are given to argparse as text, so a bad one (``PORT=eighty``)
    is reported as a usage error of this command, like a bad flag.
    """
    for opt in cli_options(cls):
        from_env = _environment_text(opt.spec.env)
        env_names = ", ".join(f"${name}" for name in opt.spec.env)
        help_text = f"{opt.spec.help} Env {env_names}; default {opt.default_text or '(empty)'}."
        if opt.kind is bool:
            # A flag that flips the default: --scale-to-zero sets True, --no-prewarm sets False.
            parser.add_argument(
                opt.spec.flag,
                dest=opt.name,
                action=_StoreConst,
                const=not opt.default,
                type=parse_bool,
                default=from_env if from_env is not None else opt.default,
                help=help_text,
            )
            continue
        parser.add_argument(
            opt.spec.flag,
            dest=opt.name,
            type=_converter(opt.kind),
            choices=opt.spec.choices,
            default=from_env if from_env is not None else opt.default,
            help=help_text,
        )


def _converter(kind: type) -> Callable[[str], Any]:
    if kind in (str, int, float, Path):
        return kind
    raise TypeError(f"options of type {kind!r} are not supported; use str, int, float, bool or Path")


def from_namespace(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed options; ``overrides`` replace (or add) field values."""
    values = {opt.name: getattr(args, opt.name) for opt in cli_options(cls)}
    values.update(overrides)
    return cls(**values)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(cls: type) -> str:
    """The options of ``cls`` as a Markdown table (flag, environment variable, default, description)."""
    rows = ["| flag | environment variable | default | description |", "|---|---|---|---|"]
    for opt in cli_options(cls):
        env = ", ".join(f"`{name}`" for name in opt.spec.env)
        if opt.spec.default_doc is not None:
            default = opt.spec.default_doc
        else:
            default = f"`{opt.default_text}`" if opt.default_text else "(empty)"
        if opt.spec.choices:
            default += " (one of " + ", ".join(f"`{c}`" for c in opt.spec.choices) + ")"
        rows.append(f"| `{opt.spec.flag}` | {env} | {_cell(default)} | {_cell(opt.spec.help)} |")
    return "\n".join(rows)
