"""Settings: where each value comes from, how the file and the environment spell
them, and how a typo or a bad value is refused (naming the key, its source, the
value and what is expected), down to ``provisioning up`` exiting 2 with one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from shared.settings import (
    DEFAULT_PROVIDER_MAP,
    OTHER_VARIABLES,
    Settings,
    SettingsError,
    env_name,
    load_settings,
)
from shared.settings_sources import EnvironmentSource


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PROVISIONING_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("PROVISIONING_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(EnvironmentSource, "warned", set())


def toml_file(tmp_path: Path, text: str, name: str = "provisioning.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def toml(value: Any) -> str:
    """A value in TOML (the subset settings use)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def refused(**kwargs: Any) -> SettingsError:
    with pytest.raises(SettingsError) as err:
        load_settings(**kwargs)
    return err.value


# -- precedence ---------------------------------------------------------------------------------


def test_the_defaults_when_nothing_is_set() -> None:
    settings = load_settings()
    assert settings == Settings()
    assert (settings.host, settings.orchestrator_port, settings.control_center_port) == (
        "127.0.0.1",
        9090,
        9080,
    )
    assert settings.provider_map == DEFAULT_PROVIDER_MAP
    assert settings.mfa_required_roles == ("admin", "operator")
    assert settings.config_file is None
    assert (settings.policies_dir / "model.conf").exists()


def test_arguments_beat_the_environment_which_beats_the_file_which_beats_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml_file(
        tmp_path,
        'log_level = "WARNING"\norchestrator_port = 1111\ncontrol_center_port = 2222\nhost = "10.0.0.1"\n',
    )
    monkeypatch.setenv("PROVISIONING_ORCHESTRATOR_PORT", "3333")
    monkeypatch.setenv("PROVISIONING_CONTROL_CENTER_PORT", "4444")
    settings = load_settings(path, orchestrator_port=5555)
    assert settings.orchestrator_port == 5555  # argument over environment and file
    assert settings.control_center_port == 4444  # environment over file
    assert (settings.log_level, settings.host) == ("WARNING", "10.0.0.1")  # file over defaults
    assert settings.db_namespace == "provisioning"  # default
    assert settings.config_file == path


def test_the_file_may_be_named_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml_file(tmp_path, "orchestrator_port = 1234\n")
    monkeypatch.setenv("PROVISIONING_CONFIG", str(path))
    settings = load_settings()
    assert (settings.orchestrator_port, settings.config_file) == (1234, path)
    # An explicit file wins over the variable's.
    other = toml_file(tmp_path, "orchestrator_port = 4321\n", "other.toml")
    assert load_settings(other).orchestrator_port == 4321


def test_settings_are_immutable_and_copies_are_explicit() -> None:
    settings = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.orchestrator_port = 1  # type: ignore[misc]
    variant = settings.model_copy(update={"runner_user": "someone"})
    assert (variant.runner_user, settings.runner_user) == ("someone", "provisioning-runner")


def test_the_derived_store_url() -> None:
    assert load_settings(db_url="mem://").resolved_db_url == "mem://"
    settings = load_settings(data_dir=Path("/srv/p"))
    assert settings.resolved_db_url == "surrealkv:///srv/p/db" and settings.is_embedded_file_store
    assert not load_settings(db_url="ws://db:8000").is_embedded_file_store


# -- the TOML layout ------------------------------------------------------------------------------


SPECIAL_VALUES: dict[str, Any] = {
    "log_level": "DEBUG",
    "log_format": "text",
    "rate_limit_auth": "7/minute",
    "rate_limit_default": "7/minute",
    "rate_limit_batch": "7/minute",
    "rate_limit_refresh": "7/minute",
    "lockout_trusted_addresses": ["10.0.0.0/8"],
    "webhook_retry_schedule_s": [1.0, 2.5],
    "webhook_jitter": 0.5,
    "provider_map": {"aws": "echo"},
    "webhook_endpoints": [{"url": "https://hooks.example.com/x", "events": ["batch.completed"]}],
    "cors_origins": ["https://console.example.com", "http://localhost:5173"],
    "console_orchestrator_url": "https://orchestrator.example.com",
    "extensions": {"hello": {"grants": ["ROUTES"], "enabled": False}},
}


def changed_value(name: str) -> Any:
    """A valid value unlike the default, in TOML's types."""
    if name in SPECIAL_VALUES:
        return SPECIAL_VALUES[name]
    default = Settings.model_fields[name].get_default(call_default_factory=True)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 1
    if isinstance(default, float):
        return default + 1.5
    if isinstance(default, Path):
        return "/srv/changed"
    if isinstance(default, tuple):
        return ["alpha", "beta"]
    return "changed"


