"""One way to read computed results, two ways they are stored: a table plus a JSON provenance record.

A *run* (batch scoring, :func:`nngp_lib.scoring.score_many`) named ``nb101_nngp`` is the
folder ``results_dir()/nb101_nngp/``: one Parquet file per finished chunk of
architectures (``part-<digest>.parquet``, the digest of the rows' keys, so a chunk
computed twice overwrites itself instead of adding rows) and ``provenance.json``: the
settings, the command that produced it, package versions, machine and device, and dates.
A smaller result is the pair ``nb101_nngp.csv`` + ``nb101_nngp.json`` (the format of the
runs committed before the folders, still read). Every file is written atomically (a
temporary file, then ``os.replace``), so an interrupted run never leaves a half-written
one. :func:`read` returns either as one table; while a run writes its folder, a lock
file there (:func:`run_lock`) stops a second writer.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import socket
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

    @property
    def name(self) -> str:
        """The result's name: its folder's name, or its CSV's without ``.csv`` (``Path.stem``
        would cut a folder name such as ``...-w0.5-s0`` at its dot)."""
        return self.path.name if self.path.suffix != ".csv" else self.path.name[: -len(".csv")]

    def describe(self) -> str:
        """One sentence naming the run: what, how much, when, where (:func:`describe`)."""
        held = int(self.table["hash"].nunique()) if "hash" in self.table else None
        return describe(self.provenance, held)

    def record_markdown(self) -> str:
        """The full provenance record, collapsed (:func:`record_markdown`)."""
        return record_markdown(self.provenance, f"The full provenance record of `{self.name}`")


def paths(name: str, results_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (table, provenance) paths of a named result."""
    if not name or any(sep in name for sep in "/\\") or name.startswith("."):
        raise ValueError(f"invalid result name {name!r}: use a plain file stem such as 'nb101_nngp'")
    folder = config.results_dir(results_dir)
    return folder / f"{name}.csv", folder / f"{name}.json"


PROVENANCE_FILE = "provenance.json"
LOCK_FILE = ".lock"
_PART_GLOB = "part-*.parquet"
_SETTINGS_KEY = b"nngp_run_settings"  # Parquet metadata: digest of the run settings a part belongs to


def run_dir(name: str, results_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a run stored as Parquet parts."""
    return paths(name, results_dir)[0].with_suffix("")


def is_run_dir(name: str, results_dir: str | os.PathLike | None = None) -> bool:
    return (run_dir(name, results_dir) / PROVENANCE_FILE).is_file()


def exists(name: str, results_dir: str | os.PathLike | None = None) -> bool:
    """Whether a result is stored, in either format."""
    table, record = paths(name, results_dir)
    return is_run_dir(name, results_dir) or (table.is_file() and record.is_file())


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
        "cpu": cpu_model(),
        "device": device,
    }


def cpu_model() -> str:
    """The processor's name (``/proc/cpuinfo``'s ``model name`` on Linux, else ``platform.processor()``):
    speed records differ by machine kind, and the core count alone does not say which."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    """Read a named result, a run folder of Parquet parts or a CSV + JSON pair, as one table.

    A run's parts are concatenated and rows with the same key (``provenance["key_columns"]``,
    e.g. hash and setting) kept once. Missing or unreadable files raise one-line errors naming the fix.
    """
    if is_run_dir(name, results_dir):
        return _read_run(name, results_dir)
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


def settings_digest(settings: dict[str, Any]) -> str:
    """A short digest of a run's settings, stamped on each of its parts."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def part_name(keys: pd.DataFrame, position: int = 0) -> str:
    """The file name of a part holding the rows with these keys (any order): a chunk
    scored again, e.g. after its worker died, gets the same name and replaces itself.
    ``position`` (of the chunk in the run) comes first, so that parts read in name
    order give the rows in the run's order."""
    ordered = keys.astype(str).agg("\x1f".join, axis=1).sort_values()
    digest = hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:20]
    return f"part-{position:08d}-{digest}.parquet"


