"""The ``command`` provider: run an argv (no shell) in its own process group.

This is how terraform, ansible, kubectl or a cloud CLI are wired in. Output is
captured up to a bound; cancel and timeout kill the whole process group. A line
``::progress <percent> <message>`` on stdout reports progress. Who a command runs
as, where and with which environment is decided by :mod:`orchestrator.command_runner`:
never as the service itself, always inside the work root.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.command_runner import (
    DOCTOR_HINT,
    Identity,
    RunnerUnavailable,
    can_open_beneath,
    cwd_problem,
    ensure_work_root,
    open_beneath,
    resolve_cwd,
    runner_identity,
    runs_as_root,
    sanitize_text,
    usable_by,
)
from orchestrator.models import OperationSpec
from orchestrator.providers.base import (
    OperationContext,
    OperationFailed,
    OperationResult,
    ProviderEnv,
)

log = logging.getLogger(__name__)

KILL_GRACE_S = 2.0
# Spawn failures worth another attempt: the host is short of something, for now.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM})
# What a command inherits from the server's environment (plus LC_*); more by setting.
BASE_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
_PROGRESS = re.compile(rb"^::progress\s+(\d+(?:\.\d+)?)\s*(.*)$")


class _Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buf = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        out = sanitize_text(self.buf.decode(errors="replace"))
        if self.dropped:
            out += f"\n[… {self.dropped} more bytes not kept]"
        return out


class CommandProvider:
    """Runs ``run`` to apply and ``undo`` to roll back."""

    name = "command"

    def __init__(self, env: ProviderEnv) -> None:
        self.settings = env.settings
        self.output_limit_bytes = env.settings.output_limit_bytes
        self.env_passthrough = frozenset(BASE_ENV) | frozenset(env.settings.command_env_passthrough)
        if runs_as_root(env.settings):
            log.warning(
                "command operations run as root: PROVISIONING_ALLOW_ROOT_COMMANDS is true, so any "
                "role allowed to submit them controls this host"
            )
        else:
            try:
                runner_identity(env.settings)
            except RunnerUnavailable as exc:
                log.warning("command operations cannot run: %s", exc)

    def problems(self, spec: OperationSpec) -> list[tuple[str, str]]:
        """At submission: ``cwd`` must resolve inside the work root."""
        problem = cwd_problem(self.settings, spec.cwd)
        return [("cwd", problem)] if problem else []

    def describe(self, spec: OperationSpec, provider: str) -> tuple[str, list[str]]:
        argv = spec.run or []
        return (argv[0] if argv else ""), list(argv[1:])

    def check(self, spec: OperationSpec, provider: str) -> str:
        what = f"run {_show(spec.run or [])}"
        if spec.cwd:
            what += f" in {spec.cwd}"
        if spec.undo:
            what += f" (undo: {_show(spec.undo)})"
        return what

    async def apply(self, ctx: OperationContext) -> OperationResult:
        return await self._run(ctx, ctx.spec.run or [], "run")

    async def rollback(self, ctx: OperationContext) -> OperationResult:
        if not ctx.spec.undo:
            return OperationResult(output="no undo command: nothing to roll back", results={"undo": None})
        return await self._run(ctx, ctx.spec.undo, "undo")

    async def _run(self, ctx: OperationContext, argv: list[str], phase: str) -> OperationResult:
        try:
            identity = runner_identity(self.settings)
            cwd = resolve_cwd(self.settings, ctx.spec.cwd)  # again: the tree may have changed
            root = ensure_work_root(self.settings, identity)
        except RunnerUnavailable as exc:
            raise OperationFailed(str(exc), retryable=False) from exc
        except ValueError as exc:
            raise OperationFailed(f"refused: {exc}", retryable=False) from exc
        except OSError as exc:
            raise OperationFailed(f"cannot create the command work root: {exc}", retryable=False) from exc
        problem = usable_by(root, identity)
        if problem:
            raise OperationFailed(
                f"the command work root is not usable: {problem}; {DOCTOR_HINT}", retryable=False
            )
        spawn: dict[str, Any] = {}
        if identity is not None:
            spawn = {"user": identity.uid, "group": identity.gid, "extra_groups": []}
        started = time.monotonic()
        try:
            with _entered(root, cwd) as child_cwd:
                spawning = asyncio.ensure_future(
                    asyncio.create_subprocess_exec(
                        *argv,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        stdin=asyncio.subprocess.DEVNULL,
                        env=self._environment(ctx, identity, root),
                        cwd=child_cwd,
                        start_new_session=True,  # its own process group, so we can kill all of it
                        **spawn,
                    )
                )
                try:
                    proc = await asyncio.shield(spawning)
                except asyncio.CancelledError:
                    # A cancel while the child is already forked: asyncio would kill its
                    # leader only, and then wait for pipes its children still hold.
                    with contextlib.suppress(Exception):
                        await _kill_group(await spawning)
                    raise
        except _CwdUnavailable as exc:
            raise OperationFailed(sanitize_text(str(exc)), retryable=False) from exc
        except (OSError, ValueError) as exc:  # missing, not executable, NUL in argv …
            transient = isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS
            message = sanitize_text(f"cannot start {argv[0]!r}: {exc}")
            raise OperationFailed(message, retryable=transient) from exc
        out, err = _Capture(self.output_limit_bytes), _Capture(self.output_limit_bytes)
        try:
            # Everything after the spawn sits under the kill guard: a cancel may land
            # at any await, even the first progress report.
            await ctx.report(0.0, sanitize_text(f"{phase}: {_show(argv)} (pid {proc.pid})"))
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(
                self._pump_stdout(proc.stdout, out, ctx),
                self._pump(proc.stderr, err),
            )
            code = await proc.wait()
        except BaseException:
            await _kill_group(proc)
            raise
        duration = round(time.monotonic() - started, 3)
        results = {"exit_code": code, "pid": proc.pid, "duration_s": duration, "argv": argv}
        if code != 0:
            tail = err.text()[-2000:] or out.text()[-2000:]
            raise OperationFailed(
                f"{phase} command exited with status {code}: {tail.strip()}", output=out.text()
            )
        await ctx.report(100.0, f"{phase} finished")
        return OperationResult(output=out.text(), results=results)

    def _environment(self, ctx: OperationContext, identity: Identity | None, root: Path) -> dict[str, str]:
        # Only an allowlist of the server's environment: it holds secrets (admin
        # password, tokens, database credentials) that a command must never see.
        env = {k: v for k, v in os.environ.items() if k in self.env_passthrough or k.startswith("LC_")}
        if identity is not None:  # describe the runner, not root
            home = identity.home if os.path.isdir(identity.home) else str(root)
            env.update({"HOME": home, "USER": identity.name, "LOGNAME": identity.name})
        env.update(ctx.spec.env or {})
        env.update(
            {
                "PROVISIONING_TASK_ID": ctx.task_id,
                "PROVISIONING_WORKFLOW_ID": ctx.workflow_id,
                "PROVISIONING_OPERATION": ctx.name,
                "PROVISIONING_ATTEMPT": str(ctx.attempt),
            }
        )
        return env

    async def _pump(self, stream: asyncio.StreamReader, cap: _Capture) -> None:
        while chunk := await stream.read(65536):
            cap.add(chunk)

    async def _pump_stdout(self, stream: asyncio.StreamReader, cap: _Capture, ctx: OperationContext) -> None:
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the reader's limit
                line = await stream.read(65536)
            if not line:
                return
            match = _PROGRESS.match(line.rstrip(b"\r\n"))
            if match:
                pct = max(0.0, min(100.0, float(match.group(1))))
                await ctx.report(pct, sanitize_text(match.group(2).decode(errors="replace")))
            else:
                cap.add(line)


class _CwdUnavailable(Exception):
    """The operation's directory cannot be entered."""


@contextlib.contextmanager
def _entered(root: Path, cwd: Path) -> Iterator[str]:
    """The ``cwd`` to give the child: a descriptor opened without following symlinks
    (see :func:`~orchestrator.command_runner.open_beneath`), else the resolved path."""
    if not can_open_beneath():
        yield str(cwd)
        return
    try:
        fd = open_beneath(root, cwd)
    except OSError as exc:
        raise _CwdUnavailable(f"cannot enter {str(cwd)!r}: {exc.strerror}") from exc
    try:
        yield f"/proc/self/fd/{fd}"  # the child changes into it before it closes fds
    finally:
        os.close(fd)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after a grace period.

    The group is signalled even when its leader has exited: a background child
    (``x &``) keeps the group alive, and often our output pipe open too."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # nobody left in the group
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE_S)
    if _group_alive(proc.pid):
        await asyncio.sleep(0.05)  # give the rest of the group a moment after SIGTERM
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE_S)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _show(argv: list[str]) -> str:
    return " ".join(argv)
