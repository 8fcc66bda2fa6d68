"""Settings from the environment (``PROVISIONING_*``) and an optional TOML file.

Precedence: explicit keyword arguments > environment > TOML file > defaults.
"""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def default_policies_dir() -> Path:
    """The shipped Casbin model and policy: beside the packages in a checkout or an
    editable install, under ``<prefix>/share/provisioning`` in a regular install."""
    for candidate in (PACKAGE_ROOT / "policies", Path(sys.prefix) / "share" / "provisioning" / "policies"):
        if (candidate / "model.conf").exists():
            return candidate
    return PACKAGE_ROOT / "policies"


DEFAULT_PROVIDER_MAP = {
    "upcloud": "local",
    "aws": "local",
    "gcp": "local",
    "azure": "local",
    "hetzner": "local",
    "local": "local",
    "command": "command",
    "noop": "noop",
}
ENV_PREFIX = "PROVISIONING_"


@dataclass(frozen=True)
class Settings:
    """Everything a service needs to start. Names carry units."""

    data_dir: Path = Path("./data")
    db_url: str = ""  # empty: surrealkv:// under data_dir
    db_namespace: str = "provisioning"
    db_database: str = "main"
    host: str = "127.0.0.1"
    orchestrator_port: int = 9090
    control_center_port: int = 9080
    log_level: str = "INFO"
    access_log: bool = True  # one JSON line per request, ?token= redacted
    log_format: str = "json"  # json | text
    provider_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PROVIDER_MAP))
    policies_dir: Path = field(default_factory=default_policies_dir)
    max_body_bytes: int = 1_048_576
    default_timeout_s: float = 300.0
    default_max_attempts: int = 3
    default_initial_delay_s: float = 1.0
    default_max_delay_s: float = 60.0
    output_limit_bytes: int = 65_536
    # Server environment variables a command operation inherits beyond the basics
    # (PATH, HOME, LANG, LC_*, TZ, TMPDIR, USER …), e.g. "AWS_PROFILE,KUBECONFIG".
    command_env_passthrough: tuple[str, ...] = ()
    write_batch_max: int = 2_000
    # Task and workflow rows are applied lazily from the journal (see shared/store/store.py):
    # once the writer has been idle this long, and at the latest at this age.
    row_apply_idle_s: float = 0.02
    row_apply_max_age_s: float = 1.0
    auth_enabled: bool = True
    admin_password: str = ""
    rate_limit_auth: str = "5/minute"
    rate_limit_default: str = "100/minute"
    rate_limit_batch: str = "10/minute"
    mfa_required_roles: tuple[str, ...] = ("admin", "operator")
    lockout_threshold: int = 5
    lockout_s: float = 900.0
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 7 * 24 * 3600
    jwt_issuer: str = "provisioning-control-center"
    jwt_audience: str = "provisioning"
    mfa_setup_token_ttl_s: int = 600
    mfa_issuer: str = "provisioning"
    password_min_length: int = 12
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 65_536
    argon2_parallelism: int = 2
    rate_limit_storage: str = "async+memory://"
    trusted_proxies: tuple[str, ...] = ()
    auth_sync_s: float = 2.0  # how often a service re-reads policy and revocations
    control_center_url: str = ""
    webhooks_allow_private: bool = False
    webhook_endpoints: tuple[dict[str, Any], ...] = ()
    event_retention_count: int = 10_000
    event_retention_s: float = 3600.0
    # Live streams (shared/events/streams.py)
    ws_queue_size: int = 1000  # events queued per connection before it is dropped (4408)
    ws_heartbeat_s: float = 30.0
    ws_auth_timeout_s: float = 10.0  # to send {"type": "auth"} when no token came with the upgrade
    ws_send_buffer_bytes: int = 262_144  # kernel send buffer per stream: bounds a stalled client
    sse_ping_s: float = 15.0
    # Webhooks (shared/webhooks): delays before attempt 1, 2, …; then the delivery has failed
    webhook_retry_schedule_s: tuple[float, ...] = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0)
    webhook_jitter: float = 0.2  # ± fraction of each retry delay
    webhook_timeout_s: float = 10.0
    webhook_max_response_bytes: int = 65_536
    webhook_failure_threshold: int = 5  # consecutive failed deliveries that disable a webhook
    webhook_rotation_grace_s: float = 86_400.0  # old secret still signs this long after rotation
    webhook_poll_s: float = 1.0  # how often the dispatcher looks for work queued by others
    webhook_refresh_s: float = 5.0  # how often subscriptions are reloaded from the store
    webhook_concurrency: int = 64  # webhooks delivered to at once (each one in order)
    webhook_log_retention_s: float = 7 * 86_400.0
    # -- command runner: who runs `command` operations, with what (issue 8) --
    # As root, each command runs as this unprivileged user and its group (created by
    # `provisioning doctor --fix`); never as root unless allow_root_commands is true.
    runner_user: str = "provisioning-runner"
    allow_root_commands: bool = False
    # Where commands run; an operation's cwd must lie inside. Empty: "<data_dir>-work",
    # beside the data directory (created 0700, owned by the runner user, when missing).
    command_work_root: str = ""

    # -- secrets at rest and the data directory (issue 8) --
    # The key-encryption key of secrets at rest (signing keys, TOTP and webhook secrets):
    # base64 of 32 bytes; several comma-separated while rotating (the first seals).
    secret_key: str = field(default="", repr=False)
    # Where the key lives when secret_key is empty; empty: <data_dir parent>/secret.key
    # (created 0600 at first start; a memory store without either uses a key of its own).
    secret_key_file: str = ""

    # -- request and input limits (issue 8) --
    max_json_depth: int = 64  # deeper JSON (bodies, WebSocket messages) is a 400
    max_string_chars: int = 65_536  # per string value in a body or query: longer is a 422

    # -- audit (issue 8) --
    # 401s from one client address for one reason: the first is recorded, the rest of the
    # window become one record with a count (so a flood of bad tokens stays a few rows)
    audit_refusal_window_s: float = 60.0
    audit_refusal_keys: int = 1000  # (address, reason) pairs tracked per window; more fold into one

    # -- login, sessions, MFA and passwords (issue 8) --
    # Consecutive failed logins lock an account for one client address at
    # ``lockout_threshold``; from all addresses together only at this many.
    lockout_account_threshold: int = 100
    # Addresses (or networks) from which the last enabled admin is never locked out.
    lockout_trusted_addresses: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    rate_limit_refresh: str = "30/minute"  # POST /auth/refresh, per client address

    # -- policy conditions (issue 8) --
    # Programs (argv[0] of `run`/`undo`, matched exactly) the shipped policy lets an
    # operator run in operations: [commands] allow = ["terraform", "kubectl"] or
    # PROVISIONING_COMMANDS_ALLOW=terraform,kubectl. Empty: only admins run commands.
    commands_allow: tuple[str, ...] = ()

    # -- connections, metrics and webhooks hardening (issue 8) --
    # Connections (shared/web/serve.py); TOML [http] header_timeout_s …
    http_header_timeout_s: float = 10.0  # a request's complete headers, from connect or its first byte
    http_body_timeout_s: float = 60.0  # a request's whole body, from its headers
    http_idle_timeout_s: float = 75.0  # keep-alive: an idle connection between requests is closed
    http_max_connections_per_ip: int = 100  # open connections per client address (trusted_proxies exempt)
    http_max_connections: int = 0  # open connections in all; 0: descriptor limit minus http_fd_reserve
    http_fd_reserve: int = 512  # descriptors kept for the store, pipes, subprocesses, webhooks
    http_accept_error_log_s: float = 10.0  # one log line per this for accept errors and refusals
    metrics_token: str = ""  # set: /metrics needs "Authorization: Bearer <token>"

    # -- API contract (issue 8) --

    config_file: Path | None = None

    @property
    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"surrealkv://{self.data_dir.resolve() / 'db'}"

    @property
    def is_embedded_file_store(self) -> bool:
        url = self.resolved_db_url
        return url.startswith(("surrealkv://", "file://", "rocksdb://"))


