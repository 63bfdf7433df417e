"""`agx adapters list|convert|install|check|dequantize`: GGUF LoRA adapters for the roles."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agx.cli.context import EXIT_USAGE, CliContext, CliError
from agx.config.schema import ROLE_NAMES


def register(sub) -> None:
    p = sub.add_parser(
        "adapters", help="list, convert and install LoRA adapters",
        description="LoRA adapters: PEFT folders are converted to GGUF adapters that llama.cpp applies on top of a "
        "GGUF base; installed ones live in adapters/<name>/ and a role selects one with roles.<role>.adapter.",
    )
    asub = p.add_subparsers(dest="adapters_command", metavar="ACTION", required=True)

    ls = asub.add_parser("list", help="installed adapters: base, rank, alpha, targets, size, eval metrics, roles using them")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(func=run_list)

    base_help = "the GGUF base: a file, bundled:smollm2, hf://..., or a role name (echo/delta) for that role's model"
    cv = asub.add_parser("convert", help="convert a PEFT LoRA folder to a GGUF adapter",
                         description="Convert adapter_config.json + adapter_model.safetensors to a GGUF LoRA adapter "
                         "for BASE (llama and qwen2 architectures).")
    cv.add_argument("peft_dir", metavar="PEFT_DIR")
    cv.add_argument("--base", required=True, help=base_help)
    cv.add_argument("-o", "--out", required=True, metavar="OUT.gguf")
    cv.add_argument("--outtype", choices=["f32", "f16"], default="f32", help="tensor type in the adapter (default f32)")
    cv.set_defaults(func=run_convert)

    ins = asub.add_parser("install", help="convert a PEFT folder into adapters/<name>/ with a manifest",
                          description="Convert and install as adapters/NAME/adapter.gguf + manifest.json (base name and "
                          "hash, rank, alpha, targets, dataset hash, eval metrics).")
    ins.add_argument("peft_dir", metavar="PEFT_DIR")
    ins.add_argument("--base", required=True, help=base_help)
    ins.add_argument("--name", required=True, help="adapter name, e.g. agenix-delta-v1")
    ins.add_argument("--outtype", choices=["f32", "f16"], default="f32")
    ins.add_argument("--dataset", metavar="FILE", help="training set file, hashed into the manifest")
    ins.add_argument("--metrics", metavar="FILE", help="JSON file of eval metrics for the manifest")
    ins.add_argument("--force", action="store_true", help="replace an installed adapter of the same name")
    ins.add_argument("--default-for", action="append", choices=ROLE_NAMES, default=[], metavar="ROLE",
                     help="make it ROLE's default on this base (roles.ROLE.adapter = \"auto\" loads it); repeatable")
    ins.add_argument("--prompt-style", choices=["full", "compact", "compact_example"],
                     help="the planning prompt it was trained with (roles.delta.prompt_style = \"auto\" follows it)")
    ins.add_argument("--goal-style", choices=["steps", "request"],
                     help="how its plan targets wrote the goal: 'steps' = numbered steps, one task each (the planner "
                     "then holds its plans to at least one task per step it numbers)")
    ins.add_argument("--purpose", choices=["plan"],
                     help="what it was trained for: 'plan' = applied to Delta's plans only, never to code or answers")
    ins.add_argument("--scale", type=float, metavar="S",
                     help="the LoRA scale it was measured best at; a role whose adapter_scale is unset applies it "
                     "at S (default: 1.0)")
    ins.add_argument("--training-command", metavar="CMD",
                     help="the command that trained it, recorded in the manifest so the adapter can be reproduced")
    ins.set_defaults(func=run_install)

    ck = asub.add_parser("check", help="check that an adapter fits a base (architecture, tensor names and shapes)")
    ck.add_argument("adapter", metavar="ADAPTER", help="an installed adapter name or a .gguf path")
    ck.add_argument("--base", required=True, help=base_help)
    ck.set_defaults(func=run_check)

    dq = asub.add_parser("dequantize", help="write an all-F32 copy of a GGUF model (same metadata)",
                         description="Dequantize a GGUF model (e.g. Q4_1) to F32: the exact base for comparing "
                         "adapter numerics, and a full-precision base for training.")
    dq.add_argument("src", metavar="IN.gguf", help=base_help)
    dq.add_argument("-o", "--out", required=True, metavar="OUT.gguf")
    dq.set_defaults(func=run_dequantize)


def _path_arg(ctx: CliContext, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else ctx.cwd / path


def _base_path(ctx: CliContext, value: str) -> Path:
    """--base: a role name, a model spec (bundled:/hf://) or a file."""
    from agx.runtime.models import ModelSpecError, resolve_model

    spec = value
    if value in ROLE_NAMES:
        rc = ctx.config.role(value)
        if rc.backend != "llama_cpp":
            raise CliError(f"roles.{value} is remote ({rc.base_url}); pass the base GGUF file with --base", EXIT_USAGE)
        spec = rc.model
    if spec.startswith(("bundled:", "hf://")):
        try:
            resolved = resolve_model(spec, ctx.config, ctx.base_dir)
        except ModelSpecError as exc:
            raise CliError(f"--base: {exc}", EXIT_USAGE) from None
        if not resolved.present:
            raise CliError(f"--base: {spec} is not on disk ({resolved.path}); `agx models pull` fetches it", EXIT_USAGE)
        return resolved.path
    path = _path_arg(ctx, spec)
    if not path.is_file():
        raise CliError(f"--base: {path} not found", EXIT_USAGE)
    return path


def _convert_errors(fn):
    """Conversion problems are bad input: one line, exit 2."""
    from agx.training.convert_lora import ConversionError
    from agx.training.dequantize import DequantizeError

    try:
        return fn()
    except (ConversionError, DequantizeError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def _size(n: int) -> str:
    from agx.runtime.gguf_info import human_bytes

    return human_bytes(n)


def _metrics_line(metrics: dict) -> str:
    """Flat figures as they are; a per-set entry ({"valid_pct", "node_f1", ...}) as one fragment."""
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
        elif isinstance(value, dict) and "valid_pct" in value:
            parts.append(f"{key}: valid {value['valid_pct']:.4g}%, node F1 {value.get('node_f1', 0):.4g}, "
                         f"edge F1 {value.get('edge_f1', 0):.4g}")
    return "; ".join(parts[:8]) or "-"


def run_list(ctx: CliContext) -> int:
    from agx.runtime.adapters import adapters_dir, list_adapters

    entries = list_adapters(ctx.config, ctx.base_dir)
    if ctx.args.json:
        print(json.dumps([{
            "name": e.name, "path": str(e.path), "size": e.size_bytes, "architecture": e.architecture,
            "base_model": e.base_model, "rank": e.rank, "alpha": e.alpha, "targets": e.targets,
            "metrics": e.metrics, "used_by": e.used_by, "problem": e.problem,
        } for e in entries], indent=2))
        return 1 if any(e.problem for e in entries) else 0
    folder = adapters_dir(ctx.config)
    if not entries:
        print(f"no adapters installed in {folder}")
        print("make one: scripts/train_and_convert.sh, or `agx adapters install PEFT_DIR --base BASE --name NAME`")
        return 0
    print(f"adapters in {folder}:")
    bad = False
    for e in entries:
        used = f"  [used by {', '.join(e.used_by)}]" if e.used_by else ""
        print(f"{e.name}{used}")
        print(f"  file:     {e.path} ({_size(e.size_bytes)})")
        if e.problem:
            bad = True
            print(f"  ERROR:    {e.problem}")
        print(f"  base:     {e.base_model or '?'} ({e.architecture or '?'})")
        print(f"  lora:     rank {e.rank if e.rank is not None else '?'}, alpha {e.alpha if e.alpha is not None else '?'}, "
              f"targets {', '.join(e.targets) or '?'}")
        print(f"  eval:     {_metrics_line(e.metrics)}")
    return 1 if bad else 0


def _print_result(r, out: Path) -> None:
    note = f"q/k rows permuted in {r.permuted} tensors" if r.permuted else "no q/k permutation for this architecture"
    print(f"wrote {out} ({_size(r.size_bytes)}): {r.architecture}, {r.n_modules} LoRA modules "
          f"({', '.join(r.targets)}), rank {r.rank}, alpha {r.peft_alpha:g}"
          + (f" (rsLoRA: written as {r.gguf_alpha:g})" if r.use_rslora else "") + f", {r.outtype}; {note}")
    if r.folded:
        print(f"  {r.folded} modules with their own alpha/rank: scale folded into lora_b")


def run_convert(ctx: CliContext) -> int:
    from agx.training.convert_lora import convert_peft_to_gguf

    a = ctx.args
    base = _base_path(ctx, a.base)
    out = _path_arg(ctx, a.out)
    result = _convert_errors(lambda: convert_peft_to_gguf(_path_arg(ctx, a.peft_dir), base, out, a.outtype))
    _print_result(result, out)
    return 0


def run_install(ctx: CliContext) -> int:
    from agx.training.adapter_install import install_adapter

    a = ctx.args
    if a.scale is not None and not 0 < a.scale <= 4:
        raise CliError(f"--scale {a.scale:g}: give a LoRA scale above 0 and at most 4", EXIT_USAGE)
    base = _base_path(ctx, a.base)
    metrics = None
    if a.metrics:
        mpath = _path_arg(ctx, a.metrics)
        try:
            metrics = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--metrics {mpath}: {exc}", EXIT_USAGE) from None
    dataset = _path_arg(ctx, a.dataset) if a.dataset else None
    if dataset is not None and not dataset.exists():
        raise CliError(f"--dataset {dataset} not found", EXIT_USAGE)
    folder, result = _convert_errors(lambda: install_adapter(
        _path_arg(ctx, a.peft_dir), base, a.name, ctx.config, outtype=a.outtype, dataset=dataset,
        metrics=metrics, force=a.force,
        extra={k: v for k, v in (("default_for", a.default_for), ("prompt_style", a.prompt_style),
                                 ("goal_style", a.goal_style), ("purpose", a.purpose), ("scale", a.scale),
                                 ("training_command", a.training_command)) if v},
    ))
    _print_result(result, result.out_path)
    print(f"installed {a.name} in {folder}; select it with: --set roles.<role>.adapter={a.name}  (or in agx.toml)")
    return 0


def run_check(ctx: CliContext) -> int:
    from agx.runtime.adapters import check_adapter_against_base, resolve_adapter
    from agx.runtime.engine import EngineError
    from agx.runtime.gguf_info import GGUFError, read_gguf_info

    a = ctx.args
    base = _base_path(ctx, a.base)
    try:
        path = resolve_adapter(a.adapter, ctx.config, ctx.cwd)
        check_adapter_against_base(path, read_gguf_info(base))
    except (EngineError, GGUFError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print(f"ok: {path} fits {base.name}")
    return 0


def run_dequantize(ctx: CliContext) -> int:
    from agx.training.dequantize import dequantize_gguf

    a = ctx.args
    src = _base_path(ctx, a.src)
    out = _path_arg(ctx, a.out)
    print(f"dequantizing {src} -> {out}", file=sys.stderr)
    r = _convert_errors(lambda: dequantize_gguf(src, out))
    print(f"wrote {out} ({_size(r.bytes_written)}): {r.n_tensors} tensors, {r.n_quantized} dequantized to F32")
    return 0
