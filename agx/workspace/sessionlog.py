"""The session log: JSON Lines under .agx/sessions/, one file per session.

Every chat turn, plan and plan outcome is appended as one line; `encode_line` turns any
record into one (no string can make it fail). Appends are a single
`os.write` of a complete line to an O_APPEND descriptor followed by fsync, so a crash leaves
at worst one torn final line; readers skip lines that do not parse, and the next writer
starts on a fresh line. The log is the raw material for Echo's fine-tuning set.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from agx.workspace.state_dir import ensure_state_dir

SCHEMA_VERSION = 1


def new_session_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def encode_line(record: dict[str, Any]) -> bytes:
    """One JSON line for any record, never an exception: a string that UTF-8 cannot encode (a
    lone surrogate from bytes that were not UTF-8 in argv, a file name, a model's output) is
    written as a JSON escape instead (\\udcff reads back as the same string); values JSON
    has no form for are written as their text, and a record that still cannot be written (a
    cycle) is replaced by one that says so."""
    try:
        text = json.dumps(record, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        text = json.dumps({k: record.get(k) for k in ("v", "ts", "session", "type")} |
                          {"unwritable": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False, default=str)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # Re-encode with every non-ASCII character escaped: lossless, and ASCII always encodes.
        return (json.dumps(json.loads(text), ensure_ascii=True) + "\n").encode("ascii")


class SessionLog:
    def __init__(self, path: Path, session_id: str):
        self.path = Path(path)
        self.session_id = session_id
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def open(cls, repo: Path, session_id: str | None = None) -> "SessionLog":
        """Open (create) a session's log in `repo/.agx/sessions/`."""
        sid = session_id or new_session_id()
        return cls(ensure_state_dir(repo) / "sessions" / f"{sid}.jsonl", sid)

    def append(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"v": SCHEMA_VERSION, "ts": time.time(), "session": self.session_id, "type": kind, **fields}
        line = encode_line(record)
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if self._ends_torn(fd):
                    line = b"\n" + line
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
        return record

    @staticmethod
    def _ends_torn(fd: int) -> bool:
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        return os.pread(fd, 1, size - 1) != b"\n"

    def records(self) -> Iterator[dict[str, Any]]:
        return read_records(self.path)


@dataclass
class ReadReport:
    records: int = 0
    skipped: int = 0


def read_records(path: Path, report: ReadReport | None = None) -> Iterator[dict[str, Any]]:
    """Yield each well-formed record; torn or corrupt lines are skipped (and counted)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            raw = raw.strip()
            if not raw:
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if report:
                    report.skipped += 1
                continue
            if isinstance(rec, dict):
                if report:
                    report.records += 1
                yield rec


def session_files(repo: Path) -> list[Path]:
    folder = Path(repo) / ".agx" / "sessions"
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))


def latest_session(repo: Path) -> Path | None:
    files = session_files(repo)
    return files[-1] if files else None
