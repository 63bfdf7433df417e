"""Convert a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) to a GGUF
LoRA adapter that llama.cpp loads on top of a GGUF base.

What has to be right, and why (each point is something llama.cpp's loader silently gets wrong
or refuses with a terse log line otherwise):

- metadata: general.architecture = the base's, general.type = "adapter", adapter.type = "lora",
  adapter.lora.alpha as FLOAT32 (the loader asserts the type);
- tensor names: the base's GGUF tensor names (via gguf's tensor-name map, ".weight" kept)
  + ".lora_a" / ".lora_b", e.g. blk.0.attn_q.weight.lora_a;
  lora_a is PEFT's lora_A as is (r x in), lora_b is lora_B (out x r);
- llama architecture: llama.cpp stores q/k weights with their rows permuted (for its rotary
  embedding layout), so lora_B of q_proj/k_proj gets the same row permutation (k with the KV
  head count). Without it the adapter still loads and runs — just wrongly (see the numerics test);
- scaling: llama.cpp applies alpha / rank with rank read from each tensor. PEFT uses
  alpha_i / r_i, or alpha_i / sqrt(r_i) with rsLoRA, with per-module alpha_pattern overrides.
  We write one alpha that is exact for the default modules and fold any remaining per-module
  factor into lora_B, so the runtime `scale` still multiplies the whole adapter linearly.

What cannot be represented raises `ConversionError` naming the problem (DoRA, modules_to_save,
LoRA on embeddings or on an lm_head tied to them, PiSSA-style bases, unknown architectures).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agx.runtime.gguf_info import GGUFError, GGUFInfo, read_gguf_info

# Architectures whose conversion we know; value: whether llama.cpp permutes q/k rows.
SUPPORTED_ARCHS = {"llama": True, "qwen2": False}

_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.weight$")


class ConversionError(Exception):
    """The adapter cannot be converted; the message says why, for the user."""


@dataclass
class ConvertResult:
    out_path: Path
    architecture: str
    rank: int
    peft_alpha: float
    gguf_alpha: float
    use_rslora: bool
    n_modules: int
    targets: list[str]
    permuted: int  # lora_B tensors given the q/k row permutation
    folded: int  # lora_B tensors carrying a per-module scaling factor
    outtype: str
    size_bytes: int
    base_model: str | None = None
    warnings: list[str] = field(default_factory=list)


# -- reading PEFT files ---------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "BF16": "bf16"}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as float32 numpy arrays.

    Read directly (the format is a length-prefixed JSON header and raw little-endian data) so
    bf16 adapters — what GPU training saves — convert without torch, which numpy cannot do.
    """
    with open(path, "rb") as fh:
        raw_len = fh.read(8)
        if len(raw_len) != 8:
            raise ConversionError(f"{path}: not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > 100 * 2**20:
            raise ConversionError(f"{path}: not a safetensors file (implausible header)")
        try:
            header = json.loads(fh.read(header_len))
        except ValueError:
            raise ConversionError(f"{path}: not a safetensors file (unreadable header)") from None
        data_start = 8 + header_len
        out: dict[str, np.ndarray] = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            dtype = _ST_DTYPES.get(meta.get("dtype"))
            if dtype is None:
                raise ConversionError(f"{path}: tensor {name} has dtype {meta.get('dtype')}, expected a float type")
            begin, end = meta["data_offsets"]
            fh.seek(data_start + begin)
            buf = fh.read(end - begin)
            if len(buf) != end - begin:
                raise ConversionError(f"{path}: truncated (tensor {name} runs past the end of the file)")
            if dtype == "bf16":
                # bf16 is the top half of a float32.
                arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            else:
                arr = np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<")).astype(np.float32)
            out[name] = arr.reshape(meta["shape"])
    return out


def _load_peft_dir(peft_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    if not peft_dir.is_dir():
        raise ConversionError(f"{peft_dir}: not a directory (expected a PEFT adapter folder)")
    cfg_path = peft_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{peft_dir}: no adapter_config.json — not a PEFT adapter folder")
    try:
        config = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise ConversionError(f"{cfg_path}: invalid JSON ({exc})") from None
    weights = peft_dir / "adapter_model.safetensors"
    if not weights.is_file():
        if (peft_dir / "adapter_model.bin").is_file():
            raise ConversionError(
                f"{peft_dir}: only adapter_model.bin (pickle) found; re-save the adapter with "
                "save_pretrained(..., safe_serialization=True)"
            )
        raise ConversionError(f"{peft_dir}: no adapter_model.safetensors")
    return config, read_safetensors(weights)


def _check_config(config: dict) -> None:
    """Refuse adapter features that a GGUF LoRA cannot express."""
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ConversionError(f"adapter is {peft_type}, not LoRA; only LoRA adapters convert to GGUF")
    if config.get("use_dora"):
        raise ConversionError("DoRA adapters (use_dora=true) cannot be converted: llama.cpp has no magnitude vectors; retrain with use_dora=false")
    if config.get("modules_to_save"):
        raise ConversionError(
            f"modules_to_save={config['modules_to_save']} stores fully trained copies of those layers, "
            "which a GGUF LoRA adapter cannot carry; retrain without modules_to_save (or merge and convert the whole model)"
        )
    if config.get("trainable_token_indices"):
        raise ConversionError("trainable_token_indices (trained embedding rows) cannot be carried by a GGUF LoRA adapter")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        raise ConversionError("adapter trains biases (bias/lora_bias set); a GGUF LoRA adapter has no bias tensors — retrain with bias='none'")
    if config.get("fan_in_fan_out"):
        raise ConversionError("fan_in_fan_out=true (GPT-2 style Conv1D layers) is not supported for llama/qwen2 bases")
    if config.get("layer_replication"):
        raise ConversionError("layer_replication changes the base's layer layout; cannot convert")
    if config.get("target_parameters"):
        raise ConversionError("target_parameters (LoRA on raw parameters, e.g. MoE experts) is not supported")
    if config.get("alora_invocation_tokens"):
        raise ConversionError("activated LoRA (alora_invocation_tokens) is not supported by this converter")
    for flag in ("use_qalora", "use_bdlora"):
        if config.get(flag):
            raise ConversionError(f"{flag}=true is not supported by this converter")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(("pissa", "olora", "corda", "loftq")):
        raise ConversionError(
            f"init_lora_weights={init!r} modifies the base weights, so the adapter only fits that modified base; "
            "save it with path_initial_model_for_weight_conversion= to turn it into a plain LoRA first"
        )
    alpha = config.get("lora_alpha")
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ConversionError(f"lora_alpha must be a positive number (got {alpha!r})")
    r = config.get("r")
    if not isinstance(r, int) or r <= 0:
        raise ConversionError(f"r must be a positive integer (got {r!r})")


def _pattern_value(patterns: dict, module: str, default: float) -> float:
    """PEFT's rule for rank_pattern/alpha_pattern keys: the key (a regex) matches the module
    name or a dotted suffix of it."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return float(value)
    return default


# -- the llama.cpp side ---------------------------------------------------------------------

def permute_qk_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for llama-architecture q/k projections: within each head, the two
    rotary halves are interleaved. `n_head` is the query head count for q, the KV count for k."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ConversionError(f"cannot permute {rows} rows into {n_head} heads")
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tensor_name_map(arch: str, n_blocks: int):
    import gguf

    arch_enum = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_enum is None:
        raise ConversionError(f"gguf does not know architecture {arch!r}")
    return gguf.get_tensor_name_map(arch_enum, n_blocks)


def _read_base(base_path: Path) -> GGUFInfo:
    try:
        base = read_gguf_info(base_path)
    except GGUFError as exc:
        raise ConversionError(f"--base: {exc}") from None
    if base.general_type == "adapter":
        raise ConversionError(f"--base {base_path} is itself an adapter; pass the base model GGUF")
    if base.architecture not in SUPPORTED_ARCHS:
        raise ConversionError(
            f"base architecture {base.architecture!r} is not supported (supported: {', '.join(SUPPORTED_ARCHS)}); "
            "its q/k layout is unverified, so converting could silently produce a wrong adapter"
        )
    if not base.n_layers or not base.n_head:
        raise ConversionError(f"--base {base_path}: missing block_count/head_count metadata")
    return base


def convert_peft_to_gguf(
    peft_dir: str | os.PathLike,
    base_gguf: str | os.PathLike,
    out_path: str | os.PathLike,
    outtype: str = "f32",
    *,
    name: str | None = None,
    _skip_qk_permute: bool = False,
) -> ConvertResult:
    """Convert the PEFT LoRA in `peft_dir` for the GGUF model `base_gguf`; write `out_path`.

    `_skip_qk_permute` exists only so the numerics test can show that leaving out the q/k row
    permutation is caught; never use it for a real adapter.
    """
    import gguf

    if outtype not in ("f32", "f16"):
        raise ConversionError(f"--outtype must be f32 or f16 (got {outtype!r})")
    peft_dir, base_path, out_path = Path(peft_dir), Path(base_gguf), Path(out_path)
    config, tensors = _load_peft_dir(peft_dir)
    _check_config(config)
    base = _read_base(base_path)
    arch = base.architecture
    tmap = _tensor_name_map(arch, base.n_layers)

    # Group PEFT tensors by module; anything that is not a LoRA A/B matrix is an error.
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in tensors.items():
        short = key[len(_PEFT_PREFIX):] if key.startswith(_PEFT_PREFIX) else key
        if "lora_embedding_" in short:
            raise ConversionError(f"{key}: LoRA on an embedding layer cannot be converted (llama.cpp applies LoRA to matrix multiplications only); drop embed_tokens from target_modules")
        if "lora_magnitude_vector" in short:
            raise ConversionError(f"{key}: DoRA magnitude vector found; DoRA adapters cannot be converted")
        m = _LORA_KEY.match(short)
        if not m:
            raise ConversionError(f"{key}: not a LoRA A/B matrix (modules_to_save or a trained bias?); a GGUF LoRA adapter cannot carry it")
        pairs.setdefault(m["module"], {})[m["kind"]] = arr
    if not pairs:
        raise ConversionError(f"{peft_dir}: the adapter has no LoRA tensors")

    use_rslora = bool(config.get("use_rslora"))
    r_default, alpha_default = int(config["r"]), float(config["lora_alpha"])

    def peft_scale(alpha: float, rank: int) -> float:
        return alpha / math.sqrt(rank) if use_rslora else alpha / rank

    # One alpha exact for modules at the default rank and alpha; see the module docstring.
    gguf_alpha = peft_scale(alpha_default, r_default) * r_default
    permute = SUPPORTED_ARCHS[arch] and not _skip_qk_permute
    n_head, n_head_kv = base.n_head, base.n_head_kv or base.n_head

    out_tensors: dict[str, np.ndarray] = {}
    problems: list[str] = []
    targets: set[str] = set()
    permuted = folded = 0
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise ConversionError(f"{module}: has {' and '.join(sorted(ab))} but not both lora_A and lora_B")
        a, b = ab["lora_A"], ab["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise ConversionError(f"{module}: lora_A {a.shape} and lora_B {b.shape} are not a rank-r pair")
        gguf_name = tmap.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise ConversionError(f"{module}: no llama.cpp tensor corresponds to this module in architecture {arch!r}")
        base_name = gguf_name[: -len(".weight")]
        if gguf_name == "token_embd.weight":
            raise ConversionError(f"{module}: LoRA on the token embedding cannot be converted; drop it from target_modules")
        base_shape = base.tensor_shapes.get(gguf_name)
        if base_shape is None:
            if gguf_name == "output.weight":
                raise ConversionError(
                    f"{module}: LoRA on lm_head, but this base ties lm_head to the token embedding (no output.weight "
                    "in the GGUF), so llama.cpp cannot apply it; retrain without lm_head in target_modules"
                )
            raise ConversionError(f"{module}: the base has no tensor {gguf_name} — wrong base model?")
        # gguf shapes are (in, out); numpy (out, in).
        if (b.shape[0], a.shape[1]) != (base_shape[1], base_shape[0]):
            problems.append(f"{module}: LoRA maps {a.shape[1]}->{b.shape[0]} but base {gguf_name} is {base_shape[0]}->{base_shape[1]}")
            continue
        rank = a.shape[0]
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, alpha_default)
        factor = peft_scale(alpha, rank) * rank / gguf_alpha
        if abs(factor - 1.0) > 1e-7:
            b = b * np.float32(factor)
            folded += 1
        if permute and base_name.endswith(".attn_q"):
            b = permute_qk_rows(b, n_head)
            permuted += 1
        elif permute and base_name.endswith(".attn_k"):
            b = permute_qk_rows(b, n_head_kv)
            permuted += 1
        # llama.cpp pairs "<base tensor name>.lora_a/.lora_b", the base name keeping ".weight".
        out_tensors[gguf_name + ".lora_a"] = a
        out_tensors[gguf_name + ".lora_b"] = b
        targets.add(module.rsplit(".", 1)[-1])
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConversionError(f"adapter does not fit base {base_path.name}: {'; '.join(problems[:3])}{more} — wrong base model?")

    dtype = np.float16 if outtype == "f16" else np.float32
    tmp = out_path.with_name(out_path.name + ".part")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(gguf_alpha))
    writer.add_string(gguf.Keys.General.NAME, name or peft_dir.resolve().name)
    writer.add_uint32(gguf.Keys.General.FILE_TYPE, 1 if outtype == "f16" else 0)
    # agx's own keys: what `agx adapters list` shows when an adapter has no manifest.
    writer.add_uint32("agx.lora.rank", r_default)
    writer.add_float32("agx.lora.peft_alpha", alpha_default)
    writer.add_bool("agx.lora.use_rslora", use_rslora)
    writer.add_array("agx.lora.target_modules", sorted(targets))
    base_model = config.get("base_model_name_or_path")
    if base_model:
        writer.add_string("agx.lora.base_model", str(base_model))
    writer.add_string("agx.lora.base_gguf", base_path.name)
    for tname, arr in out_tensors.items():
        writer.add_tensor(tname, np.ascontiguousarray(arr, dtype=dtype))
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except OSError as exc:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise ConversionError(f"cannot write {out_path}: {exc}") from None
    writer.close()

    # Read it back through the same check agx runs before loading any adapter.
    from agx.runtime.adapters import check_adapter_against_base
    from agx.runtime.engine import EngineError

    try:
        check_adapter_against_base(tmp, base)
    except EngineError as exc:
        tmp.unlink(missing_ok=True)
        raise ConversionError(f"converted file failed the load check: {exc}") from None
    os.replace(tmp, out_path)
    return ConvertResult(
        out_path=out_path, architecture=arch, rank=r_default, peft_alpha=alpha_default, gguf_alpha=gguf_alpha,
        use_rslora=use_rslora, n_modules=len(out_tensors) // 2, targets=sorted(targets), permuted=permuted,
        folded=folded, outtype=outtype, size_bytes=out_path.stat().st_size, base_model=base_model,
    )
