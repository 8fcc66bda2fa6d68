"""Where settings come from and how their problems are told: the environment
(``PROVISIONING_<NAME>``) and the TOML file as pydantic-settings sources, and one
readable line per bad value, naming its source (see :mod:`shared.settings`, whose
model uses them)."""

from __future__ import annotations

import difflib
import json
import logging
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from shared.errors import ProvisioningError

log = logging.getLogger("provisioning.settings")

ENV_PREFIX = "PROVISIONING_"
CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"  # names the TOML file (the ``config_file`` setting)
# Variables with the prefix that are ours but not service settings: the CLI's client
# side (server URL, saved-token override, login password) and what a ``command``
# operation is given (docs/orchestrator.md). Never warned about.
OTHER_VARIABLES = frozenset(
    ENV_PREFIX + name
    for name in (
        *("URL", "TOKEN", "PASSWORD", "TASK_ID", "WORKFLOW_ID", "OPERATION", "ATTEMPT"),
        *("ORCHESTRATOR_URL", "CONTEXT", "USERNAME", "MFA_CODE", "NEW_PASSWORD"),  # the CLI's (docs/cli.md)
    )
)

_VALUE_CHARS = 80  # a bad value is quoted up to this long in an error


class SettingsError(ProvisioningError):
    """The settings cannot be used: every problem found, each naming its source.

    ``message`` is one line (``provisioning up`` prints it and exits 2);
    ``problems`` holds the problems one by one."""

    code = "invalid_settings"

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid settings: " + "; ".join(self.problems), details={"problems": self.problems})


def env_name(field: str) -> str:
    """The environment variable of a setting (``config_file`` is ``PROVISIONING_CONFIG``)."""
    return CONFIG_VARIABLE if field == "config_file" else ENV_PREFIX + field.upper()


def parse_pairs(value: Any) -> Any:
    """``"upcloud=local, aws=terraform"`` → a dict (the environment's spelling of a table)."""
    if not isinstance(value, str):
        return value
    out: dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, sep, impl = part.partition("=")
        if not (sep and name.strip() and impl.strip()):
            raise ValueError(f"expected name=implementation pairs separated by commas, not {part!r}")
        out[name.strip()] = impl.strip()
    return out


# -- sources ------------------------------------------------------------------------------------


class EnvironmentSource(PydanticBaseSettingsSource):
    """``PROVISIONING_<NAME>`` variables, raw strings (the model splits lists and pairs).

    Unknown variables with the prefix are warned about once per process, not
    refused: other tools may use the prefix."""

    warned: set[str] = set()

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.environ: Mapping[str, str] = os.environ
        self.names = {env_name(field): field for field in settings_cls.model_fields}

    @property
    def config_path(self) -> str | None:
        return self.environ.get(CONFIG_VARIABLE) or None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        value = self.environ.get(env_name(field_name))
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for variable, raw in self.environ.items():
            if not variable.startswith(ENV_PREFIX):
                continue
            field = self.names.get(variable)
            if field is None:
                self._warn_unknown(variable)
            elif field == "provider_map":
                # As a table, so that its entries combine with the file's by name.
                try:
                    out[field] = parse_pairs(raw)
                except ValueError:
                    out[field] = raw  # the model refuses it, naming this variable
            else:
                out[field] = raw
        return out

    def _warn_unknown(self, variable: str) -> None:
        if variable in OTHER_VARIABLES or variable in self.warned:
            return
        self.warned.add(variable)
        log.warning("%s is not a setting and is ignored%s", variable, _did_you_mean(variable, self.names))


