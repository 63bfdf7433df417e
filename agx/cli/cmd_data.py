"""`agx data echo` / `agx data delta`: build fine-tuning sets (chat-format JSON Lines)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from agx.cli.context import EXIT_USAGE, CliContext, CliError

DEFAULT_OUT = "finetune-data"


def register(sub) -> None:
    p = sub.add_parser("data", help="build fine-tuning datasets for Echo and Delta",
                       description="Build chat-format JSONL datasets (train + validation) for scripts/train.py.")
    dsub = p.add_subparsers(dest="data_command", metavar="KIND", required=True)

    e = dsub.add_parser("echo", help="Echo's set from session logs (.agx/sessions)",
                        description="Collect Echo's logged chat turns (answers, clarifying questions, status reports, "
                        "summaries) into an SFT set; failed, cancelled and truncated turns are left out; deduplicated.")
    e.add_argument("locations", nargs="*", help="repositories, session-log folders or .jsonl files (default: this repository)")
    e.add_argument("-o", "--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    e.add_argument("--role", choices=["echo", "delta"], default="echo", help="whose chat turns to collect (default: echo)")
    e.add_argument("--validation-fraction", type=float, default=0.1, help="share held out for validation (default 0.1)")
    e.set_defaults(func=run_echo)

    d = dsub.add_parser("delta", help="Delta's set: request -> plan JSON pairs",
                        description="Generate (request -> plan) pairs over agx's tool catalogue, optionally distil "
                        "plans from a teacher role and convert TaskBench data. Every record is validated.")
    d.add_argument("-o", "--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT})")
    d.add_argument("--count", type=int, default=600, help="synthetic requests to generate before dedup (default 600; 0: none)")
    d.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same dataset)")
    d.add_argument("--teacher", choices=["echo", "delta"], help="distil plans from this role's model (e.g. Qwen2.5-Coder 32B on a worker)")
    d.add_argument("--distill", type=int, default=50, metavar="N", help="seed requests for the teacher (default 50)")
    d.add_argument("--requests", metavar="FILE", help="seed requests for the teacher, one per line (instead of generated ones)")
    d.add_argument("--taskbench", action="append", default=[], metavar="DIR",
                   help="also convert a TaskBench domain folder (data.jsonl + tool_desc.json); repeatable")
    d.add_argument("--validation-fraction", type=float, default=0.1, help="share of agx's own records held out (default 0.1)")
    d.set_defaults(func=run_delta)


def _out_dir(ctx: CliContext, out: str) -> Path:
    path = Path(out)
    return path if path.is_absolute() else ctx.cwd / path


def _check_fraction(value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise CliError(f"--validation-fraction must be in [0, 1), got {value}", EXIT_USAGE)


def _write_manifest(out: Path, name: str, info: dict) -> Path:
    from agx.training.records import file_sha256

    for entry in info.get("files", {}).values():
        entry["sha256"] = file_sha256(out / entry["path"])
    path = out / f"{name}-dataset.json"
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def run_echo(ctx: CliContext) -> int:
    from agx.training.data_echo import scan_session_files, session_logs_under
    from agx.training.records import dedup, write_split

    args = ctx.args
    _check_fraction(args.validation_fraction)
    locations = [Path(p) if Path(p).is_absolute() else ctx.cwd / p for p in args.locations] or [ctx.base_dir]
    missing = [str(p) for p in locations if not p.exists()]
    if missing:
        raise CliError(f"not found: {', '.join(missing)}", EXIT_USAGE)
    files = session_logs_under(locations)
    if not files:
        raise CliError("no session logs found (agx writes them to .agx/sessions/ as you chat)", EXIT_USAGE)
    scan = scan_session_files(files, role=args.role)
    records, dropped = dedup(scan.records)
    if not records:
        raise CliError(f"{scan.turns_seen} chat turns in {len(files)} logs, none usable for {args.role}", 1)
    out = _out_dir(ctx, args.out)
    prefix = args.role
    written = write_split(records, out, prefix, args.validation_fraction)
    _write_manifest(out, prefix, {
        "kind": f"{args.role}-sft", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "session_files": len(files),
        "turns_seen": scan.turns_seen, "skipped": scan.skipped, "duplicates": dropped,
        "files": {"train": {"path": written.train_path.name, "records": written.train},
                  "validation": {"path": written.validation_path.name, "records": written.validation}},
    })
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(scan.skipped.items())) or "none"
    print(f"{args.role}: {len(files)} logs, {scan.turns_seen} turns -> {len(records)} records "
          f"({dropped} duplicates; skipped: {skipped})")
    print(f"  train      {written.train:>6}  {written.train_path}")
    print(f"  validation {written.validation:>6}  {written.validation_path}")
    return 0


def _validated(records, out: Path, errors: list[str]) -> list[dict]:
    """Keep records whose plan passes validation against their catalogue and whose answer is
    exactly that plan's canonical JSON. TaskBench held-out records with unknown tools are kept
    (marked gold_valid=false): they are scoring targets, never training targets."""
    from agx.planning.schema_grammar import canonical_plan_json
    from agx.planning.validate import validate_plan
    from agx.training.records import resolve_catalogue

    cache: dict = {}
    kept = []
    for r in records:
        report = validate_plan(r["plan"], resolve_catalogue(r.get("catalogue"), out, cache))
        answer_ok = r["messages"][-1]["content"] == canonical_plan_json(r["plan"])
        if (report.ok or (r.get("split") == "validation" and r.get("gold_valid") is False)) and answer_ok:
            kept.append(r)
        elif len(errors) < 10:
            errors.append(f"{r['id']}: {'; '.join(report.errors[:2]) or 'answer differs from plan'}")
    return kept


def _teacher_requests(args, count_default: int) -> list[tuple[str, str]]:
    from agx.training.data_delta import PROJECTS, synthetic_requests

    if args.requests:
        path = Path(args.requests)
        try:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise CliError(f"--requests: {exc.strerror}: {path}", EXIT_USAGE) from None
        if not lines:
            raise CliError(f"--requests: {path} has no requests", EXIT_USAGE)
        return [(PROJECTS[i % len(PROJECTS)].name, line) for i, line in enumerate(lines)]
    # A different seed from the gold set, so the teacher sees other phrasings.
    return [(project, request) for project, request, _ in synthetic_requests(count_default, seed=args.seed + 1_000_003)]


def run_delta(ctx: CliContext) -> int:
    from agx.training import data_delta, taskbench
    from agx.training.records import DatasetError, dedup, write_jsonl, write_split

    args = ctx.args
    _check_fraction(args.validation_fraction)
    if args.count < 0 or args.distill < 0:
        raise CliError("--count and --distill must be >= 0", EXIT_USAGE)
    out = _out_dir(ctx, args.out)
    own: list[dict] = []
    info: dict = {"kind": "delta-plans", "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "seed": args.seed, "sources": {}, "files": {}}
    with data_delta.project_repos() as repos:
        contexts = {name: data_delta.repo_context(path) for name, path in repos.items()}
        if args.count:
            synthetic = data_delta.generate_synthetic(args.count, args.seed, contexts)
            own.extend(synthetic)
            info["sources"]["agx-synthetic"] = len(synthetic)
        if args.teacher:
            engine = ctx.pool.engine(args.teacher)
            requests = _teacher_requests(args, args.distill)
            print(f"distilling {len(requests)} plans from the {args.teacher} model ...", file=sys.stderr)

            def progress(done: int, total: int, ok: bool) -> None:
                print(f"\r  {done}/{total} {'kept' if ok else 'rejected'}   ", end="", file=sys.stderr, flush=True)

            report = data_delta.distill(engine, requests, repos, repair_rounds=ctx.config.execution.repair_rounds,
                                        on_progress=progress)
            print(file=sys.stderr)
            own.extend(report.records)
            info["sources"]["agx-distilled"] = {"attempted": report.attempted, "kept": len(report.records),
                                                "rejected": report.rejected, "teacher": engine.info().model}
            print(f"  teacher kept {len(report.records)}/{report.attempted} plans (the rest failed validation)")
    errors: list[str] = []
    own, own_dups = dedup(own)
    own = _validated(own, out, errors)
    train_extra: list[dict] = []
    for folder in args.taskbench:
        path = Path(folder) if Path(folder).is_absolute() else ctx.cwd / folder
        try:
            conv = taskbench.convert_taskbench(path)
        except DatasetError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        taskbench.write_catalogue(conv, out)
        domain = path.name
        recs, _ = dedup(conv.records)
        recs = _validated(recs, out, errors)
        held_out = [r for r in recs if r["split"] == "validation"]
        train_extra.extend(r for r in recs if r["split"] == "train")
        name = f"taskbench-{domain}-validation.jsonl"
        write_jsonl(out / name, held_out)
        info["files"][f"taskbench-{domain}-validation"] = {"path": name, "records": len(held_out)}
        info["files"][f"taskbench-{domain}-catalogue"] = {"path": conv.catalogue_file}
        info["sources"][f"taskbench-{domain}"] = {"train": len(recs) - len(held_out), "validation": len(held_out),
                                                  "train_dropped_unknown_tools": conv.dropped_invalid_train,
                                                  "validation_with_unknown_tools": conv.invalid_eval_kept}
    if not own and not train_extra:
        raise CliError("nothing to write: use --count > 0, --teacher or --taskbench", EXIT_USAGE)
    for r in own:
        r.pop("split", None)
    written = write_split(own + [dict(r) for r in train_extra], out, "delta", args.validation_fraction)
    info["duplicates_dropped"] = own_dups
    info["files"]["train"] = {"path": written.train_path.name, "records": written.train}
    info["files"]["validation"] = {"path": written.validation_path.name, "records": written.validation}
    manifest = _write_manifest(out, "delta", info)
    print(f"delta: {written.train} train, {written.validation} validation records ({own_dups} duplicates dropped)")
    for entry in info["files"].values():
        extra = f"{entry['records']:>6}  " if "records" in entry else " " * 8
        print(f"  {extra}{out / entry['path']}")
    print(f"  manifest {manifest}")
    if errors:
        print(f"agx: {len(errors)}+ records failed validation and were dropped, e.g. {errors[0]}", file=sys.stderr)
    return 0