def _coerce(name: str, raw: Any, current: Any) -> Any:
    """Turn a TOML or environment value into the type of the default."""
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in {"1", "true", "yes", "on"}
    if isinstance(current, int) and not isinstance(current, bool):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, Path) or name in {"config_file", "policies_dir", "data_dir"}:
        return Path(raw)
    if isinstance(current, dict):
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        # "upcloud=local,aws=local"
        pairs = [p.split("=", 1) for p in str(raw).split(",") if "=" in p]
        merged = dict(current)
        merged.update({k.strip(): v.strip() for k, v in pairs})
        return merged
    if isinstance(current, tuple):
        if isinstance(raw, list | tuple):
            return tuple(raw)
        return tuple(p.strip() for p in str(raw).split(",") if p.strip())
    return str(raw)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides."""
    base = Settings()
    values: dict[str, Any] = {}
    path = config_file or os.environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
        values.update(_from_toml(doc))
        values["config_file"] = Path(path)
    names = {f.name for f in fields(Settings)}
    for name in names:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    values.update(overrides)
    coerced = {k: _coerce(k, v, getattr(base, k)) for k, v in values.items() if k in names}
    if "provider_map" in coerced:
        merged = dict(DEFAULT_PROVIDER_MAP)
        merged.update(coerced["provider_map"])
        coerced["provider_map"] = merged
    return replace(base, **coerced)


def _from_toml(doc: dict[str, Any]) -> dict[str, Any]:
    """Flatten the TOML layout documented in the README into settings names."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "providers" and isinstance(value, dict):
            out["provider_map"] = value
        elif key == "webhooks" and isinstance(value, dict):
            if value.get("enabled", True):
                out["webhook_endpoints"] = tuple(value.get("endpoints", ()))
        elif isinstance(value, dict):
            for sub, subval in value.items():
                out[f"{key}_{sub}"] = subval
        else:
            out[key] = value
    return out
