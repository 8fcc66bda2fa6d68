"""Settings: one typed, frozen model, read from keyword arguments, the environment
(``PROVISIONING_<NAME>``) and an optional TOML file, in that order of precedence,
over the defaults written here.

This module is where settings are validated. A typo is an error, never a silent
default: an unknown key of the TOML file (also inside a section), an unknown
keyword argument or a value of the wrong type or range raises one
:class:`SettingsError` naming every problem, where it came from (the variable, the
key and its file, or the argument), the value and what is expected, e.g.
``PROVISIONING_ORCHESTRATOR_PORT='abc': expected an integer from 1 to 65535
(orchestrator_port)``. Unknown ``PROVISIONING_*`` environment variables are only
warned about (other tools may share the prefix); the client's and the command
runner's own variables (:data:`OTHER_VARIABLES`) are known and not warned about.

The TOML layout: a top-level key is a setting's name; ``[section] key`` is the
setting ``section_key`` (``[rate_limit] auth`` → ``rate_limit_auth``, ``[http]
header_timeout_s`` → ``http_header_timeout_s``); ``[providers]`` is the provider
map; ``[webhooks] endpoints`` are the static webhooks (ignored when ``enabled =
false``), other ``[webhooks]`` keys are ``webhooks_<key>``.

Lists (``commands_allow``, ``trusted_proxies``, ``webhook_retry_schedule_s`` …)
are comma-separated in the environment and arrays in TOML; the provider map is
``name=implementation,…`` in the environment and a table in TOML. Provider map
entries combine by name across sources (defaults < file < environment <
arguments); every other setting is taken whole from the strongest source.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Required
from urllib.parse import urlsplit

import limits
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, with_config
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from shared.settings_sources import (
    CONFIG_VARIABLE,
    ENV_PREFIX,
    OTHER_VARIABLES,
    EnvironmentSource,
    SettingsError,
    TomlFileSource,
    describe_problems,
    env_name,
    parse_pairs,
)

# Re-exported: callers import the error and the names of variables from here.
__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_PROVIDER_MAP",
    "ENV_PREFIX",
    "OTHER_VARIABLES",
    "PACKAGE_ROOT",
    "Settings",
    "SettingsError",
    "env_name",
    "load_settings",
    "normal_origin",
]

log = logging.getLogger("provisioning.settings")

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_LOG_LEVEL_ALIASES = ("FATAL", "WARN", "NOTSET")  # also understood by the logging module


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


# -- value types -----------------------------------------------------------------------------


def _comma_list(value: Any) -> Any:
    """``"a, b,c"`` → ``("a", "b", "c")`` (the environment's spelling of a list)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _with_default_providers(value: dict[str, str]) -> dict[str, str]:
    return {**DEFAULT_PROVIDER_MAP, **value}


def _stripped_lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.strip().upper() not in (*LOG_LEVELS, *_LOG_LEVEL_ALIASES):
        raise ValueError("expected one of " + ", ".join(LOG_LEVELS))
    return value.strip().upper()


def _rate(value: str) -> str:
    """The ``limits`` notation (``5/minute``); ``0``, ``off``, ``none`` or empty: no limit."""
    if value.strip() not in ("", "0", "off", "none"):
        try:
            limits.parse(value.strip())
        except ValueError:
            raise ValueError("expected a rate such as 5/minute, or off") from None
    return value


def _networks(value: tuple[str, ...]) -> tuple[str, ...]:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"expected IP addresses or networks (like 10.0.0.0/8), not {item!r}") from None
    return value


def _json(expected: str) -> Callable[[Any], Any]:
    """A validator that reads the environment's spelling of tables: JSON text."""

    def parse(value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"expected {expected}") from None
        return value

    return parse


# The static webhooks, and the [extensions.<id>] tables.
_json_list = _json("a JSON array of {url, events, secret} objects")
_json_table = _json('a JSON object such as {"hello": {"grants": ["ROUTES"]}}')


def _path_list(value: Any) -> Any:
    """``"/a:/b,/c"`` → ``("/a", "/b", "/c")``: the environment's spelling of paths."""
    if isinstance(value, str):
        return tuple(p.strip() for p in value.replace(",", os.pathsep).split(os.pathsep) if p.strip())
    return value


