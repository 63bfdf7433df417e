"""Echo's fine-tuning set from session logs (.agx/sessions/*.jsonl).

Every Echo chat turn agx logged — answers, clarification questions, status reports and
summaries alike — is a training conversation: the exact messages Echo was given plus the reply
it produced. Turns that went wrong are left out: generation errors, cancelled or truncated
replies (finish_reason other than "stop"), empty replies. Duplicates are removed by
normalised content (`records.dedup`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from agx.workspace.sessionlog import ReadReport, read_records, session_files

ROLES_IN_MESSAGES = ("system", "user", "assistant")


@dataclass
class EchoScan:
    records: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    turns_seen: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    corrupt_lines: int = 0

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def _why_unusable(rec: dict[str, Any], role: str) -> str | None:
    if rec.get("type") != "chat" or rec.get("role") != role:
        return "other"
    if rec.get("error"):
        return "error"
    finish = (rec.get("stats") or {}).get("finish_reason", "stop")
    if finish != "stop":
        return f"finish={finish}"
    response = rec.get("response")
    if not isinstance(response, str) or not response.strip():
        return "empty reply"
    messages = rec.get("messages")
    if not isinstance(messages, list) or not messages:
        return "no messages"
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ROLES_IN_MESSAGES or not isinstance(m.get("content"), str):
            return "malformed messages"
    if messages[-1].get("role") != "user":
        return "malformed messages"
    return None


def conversation_of(rec: dict[str, Any]) -> list[dict[str, str]]:
    """The logged prompt messages followed by the logged reply."""
    return [{"role": m["role"], "content": m["content"]} for m in rec["messages"]] + [
        {"role": "assistant", "content": rec["response"].strip()}
    ]


def scan_session_files(paths: Iterable[Path], role: str = "echo") -> EchoScan:
    """Usable turns of `role` from the given session log files, in file order."""
    scan = EchoScan()
    for path in paths:
        scan.files += 1
        report = ReadReport()
        for rec in read_records(Path(path), report):
            if rec.get("type") == "chat":
                scan.turns_seen += 1
            why = _why_unusable(rec, role)
            if why == "other":
                continue
            if why is not None:
                scan.skip(why)
                continue
            scan.records.append({
                "id": f"{rec.get('session', Path(path).stem)}-{len(scan.records)}",
                "source": "session-log",
                "session": rec.get("session"),
                "model": rec.get("model"),
                "messages": conversation_of(rec),
            })
        scan.corrupt_lines += report.skipped
    return scan


def session_logs_under(locations: Iterable[Path]) -> list[Path]:
    """Session log files from repositories (their .agx/sessions/), folders of logs, or files."""
    found: list[Path] = []
    for loc in locations:
        loc = Path(loc)
        if loc.is_file():
            found.append(loc)
        elif (loc / ".agx" / "sessions").is_dir():
            found.extend(session_files(loc))
        elif loc.is_dir():
            found.extend(sorted(loc.glob("*.jsonl")))
    return found