def write_part(name: str, table: pd.DataFrame, provenance: dict[str, Any],
               results_dir: str | os.PathLike | None = None, position: int = 0) -> Path:
    """Atomically write one finished chunk of a run (a Parquet file named by its keys,
    :func:`part_name`, stamped with the run's settings); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = run_dir(name, results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / part_name(table[list(provenance["key_columns"])], position)
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}),
                                           _SETTINGS_KEY: settings_digest(provenance["settings"]).encode()})
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(arrow, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_provenance(name: str, provenance: dict[str, Any], results_dir: str | os.PathLike | None = None,
                     rows: int | None = None) -> Path:
    """Atomically write a run's provenance record (``updated`` set to now)."""
    folder = run_dir(name, results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    record = dict(provenance)
    record["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if rows is not None:
        record["rows"] = int(rows)
    path = folder / PROVENANCE_FILE
    _atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path


def _read_run(name: str, results_dir: str | os.PathLike | None) -> Results:
    import pyarrow.parquet as pq

    folder = run_dir(name, results_dir)
    record_path = folder / PROVENANCE_FILE
    try:
        provenance = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt provenance file {record_path}: {err.msg}; delete the folder {folder} and re-run") from None
    expected = settings_digest(provenance.get("settings", {}))
    parts = []
    for path in sorted(folder.glob(_PART_GLOB)):
        try:
            arrow = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for truncated or foreign files
            raise ValueError(
                f"corrupt results part {path} ({type(err).__name__}): delete it and resume the run to recompute "
                f"its architectures"
            ) from None
        stamp = (arrow.schema.metadata or {}).get(_SETTINGS_KEY, b"").decode()
        if stamp != expected:
            raise ValueError(
                f"results part {path} belongs to a run with other settings than {record_path}: move it to its own "
                f"run folder or delete it"
            )
        parts.append(arrow.to_pandas())
    columns = provenance.get("columns")
    if parts:
        table = pd.concat(parts, ignore_index=True)
    else:
        table = pd.DataFrame(columns=columns)
    keys = provenance.get("key_columns")
    if keys and not table.empty:
        table = table.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
    if columns:
        table = table[[c for c in columns if c in table.columns]]
    return Results(table=table, provenance=provenance, path=folder)


class RunLockedError(FileExistsError):
    """Another process is writing the run (its lock file exists)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def run_lock(name: str, results_dir: str | os.PathLike | None = None):
    """Hold the lock of a run for the duration of the block: a file in its folder with
    this host and pid, removed on exit. A lock left by a crashed process on this host
    (its pid is gone) is stale and taken over; any other is a one-line error naming it."""
    folder = run_dir(name, results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    mine = {"host": socket.gethostname(), "pid": os.getpid(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                holder = {}
            if holder.get("host") == mine["host"] and isinstance(holder.get("pid"), int) \
                    and not _pid_alive(holder["pid"]):
                path.unlink(missing_ok=True)  # stale: its process crashed
                continue
            raise RunLockedError(
                f"result {name!r} is being written by pid {holder.get('pid', '?')} on host "
                f"{holder.get('host', '?')} (since {holder.get('started', '?')}): wait for it to finish, or delete "
                f"{path} if that process is gone"
            ) from None
        with os.fdopen(fd, "w") as handle:
            json.dump(mine, handle)
        break
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # a run that failed before writing anything leaves no folder
            folder.rmdir()


def open_parts_run(
    name: str,
    settings: dict[str, Any],
    columns: Sequence[str],
    key_columns: Sequence[str],
    *,
    description: str,
    command: str | None = None,
    resume: bool = True,
    results_dir: str | os.PathLike | None = None,
    upgrade: Callable[[Results], Results] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`open_run` for a run stored as a folder of Parquet parts (call it under :func:`run_lock`).

    A legacy CSV + JSON run resumed here is converted: its table becomes the folder's
    first part, and the CSV and JSON are removed once the folder is complete. The
    provenance records ``columns`` and ``key_columns`` (what :func:`read` dedups by).
    """
    table_path, record_path = paths(name, results_dir)
    legacy = not is_run_dir(name, results_dir) and table_path.is_file() and record_path.is_file()
    if legacy or is_run_dir(name, results_dir):
        table, provenance = open_run(name, settings, columns, description=description, command=command,
                                     resume=resume, results_dir=results_dir, upgrade=upgrade)
    else:
        table, provenance = pd.DataFrame(columns=list(columns)), new_provenance(description, settings, command)
    provenance = {**provenance, "format": "parquet parts", "columns": list(columns),
                  "key_columns": list(key_columns)}
    if legacy:
        if not table.empty:
            write_part(name, table, provenance, results_dir)
        write_provenance(name, provenance, results_dir, rows=len(table))
        table_path.unlink()
        record_path.unlink()
    return table, provenance


def describe(provenance: dict[str, Any], held: int | None = None) -> str:
    """One sentence saying which run produced a result: what, how much, which settings in
    short, when, on what machine and with which command (the full record:
    :func:`record_markdown`). ``held``, the architectures the result holds, is named
    next to the planned number when the run has not reached it yet.

    >>> describe({"description": "NNGP scores", "rows": 4000, "command": "nngp-nas score-table",
    ...           "settings": {"architectures": 1000, "settings": [{}, {}]}, "cpu": "Xeon",
    ...           "started": "2026-11-23T03:03:54+00:00", "updated": "2026-11-24T06:59:29+00:00"})
    'NNGP scores: 4,000 rows, 1,000 architectures at 2 settings, computed 2026-11-23 to 2026-11-24 on Xeon with `nngp-nas score-table`'
    >>> describe({"rows": 1200, "settings": {"architectures": 30001, "settings": [{}, {}]}}, held=600)[:60]
    'run: 1,200 rows, 600 of 30,001 planned architectures at 2 se'
    """
    settings = provenance.get("settings", {})
    rows = provenance.get("rows")
    parts = [f"{rows:,} rows" if isinstance(rows, int) else "rows unknown"]
    if isinstance(settings, dict) and isinstance(settings.get("settings"), list):
        count = settings.get("architectures")
        if isinstance(count, int) and held is not None and held < count:
            count = f"{held:,} of {count:,} planned"
        elif isinstance(count, int):
            count = f"{count:,}"
        parts.append((f"{count} architectures at " if count is not None else "")
                     + f"{len(settings['settings'])} setting{'s' * (len(settings['settings']) != 1)}")
    elif isinstance(settings, dict) and settings:
        shown = [f"{k}={v}" for k, v in sorted(settings.items()) if len(str(v)) <= 40]
        parts.append("settings " + ", ".join(shown[:6]) + (", ..." if len(shown) < len(settings) or len(shown) > 6
                                                          else ""))
    started, updated = (str(provenance.get(key, "?"))[:10] for key in ("started", "updated"))
    when = started if started == updated else f"{started} to {updated}"
    machine = provenance.get("cpu") or provenance.get("machine", "an unrecorded machine")
    device = provenance.get("device", "cpu")
    where = machine if device in ("cpu", None) else f"{machine} ({device})"
    return (f"{provenance.get('description', 'run')}: {', '.join(parts)}, computed {when} on {where} "
            f"with `{provenance.get('command', '?')}`")


def record_markdown(provenance: dict[str, Any], title: str = "The full provenance record") -> str:
    """The provenance record as a collapsed block (an HTML ``<details>`` around a JSON code
    block), for a page that states :func:`describe`'s sentence and keeps the rest one click away."""
    record = json.dumps(provenance, indent=2, sort_keys=True, default=str)
    return f"<details><summary>{title}</summary>\n\n```json\n{record}\n```\n\n</details>"


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