def expected_value(name: str, value: Any) -> Any:
    if name == "provider_map":
        return {**DEFAULT_PROVIDER_MAP, **value}
    if isinstance(value, list):
        return tuple(value)
    if name in ("data_dir", "policies_dir"):
        return Path(value)
    return value


FIELDS = [name for name in Settings.model_fields if name != "config_file"]


@pytest.mark.parametrize("name", FIELDS)
def test_every_setting_is_a_top_level_key_and_a_section_key(tmp_path: Path, name: str) -> None:
    value = changed_value(name)
    flat = load_settings(toml_file(tmp_path, f"{name} = {toml(value)}\n"))
    assert getattr(flat, name) == expected_value(name, value)
    if "_" not in name:
        return
    section, key = name.split("_", 1)  # [rate_limit] auth and [rate] limit_auth both work
    nested = load_settings(toml_file(tmp_path, f"[{section}]\n{key} = {toml(value)}\n", "nested.toml"))
    assert getattr(nested, name) == expected_value(name, value)


def test_the_documented_sections(tmp_path: Path) -> None:
    path = toml_file(
        tmp_path,
        """
data_dir = "/var/lib/provisioning"

[providers]
aws = "terraform"

[webhooks]
enabled = true
allow_private = true
endpoints = [{ url = "https://ci.example.com/hook", events = ["batch.completed"], secret = "whsec_x" }]

[commands]
allow = ["terraform", "kubectl"]

[http]
header_timeout_s = 3
max_connections_per_ip = 7

[rate_limit]
auth = "off"
refresh = "3/minute"

[lockout]
trusted_addresses = ["10.1.0.0/16"]
""",
    )
    settings = load_settings(path)
    assert settings.data_dir == Path("/var/lib/provisioning")
    assert settings.provider_map == {**DEFAULT_PROVIDER_MAP, "aws": "terraform"}
    assert settings.webhooks_allow_private is True
    assert settings.webhook_endpoints == (
        {"url": "https://ci.example.com/hook", "events": ["batch.completed"], "secret": "whsec_x"},
    )
    assert settings.commands_allow == ("terraform", "kubectl")
    assert (settings.http_header_timeout_s, settings.http_max_connections_per_ip) == (3.0, 7)
    assert (settings.rate_limit_auth, settings.rate_limit_refresh) == ("off", "3/minute")
    assert settings.lockout_trusted_addresses == ("10.1.0.0/16",)


def test_disabled_static_webhooks_are_not_loaded(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[webhooks]\nenabled = false\nendpoints = [{ url = "https://a.example" }]\n')
    assert load_settings(path).webhook_endpoints == ()
    bad = toml_file(tmp_path, '[webhooks]\nenabled = "no"\n', "bad.toml")
    with pytest.raises(SettingsError, match=r"`\[webhooks\] enabled` in .*bad.toml: expected true or false"):
        load_settings(bad)


def test_a_number_where_text_is_expected_is_taken_as_text(tmp_path: Path) -> None:
    settings = load_settings(toml_file(tmp_path, "admin_password = 123456789012\n[rate_limit]\nauth = 0\n"))
    assert (settings.admin_password, settings.rate_limit_auth) == ("123456789012", "0")


# -- the environment's spelling -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "name", "expected"),
    [
        ("PROVISIONING_COMMANDS_ALLOW", "terraform, kubectl", "commands_allow", ("terraform", "kubectl")),
        ("PROVISIONING_COMMANDS_ALLOW", "", "commands_allow", ()),
        ("PROVISIONING_TRUSTED_PROXIES", "10.0.0.1,::1", "trusted_proxies", ("10.0.0.1", "::1")),
        ("PROVISIONING_MFA_REQUIRED_ROLES", "admin", "mfa_required_roles", ("admin",)),
        (
            "PROVISIONING_COMMAND_ENV_PASSTHROUGH",
            "AWS_PROFILE,,KUBECONFIG ",
            "command_env_passthrough",
            ("AWS_PROFILE", "KUBECONFIG"),
        ),
        (
            "PROVISIONING_LOCKOUT_TRUSTED_ADDRESSES",
            "10.0.0.0/8",
            "lockout_trusted_addresses",
            ("10.0.0.0/8",),
        ),
        ("PROVISIONING_WEBHOOK_RETRY_SCHEDULE_S", "0, 0.5,2", "webhook_retry_schedule_s", (0.0, 0.5, 2.0)),
        ("PROVISIONING_AUTH_ENABLED", "false", "auth_enabled", False),
        ("PROVISIONING_AUTH_ENABLED", " On", "auth_enabled", True),
        ("PROVISIONING_ACCESS_LOG", "0", "access_log", False),
        ("PROVISIONING_LOG_LEVEL", "debug", "log_level", "DEBUG"),
        ("PROVISIONING_DATA_DIR", "/srv/data", "data_dir", Path("/srv/data")),
        ("PROVISIONING_ORCHESTRATOR_PORT", "8080", "orchestrator_port", 8080),
        ("PROVISIONING_ROW_APPLY_IDLE_S", "0", "row_apply_idle_s", 0.0),
        ("PROVISIONING_API_TOKEN_MAX_DAYS", "30", "api_token_max_days", 30),
        (
            "PROVISIONING_MCP_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
            "mcp_allowed_origins",
            ("https://a.example", "https://b.example"),
        ),
        (
            "PROVISIONING_WEBHOOK_ENDPOINTS",
            '[{"url": "https://a.example"}]',
            "webhook_endpoints",
            ({"url": "https://a.example"},),
        ),
    ],
)
def test_environment_values(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, name: str, expected: Any
) -> None:
    monkeypatch.setenv(variable, raw)
    assert getattr(load_settings(), name) == expected


