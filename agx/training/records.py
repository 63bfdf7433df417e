"""Fine-tuning datasets on disk: chat-format JSON Lines, deduplication, a stable split, hashes.

Every dataset agx writes is JSON Lines, one record per line, each with a `messages` list in
chat format (system / user / assistant) — what `scripts/train.py` reads — plus fields that say
where the record came from. Plan records (Delta) also carry `request`, `plan` and `catalogue`
(`"builtin"` or a catalogue file name relative to the dataset's folder), so `agx eval plans`
can rebuild the exact prompt, grammar and validator.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from agx.planning.tools import CatalogueFileError, ToolCatalogue, load_catalogue_file

BUILTIN_CATALOGUE = "builtin"


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and line."""


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield each record of a JSON Lines file; a malformed line is an error naming its number."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: is a directory, expected a .jsonl file") from None
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{number}: expected a JSON object per line")
            yield record


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records atomically (temp file + rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)
    return count


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(messages: list[dict[str, Any]]) -> str:
    """A hash of a conversation's text, whitespace-normalised: equal keys are duplicates."""
    norm = [(m.get("role", ""), " ".join(str(m.get("content", "")).split())) for m in messages]
    return hashlib.sha256(json.dumps(norm, ensure_ascii=False).encode("utf-8")).hexdigest()


def dedup(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Drop records whose messages repeat an earlier record's; returns (kept, dropped count)."""
    seen: set[str] = set()
    kept: list[dict[str, Any]] = []
    dropped = 0
    for record in records:
        key = content_key(record["messages"])
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(record)
    return kept, dropped


def split_of(key: str, validation_fraction: float) -> str:
    """'train' or 'validation', decided by the record's hash: the same record lands in the same
    split every time the dataset is rebuilt, so validation never leaks into a later train set."""
    bucket = int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if bucket < validation_fraction else "train"


@dataclass
class SplitWritten:
    train: int
    validation: int
    train_path: Path
    validation_path: Path


def write_split(
    records: list[dict[str, Any]], out_dir: str | Path, prefix: str, validation_fraction: float
) -> SplitWritten:
    """Write <prefix>-train.jsonl and <prefix>-validation.jsonl. A record with a `split` field
    keeps it (TaskBench's own split); others are split by content hash."""
    out = Path(out_dir)
    train, validation = [], []
    for record in records:
        split = record.get("split") or split_of(content_key(record["messages"]), validation_fraction)
        (validation if split == "validation" else train).append(record)
    train_path, val_path = out / f"{prefix}-train.jsonl", out / f"{prefix}-validation.jsonl"
    write_jsonl(train_path, train)
    write_jsonl(val_path, validation)
    return SplitWritten(len(train), len(validation), train_path, val_path)


def catalogue_to_json(catalogue: ToolCatalogue) -> list[dict[str, Any]]:
    """The catalogue in agx's catalogue-file form (load_catalogue_file reads it back)."""
    out = []
    for s in catalogue:
        entry = {"name": s.name, "description": s.description, "args_schema": s.args_schema, "risk": s.risk.value}
        # types only where declared, so an untyped catalogue's file keeps its bytes
        if s.input_types:
            entry["input_types"] = list(s.input_types)
        if s.output_types:
            entry["output_types"] = list(s.output_types)
        out.append(entry)
    return out


def resolve_catalogue(ref: str | None, dataset_dir: Path, cache: dict[str, ToolCatalogue] | None = None) -> ToolCatalogue:
    """A record's catalogue: the builtin tools, or a catalogue file beside the dataset."""
    from agx.execution.builtin_tools import builtin_catalogue

    key = ref or BUILTIN_CATALOGUE
    if cache is not None and key in cache:
        return cache[key]
    if key == BUILTIN_CATALOGUE:
        cat = builtin_catalogue()
    else:
        path = Path(key)
        if not path.is_absolute():
            path = dataset_dir / path
        try:
            cat = load_catalogue_file(path)
        except CatalogueFileError as exc:
            raise DatasetError(f"catalogue {key!r}: {exc}") from None
    if cache is not None:
        cache[key] = cat
    return cat
