"""Where extensions come from, in a stable order: the built-in package
(``orchestrator/extensions/builtin/<id>/``, by directory name), then each path of
``PROVISIONING_EXT_PATHS`` in the order given (a directory holding ``extension.json``,
a directory of such directories by name, an ``extension.json`` file, or a single ``.py``
file with a literal ``MANIFEST = {...}``), then the entry points of the group
``provisioning.extensions`` by name.

Discovery reads manifests only: no extension code runs until the extension is loaded
(at start for ``eager`` ones, on the first request for the rest).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import re
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from orchestrator.extensions.manifest import Manifest, ManifestError, parse_manifest, read_manifest

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "provisioning.extensions"
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_PACKAGE = "orchestrator.extensions.builtin"
MANIFEST_FILE = "extension.json"
FACTORY = "get_extension"
# Discovery sources, in the order they are searched (the names /ext/status lists).
BUILTIN, ENV_DIR, ENTRY_POINT = "builtin", "env_dir", "entry_point"
_SAFE_ID = re.compile(r"[^a-z0-9_]")

Loader = Callable[[], Callable[[], Any]]  # imports the code, returns its get_extension


@dataclass(frozen=True)
class Candidate:
    """One extension found: its manifest (or why it has none), where, and how to import it."""

    key: str  # the manifest's id, or a name derived from where it was found
    source: str
    location: str
    loader: Loader | None
    manifest: Manifest | None = None
    problem: str | None = None

    @property
    def builtin(self) -> bool:
        return self.source == BUILTIN


def discover(paths: Iterable[str], *, builtin_dir: Path = BUILTIN_DIR) -> tuple[list[Candidate], list[str]]:
    """Every candidate in discovery order, and the sources searched."""
    found = list(_builtin(builtin_dir))
    sources = [BUILTIN]
    paths = list(paths)
    if paths:
        sources.append(ENV_DIR)
        for raw in paths:
            found.extend(_from_path(Path(raw).expanduser()))
    sources.append(ENTRY_POINT)
    found.extend(_entry_points())
    return found, sources


def _key(name: str) -> str:
    return _SAFE_ID.sub("_", name.lower())[:40] or "unnamed"


def _failed(name: str, source: str, location: str, problem: str) -> Candidate:
    return Candidate(_key(name), source, location, None, problem=problem)


def _builtin(folder: Path) -> Iterable[Candidate]:
    if not folder.is_dir():
        return
    for child in sorted(p for p in folder.iterdir() if (p / MANIFEST_FILE).is_file()):
        try:
            manifest = read_manifest(child / MANIFEST_FILE)
        except ManifestError as exc:
            yield _failed(child.name, BUILTIN, str(child), str(exc))
            continue
        module = f"{BUILTIN_PACKAGE}.{child.name}.{manifest.module}"
        yield Candidate(manifest.id, BUILTIN, str(child), _import_loader(module, FACTORY), manifest)


def _from_path(path: Path) -> Iterable[Candidate]:
    if path.is_file() and path.name == MANIFEST_FILE:
        yield _from_dir(path.parent)
    elif path.is_file() and path.suffix == ".py":
        yield _from_file(path)
    elif path.is_dir() and (path / MANIFEST_FILE).is_file():
        yield _from_dir(path)
    elif path.is_dir():
        for child in sorted(p for p in path.iterdir() if (p / MANIFEST_FILE).is_file()):
            yield _from_dir(child)
    else:
        yield _failed(path.stem, ENV_DIR, str(path), f"{path}: no such extension directory or file")


def _from_dir(folder: Path) -> Candidate:
    try:
        manifest = read_manifest(folder / MANIFEST_FILE)
    except ManifestError as exc:
        return _failed(folder.name, ENV_DIR, str(folder), str(exc))
    file = folder.joinpath(*manifest.module.split(".")).with_suffix(".py")
    return Candidate(manifest.id, ENV_DIR, str(folder), _file_loader(manifest.id, folder, file), manifest)


def _from_file(file: Path) -> Candidate:
    """A single ``.py`` file: its manifest is a literal ``MANIFEST = {...}``, read without running it."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        return _failed(file.stem, ENV_DIR, str(file), f"{file}: cannot read it ({exc})")
    literal: Any = None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "MANIFEST"
        ):
            try:
                literal = ast.literal_eval(node.value)
            except ValueError:
                return _failed(file.stem, ENV_DIR, str(file), f"{file}: MANIFEST must be a literal dict")
    if literal is None:
        return _failed(file.stem, ENV_DIR, str(file), f"{file}: no MANIFEST = {{...}} at module level")
    try:
        manifest = parse_manifest(literal, str(file))
    except ManifestError as exc:
        return _failed(file.stem, ENV_DIR, str(file), str(exc))
    return Candidate(manifest.id, ENV_DIR, str(file), _file_loader(manifest.id, file.parent, file), manifest)


def _entry_points() -> Iterable[Candidate]:
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        yield _from_entry_point(ep)


def _from_entry_point(ep: EntryPoint) -> Candidate:
    """The manifest is ``extension.json`` beside the entry point's module."""
    where = f"{ep.name} = {ep.value}"
    try:
        spec = importlib.util.find_spec(ep.module)
    except (ImportError, ValueError) as exc:
        return _failed(ep.name, ENTRY_POINT, where, f"entry point {where}: {type(exc).__name__}: {exc}")
    if spec is None or spec.origin is None:
        return _failed(ep.name, ENTRY_POINT, where, f"entry point {where}: module {ep.module} not found")
    try:
        manifest = read_manifest(Path(spec.origin).parent / MANIFEST_FILE)
    except ManifestError as exc:
        return _failed(ep.name, ENTRY_POINT, where, str(exc))
    return Candidate(manifest.id, ENTRY_POINT, where, _import_loader(ep.module, ep.attr or FACTORY), manifest)


def _import_loader(module: str, attr: str) -> Loader:
    def load() -> Callable[[], Any]:
        factory: Callable[[], Any] = getattr(importlib.import_module(module), attr)
        return factory

    return load


def _file_loader(ext_id: str, folder: Path, file: Path) -> Loader:
    """Import ``file`` as a module of a package ``provisioning_ext_<id>`` rooted at ``folder``
    (so the extension's own modules import each other with relative imports)."""

    def load() -> Callable[[], Any]:
        package = f"provisioning_ext_{ext_id}"
        if package not in sys.modules:
            pkg = types.ModuleType(package)
            pkg.__path__ = [str(folder)]
            sys.modules[package] = pkg
        name = f"{package}.{file.stem}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        factory: Callable[[], Any] = getattr(module, FACTORY)
        return factory

    return load
