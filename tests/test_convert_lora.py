"""The PEFT -> GGUF LoRA converter on small real files: PEFT-format adapter folders written
here, tiny base GGUFs written with the gguf package. Numerics against llama.cpp are in
test_convert_numerics.py; these pin the file format, the scaling rules and the refusals."""

from __future__ import annotations

import json
import math
import struct

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from agx.cli.main import main
from agx.training.convert_lora import ConversionError, convert_peft_to_gguf, permute_qk_rows, read_safetensors

HIDDEN, N_HEAD, N_KV, HEAD_DIM, FFN, LAYERS, VOCAB = 64, 4, 2, 16, 96, 2, 40
PROJ = {  # HF module -> (gguf name, out, in)
    "self_attn.q_proj": ("attn_q", N_HEAD * HEAD_DIM, HIDDEN),
    "self_attn.k_proj": ("attn_k", N_KV * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": ("attn_v", N_KV * HEAD_DIM, HIDDEN),
    "self_attn.o_proj": ("attn_output", HIDDEN, N_HEAD * HEAD_DIM),
    "mlp.gate_proj": ("ffn_gate", FFN, HIDDEN),
    "mlp.up_proj": ("ffn_up", FFN, HIDDEN),
    "mlp.down_proj": ("ffn_down", HIDDEN, FFN),
}


def write_base(path, arch="llama", hidden=HIDDEN, tied=True):
    """A tiny base model GGUF: the metadata and tensor table the converter reads."""
    w = gguf.GGUFWriter(path, arch)
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(f"tiny-{arch}")
    w.add_block_count(LAYERS)
    w.add_embedding_length(hidden)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_feed_forward_length(FFN)
    w.add_tensor("token_embd.weight", np.zeros((VOCAB, hidden), np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((VOCAB, hidden), np.float32))
    scale = hidden / HIDDEN
    for i in range(LAYERS):
        for gname, out_dim, in_dim in PROJ.values():
            out_dim = int(out_dim * scale) if gname in ("attn_output", "ffn_down") else out_dim
            in_dim = int(in_dim * scale) if gname not in ("attn_output", "ffn_down") else in_dim
            w.add_tensor(f"blk.{i}.{gname}.weight", np.zeros((out_dim, in_dim), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_peft(folder, *, r=4, alpha=8, modules=tuple(PROJ), extra_config=None, extra_tensors=None, seed=0, ranks=None):
    """A PEFT LoRA folder exactly as save_pretrained writes it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(LAYERS):
        for mod in modules:
            _, out_dim, in_dim = PROJ[mod]
            rank = (ranks or {}).get(mod, r)
            prefix = f"base_model.model.model.layers.{i}.{mod}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, in_dim)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out_dim, rank)).astype(np.float32)
    tensors.update(extra_tensors or {})
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": sorted({m.split(".")[-1] for m in modules}),
        "use_rslora": False, "use_dora": False, "modules_to_save": None, "bias": "none",
        "base_model_name_or_path": "tiny", "task_type": "CAUSAL_LM", "rank_pattern": {}, "alpha_pattern": {},
    }
    config.update(extra_config or {})
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder, tensors


def gguf_tensors(path):
    reader = gguf.GGUFReader(path)
    out = {t.name: np.array(t.data).reshape(tuple(reversed([int(d) for d in t.shape]))) for t in reader.tensors}
    return reader, out


@pytest.fixture()
def llama_base(tmp_path):
    return write_base(tmp_path / "base-llama.gguf")


def test_metadata_names_and_qk_permutation_for_llama(tmp_path, llama_base):
    peft_dir, src = write_peft(tmp_path / "peft")
    out = tmp_path / "a.gguf"
    result = convert_peft_to_gguf(peft_dir, llama_base, out)

    reader, t = gguf_tensors(out)
    f = reader.fields
    assert f["general.type"].contents() == "adapter"
    assert f["adapter.type"].contents() == "lora"
    assert f["general.architecture"].contents() == "llama"
    assert f["adapter.lora.alpha"].types[0] == gguf.GGUFValueType.FLOAT32  # llama.cpp asserts the type
    assert f["adapter.lora.alpha"].contents() == pytest.approx(8.0)
    assert len(t) == 2 * LAYERS * len(PROJ)
    assert result.permuted == 2 * LAYERS and result.n_modules == LAYERS * len(PROJ)

    pre = "base_model.model.model.layers.1"
    # lora_a as is; lora_b of v/o/mlp as is; q with the head count, k with the KV head count.
    np.testing.assert_array_equal(t["blk.1.attn_q.weight.lora_a"], src[f"{pre}.self_attn.q_proj.lora_A.weight"])
    np.testing.assert_array_equal(t["blk.1.ffn_down.weight.lora_b"], src[f"{pre}.mlp.down_proj.lora_B.weight"])
    np.testing.assert_array_equal(t["blk.1.attn_v.weight.lora_b"], src[f"{pre}.self_attn.v_proj.lora_B.weight"])
    q_b = src[f"{pre}.self_attn.q_proj.lora_B.weight"]
    k_b = src[f"{pre}.self_attn.k_proj.lora_B.weight"]
    np.testing.assert_array_equal(t["blk.1.attn_q.weight.lora_b"], permute_qk_rows(q_b, N_HEAD))
    np.testing.assert_array_equal(t["blk.1.attn_k.weight.lora_b"], permute_qk_rows(k_b, N_KV))
    assert not np.array_equal(t["blk.1.attn_q.weight.lora_b"], q_b)


def test_permutation_interleaves_rotary_halves_within_each_head():
    rows = np.arange(8, dtype=np.float32)[:, None]  # 2 heads x head_dim 4
    assert permute_qk_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_qwen2_is_not_permuted(tmp_path):
    base = write_base(tmp_path / "base-qwen2.gguf", arch="qwen2")
    peft_dir, src = write_peft(tmp_path / "peft")
    result = convert_peft_to_gguf(peft_dir, base, tmp_path / "q.gguf")
    reader, t = gguf_tensors(tmp_path / "q.gguf")
    assert reader.fields["general.architecture"].contents() == "qwen2"
    assert result.permuted == 0
    np.testing.assert_array_equal(t["blk.0.attn_q.weight.lora_b"], src["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])


def test_rslora_alpha_folded_so_llama_cpp_scaling_matches(tmp_path, llama_base):
    peft_dir, src = write_peft(tmp_path / "peft", r=16, alpha=8, extra_config={"use_rslora": True})
    result = convert_peft_to_gguf(peft_dir, llama_base, tmp_path / "rs.gguf")
    reader, t = gguf_tensors(tmp_path / "rs.gguf")
    written = reader.fields["adapter.lora.alpha"].contents()
    # llama.cpp scales by alpha / rank; PEFT's rsLoRA by alpha / sqrt(rank).
    assert written / 16 == pytest.approx(8 / math.sqrt(16))
    assert result.use_rslora and result.folded == 0


def test_rank_and_alpha_patterns_fold_into_lora_b(tmp_path, llama_base):
    peft_dir, src = write_peft(
        tmp_path / "peft", r=4, alpha=8, ranks={"mlp.down_proj": 8},
        extra_config={"rank_pattern": {"down_proj": 8}, "alpha_pattern": {"v_proj": 32}},
    )
    convert_peft_to_gguf(peft_dir, llama_base, tmp_path / "p.gguf")
    reader, t = gguf_tensors(tmp_path / "p.gguf")
    alpha = reader.fields["adapter.lora.alpha"].contents()

    def llama_cpp_delta(name):  # what llama.cpp adds to the weight: alpha / rank * B @ A
        a, b = t[f"{name}.lora_a"], t[f"{name}.lora_b"]
        return alpha / a.shape[0] * b @ a

    def peft_delta(mod, alpha_i, rank):
        p = f"base_model.model.model.layers.0.{mod}"
        return alpha_i / rank * src[f"{p}.lora_B.weight"] @ src[f"{p}.lora_A.weight"]

    np.testing.assert_allclose(llama_cpp_delta("blk.0.attn_v.weight"), peft_delta("self_attn.v_proj", 32, 4), rtol=1e-5)
    np.testing.assert_allclose(llama_cpp_delta("blk.0.ffn_down.weight"), peft_delta("mlp.down_proj", 8, 8), rtol=1e-5)
    np.testing.assert_allclose(llama_cpp_delta("blk.0.ffn_up.weight"), peft_delta("mlp.up_proj", 8, 4), rtol=1e-5)


def _write_bf16_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = (arr.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def test_bf16_adapters_read_without_torch(tmp_path):
    values = np.array([[1.0, -2.5, 0.15625], [3.0, 0.0, -0.5]], np.float32)  # exact in bf16
    _write_bf16_safetensors(tmp_path / "x.safetensors", {"w": values})
    np.testing.assert_array_equal(read_safetensors(tmp_path / "x.safetensors")["w"], values)


def test_f16_outtype(tmp_path, llama_base):
    peft_dir, _ = write_peft(tmp_path / "peft")
    convert_peft_to_gguf(peft_dir, llama_base, tmp_path / "h.gguf", "f16")
    reader = gguf.GGUFReader(tmp_path / "h.gguf")
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F16}


@pytest.mark.parametrize("config, tensors, expected", [
    ({"use_dora": True}, None, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, None, "modules_to_save"),
    ({"peft_type": "IA3"}, None, "not LoRA"),
    ({"init_lora_weights": "pissa"}, None, "path_initial_model_for_weight_conversion"),
    ({"bias": "all"}, None, "biases"),
    ({}, {"base_model.model.model.embed_tokens.lora_embedding_A": np.zeros((4, VOCAB), np.float32)}, "embedding"),
    ({}, {"base_model.model.lm_head.weight": np.zeros((VOCAB, HIDDEN), np.float32)}, "not a LoRA A/B matrix"),
    ({}, {"base_model.model.lm_head.lora_A.weight": np.zeros((4, HIDDEN), np.float32),
          "base_model.model.lm_head.lora_B.weight": np.zeros((VOCAB, 4), np.float32)}, "ties lm_head"),
])
def test_unconvertible_adapters_are_refused_with_the_reason(tmp_path, llama_base, config, tensors, expected):
    peft_dir, _ = write_peft(tmp_path / "peft", extra_config=config, extra_tensors=tensors)
    with pytest.raises(ConversionError, match=expected):
        convert_peft_to_gguf(peft_dir, llama_base, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_lm_head_lora_converts_when_the_base_has_its_own_output(tmp_path):
    base = write_base(tmp_path / "untied.gguf", tied=False)
    peft_dir, _ = write_peft(tmp_path / "peft", extra_tensors={
        "base_model.model.lm_head.lora_A.weight": np.ones((4, HIDDEN), np.float32),
        "base_model.model.lm_head.lora_B.weight": np.ones((VOCAB, 4), np.float32)})
    convert_peft_to_gguf(peft_dir, base, tmp_path / "o.gguf")
    _, t = gguf_tensors(tmp_path / "o.gguf")
    assert t["output.weight.lora_b"].shape == (VOCAB, 4)


def test_wrong_base_and_unknown_architecture_are_explained(tmp_path):
    peft_dir, _ = write_peft(tmp_path / "peft")
    wide = write_base(tmp_path / "wide.gguf", hidden=2 * HIDDEN)
    with pytest.raises(ConversionError, match="wrong base model"):
        convert_peft_to_gguf(peft_dir, wide, tmp_path / "x.gguf")
    gemma = write_base(tmp_path / "g.gguf", arch="gemma3")
    with pytest.raises(ConversionError, match="'gemma3' is not supported"):
        convert_peft_to_gguf(peft_dir, gemma, tmp_path / "x.gguf")


def test_cli_convert_reports_and_exits_2_on_bad_input(tmp_path, llama_base, capsys):
    peft_dir, _ = write_peft(tmp_path / "peft")
    out = tmp_path / "cli.gguf"
    assert main(["-C", str(tmp_path), "adapters", "convert", str(peft_dir), "--base", str(llama_base), "-o", str(out)]) == 0
    assert "q/k rows permuted in 4 tensors" in capsys.readouterr().out and out.is_file()

    dora, _ = write_peft(tmp_path / "dora", extra_config={"use_dora": True})
    assert main(["-C", str(tmp_path), "adapters", "convert", str(dora), "--base", str(llama_base), "-o", str(tmp_path / "d.gguf")]) == 2
    err = capsys.readouterr().err
    assert "DoRA" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["-C", str(tmp_path), "adapters", "convert", str(tmp_path / "missing"), "--base", str(llama_base), "-o", str(out)]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_dequantize_keeps_metadata_and_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((8, 64)).astype(np.float32)
    w = gguf.GGUFWriter(tmp_path / "q.gguf", "llama")
    w.add_block_count(1)
    w.add_file_type(7)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b"])
    w.add_string("tokenizer.chat_template", "{{ x }}")
    q8 = gguf.quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.attn_norm.weight", np.ones(64, np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()

    assert main(["-C", str(tmp_path), "adapters", "dequantize", str(tmp_path / "q.gguf"), "-o", str(tmp_path / "f.gguf")]) == 0
    assert "1 dequantized to F32" in capsys.readouterr().out
    reader, t = gguf_tensors(tmp_path / "f.gguf")
    assert reader.fields["tokenizer.ggml.tokens"].contents() == ["<s>", "a", "b"]
    assert reader.fields["tokenizer.chat_template"].contents() == "{{ x }}"
    assert reader.fields["general.file_type"].contents() == 0
    assert {x.tensor_type for x in reader.tensors} == {gguf.GGMLQuantizationType.F32}
    np.testing.assert_allclose(t["blk.0.attn_q.weight"], weight, atol=0.02)  # Q8_0 rounding only
    np.testing.assert_array_equal(t["blk.0.attn_q.weight"], gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0))