class TomlFileSource(PydanticBaseSettingsSource):
    """The TOML file, flattened to settings names (see the module docstring).

    Unknown keys are passed on as they are, so the model refuses them together with
    any bad value; :attr:`keys` remembers how each name was spelled in the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | Path | None) -> None:
        super().__init__(settings_cls)
        self.path = Path(path) if path else None
        self.values: dict[str, Any] = {}
        self.keys: dict[str, tuple[str | None, str | None]] = {}  # name → (section, key) in the file
        if self.path is not None:
            self._read(self.path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)

    def _read(self, path: Path) -> None:
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError([f"{path}: cannot read the settings file ({exc.strerror})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError([f"{path}: not valid TOML ({exc})"]) from None
        for key, value in doc.items():
            if key in ("providers", "provider_map"):
                self._put("provider_map", value, key, None)
            elif key == "webhooks":
                if not isinstance(value, dict):
                    raise SettingsError([f"`webhooks` in {path}: expected a table ([webhooks])"])
                enabled = value.get("enabled", True)
                if not isinstance(enabled, bool):
                    raise SettingsError([f"`[webhooks] enabled` in {path}: expected true or false"])
                for sub, subval in value.items():
                    if sub == "endpoints":
                        if enabled:
                            self._put("webhook_endpoints", subval, "webhooks", sub)
                    elif sub != "enabled":
                        self._put(f"webhooks_{sub}", subval, "webhooks", sub)
            elif key == "extensions" and isinstance(value, dict):
                # [extensions.<id>] tables configure one extension each; other keys are
                # settings: `paths` is ext_paths, `hook_timeout_s` ext_hook_timeout_s, …
                tables = {k: v for k, v in value.items() if isinstance(v, dict)}
                if tables:
                    self._put("extensions", tables, key, None)
                for sub, subval in value.items():
                    if not isinstance(subval, dict):
                        self._put(f"ext_{sub}", subval, key, sub)
            elif isinstance(value, dict):
                for sub, subval in value.items():
                    self._put(f"{key}_{sub}", subval, key, sub)
            else:
                self._put(key, value, None, key)

    def _put(self, name: str, value: Any, section: str | None, key: str | None) -> None:
        if name in self.values:
            raise SettingsError(
                [
                    f"{_toml_key(self.keys[name])} and {_toml_key((section, key))} in {self.path} "
                    f"both set {name}"
                ]
            )
        self.values[name] = value
        self.keys[name] = (section, key)


# -- errors -------------------------------------------------------------------------------------


def _toml_key(where: tuple[str | None, str | None]) -> str:
    section, key = where
    if section is None:
        return f"`{key}`"
    return f"`[{section}]`" if key is None else f"`[{section}] {key}`"


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def _quoted(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def describe_problems(cls: type[BaseSettings], exc: ValidationError, values: dict[str, Any]) -> list[str]:
    """One readable problem per error: where the value came from, the value, what is expected.

    The sources are read again to find where each name came from: this runs only on
    the way to an error, and keeps the sources free of bookkeeping for it."""
    environment = EnvironmentSource(cls)
    variables = {field: variable for variable, field in environment.names.items()}
    try:
        toml = TomlFileSource(cls, values.get("config_file") or environment.config_path)
    except SettingsError:
        toml = TomlFileSource(cls, None)
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        name = str(loc[0]) if loc else ""
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            problems.append(_unknown(cls, name, toml))
            continue
        info = cls.model_fields.get(name)
        hidden = info is not None and info.repr is False
        variable = variables.get(name, "")

        def shown(raw: Any, hidden: bool = hidden) -> str:
            return "<hidden>" if hidden else _quoted(raw)

        if name in values:
            head = f"{name}={shown(values[name])} (keyword argument)"
        elif variable in environment.environ:
            head = f"{variable}={shown(environment.environ[variable])}"
        elif name in toml.values:
            head = f"{_toml_key(toml.keys[name])} = {shown(toml.values[name])} in {toml.path}"
        else:
            head = name
        path = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        problems.append(f"{head}: {_expected(cls, name, error)} ({path})")
    return problems


def _unknown(cls: type[BaseSettings], name: str, toml: TomlFileSource) -> str:
    """An unknown name, with the nearest known one in the spelling the user wrote."""
    fields = list(cls.model_fields)
    if name not in toml.values:
        return f"`{name}` (keyword argument): unknown setting{_did_you_mean(name, fields)}"
    section, key = toml.keys[name]
    hint = ""
    if section is not None and key is not None:
        inside = [f[len(section) + 1 :] for f in fields if f.startswith(section + "_")]
        match = difflib.get_close_matches(key, inside, n=1, cutoff=0.6)
        hint = f" (did you mean `[{section}] {match[0]}`?)" if match else ""
    return f"{_toml_key((section, key))} in {toml.path}: unknown setting{hint or _did_you_mean(name, fields)}"


# What a value should have been, by the family of pydantic's error type.
_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "text",
    "path": "a path",
    "dict": "a table",
    "tuple": "a list",
    "list": "a list",
}
_BOUNDS = (("ge", "of at least"), ("gt", "greater than"), ("le", "of at most"), ("lt", "less than"))


def _expected(cls: type[BaseSettings], name: str, error: ErrorDetails) -> str:
    """``expected an integer from 1 to 65535``: the type and, for a number, its whole range."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "value_error":  # our validators' own words
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return "expected " + str(ctx.get("expected", "")).replace("'", "")
    if kind == "missing":
        return "a required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("string_too_short", "too_short"):
        return "expected a value that is not empty"
    info = cls.model_fields.get(name)
    if len(error["loc"]) > 1 or info is None:  # an item of a list: the error knows its bound
        bound = next((f" {words} {ctx[key]:g}" for key, words in _BOUNDS if key in ctx), "")
        return f"expected {_KINDS.get(kind.split('_')[0], 'a number')}{bound}"
    what = _KINDS.get(kind.split("_")[0]) or ("an integer" if info.annotation is int else "a number")
    bounds = {key: getattr(meta, key) for meta in info.metadata for key, _ in _BOUNDS if hasattr(meta, key)}
    low = bounds.get("ge", bounds.get("gt"))
    if low is not None and "le" in bounds:
        return f"expected {what} from {low:g} to {bounds['le']:g}"
    words = next((f" {words} {bounds[key]:g}" for key, words in _BOUNDS if key in bounds), "")
    return f"expected {what}{words}"
