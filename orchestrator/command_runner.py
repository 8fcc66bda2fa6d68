"""Who runs a ``command`` operation, where, and with what environment.

A command never runs with the service's identity. As root the service drops
each child to an unprivileged runner user and group (``runner_user``) with no
supplementary groups, so the server's ``/proc/<pid>/environ`` and its data
directory are closed to it; running commands as root is refused unless
``allow_root_commands`` says otherwise. A service that is not root cannot change
identity: it makes itself non-dumpable instead, so a same-uid child cannot read
its memory or environment through ``/proc`` (it can still read every file the
service can: see docs/security.md).

Commands run in a work root; an operation's ``cwd`` must resolve inside it,
symlinks included, at submission and again when it starts. Environment keys that
change how a program is loaded or executed are refused. This module has no
imports from the rest of the orchestrator: the request models use its rules.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: at run time this module needs the standard library alone
    from shared.settings import Settings

log = logging.getLogger(__name__)

# Environment keys an operation may not set: they make the dynamic loader, a shell
# or an interpreter load or run code other than the program named in `run`.
REFUSED_ENV_NAMES = frozenset(
    {
        "PATH",
        "BASH_ENV",
        "ENV",
        "IFS",
        "CDPATH",
        "PS4",
        "SHELLOPTS",
        "BASHOPTS",
        "GLOBIGNORE",
        "PROMPT_COMMAND",
        "ZDOTDIR",
        "NODE_OPTIONS",
        "NODE_PATH",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "GCONV_PATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "NLSPATH",
        "LOCPATH",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
    }
)
# ... and every key starting with one of these (LD_PRELOAD, PYTHONPATH, PERL5OPT, …).
REFUSED_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON", "MALLOC_", "PERL5", "RUBY", "LUA_", "BASH_FUNC_")
ENV_KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_ENV_KEYS = 64
MAX_ENV_VALUE_BYTES = 8192
MAX_CWD_CHARS = 4096
DOCTOR_HINT = "run `provisioning doctor --fix` as root"

# C0 control characters other than tab, LF and CR: never stored from a command.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")
_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


class RunnerUnavailable(Exception):
    """Commands cannot run safely as configured; the message says how to fix it."""


@dataclass(frozen=True)
class Identity:
    """The user a command runs as when the service drops privileges."""

    name: str
    uid: int
    gid: int
    home: str


def env_key_problem(key: str) -> str | None:
    """Why an operation may not set environment key ``key``, or None."""
    if not ENV_KEY_PATTERN.fullmatch(key):
        return "an environment key is a letter or _ followed by up to 127 letters, digits or _"
    upper = key.upper()
    if upper in REFUSED_ENV_NAMES or upper.startswith(REFUSED_ENV_PREFIXES):
        return f"{key} changes how programs are loaded or executed; it cannot be set by an operation"
    return None


def env_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be an environment value, or None."""
    if "\x00" in value:
        return "an environment value cannot contain NUL"
    if len(value.encode(errors="surrogatepass")) > MAX_ENV_VALUE_BYTES:
        return f"an environment value is at most {MAX_ENV_VALUE_BYTES} bytes"
    return None


def sanitize_text(text: str) -> str:
    """``text`` with NUL and other C0 control characters (except tab, LF, CR) replaced
    by U+FFFD: what a command printed is stored and shown, never raw."""
    return _CONTROL.sub("\ufffd", text)


# -- identity ---------------------------------------------------------------------------


def runner_identity(settings: Settings) -> Identity | None:
    """The identity commands run as; None when they run as the service itself (it is
    not root, or root commands are explicitly allowed). Raises RunnerUnavailable
    when the service is root and the runner user is missing or privileged."""
    if os.geteuid() != 0 or settings.allow_root_commands:
        return None
    name = settings.runner_user
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise RunnerUnavailable(
            f"the runner user {name!r} does not exist, so command operations cannot run "
            f"(they never run as root): {DOCTOR_HINT} to create it, or set "
            "PROVISIONING_RUNNER_USER to an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise RunnerUnavailable(
            f"the runner user {name!r} is privileged (uid {entry.pw_uid}, gid {entry.pw_gid}); "
            "set PROVISIONING_RUNNER_USER to an unprivileged user"
        )
    return Identity(name=name, uid=entry.pw_uid, gid=entry.pw_gid, home=entry.pw_dir)


