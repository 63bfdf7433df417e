"""Turn a GGUF LoRA adapter written by agx back into a PEFT adapter folder, so training can
continue from an adapter that only exists as GGUF (the shipped `adapters/*/adapter.gguf`).

It inverts `convert_lora.convert_peft_to_gguf`: tensor names back through gguf's tensor-name
map and the llama q/k row permutation undone on lora_B, with the adapter's PEFT rank, alpha and
rsLoRA setting, so PEFT's scaling reproduces the weight delta llama.cpp applies. An adapter
trained with no rank/alpha patterns comes back tensor for tensor; per-module factors the
converter folded into lora_B stay there (the same delta, under one alpha). Only adapters that
carry agx's `agx.lora.*` keys are accepted: for a foreign GGUF adapter the PEFT alpha and the
rsLoRA setting are unknown, so the inverse would be a guess.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agx.training.convert_lora import (
    _PEFT_PREFIX,
    SUPPORTED_ARCHS,
    ConversionError,
    _read_base,
    _tensor_name_map,
)

# The HF module names a llama-family decoder layer can carry LoRA on.
_LAYER_MODULES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass
class PeftFromGGUF:
    out_dir: Path
    rank: int
    peft_alpha: float
    use_rslora: bool
    targets: list[str]
    n_modules: int


def unpermute_qk_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `convert_lora.permute_qk_rows`."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ConversionError(f"cannot un-permute {rows} rows from {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_to_hf_names(arch: str, n_layers: int) -> dict[str, str]:
    tmap = _tensor_name_map(arch, n_layers)
    names = {}
    candidates = [f"model.layers.{i}.{m}" for i in range(n_layers) for m in _LAYER_MODULES] + ["lm_head"]
    for hf in candidates:
        gguf_name = tmap.get_name(hf + ".weight", try_suffixes=(".weight",))
        if gguf_name:
            names[gguf_name] = hf
    return names


def _field_value(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        return None
    return field.contents()


def convert_gguf_to_peft(adapter_gguf: str | os.PathLike, base_gguf: str | os.PathLike,
                         out_dir: str | os.PathLike) -> PeftFromGGUF:
    """Write `out_dir`/adapter_config.json + adapter_model.safetensors equivalent to the GGUF adapter."""
    import gguf
    from safetensors.numpy import save_file

    adapter_path, out_dir = Path(adapter_gguf), Path(out_dir)
    base = _read_base(Path(base_gguf))
    try:
        reader = gguf.GGUFReader(adapter_path)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"{adapter_path}: not a readable GGUF file ({exc})") from None
    if _field_value(reader, "general.type") != "adapter" or _field_value(reader, "adapter.type") != "lora":
        raise ConversionError(f"{adapter_path}: not a GGUF LoRA adapter")
    arch = _field_value(reader, "general.architecture")
    if arch != base.architecture:
        raise ConversionError(f"{adapter_path}: adapter is for {arch!r}, the base is {base.architecture!r}")
    peft_alpha = _field_value(reader, "agx.lora.peft_alpha")
    gguf_alpha = _field_value(reader, "adapter.lora.alpha")
    if peft_alpha is None or gguf_alpha is None:
        raise ConversionError(f"{adapter_path}: no agx.lora.peft_alpha — only adapters converted by agx can be turned back into PEFT")
    use_rslora = bool(_field_value(reader, "agx.lora.use_rslora"))

    names = _gguf_to_hf_names(arch, base.n_layers)
    permute = SUPPORTED_ARCHS[arch]
    n_head, n_head_kv = base.n_head, base.n_head_kv or base.n_head
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        stem, _, kind = t.name.rpartition(".")
        if kind not in ("lora_a", "lora_b"):
            raise ConversionError(f"{adapter_path}: unexpected tensor {t.name}")
        hf = names.get(stem)
        if hf is None:
            raise ConversionError(f"{adapter_path}: no HF module corresponds to {stem}")
        # numpy order is the reverse of gguf's (in, out) shape
        arr = np.array(t.data, dtype=np.float32).reshape(tuple(reversed([int(d) for d in t.shape])))
        pairs.setdefault(hf, {})[kind] = arr

    ranks = {ab["lora_a"].shape[0] for ab in pairs.values() if "lora_a" in ab}
    if len(ranks) != 1:
        raise ConversionError(f"{adapter_path}: modules have different ranks {sorted(ranks)}; not supported")
    rank = ranks.pop()
    peft_scale = peft_alpha / math.sqrt(rank) if use_rslora else peft_alpha / rank
    factor = peft_scale * rank / gguf_alpha  # what the converter folded into every lora_B
    tensors: dict[str, np.ndarray] = {}
    for hf, ab in sorted(pairs.items()):
        if set(ab) != {"lora_a", "lora_b"}:
            raise ConversionError(f"{adapter_path}: {hf} lacks lora_a or lora_b")
        a, b = ab["lora_a"], ab["lora_b"]
        if permute and hf.endswith("q_proj"):
            b = unpermute_qk_rows(b, n_head)
        elif permute and hf.endswith("k_proj"):
            b = unpermute_qk_rows(b, n_head_kv)
        if abs(factor - 1.0) > 1e-7:
            b = b / np.float32(factor)
        tensors[f"{_PEFT_PREFIX}{hf}.lora_A.weight"] = np.ascontiguousarray(a)
        tensors[f"{_PEFT_PREFIX}{hf}.lora_B.weight"] = np.ascontiguousarray(b)

    targets = sorted({hf.rsplit(".", 1)[-1] for hf in pairs})
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": peft_alpha,
        "use_rslora": use_rslora, "target_modules": targets, "bias": "none", "lora_dropout": 0.0,
        "base_model_name_or_path": _field_value(reader, "agx.lora.base_model"),
        "inference_mode": True, "fan_in_fan_out": False, "modules_to_save": None,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(tensors, str(out_dir / "adapter_model.safetensors"))
    return PeftFromGGUF(out_dir=out_dir, rank=rank, peft_alpha=float(peft_alpha), use_rslora=use_rslora,
                        targets=targets, n_modules=len(pairs))
