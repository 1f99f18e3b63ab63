"""What is at a table's path when it is not a readable, writable Delta table, said in one
line: a symbolic link (resolved once, as delta-rs resolves it), a file or a directory of
Parquet files (exit 2, not "not ready"), a truncated log file (named), an unwritable
directory (exit 2, checked before any file is written). Diagnoses never raise themselves;
:func:`explained` raises a backend's failure again as the one line they give.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import unquote, urlparse

import pyarrow.fs as pafs

from sparklift.errors import InputError, SparkliftError


def local_path(path: str) -> str | None:
    """The local filesystem path of a plain path or ``file:`` URI; None for other URIs."""
    if "://" not in path:
        return path
    if path.startswith("file:"):
        return unquote(urlparse(path).path)
    return None


def real_path(path: str) -> str:
    """A local path (or ``file:`` URI) with its symbolic links resolved, as delta-rs sees
    it (it canonicalizes local tables): Spark must be given the same root, or it refuses
    delta-rs' file list ("Wrong basePath"). Other URIs as they are."""
    local = local_path(path)
    return path if local is None else os.path.realpath(os.path.abspath(local))


# --- what is at a table's path when it is not a readable Delta table -------------------

_COMMIT = re.compile(r"^\d{20}\.json$")
_CHECKPOINT = re.compile(r"^(\d{20})\.checkpoint(\.\d+\.\d+)?\.parquet$")
_LOG_FILE_IN_ERROR = re.compile(r"(\S*_delta_log/\d{20}\.(?:json|checkpoint\S*?\.parquet))")
_CORRUPT_WORDS = ("checksum", "corrupt", "truncat", "malformed", "json")
NOT_WRITABLE = (
    "Permission denied",
    "Read-only file system",
    "[Errno 13]",
    "[Errno 30]",
    "AccessDenied",
    "DELTA_CANNOT_CREATE_LOG_PATH",
    "Mkdirs failed",
)
MAX_LISTED = 1000  # files looked at to say what a directory that is not a table holds


