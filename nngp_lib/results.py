"""One way to store and read computed results: a CSV table plus a JSON provenance record.

A result named ``nb101_nngp`` lives in ``results_dir()/nb101_nngp.csv`` with its
provenance in ``results_dir()/nb101_nngp.json``: the settings, the command that
produced it, package versions, machine and device, and dates. Both files are written
atomically (a temporary file, then ``os.replace``), so an interrupted run never leaves
a half-written table; batch scoring rewrites the table every few architectures and
resumes from it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from nngp_lib import config

_VERSIONED_PACKAGES = ("nngp_lib", "jax", "jaxlib", "numpy", "scipy", "pandas", "neural-tangents")


@dataclass(frozen=True)
class Results:
    """A results table and the record of the run that produced it."""

    table: pd.DataFrame
    provenance: dict[str, Any]
    path: Path

    def describe(self) -> str:
        """One sentence naming the run: what, settings, where, when."""
        return describe(self.provenance)


def paths(name: str, results_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (table, provenance) paths of a named result."""
    if not name or any(sep in name for sep in "/\\") or name.startswith("."):
        raise ValueError(f"invalid result name {name!r}: use a plain file stem such as 'nb101_nngp'")
    folder = config.results_dir(results_dir)
    return folder / f"{name}.csv", folder / f"{name}.json"


def exists(name: str, results_dir: str | os.PathLike | None = None) -> bool:
    table, record = paths(name, results_dir)
    return table.is_file() and record.is_file()


def environment() -> dict[str, Any]:
    """Package versions, interpreter, machine and accelerator of this process."""
    versions = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    device = "cpu"
    if "jax" in sys.modules:  # never import jax just to describe the machine
        import jax

        device = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return {
        "versions": versions,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores",
        "device": device,
    }


def new_provenance(description: str, settings: dict[str, Any], command: str | None = None) -> dict[str, Any]:
    """A provenance record for a run starting now."""
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "description": description,
        "settings": settings,
        "command": command if command is not None else " ".join(sys.argv),
        "started": now,
        "updated": now,
        **environment(),
    }


def write(name: str, table: pd.DataFrame, provenance: dict[str, Any],
          results_dir: str | os.PathLike | None = None) -> Path:
    """Atomically write a named result; returns the table path."""
    table_path, record_path = paths(name, results_dir)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    record = dict(provenance)
    record["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record["rows"] = int(len(table))
    # Serialize both before writing either, so a failure leaves the old pair intact.
    record_text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    table_text = table.to_csv(index=False, float_format="%.10g")
    _atomic_write_text(table_path, table_text)
    _atomic_write_text(record_path, record_text)
    return table_path


def read(name: str, results_dir: str | os.PathLike | None = None) -> Results:
    """Read a named result. Missing or unreadable files raise one-line errors naming the fix."""
    table_path, record_path = paths(name, results_dir)
    if not table_path.is_file() or not record_path.is_file():
        raise FileNotFoundError(
            f"result {name!r} not found in {table_path.parent} (need {table_path.name} and "
            f"{record_path.name}): run the chapter or `nngp-nas score` with --out {name}, or set "
            f"{config.RESULTS_ENV}"
        )
    try:
        provenance = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt provenance file {record_path}: {err.msg}; delete it and re-run") from None
    try:
        table = pd.read_csv(table_path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt results table {table_path}: {err}; delete it and re-run".replace("\n", " ")) from None
    return Results(table=table, provenance=provenance, path=table_path)


def open_run(
    name: str,
    settings: dict[str, Any],
    columns: Sequence[str],
    *,
    description: str,
    command: str | None = None,
    resume: bool = True,
    results_dir: str | os.PathLike | None = None,
    upgrade: Callable[[Results], Results] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The (table, provenance) a resumable batch run of the result ``name`` starts from.

    A new run starts from an empty table with ``columns`` and a new provenance record of
    ``settings``. An existing result is continued when ``resume`` is true and it was
    recorded with the same settings and columns, after ``upgrade`` (which brings a result
    written by an older version of the producer up to date, e.g. filling a setting added
    since with its default); anything else is a one-line error, so that no run overwrites
    or mixes into another. Nothing is written here: the producer writes with :func:`write`.
    """
    if not exists(name, results_dir):
        return pd.DataFrame(columns=list(columns)), new_provenance(description, settings, command)
    if not resume:
        raise FileExistsError(f"result {name!r} exists: pass resume=True to continue it or choose another name")
    previous = read(name, results_dir)
    if upgrade is not None:
        previous = upgrade(previous)
    if previous.provenance.get("settings") != settings:
        raise ValueError(
            f"result {name!r} was computed with other settings; resume it with the same ones or choose another name"
        )
    if set(previous.table.columns) != set(columns):
        raise ValueError(f"result {name!r} has other columns than this run writes; choose another name")
    return previous.table[list(columns)], previous.provenance


def describe(provenance: dict[str, Any]) -> str:
    """One sentence saying which run produced a result."""
    settings = ", ".join(f"{k}={v}" for k, v in sorted(provenance.get("settings", {}).items()))
    rows = provenance.get("rows")
    return (
        f"{provenance.get('description', 'run')}: {rows} rows, settings {settings}; "
        f"computed on {provenance.get('machine', '?')} ({provenance.get('device', '?')}), "
        f"{provenance.get('started', '?')} to {provenance.get('updated', '?')}, "
        f"with `{provenance.get('command', '?')}`"
    )


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
