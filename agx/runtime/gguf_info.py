"""Read what agx needs from a GGUF file's header: architecture, size, template, shapes.

A small parser over the memory-mapped header (key/value metadata, then the tensor table),
with the `gguf` package's type tables. Why not gguf's GGUFReader: it builds a numpy view per
element of every metadata array, and the tokenizer's vocabulary and merges are arrays of
tens of thousands of strings: 3.5 s for the 135M bundled model's header on this machine
(llama.cpp itself loads that model in 0.2 s), and more for Llama 3.1's 128k vocabulary.
Arrays are skipped here, not decoded. A file that is not GGUF, or whose tensor data runs past
the end of the file (truncated download), raises `GGUFError` naming the file.
"""

from __future__ import annotations

import mmap
import os
import struct
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


# GGUF value types -> struct format of one scalar (8: string and 9: array are handled apart).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class _Header:
    """A cursor over the memory-mapped header."""

    def __init__(self, buf) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        raw = self.buf[self.pos:self.pos + n]
        if len(raw) != n:
            raise ValueError("a string runs past the end of the file")
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype == _STRING:
                for _ in range(count):  # lengths are per element: walk them, decode nothing
                    self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]
            elif etype in _SCALARS:
                self.pos += count * struct.calcsize(_SCALARS[etype])
            else:
                raise ValueError(f"array of unsupported type {etype}")
            if self.pos > len(self.buf):
                raise ValueError("an array runs past the end of the file")
            return f"<array of {count}>"
        if vtype not in _SCALARS:
            raise ValueError(f"unknown metadata type {vtype}")
        return self.unpack(_SCALARS[vtype])


def _read_header(path: Path):
    """(metadata without the tokenizer's arrays, has a chat template, tensors as
    (name, shape, ggml type, offset from the data section), where the data section starts)."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        h = _Header(buf)
        h.pos = 4
        version = h.unpack("<I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is too old (llama.cpp reads 2 and 3)")
        n_tensors, n_kv = h.unpack("<Q"), h.unpack("<Q")
        # The header's own counts, under the names gguf's reader gives them.
        meta: dict[str, object] = {"GGUF.version": version, "GGUF.tensor_count": n_tensors, "GGUF.kv_count": n_kv}
        has_template = False
        for _ in range(n_kv):
            key = h.string()
            value = h.value(h.unpack("<I"))
            has_template = has_template or key == "tokenizer.chat_template"
            if key.startswith("tokenizer.ggml.") and key != "tokenizer.ggml.model":
                continue
            meta[key] = value
        tensors = []
        for _ in range(n_tensors):
            name = h.string()
            n_dims = h.unpack("<I")
            shape = tuple(h.unpack("<Q") for _ in range(n_dims))
            tensors.append((name, shape, h.unpack("<I"), h.unpack("<Q")))
        alignment = meta.get("general.alignment", 32)
        alignment = alignment if isinstance(alignment, int) and alignment > 0 else 32
        data_start = -(-h.pos // alignment) * alignment
    return meta, has_template, tensors, data_start


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
        meta, has_template, tensors, data_start = _read_header(path)
    except (ValueError, struct.error, IndexError, OSError) as exc:
        raise GGUFError(
            f"{path}: truncated or damaged GGUF ({type(exc).__name__}: {exc}); if it was downloaded, "
            "`agx models pull` resumes it"
        ) from None

    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    end_of_data = 0
    params = 0
    shapes: dict[str, tuple[int, ...]] = {}
    elements_by_type: dict[str, int] = {}
    for name, shape, ggml_type, offset in tensors:
        n = 1
        for d in shape:
            n *= d
        params += n
        shapes[name] = shape
        try:
            qtype = GGMLQuantizationType(ggml_type)
            block, type_size = GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):  # a type newer than this gguf package: its size is unknown
            label = f"type {ggml_type}"
            elements_by_type[label] = elements_by_type.get(label, 0) + n
            continue
        elements_by_type[qtype.name] = elements_by_type.get(qtype.name, 0) + n
        end_of_data = max(end_of_data, data_start + offset + n * type_size // block)
    if end_of_data > size:
        raise GGUFError(
            f"{path}: truncated GGUF — tensor data needs {end_of_data:,} bytes but the file has "
            f"{size:,}; the download was probably interrupted (agx models pull resumes it)"
        )

    arch = str(meta.get("general.architecture") or "unknown")

    def arch_key(suffix: str):
        v = meta.get(f"{arch}.{suffix}")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    n_embd = arch_key("embedding_length")
    n_head = arch_key("attention.head_count")
    n_head_kv = arch_key("attention.head_count_kv") or n_head
    head_dim = arch_key("attention.key_length") or (n_embd // n_head if n_embd and n_head else None)
    ftype = meta.get("general.file_type")
    if isinstance(ftype, int) and not isinstance(ftype, bool):
        quant = _FILE_TYPES.get(ftype, f"type {ftype}")
    else:  # no file type recorded (adapters, some converters): the type most weights have
        quant = max(elements_by_type, key=elements_by_type.get) if elements_by_type else "unknown"
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
        has_chat_template=has_template,
        tensor_shapes=shapes,
        metadata=meta,
    )


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