def runs_as_root(settings: Settings) -> bool:
    """True when command operations would run as root."""
    return os.geteuid() == 0 and settings.allow_root_commands


def make_undumpable() -> bool:
    """Mark this process non-dumpable (Linux): a same-uid process can then no longer
    read its ``/proc/<pid>/environ`` or ``mem``, nor ptrace it, and no core file holds
    its secrets. Children get the flag reset by ``execve``. Returns whether it took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # The process's own symbols (dlopen(NULL)), libc's among them: find_library("c")
        # would run `ldconfig -p` in a subprocess (shared/libc.py; this module stays
        # standard library alone).
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return False
        return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# -- the work root ----------------------------------------------------------------------


def work_root(settings: Settings) -> Path:
    """Where commands run: ``command_work_root``, else ``<data_dir>-work`` beside the
    data directory (never inside it: the data directory is the service's alone)."""
    if settings.command_work_root:
        return Path(os.path.realpath(settings.command_work_root))
    data = Path(os.path.realpath(settings.data_dir))
    return data.with_name(f"{data.name}-work")


def resolve_cwd(settings: Settings, cwd: str | None) -> Path:
    """The directory an operation runs in: ``cwd`` (relative to the work root, or
    absolute) with symlinks resolved; ValueError when it lies outside the work root."""
    root = work_root(settings)
    if not cwd:
        return root
    target = Path(os.path.realpath(root / cwd))
    if target != root and root not in target.parents:
        raise ValueError(
            f"cwd {cwd!r} resolves to {str(target)!r}, outside the command work root {str(root)!r}"
        )
    return target


def cwd_problem(settings: Settings, cwd: str | None) -> str | None:
    """Why ``cwd`` is not acceptable for a command operation, or None."""
    try:
        resolve_cwd(settings, cwd)
    except ValueError as exc:
        return str(exc)
    return None


def usable_by(path: Path, identity: Identity | None) -> str | None:
    """Why ``identity`` (None: this process) cannot read, write and enter ``path``
    and reach it through its parents, or None. Permission bits only (no ACLs)."""
    if identity is None:
        if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
            return f"{path} is not readable, writable and searchable by uid {os.geteuid()}"
        return None
    chain = [*reversed(path.parents), path]
    for p in chain:
        try:
            st = os.stat(p)
        except OSError as exc:
            return f"{p}: {exc.strerror}"
        need = 0o7 if p == path else 0o1
        if not _allowed(st, identity, need):
            what = "read, write and enter" if p == path else "pass through"
            mode = stat.S_IMODE(st.st_mode)
            return f"{identity.name} cannot {what} {p} (owner uid {st.st_uid}, mode {mode:o})"
    return None


def _allowed(st: os.stat_result, identity: Identity, need: int) -> bool:
    if st.st_uid == identity.uid:
        bits = st.st_mode >> 6
    elif st.st_gid == identity.gid:  # no supplementary groups: the primary one only
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & need == need


def ensure_work_root(settings: Settings, identity: Identity | None) -> Path:
    """Create the work root when missing (mode 0700, owned by the runner), and return it.
    An existing directory is left as it is: it may be one an administrator chose."""
    root = work_root(settings)
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        root.mkdir(mode=0o700)
    except FileExistsError:
        return root  # another attempt made it first
    if identity is not None:
        os.chown(root, identity.uid, identity.gid)
    log.info("created the command work root", extra={"path": str(root)})
    return root


def open_beneath(root: Path, target: Path) -> int:
    """An ``O_PATH`` descriptor of ``target`` (a resolved path inside the resolved
    ``root``), reached one component at a time without following symlinks.

    The child changes into the directory by this descriptor, so a symlink swapped in
    after the check (by a command still running as the runner) cannot send a later
    command, whose ``chdir`` happens before it drops privileges, outside the root.
    Raises OSError (ENOTDIR for a symlink) when the path changed since it resolved."""
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in target.relative_to(root).parts:
            nxt = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


def can_open_beneath() -> bool:
    """Whether :func:`open_beneath` and ``/proc/self/fd`` are available (Linux)."""
    return hasattr(os, "O_PATH") and os.path.isdir("/proc/self/fd")
