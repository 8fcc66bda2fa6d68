"""The data directory is private: ``0700`` directories and ``0600`` files, all the service's own.

The embedded store keeps everything in the data directory (users, sessions,
the audit log, sealed secrets); anyone else who can read it can copy all of
that, and anyone else who can write it can change it. :func:`check_data_dir`
walks it once, strips group and other permission bits (with ``fix``) and
reports what it found; a path owned by another user cannot be repaired here
and is refused. :func:`secure_data_dir` is what a start does: the process
umask becomes ``077`` first, so that what the embedded engine creates later is
private too, then the check runs with ``fix`` and a warning names each path
that was wider. The embedded engine sets its own directories to ``0750`` each
time it opens, so a second, quiet pass runs right after it connects.
``provisioning doctor`` runs the same check.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ProvisioningError
from shared.settings import Settings

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
OPEN_BITS = 0o077  # group and other: none may be set
CHECK_NAME = "data directory permissions"


class DataDirError(ProvisioningError):
    """The data directory is open to others and cannot be made private by this process."""

    code = "data_dir_unsafe"


@dataclass(frozen=True)
class Finding:
    """One result of a check: ``ok`` now, and whether this run ``fixed`` it."""

    name: str
    ok: bool
    message: str
    fixed: bool = False


def data_dirs(settings: Settings) -> list[Path]:
    """The directories an embedded file store keeps data in: the data directory, and the
    store's own directory when the URL points elsewhere."""
    if not settings.is_embedded_file_store:
        return []
    data_dir = settings.data_dir.resolve()
    dirs = [data_dir]
    store_dir = Path(settings.resolved_db_url.split("://", 1)[1]).resolve().parent
    if store_dir != data_dir and data_dir not in store_dir.parents:
        dirs.append(store_dir)
    return dirs


def check_data_dir(settings: Settings, fix: bool, *, owner: int | None = None) -> list[Finding]:
    """Every directory and file under the data directory: private and owned by ``owner``
    (the service's user, by default this process's). Symbolic links are not followed."""
    uid = os.geteuid() if owner is None else owner
    findings: list[Finding] = []
    for root in data_dirs(settings):
        if not root.exists():
            findings.append(Finding(CHECK_NAME, True, f"{root} does not exist yet"))
            continue
        findings.extend(_check_tree(root, fix, uid))
    if not findings or all(f.ok and not f.fixed for f in findings):
        where = ", ".join(str(d) for d in data_dirs(settings)) or "no data directory (not a file store)"
        return [Finding(CHECK_NAME, True, f"private: {where}")]
    return [f for f in findings if not f.ok or f.fixed]


def _check_tree(root: Path, fix: bool, uid: int) -> list[Finding]:
    findings = [_check_path(root, fix, uid)]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            findings.append(_check_path(Path(dirpath) / name, fix, uid))
    return findings


def _check_path(path: Path, fix: bool, uid: int) -> Finding:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed while we walked (the engine rotates its files)
        return Finding(CHECK_NAME, True, f"{path} is gone")
    if stat.S_ISLNK(st.st_mode):
        return Finding(CHECK_NAME, True, f"{path} is a symbolic link (not followed)")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != uid:
        return Finding(
            CHECK_NAME,
            False,
            f"{path} belongs to uid {st.st_uid}, not to the service's user (uid {uid}): "
            f"chown -R {uid} the data directory",
        )
    if not mode & OPEN_BITS:
        return Finding(CHECK_NAME, True, f"{path} is private")
    wanted = mode & ~OPEN_BITS
    kind = "directory" if stat.S_ISDIR(st.st_mode) else "file"
    if not fix:
        return Finding(
            CHECK_NAME,
            False,
            f"{kind} {path} has mode {mode:04o}; it must be {wanted:04o} (chmod go-rwx)",
        )
    try:
        os.chmod(path, wanted, follow_symlinks=False)
    except OSError as exc:
        message = f"{kind} {path} has mode {mode:04o} and chmod failed: {exc.strerror}"
        return Finding(CHECK_NAME, False, message)
    return Finding(CHECK_NAME, True, f"{kind} {path} had mode {mode:04o}; now {wanted:04o}", fixed=True)


def private_umask() -> None:
    """From now on this process creates files ``0600`` and directories ``0700``."""
    os.umask(PRIVATE_UMASK)


def secure_data_dir(settings: Settings, *, quiet: bool = False) -> None:
    """At start: umask ``077``, then the data directory made private (a warning per
    repaired path; with ``quiet``, after the engine connected, only a debug line) or
    refused with the reason."""
    private_umask()
    dirs = data_dirs(settings)
    if not dirs:
        return
    dirs[0].mkdir(mode=0o700, parents=True, exist_ok=True)
    problems: list[str] = []
    for finding in check_data_dir(settings, fix=True):
        if finding.fixed:
            log.log(logging.DEBUG if quiet else logging.WARNING, "data directory: %s", finding.message)
        elif not finding.ok:
            problems.append(finding.message)
    if problems:
        raise DataDirError(
            "the data directory is open to other users and cannot be made private: "
            + "; ".join(problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
            details={"problems": problems[:50]},
        )