def test_every_setting_has_its_variable() -> None:
    assert env_name("rate_limit_auth") == "PROVISIONING_RATE_LIMIT_AUTH"
    assert env_name("config_file") == "PROVISIONING_CONFIG"
    assert not OTHER_VARIABLES & {env_name(name) for name in Settings.model_fields}


def test_the_provider_map_is_pairs_merged_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_PROVIDER_MAP", "aws=terraform, hetzner = echo")
    assert load_settings().provider_map == {**DEFAULT_PROVIDER_MAP, "aws": "terraform", "hetzner": "echo"}
    # Entries combine by name: defaults < file < environment < arguments.
    path = toml_file(tmp_path, '[providers]\naws = "pulumi"\ngcp = "gke"\nazure = "arm"\n')
    settings = load_settings(path, provider_map={"azure": "bicep"})
    assert settings.provider_map == {
        **DEFAULT_PROVIDER_MAP,
        "aws": "terraform",
        "hetzner": "echo",
        "gcp": "gke",
        "azure": "bicep",
    }
    monkeypatch.setenv("PROVISIONING_PROVIDER_MAP", "aws=terraform,hetzner")
    assert refused().problems == (
        "PROVISIONING_PROVIDER_MAP='aws=terraform,hetzner': expected name=implementation pairs "
        "separated by commas, not 'hetzner' (provider_map)",
    )


def test_unknown_variables_are_warned_about_once_not_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PROVISIONING_LOG_LEVLE", "DEBUG")
    for name in OTHER_VARIABLES:  # the client's and the command runner's own: not settings, not typos
        monkeypatch.setenv(name, "x")
    with caplog.at_level(logging.WARNING, logger="provisioning.settings"):
        assert load_settings().log_level == "INFO"
        load_settings()
    assert [r.getMessage() for r in caplog.records] == [
        "PROVISIONING_LOG_LEVLE is not a setting and is ignored (did you mean `PROVISIONING_LOG_LEVEL`?)"
    ]


# -- refusals ----------------------------------------------------------------------------------------


def test_an_unknown_key_of_the_file_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'log_levle = "DEBUG"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert err.value.problems == (f"`log_levle` in {path}: unknown setting (did you mean `log_level`?)",)
    assert err.value.message == f"invalid settings: {err.value.problems[0]}"


