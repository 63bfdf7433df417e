"""Dequantize a GGUF model to an all-F32 GGUF, keeping every metadata key.

Why: LoRA numerics can only be compared exactly against an unquantized base (Q4_1 noise alone is
~0.8 in the logits), and transformers/peft want full-precision weights to train on. The tensors
are streamed one at a time, so peak memory stays near one tensor, not the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Keys the reader synthesises from the header or the writer sets itself.
_HEADER_KEYS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture"}
_FTYPE_ALL_F32 = 0  # llama.cpp's LLAMA_FTYPE_ALL_F32


class DequantizeError(Exception):
    """The input cannot be dequantized; the message is for the user."""


@dataclass
class DequantizeResult:
    out_path: Path
    n_tensors: int
    n_quantized: int
    bytes_written: int


def dequantize_gguf(src: str | Path, dst: str | Path) -> DequantizeResult:
    """Write `dst`: the model in `src` with every tensor as F32 and the same metadata."""
    import gguf

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DequantizeError(f"{src}: file not found")
    if src.resolve() == dst.resolve():
        raise DequantizeError("output must be a different file from the input")
    try:
        reader = gguf.GGUFReader(src, "r")
    except Exception as exc:  # the reader raises assorted errors on non-GGUF input
        raise DequantizeError(f"{src}: not a readable GGUF file ({exc})") from None
    arch_field = reader.get_field("general.architecture")
    if arch_field is None:
        raise DequantizeError(f"{src}: no general.architecture in the GGUF metadata")
    writer = gguf.GGUFWriter(dst, arch_field.contents())

    for name, field in reader.fields.items():
        if name in _HEADER_KEYS:
            continue
        if name == "general.file_type":
            writer.add_uint32(name, _FTYPE_ALL_F32)
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)

    # gguf shapes are (ne0, ne1, ...); numpy's are the reverse.
    quantized = 0
    total = 0
    for t in reader.tensors:
        np_shape = tuple(int(d) for d in reversed(t.shape))
        nbytes = int(t.n_elements) * 4
        total += nbytes
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            quantized += 1
        writer.add_tensor_info(t.name, np_shape, np.dtype(np.float32), nbytes, gguf.GGMLQuantizationType.F32)

    dst.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        np_shape = tuple(int(d) for d in reversed(t.shape))
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            data = np.asarray(t.data, dtype=np.float32).reshape(np_shape)
        else:
            try:
                data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            except NotImplementedError:
                writer.close()
                dst.unlink(missing_ok=True)
                raise DequantizeError(f"{src}: tensor {t.name} has type {t.tensor_type.name}, which gguf cannot dequantize") from None
            data = data.reshape(np_shape)
        writer.write_tensor_data(data, tensor_endianess=reader.endianess)
    writer.close()
    return DequantizeResult(out_path=dst, n_tensors=len(reader.tensors), n_quantized=quantized, bytes_written=dst.stat().st_size)