def normal_origin(value: str) -> str:
    """``scheme://host[:port]`` as a browser sends it in ``Origin`` (lower case, no default port)."""
    parsed = urlsplit(value.strip())
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or port == -1
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
        or parsed.username is not None
    ):
        raise ValueError(f"expected origins like http://localhost:9080 (scheme, host, port), not {value!r}")
    host = f"[{parsed.hostname}]" if ":" in parsed.hostname else parsed.hostname
    default_port = {"http": 80, "https": 443}[parsed.scheme]
    return f"{parsed.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")


def _origins(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(normal_origin(item) for item in value))


def _base_url(value: str) -> str:
    """An http(s) URL with no query or fragment (empty: derived), without a trailing slash."""
    if not value.strip():
        return ""
    parsed = urlsplit(value.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname or parsed.query or parsed.fragment:
        raise ValueError(f"expected an http(s) URL such as http://localhost:9090, not {value!r}")
    return value.strip().rstrip("/")


Port = Annotated[int, Field(ge=1, le=65535)]
Count = Annotated[int, Field(ge=1)]  # at least one: sizes, limits, attempts
Amount = Annotated[int, Field(ge=0)]  # zero allowed (0 usually means "automatic" or "none")
Seconds = Annotated[float, Field(gt=0)]  # a period or timeout: more than zero
Delay = Annotated[float, Field(ge=0)]  # a wait: zero allowed
Names = Annotated[tuple[str, ...], BeforeValidator(_comma_list)]
Networks = Annotated[tuple[str, ...], BeforeValidator(_comma_list), AfterValidator(_networks)]
Rate = Annotated[str, AfterValidator(_rate)]
Origins = Annotated[tuple[str, ...], BeforeValidator(_comma_list), AfterValidator(_origins)]
Text = Annotated[str, Field(min_length=1)]


@with_config({"extra": "forbid"})
class WebhookEndpoint(TypedDict, total=False):
    """One static webhook of ``[webhooks] endpoints`` (stays a dict: the dispatcher reads it)."""

    url: Required[str]
    events: NotRequired[list[str]]
    secret: NotRequired[str]
    description: NotRequired[str]


CapabilityName = Literal[
    "ROUTES", "TOOLS", "EVENTS_PUB", "EVENTS_SUB", "BACKGROUND_TASKS", "STATIC", "PROVIDERS"
]


@with_config({"extra": "forbid"})
class ExtensionSettings(TypedDict, total=False):
    """``[extensions.<id>]``: what one extension is granted, and whether it runs."""

    grants: list[CapabilityName]
    enabled: bool


# -- the model ---------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything a service (and the CLI) needs to start. Names carry units.

    ``Settings(**values)`` reads the sources itself (see the module docstring);
    :func:`load_settings` is the usual entry. Immutable: derive a variant with
    ``settings.model_copy(update={...})`` (not validated: for tests)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=False,  # the defaults below are valid; skip re-checking them each time
        coerce_numbers_to_str=True,  # TOML `admin_password = 1234` or `[rate_limit] auth = 0`
        hide_input_in_errors=True,
    )

    data_dir: Path = Path("./data")
    db_url: str = ""  # empty: surrealkv:// under data_dir
    db_namespace: Text = "provisioning"
    db_database: Text = "main"
    host: str = "127.0.0.1"
    orchestrator_port: Port = 9090
    control_center_port: Port = 9080
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    access_log: Annotated[bool, BeforeValidator(_stripped_lower)] = True  # one JSON line per request
    log_format: Annotated[Literal["json", "text"], BeforeValidator(_stripped_lower)] = "json"
    provider_map: Annotated[
        dict[str, Text], BeforeValidator(parse_pairs), AfterValidator(_with_default_providers)
    ] = Field(default_factory=lambda: dict(DEFAULT_PROVIDER_MAP))
    policies_dir: Path = Field(default_factory=default_policies_dir)
    max_body_bytes: Count = 1_048_576
    default_timeout_s: Seconds = 300.0
    default_max_attempts: Count = 3
    default_initial_delay_s: Delay = 1.0
    default_max_delay_s: Delay = 60.0
    output_limit_bytes: Count = 65_536
    # Server environment variables a command operation inherits beyond the basics
    # (PATH, HOME, LANG, LC_*, TZ, TMPDIR, USER …), e.g. "AWS_PROFILE,KUBECONFIG".
    command_env_passthrough: Names = ()
    write_batch_max: Count = 2_000
    # Task and workflow rows are applied lazily from the journal (see shared/store/store.py):
    # once the writer has been idle this long, and at the latest at this age.
    row_apply_idle_s: Delay = 0.02
    row_apply_max_age_s: Delay = 1.0
    auth_enabled: Annotated[bool, BeforeValidator(_stripped_lower)] = True
    admin_password: str = Field(default="", repr=False)
    rate_limit_auth: Rate = "5/minute"
    rate_limit_default: Rate = "100/minute"
    rate_limit_batch: Rate = "10/minute"
    mfa_required_roles: Names = ("admin", "operator")
    lockout_threshold: Count = 5
    lockout_s: Delay = 900.0
    access_token_ttl_s: Count = 900
    refresh_token_ttl_s: Count = 7 * 24 * 3600
    jwt_issuer: Text = "provisioning-control-center"
    jwt_audience: Text = "provisioning"
    mfa_setup_token_ttl_s: Count = 600
    mfa_issuer: Text = "provisioning"
    password_min_length: Count = 12
    argon2_time_cost: Count = 2
    argon2_memory_kib: Annotated[int, Field(ge=8)] = 65_536  # argon2's own minimum
    argon2_parallelism: Count = 2
    rate_limit_storage: Text = "async+memory://"
    trusted_proxies: Names = ()
    auth_sync_s: Delay = 2.0  # how often a service re-reads policy and revocations
    # Unused since the CLI keeps its servers in contexts (docs/cli.md); kept so old files load.
    control_center_url: str = ""
    webhooks_allow_private: Annotated[bool, BeforeValidator(_stripped_lower)] = False
    webhook_endpoints: Annotated[tuple[WebhookEndpoint, ...], BeforeValidator(_json_list)] = Field(
        default=(), repr=False
    )
    event_retention_count: Amount = 10_000
    event_retention_s: Delay = 3600.0
    # Live streams (shared/events/streams.py)
    ws_queue_size: Count = 1000  # events queued per connection before it is dropped (4408)
    ws_heartbeat_s: Seconds = 30.0
    ws_auth_timeout_s: Seconds = 10.0  # to send {"type": "auth"} when no token came with the upgrade
    ws_send_buffer_bytes: Count = 262_144  # kernel send buffer per stream: bounds a stalled client
    sse_ping_s: Seconds = 15.0
    # Webhooks (shared/webhooks): delays before attempt 1, 2, …; then the delivery has failed
    webhook_retry_schedule_s: Annotated[
        tuple[Delay, ...], BeforeValidator(_comma_list), Field(min_length=1)
    ] = (0.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 7200.0)
    webhook_jitter: Annotated[float, Field(ge=0, le=1)] = 0.2  # ± fraction of each retry delay
    webhook_timeout_s: Seconds = 10.0
    webhook_max_response_bytes: Count = 65_536
    webhook_failure_threshold: Count = 5  # consecutive failed deliveries that disable a webhook
    webhook_rotation_grace_s: Delay = 86_400.0  # old secret still signs this long after rotation
    webhook_poll_s: Seconds = 1.0  # how often the dispatcher looks for work queued by others
    webhook_refresh_s: Seconds = 5.0  # how often subscriptions are reloaded from the store
    webhook_concurrency: Count = 64  # webhooks delivered to at once (each one in order)
    webhook_log_retention_s: Seconds = 7 * 86_400.0

    # -- command runner: who runs `command` operations, with what --
    # As root, each command runs as this unprivileged user and its group (created by
    # `provisioning doctor --fix`); never as root unless allow_root_commands is true.
    runner_user: Text = "provisioning-runner"
    allow_root_commands: Annotated[bool, BeforeValidator(_stripped_lower)] = False
    # Where commands run; an operation's cwd must lie inside. Empty: "<data_dir>-work",
    # beside the data directory (created 0700, owned by the runner user, when missing).
    command_work_root: str = ""

    # -- secrets at rest and the data directory --
    # The key-encryption key of secrets at rest (signing keys, TOTP and webhook secrets):
    # base64 of 32 bytes; several comma-separated while rotating (the first seals).
    secret_key: str = Field(default="", repr=False)
    # Where the key lives when secret_key is empty; empty: <data_dir parent>/secret.key
    # (created 0600 at first start; a memory store without either uses a key of its own).
    secret_key_file: str = ""

    # -- request and input limits --
    max_json_depth: Count = 64  # deeper JSON (bodies, WebSocket messages) is a 400
    max_string_chars: Count = 65_536  # per string value in a body or query: longer is a 422

    # -- audit --
    # 401s from one client address for one reason: the first is recorded, the rest of the
    # window become one record with a count (so a flood of bad tokens stays a few rows)
    audit_refusal_window_s: Delay = 60.0
    audit_refusal_keys: Count = 1000  # (address, reason) pairs tracked per window; more fold into one

    # -- login, sessions, MFA and passwords --
    # Consecutive failed logins lock an account for one client address at
    # ``lockout_threshold``; from all addresses together only at this many.
    lockout_account_threshold: Count = 100
    # Addresses (or networks) from which the last enabled admin is never locked out.
    lockout_trusted_addresses: Networks = ("127.0.0.0/8", "::1/128")
    rate_limit_refresh: Rate = "30/minute"  # POST /auth/refresh, per client address

    # -- policy conditions --
    # Programs (argv[0] of `run`/`undo`, matched exactly) the shipped policy lets an
    # operator run in operations: [commands] allow = ["terraform", "kubectl"] or
    # PROVISIONING_COMMANDS_ALLOW=terraform,kubectl. Empty: only admins run commands.
    commands_allow: Names = ()

    # -- connections and metrics --
    # Connections (shared/web/serve.py); TOML [http] header_timeout_s …
    http_header_timeout_s: Seconds = 10.0  # a request's complete headers, from connect or its first byte
    http_body_timeout_s: Seconds = 60.0  # a request's whole body, from its headers
    http_idle_timeout_s: Seconds = 75.0  # keep-alive: an idle connection between requests is closed
    http_max_connections_per_ip: Count = 100  # open connections per client address (trusted_proxies exempt)
    http_max_connections: Amount = 0  # open connections in all; 0: descriptor limit minus http_fd_reserve
    http_fd_reserve: Amount = 512  # descriptors kept for the store, pipes, subprocesses, webhooks
    http_accept_error_log_s: Delay = 10.0  # one log line per this for accept errors and refusals
    metrics_token: str = Field(default="", repr=False)  # set: /metrics needs "Authorization: Bearer <token>"

    # -- reads, counters and retention --
    # Filters a list's key cannot express (a status) read at most this many rows per page
    # (shared/store/keyset.py); a page may then hold fewer items and still link to the next.
    list_scan_budget: Count = 2_000
    # -- lists at scale (branch lists) --
    # Records the embedded engine reads per step of a range or index scan (its
    # SURREAL_NORMAL_FETCH_SIZE, 500 by default): a LIMIT stops a scan only between
    # steps, so a page of a list read 500 records whatever it returned (shared/store/scans.py).
    # 0: the engine's default. TOML [store] scan_fetch_size
    store_scan_fetch_size: Amount = 100
    # -- lists3: list answers kept while nothing is committed (docs/performance.md,
    # "Lists at 1,000,000 tasks, round 3") --
    # Pages of /tasks and /batch/operations read again while the store committed nothing
    # since are answered from memory (shared/store/keyset.py, Unchanged): at most this
    # many, any commit dropping them all; 0 reads every page. TOML [list] answers_kept
    list_answers_kept: Amount = 64
    # Finished workflows (their tasks, snapshots, checkpoints), journal segments no
    # workflow or checkpoint still needs, and sent webhook deliveries older than this
    # are pruned by a background job (orchestrator/retention.py); 0 keeps everything.
    retention_days: Amount = 30
    retention_chunk: Count = 500  # rows (or workflows, journal segments) removed per commit
    retention_interval_s: Seconds = 3600.0  # how often the job runs

    # -- durability --
    # Every group commit is synced to disk (fsync of the engine's commit log) before its
    # writers are told it is durable, so an announced change survives a power cut, not only
    # a killed process. false relaxes it for throwaway environments (tests, demos, benches):
    # commits then sit in the page cache until the OS writes them. Cost: docs/performance.md.
    sync_commits: Annotated[bool, BeforeValidator(_stripped_lower)] = True

    # -- engine documents --
    # GET /batch/operations/{id} and /state/workflows/{id}/progress of a running batch
    # come from the engine's memory, captured at most this often (pollers in between
    # share the capture): TOML [live_document] max_age_s
    live_document_max_age_s: Delay = 0.25
    # -- views: finished documents (branch views) --
    # The encoded documents and progress of finished workflows are kept in memory up to
    # this many bytes (least recently read dropped first; any event of a workflow drops
    # its own), so a dashboard polling a finished batch costs a lookup. 0: none kept.
    # TOML [document_cache] bytes. 8 MiB: the last four 5,000-operation documents (boot3:
    # at 32 MiB the cache alone grew the service ~30 MB over 20 batches, past the 200 MB
    # goal; docs/performance.md "Start-up and memory, round 3")
    document_cache_bytes: Amount = 8 * 1024 * 1024
    # -- doc3: finished documents kept in the store (orchestrator/document_repository.py) --
    # A finished batch of at least this many operations has its encoded documents kept in
    # the store beside its task pages (compressed, ~110 KB for 5,000 operations), checked
    # against a fingerprint of its rows on every read: its first read after a restart then
    # decodes none of its rows. 0: none kept. TOML [document_store] min_operations
    document_store_min_operations: Amount = 1000
    # Python's first GC generation threshold for the service (0: Python's default, 700).
    # A 5,000-operation submission allocates ~100,000 objects: at 700 it ran two full
    # collections of the whole heap, whose cost grows with the process's history.
    gc_gen0_threshold: Amount = 20_000
    # -- post3: the collector around big submissions (shared/collector.py) --
    # A POST /batch/execute runs with the heap frozen and collections paused, and freezes
    # what it left alive; the frozen objects are collected once this long after the last
    # batch ended with none running, or as a batch ends after gc_max_bursts submissions
    # without such an idle moment. false: Python's collector as usual.
    gc_burst_freeze: Annotated[bool, BeforeValidator(_stripped_lower)] = True
    gc_idle_collect_s: Delay = 1.0
    gc_max_bursts: Count = 50

    # -- thru: throughput and memory of the running service (docs/performance.md) --
    # Once no batch runs any more, hand the C heap's free pages back to the system
    # (glibc's malloc_trim, in a thread): a 5,000-operation batch leaves 10-15 MB of
    # freed but still resident memory behind otherwise. No effect off glibc.
    trim_memory_after_batch: Annotated[bool, BeforeValidator(_stripped_lower)] = True

    # -- engine3: throughput through the API, round 3 (docs/performance.md) --
    # While the store's writer is busy, a task or workflow row whose last change is not
    # final (pending, running: it will change again) is applied at the latest at this age
    # instead of row_apply_max_age_s, so a running batch's rows are written once, as they
    # end, not also as they were. Bounds the journal replayed after a crash (catch-up).
    row_apply_unsettled_max_age_s: Delay = 5.0

    # -- local: the simulated cloud (orchestrator/providers/local_inventory.py) --
    # Inventory rows the `local` provider holds in memory, so its operations make no store
    # round trip to learn what stood before them. A larger inventory is held in part (least
    # recently used dropped) and the rest read when needed.
    local_inventory_cache: Count = 100_000

    # -- boot: start-up and memory (docs/performance.md, "Start-up and memory, round 2") --
    # Hash and check passwords in a short-lived forked child: argon2's memory
    # (argon2_memory_kib) is then never the service's. Off: in a thread of the service.
    password_hash_in_child: Annotated[bool, BeforeValidator(_stripped_lower)] = True
    # glibc's malloc, set by the service for itself as it starts (no effect off glibc):
    # at most this many heaps (0: glibc's 8 per core; each thread of the engine otherwise
    # fragments a heap of its own), and blocks of this many KiB and more in mappings of
    # their own, handed back when freed (0: glibc's threshold, which grows to 32 MiB
    # after the first big block is freed, so later big ones stay in a heap)
    malloc_arena_max: Amount = 2
    malloc_mmap_threshold_kib: Amount = 128

    # -- console --
    # Browser origins (scheme://host[:port]) the orchestrator answers CORS for and whose
    # WebSocket/SSE streams it accepts; the control center trusts them for the refresh
    # cookie too. Empty: the control center's own URL, as http://localhost:<port> and
    # http://127.0.0.1:<port> (and http://<host>:<port> when host names one address).
    cors_origins: Origins = ()
    # The orchestrator's URL as the console's browser reaches it (/console/config.json);
    # empty: the host the page was loaded from, on orchestrator_port.
    console_orchestrator_url: Annotated[str, AfterValidator(_base_url)] = ""

    # -- cli --

    # -- extensions --
    # Directories (or single files) searched for extensions after the built-in ones, in
    # order: PROVISIONING_EXT_PATHS=/opt/ext:/srv/one.py (':' or ','); [extensions] paths.
    ext_paths: Annotated[tuple[str, ...], BeforeValidator(_path_list)] = ()
    # Per extension: [extensions.<id>] grants = ["ROUTES", "TOOLS"], enabled = false (or
    # PROVISIONING_EXTENSIONS as a JSON object). Nothing is granted to an extension that
    # is not built in unless it is listed here.
    extensions: Annotated[dict[str, ExtensionSettings], BeforeValidator(_json_table)] = Field(
        default_factory=dict
    )
    ext_hook_timeout_s: Seconds = 10.0  # each of setup, on_startup, on_shutdown, health
    ext_event_retention_count: Count = 10_000  # events kept per named stream
    ext_event_retention_s: Seconds = 7 * 86_400.0  # and for at most this long
    ext_event_max_bytes: Count = 65_536  # an event's JSON, at most
    # Named event streams on Redis Streams instead of the store: redis://host:6379/0
    events_redis_url: str = Field(default="", repr=False)

    # -- api tokens and mcp --
    # API tokens (POST /auth/tokens): the longest lifetime a token may be given, in days
    api_token_max_days: Annotated[int, Field(ge=1, le=3650)] = 365
    api_tokens_per_user: Count = 50  # active tokens a user may hold at once
    # Uses of one API token: the first of a window is audited at once, the rest of the
    # window become one record with their count
    api_token_audit_window_s: Delay = 60.0
    # The MCP endpoint (/ext/mcp_http/mcp): browser origins allowed besides the server's
    # own (a request with any other Origin is refused, 403), e.g. "https://inspector.example"
    mcp_allowed_origins: Names = ()
    mcp_session_ttl_s: Seconds = 3600.0  # an idle 2025-11-25 session (Mcp-Session-Id) ends
    mcp_max_sessions: Count = 1000  # open 2025-11-25 sessions; the oldest idle one ends past this
    # The public URL of the orchestrator, for the protected-resource metadata; empty: from
    # the request (Host and scheme)
    mcp_public_url: str = ""

    # -- startup --
    # Start-up reads nothing whose cost grows with history (docs/performance.md, "Start-up
    # at scale"); what history's upkeep needs runs in the background, after a delay:
    # retention's first pass this long after start (then every retention_interval_s)
    retention_start_delay_s: Delay = 300.0
    # expired sessions, refresh tokens and token revocations are purged this often (in
    # retention_chunk rows per commit), the first time retention_start_delay_s after start
    expired_purge_interval_s: Seconds = 600.0

    # The TOML file these came from (PROVISIONING_CONFIG, `--config`, load_settings(path)).
    config_file: Path | None = None

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise SettingsError(describe_problems(type(self), exc, values)) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments > environment > the TOML file; no dotenv, no secrets dir."""
        environment = EnvironmentSource(settings_cls)
        path = getattr(init_settings, "init_kwargs", {}).get("config_file") or environment.config_path
        return (init_settings, environment, TomlFileSource(settings_cls, path))

    @property
    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"surrealkv://{self.data_dir.resolve() / 'db'}"

    @property
    def resolved_cors_origins(self) -> tuple[str, ...]:
        """``cors_origins``, or by default the control center's own URL in the forms a
        browser on this machine uses (and as ``host`` names it, when that is one address)."""
        if self.cors_origins:
            return self.cors_origins
        port = self.control_center_port
        hosts = ["localhost", "127.0.0.1"]
        if self.host not in ("", "0.0.0.0", "::", *hosts):
            hosts.append(f"[{self.host}]" if ":" in self.host else self.host)
        return tuple(normal_origin(f"http://{host}:{port}") for host in hosts)

    @property
    def is_embedded_file_store(self) -> bool:
        url = self.resolved_db_url
        return url.startswith(("surrealkv://", "file://", "rocksdb://"))


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from keyword arguments > environment > TOML file > defaults.

    ``config_file`` (else ``PROVISIONING_CONFIG``) names the TOML file. Raises
    :class:`SettingsError` naming every unknown key and bad value."""
    if config_file:
        overrides["config_file"] = config_file
    return Settings(**overrides)
