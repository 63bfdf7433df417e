"""GGUF LoRA -> PEFT folder (agx.training.gguf_to_peft), the inverse of the converter, on the
same tiny real files test_convert_lora writes; and scripts/train.py --init-adapter continuing
from the shipped adapter on the bundled model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file
from test_convert_lora import write_base, write_peft

from agx.training.convert_lora import ConversionError, convert_peft_to_gguf, permute_qk_rows
from agx.training.gguf_to_peft import convert_gguf_to_peft, unpermute_qk_rows

ROOT = Path(__file__).resolve().parents[1]


def _round_trip(tmp_path, base, **peft_kw):
    peft_dir, src = write_peft(tmp_path / "peft", **peft_kw)
    convert_peft_to_gguf(peft_dir, base, tmp_path / "a.gguf")
    result = convert_gguf_to_peft(tmp_path / "a.gguf", base, tmp_path / "back")
    return result, src, load_file(str(tmp_path / "back" / "adapter_model.safetensors")), \
        json.loads((tmp_path / "back" / "adapter_config.json").read_text())


def test_unpermute_inverts_the_q_k_row_permutation():
    w = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    for heads in (1, 2, 4, 8):
        np.testing.assert_array_equal(unpermute_qk_rows(permute_qk_rows(w, heads), heads), w)
    assert not np.array_equal(permute_qk_rows(w, 4), w)  # the permutation is not the identity
    with pytest.raises(ConversionError):
        unpermute_qk_rows(w[:6], 4)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_round_trip_gives_back_the_same_peft_tensors(tmp_path, arch):
    base = write_base(tmp_path / f"base-{arch}.gguf", arch=arch)
    result, src, back, config = _round_trip(tmp_path, base, r=4, alpha=8)
    assert set(back) == set(src)
    for key, arr in src.items():
        np.testing.assert_array_equal(back[key], arr)
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (4, 8, False)
    assert config["target_modules"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert result.n_modules == len(src) // 2


def test_rslora_round_trip_keeps_its_scaling(tmp_path):
    base = write_base(tmp_path / "base.gguf")
    _, src, back, config = _round_trip(tmp_path, base, r=16, alpha=8, extra_config={"use_rslora": True})
    assert config["use_rslora"] is True and config["lora_alpha"] == 8
    for key, arr in src.items():
        np.testing.assert_allclose(back[key], arr, rtol=1e-6)


def test_foreign_or_mismatched_adapters_are_refused(tmp_path):
    llama, qwen = write_base(tmp_path / "l.gguf"), write_base(tmp_path / "q.gguf", arch="qwen2")
    peft_dir, _ = write_peft(tmp_path / "peft")
    convert_peft_to_gguf(peft_dir, llama, tmp_path / "a.gguf")
    with pytest.raises(ConversionError, match="adapter is for 'llama'"):
        convert_gguf_to_peft(tmp_path / "a.gguf", qwen, tmp_path / "x")
    with pytest.raises(ConversionError, match="not a GGUF LoRA adapter"):
        convert_gguf_to_peft(llama, llama, tmp_path / "x")
    # an adapter written by another tool: no agx.lora.peft_alpha, so the PEFT alpha is unknown
    w = gguf.GGUFWriter(tmp_path / "foreign.gguf", "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    w.add_tensor("blk.0.attn_v.weight.lora_a", np.zeros((4, 64), np.float32))
    w.add_tensor("blk.0.attn_v.weight.lora_b", np.zeros((32, 4), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ConversionError, match="only adapters converted by agx"):
        convert_gguf_to_peft(tmp_path / "foreign.gguf", llama, tmp_path / "x")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_py_continues_from_the_shipped_gguf_adapter(tmp_path):
    """One step at learning rate 0 from the shipped adapter, converted back to GGUF, is the shipped
    adapter tensor for tensor: what --init-adapter loads is exactly what agx runs."""
    pytest.importorskip("trl")
    shipped = ROOT / "adapters" / "agenix-delta-smollm2" / "adapter.gguf"
    data = tmp_path / "one.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Run the tests."},
                                             {"role": "assistant", "content": '{"goal": "run the tests", "tasks": []}'}]}) + "\n")
    out = tmp_path / "peft"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--base", "bundled:smollm2", "--data", str(data),
           "--out", str(out), "--init-adapter", str(shipped), "--max-steps", "1", "--grad-accum", "1", "--lr", "0",
           "--threads", "2", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing from" in proc.stderr and "rank 16" in proc.stderr
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 16

    from agx.runtime.bundled import bundled_model_path

    convert_peft_to_gguf(out, bundled_model_path(), tmp_path / "again.gguf", "f16")
    a = {t.name: np.array(t.data) for t in gguf.GGUFReader(shipped).tensors}
    b = {t.name: np.array(t.data) for t in gguf.GGUFReader(tmp_path / "again.gguf").tensors}
    assert set(a) == set(b) and len(a) == 420
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])

    bad = subprocess.run(cmd[:8] + ["--init-adapter", str(tmp_path / "nowhere"), "--max-steps", "1"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "nowhere: no such file or folder" in bad.stderr
    (tmp_path / "empty").mkdir()
    bad = subprocess.run(cmd[:8] + ["--init-adapter", str(tmp_path / "empty"), "--max-steps", "1"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "neither a GGUF file nor a PEFT folder" in bad.stderr
