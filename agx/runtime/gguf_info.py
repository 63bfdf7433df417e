"""Read what agx needs from a GGUF file's header: architecture, size, template, shapes.

Uses the `gguf` package's reader (memory-mapped; only the header and tensor table are
touched). A file that is not GGUF, or whose tensor data runs past the end of the file
(truncated download), raises `GGUFError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# llama.cpp's file-type enum (general.file_type) -> the names people know.
_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
}


class GGUFError(Exception):
    pass


@dataclass
class GGUFInfo:
    path: Path
    file_size: int
    architecture: str
    name: str | None
    general_type: str | None
    parameter_count: int
    quantization: str
    context_length: int | None
    n_layers: int | None
    n_embd: int | None
    n_head: int | None
    n_head_kv: int | None
    head_dim: int | None
    has_chat_template: bool
    tensor_shapes: dict[str, tuple[int, ...]] = field(repr=False, default_factory=dict)
    metadata: dict[str, object] = field(repr=False, default_factory=dict)

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        """K and V caches at n_ctx in f16 (llama.cpp's default type)."""
        if not (self.n_layers and self.n_head_kv and self.head_dim):
            return 0
        return 2 * self.n_layers * n_ctx * self.n_head_kv * self.head_dim * bytes_per_value

    def estimated_memory_bytes(self, n_ctx: int) -> int:
        """Weights + KV cache + a compute-buffer allowance (grows with context and width)."""
        compute = 64 * 2**20 + (self.n_embd or 0) * n_ctx * 4 // 4
        return self.file_size + self.kv_cache_bytes(n_ctx) + compute


def _field_value(reader_field):
    from gguf import GGUFValueType

    types = reader_field.types
    if not types:
        return None
    if types[0] == GGUFValueType.STRING:
        return bytes(reader_field.parts[reader_field.data[0]]).decode("utf-8", errors="replace")
    if types[0] == GGUFValueType.ARRAY:
        return f"<array of {len(reader_field.data)}>"
    value = reader_field.parts[reader_field.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def read_gguf_info(path: str | os.PathLike) -> GGUFInfo:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise GGUFError(f"{path}: file not found") from None
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    try:
        from gguf import GGUFReader

        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader raises assorted errors on damaged headers
        raise GGUFError(
            f"{path}: truncated or damaged GGUF ({type(exc).__name__}: {exc}); if it was downloaded, "
            "`agx models pull` resumes it"
        ) from None

    end_of_data = 0
    params = 0
    shapes: dict[str, tuple[int, ...]] = {}
    for tensor in reader.tensors:
        end_of_data = max(end_of_data, int(tensor.data_offset) + int(tensor.n_bytes))
        params += int(tensor.n_elements)
        shapes[tensor.name] = tuple(int(d) for d in tensor.shape)
    if end_of_data > size:
        raise GGUFError(
            f"{path}: truncated GGUF — tensor data needs {end_of_data:,} bytes but the file has "
            f"{size:,}; the download was probably interrupted (agx models pull resumes it)"
        )

    meta: dict[str, object] = {}
    for key, fld in reader.fields.items():
        if key.startswith("tokenizer.ggml.") and key not in ("tokenizer.ggml.model",):
            continue
        try:
            meta[key] = _field_value(fld)
        except Exception:
            meta[key] = None
    arch = str(meta.get("general.architecture") or "unknown")

    def arch_key(suffix: str):
        v = meta.get(f"{arch}.{suffix}")
        return int(v) if isinstance(v, (int, float)) else None

    n_embd = arch_key("embedding_length")
    n_head = arch_key("attention.head_count")
    n_head_kv = arch_key("attention.head_count_kv") or n_head
    head_dim = arch_key("attention.key_length") or (n_embd // n_head if n_embd and n_head else None)
    ftype = meta.get("general.file_type")
    quant = _FILE_TYPES.get(int(ftype), f"type {ftype}") if isinstance(ftype, int) else _guess_quant(reader)
    return GGUFInfo(
        path=path,
        file_size=size,
        architecture=arch,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        general_type=meta.get("general.type") if isinstance(meta.get("general.type"), str) else None,
        parameter_count=params,
        quantization=quant,
        context_length=arch_key("context_length"),
        n_layers=arch_key("block_count"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        has_chat_template="tokenizer.chat_template" in reader.fields,
        tensor_shapes=shapes,
        metadata=meta,
    )


def _guess_quant(reader) -> str:
    counts: dict[str, int] = {}
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_elements)
    return max(counts, key=counts.get) if counts else "unknown"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def human_count(n: int) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