def test_an_unknown_key_in_a_section_is_refused_with_a_suggestion_in_that_section(tmp_path: Path) -> None:
    path = toml_file(
        tmp_path,
        '[rate_limit]\nauht = "1/second"\n[webhooks]\nallow_privat = true\n[ratelimit]\nbatch = "1/second"\n'
        "[http]\nnothing_like_it = 1\n",
    )
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert set(err.value.problems) == {
        f"`[rate_limit] auht` in {path}: unknown setting (did you mean `[rate_limit] auth`?)",
        f"`[webhooks] allow_privat` in {path}: unknown setting (did you mean `[webhooks] allow_private`?)",
        f"`[ratelimit] batch` in {path}: unknown setting (did you mean `rate_limit_batch`?)",
        f"`[http] nothing_like_it` in {path}: unknown setting",
    }


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        ("PROVISIONING_ORCHESTRATOR_PORT", "abc", "expected an integer from 1 to 65535 (orchestrator_port)"),
        (
            "PROVISIONING_CONTROL_CENTER_PORT",
            "0",
            "expected an integer from 1 to 65535 (control_center_port)",
        ),
        (
            "PROVISIONING_ORCHESTRATOR_PORT",
            "65536",
            "expected an integer from 1 to 65535 (orchestrator_port)",
        ),
        (
            "PROVISIONING_HTTP_HEADER_TIMEOUT_S",
            "0",
            "expected a number greater than 0 (http_header_timeout_s)",
        ),
        ("PROVISIONING_DEFAULT_TIMEOUT_S", "soon", "expected a number greater than 0 (default_timeout_s)"),
        ("PROVISIONING_MAX_BODY_BYTES", "-1", "expected an integer of at least 1 (max_body_bytes)"),
        ("PROVISIONING_WEBHOOK_JITTER", "2", "expected a number from 0 to 1 (webhook_jitter)"),
        ("PROVISIONING_AUTH_ENABLED", "maybe", "expected true or false (auth_enabled)"),
        (
            "PROVISIONING_LOG_LEVEL",
            "loud",
            "expected one of CRITICAL, ERROR, WARNING, INFO, DEBUG (log_level)",
        ),
        ("PROVISIONING_LOG_FORMAT", "jsno", "expected json or text (log_format)"),
        (
            "PROVISIONING_RATE_LIMIT_AUTH",
            "5/minit",
            "expected a rate such as 5/minute, or off (rate_limit_auth)",
        ),
        (
            "PROVISIONING_LOCKOUT_TRUSTED_ADDRESSES",
            "10.0.0.0/8,office",
            "expected IP addresses or networks (like 10.0.0.0/8), not 'office' (lockout_trusted_addresses)",
        ),
        (
            "PROVISIONING_WEBHOOK_RETRY_SCHEDULE_S",
            "0,later",
            "expected a number (webhook_retry_schedule_s[1])",
        ),
        (
            "PROVISIONING_WEBHOOK_RETRY_SCHEDULE_S",
            "",
            "expected a value that is not empty (webhook_retry_schedule_s)",
        ),
        ("PROVISIONING_DB_NAMESPACE", "", "expected a value that is not empty (db_namespace)"),
        ("PROVISIONING_API_TOKEN_MAX_DAYS", "0", "expected an integer from 1 to 3650 (api_token_max_days)"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, expected: str
) -> None:
    monkeypatch.setenv(variable, raw)
    assert refused().problems == (f"{variable}={raw!r}: {expected}",)


def test_engine_document_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    defaults = load_settings()
    assert (defaults.live_document_max_age_s, defaults.gc_gen0_threshold) == (0.25, 20_000)
    monkeypatch.setenv("PROVISIONING_LIVE_DOCUMENT_MAX_AGE_S", "0")  # capture at every read
    monkeypatch.setenv("PROVISIONING_GC_GEN0_THRESHOLD", "0")  # Python's own threshold
    assert (load_settings().live_document_max_age_s, load_settings().gc_gen0_threshold) == (0.0, 0)
    path = toml_file(tmp_path, "[live_document]\nmax_age_s = -1\n")
    monkeypatch.delenv("PROVISIONING_LIVE_DOCUMENT_MAX_AGE_S")
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert err.value.problems == (
        f"`[live_document] max_age_s` = -1 in {path}: "
        "expected a number of at least 0 (live_document_max_age_s)",
    )


def test_a_bad_value_in_the_file_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'orchestrator_port = "abc"\n[http]\nidle_timeout_s = -1\n')
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert err.value.problems == (
        f"`orchestrator_port` = 'abc' in {path}: expected an integer from 1 to 65535 (orchestrator_port)",
        f"`[http] idle_timeout_s` = -1 in {path}: expected a number greater than 0 (http_idle_timeout_s)",
    )


def test_every_problem_is_reported_at_once_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVISIONING_ORCHESTRATOR_PORT", "abc")
    path = toml_file(tmp_path, 'log_levle = "DEBUG"\n[http]\nidle_timeout_s = 0\n')
    err = refused(config_file=path, ws_queue_size=0)
    assert len(err.problems) == 4
    assert "\n" not in err.message and err.message.count("; ") == 3


def test_an_unknown_or_bad_argument_is_refused() -> None:
    assert refused(log_levle="DEBUG").problems == (
        "`log_levle` (keyword argument): unknown setting (did you mean `log_level`?)",
    )
    assert refused(orchestrator_port="x").problems == (
        "orchestrator_port='x' (keyword argument): expected an integer from 1 to 65535 (orchestrator_port)",
    )