def first_line(exc: BaseException, containing: Sequence[str] = ()) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    hit = next((ln for ln in lines if any(w in ln for w in containing)), None)
    line = hit or (lines[0] if lines else type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."


def _listing(path: str) -> list[tuple[str, bool]] | None:
    """(relative path, is a file) of up to MAX_LISTED entries under ``path``; None if
    ``path`` is not a directory or cannot be listed."""
    local = local_path(path)
    out: list[tuple[str, bool]] = []
    try:
        if local is not None:
            if not os.path.isdir(local):
                return None
            for dirpath, dirnames, files in os.walk(local):
                dirnames.sort()
                rel = os.path.relpath(dirpath, local)
                for f in sorted(files):
                    out.append((f if rel == "." else f"{rel}/{f}", True))
                    if len(out) >= MAX_LISTED:
                        return out
                out += [(d if rel == "." else f"{rel}/{d}", False) for d in dirnames]
            return out
        fs, base = pafs.FileSystem.from_uri(path)
        if fs.get_file_info(base).type != pafs.FileType.Directory:
            return None
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
        return [
            (i.path[len(base) :].lstrip("/"), i.type == pafs.FileType.File)
            for i in infos[:MAX_LISTED]
        ]
    except Exception:  # a diagnosis only: never the cause of a failure
        return None


def not_a_table(path: str) -> str | None:
    """What is at ``path`` if it is something other than a Delta table (or nothing, or a
    table still being created): a file, a directory of Parquet files, another non-empty
    directory. None when there is nothing there but empty directories (what a failed
    first write leaves), or a ``_delta_log``."""
    local = local_path(path)
    if local is not None and os.path.isfile(local):
        return "is a file, not a Delta table"
    if local is not None and os.path.isdir(os.path.join(local, "_delta_log")):
        return None
    entries = _listing(path)
    if not entries or any(rel == "_delta_log" for rel, _ in entries):
        return None
    files = [rel for rel, is_file in entries if is_file]
    if not files:
        return None
    parquet = [f for f in files if f.endswith(".parquet")]
    more = "+" if len(entries) >= MAX_LISTED else ""
    if parquet:
        return (
            f"is a directory of Parquet files ({len(parquet)}{more}, e.g. {parquet[0]}), "
            "not a Delta table (no _delta_log)"
        )
    return (
        f"is a directory of {len(files)}{more} files (e.g. {files[0]}) without a _delta_log, "
        "not a Delta table"
    )


def broken_log_file(path: str, exc: BaseException | None = None) -> str | None:
    """The table's log file that cannot be parsed, and why: ``_last_checkpoint`` or one of
    the newest commits (those after the last checkpoint, at most 20), else a log file the
    error ``exc`` blames for a checksum or parse failure. None if none is found."""
    try:
        fs, base = pafs.FileSystem.from_uri(real_path(path) if local_path(path) else path)
        infos = fs.get_file_info(pafs.FileSelector(f"{base}/_delta_log"))
        names = {i.base_name: i.path for i in infos if i.type == pafs.FileType.File}
        checkpoints = [int(m.group(1)) for n in names if (m := _CHECKPOINT.match(n))]
        after = max(checkpoints, default=-1)
        commits = sorted((n for n in names if _COMMIT.match(n)), reverse=True)
        commits = [n for n in commits if int(n[:20]) > after][:20]
        for name in [n for n in ("_last_checkpoint",) if n in names] + commits:
            with fs.open_input_stream(names[name]) as f:
                text = f.read().decode("utf-8", errors="replace")
            if not text.strip():
                return f"log file {names[name]} is empty"
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except ValueError as e:
                        return f"log file {names[name]} is truncated or corrupt (line {n}: {e})"
    except Exception:  # a diagnosis only
        pass
    if exc is not None:
        text = str(exc)
        found = _LOG_FILE_IN_ERROR.search(text)
        if found and any(w in text[:2000].lower() for w in _CORRUPT_WORDS):
            return f"log file {found.group(1)} cannot be read ({first_line(exc)})"
    return None


def check_writable(name: str, path: str) -> None:
    """Fail with one line if the local directory table ``name`` is written into is not
    writable (missing permission, read-only filesystem, a file in the way). Other URIs
    are not checked: their errors surface from the write."""
    local = local_path(path)
    if local is None:
        return
    local = os.path.abspath(local)
    probe = local
    while not os.path.lexists(probe):  # the nearest ancestor that exists: created below it
        probe = os.path.dirname(probe)
    where = f"cannot write table {name} at {path}"
    if not os.path.isdir(probe):
        raise InputError(f"{where}: {probe} is not a directory")
    dirs = [probe] if probe != local else [local, os.path.join(local, "_delta_log")]
    for d in dirs:
        if os.path.isdir(d) and not os.access(d, os.W_OK | os.X_OK):
            raise InputError(
                f"{where}: directory {d} is not writable (permission denied or a read-only "
                "file system); check tables.base_path and the job's user"
            )


@contextmanager
def explained(name: str, path: str, writing: bool = False) -> Iterator[None]:
    """Turn a backend's failure on table ``name`` at ``path`` into one line naming the
    table when a diagnosis says why: an unreadable log file (exit 1), a path that cannot
    be written (exit 2); any other failure passes unchanged."""
    try:
        yield
    except SparkliftError:
        raise
    except Exception as e:
        text = str(e)
        # Only a refusal to write under this table's path: an input the frame reads
        # may be refused too, and that is not this table's fault.
        bare = path.split("://", 1)[-1]
        if writing and bare in text and any(w in text for w in NOT_WRITABLE):
            raise InputError(
                f"cannot write table {name} at {path}: permission denied or a read-only "
                f"file system ({first_line(e, NOT_WRITABLE)})"
            ) from e
        broken = broken_log_file(path, e)
        if broken:
            raise SparkliftError(
                f"table {name} at {path} cannot be read: its Delta {broken}; restore that "
                "file (or the table) from a backup"
            ) from e
        raise