def test_a_bad_secret_is_named_but_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    err = refused(secret_key=["s3cr3t-value"])
    assert err.problems == ("secret_key=<hidden> (keyword argument): expected text (secret_key)",)
    monkeypatch.setenv("PROVISIONING_WEBHOOK_ENDPOINTS", '[{"url": "https://a.example", "secret": "whsec_zz"')
    assert "whsec_zz" not in refused().message
    monkeypatch.setenv(
        "PROVISIONING_WEBHOOK_ENDPOINTS", '[{"url": "https://a.example", "secret": 5, "evnets": []}]'
    )
    assert refused().problems == (
        "PROVISIONING_WEBHOOK_ENDPOINTS=<hidden>: expected text (webhook_endpoints[0].secret)",
        "PROVISIONING_WEBHOOK_ENDPOINTS=<hidden>: unknown key (webhook_endpoints[0].evnets)",
    )


def test_an_unreadable_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(SettingsError, match=f"{missing}: cannot read the settings file"):
        load_settings(missing)
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(toml_file(tmp_path, "log_level = \n"))
    twice = toml_file(
        tmp_path, 'rate_limit_auth = "1/second"\n[rate_limit]\nauth = "2/second"\n', "twice.toml"
    )
    with pytest.raises(SettingsError, match=r"`rate_limit_auth` and `\[rate_limit\] auth` .* both set"):
        load_settings(twice)


# -- the CLI -------------------------------------------------------------------------------------


def run_cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PROVISIONING_")}
    environ.update(PROVISIONING_DATA_DIR=str(tmp_path / "data"), PROVISIONING_DB_URL="mem://", **env)
    return subprocess.run(
        [sys.executable, "-m", "provisioning", *argv],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_provisioning_up_with_a_bad_value_exits_2_with_one_line(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "up", PROVISIONING_ORCHESTRATOR_PORT="abc")
    assert done.returncode == 2
    assert done.stderr == (
        "provisioning: invalid settings: PROVISIONING_ORCHESTRATOR_PORT='abc': "
        "expected an integer from 1 to 65535 (orchestrator_port)\n"
    )
    assert done.stdout == ""


def test_provisioning_up_with_a_typo_in_the_file_exits_2_with_one_line(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[rate_limit]\nauht = "1/second"\n')
    done = run_cli(tmp_path, "--config", str(path), "up")
    assert done.returncode == 2
    assert done.stderr == (
        f"provisioning: invalid settings: `[rate_limit] auht` in {path}: unknown setting "
        "(did you mean `[rate_limit] auth`?)\n"
    )
    # Every command reads the same settings, the client's too.
    listed = run_cli(tmp_path, "--config", str(path), "batch", "list")
    assert (listed.returncode, listed.stderr) == (2, done.stderr)


# -- extensions --


def test_extension_tables_paths_and_grants(tmp_path: Path) -> None:
    path = toml_file(
        tmp_path,
        """
[extensions]
paths = ["/opt/ext", "/srv/one.py"]
hook_timeout_s = 3

[extensions.hello]
grants = ["ROUTES", "TOOLS"]

[extensions.other]
enabled = false
""",
    )
    settings = load_settings(path)
    assert settings.ext_paths == ("/opt/ext", "/srv/one.py")
    assert settings.ext_hook_timeout_s == 3
    assert settings.extensions == {"hello": {"grants": ["ROUTES", "TOOLS"]}, "other": {"enabled": False}}


def test_extension_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONING_EXT_PATHS", "/a:/b,/c")
    monkeypatch.setenv("PROVISIONING_EXTENSIONS", '{"hello": {"grants": ["EVENTS_PUB"]}}')
    settings = load_settings()
    assert settings.ext_paths == ("/a", "/b", "/c")
    assert settings.extensions == {"hello": {"grants": ["EVENTS_PUB"]}}


def test_extension_tables_refuse_unknown_keys_and_capabilities(tmp_path: Path) -> None:
    path = toml_file(tmp_path, '[extensions.hello]\ngrants = ["EVERYTHING"]\ngrant = ["ROUTES"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(path)
    text = str(caught.value)
    assert "extensions.hello.grants[0]" in text and "ROUTES, TOOLS" in text
    assert "extensions.hello.grant" in text and "unknown key" in text
    with pytest.raises(SettingsError, match="JSON object"):
        load_settings(extensions="{not json")
