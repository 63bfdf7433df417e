"""Adapters at run time on the bundled SmolLM2 (Q4_1): loading through the config, the check
against the base, `agx adapters install/list/check`, and switching a role's adapter on a loaded
model without reloading it. The adapters are real GGUF LoRA files converted from PEFT-format
folders written here (random weights: these tests are about loading and switching; the
numerical agreement with PEFT is test_convert_numerics.py)."""

from __future__ import annotations

import json
import shutil

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from agx.cli.main import main
from agx.runtime.engine import ChatRequest, EngineError
from agx.runtime.pool import EnginePool

# SmolLM2-135M: hidden 576, 9 heads / 3 KV heads of 64, MLP 1536, 30 layers.
SMOL = {"layers": 30, "hidden": 576, "q": 576, "kv": 192, "ffn": 1536}
PROMPT_TOKENS = [504, 3575, 282, 4649, 314]  # "The capital of France is"


def _proj_shapes(d):
    return {
        "self_attn.q_proj": (d["q"], d["hidden"]), "self_attn.k_proj": (d["kv"], d["hidden"]),
        "self_attn.v_proj": (d["kv"], d["hidden"]), "self_attn.o_proj": (d["hidden"], d["q"]),
        "mlp.gate_proj": (d["ffn"], d["hidden"]), "mlp.up_proj": (d["ffn"], d["hidden"]),
        "mlp.down_proj": (d["hidden"], d["ffn"]),
    }


def write_smol_peft(folder, seed, r=8, alpha=16, b_std=0.02):
    """A PEFT LoRA folder for SmolLM2 on all 7 projections, as save_pretrained lays it out."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(SMOL["layers"]):
        for mod, (out_dim, in_dim) in _proj_shapes(SMOL).items():
            p = f"base_model.model.model.layers.{i}.{mod}"
            tensors[f"{p}.lora_A.weight"] = (rng.standard_normal((r, in_dim)) / np.sqrt(in_dim)).astype(np.float32)
            tensors[f"{p}.lora_B.weight"] = (rng.standard_normal((out_dim, r)) * b_std).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "bias": "none", "use_dora": False,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "task_type": "CAUSAL_LM",
    }))
    return folder


def write_foreign_adapter(path, arch="llama", hidden=64, r=4):
    """A GGUF LoRA adapter made for another model: SmolLM2's tensor names, other dims/arch."""
    w = gguf.GGUFWriter(path, arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 8.0)
    for i in range(2):
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_a", np.zeros((r, hidden), np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight.lora_b", np.zeros((hidden, r), np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_path):
    """Two converted adapters for the bundled base: (peft_dir_a, gguf_a, gguf_b)."""
    from agx.training.convert_lora import convert_peft_to_gguf

    d = tmp_path_factory.mktemp("adapters")
    peft_a = write_smol_peft(d / "peft-a", seed=1)
    peft_b = write_smol_peft(d / "peft-b", seed=2)
    convert_peft_to_gguf(peft_a, tiny_model_path, d / "a.gguf")
    convert_peft_to_gguf(peft_b, tiny_model_path, d / "b.gguf")
    return peft_a, d / "a.gguf", d / "b.gguf"


def _pool(tmp_path, *overrides):
    from agx.config import load_config

    base = ["roles.echo.n_ctx=512", "roles.delta.n_ctx=512", "roles.echo.n_threads=2", "roles.delta.n_threads=2"]
    config = load_config(tmp_path, overrides=base + list(overrides), use_user_file=False).config
    return EnginePool(config, tmp_path)


def next_token_logits(engine, tokens=PROMPT_TOKENS):
    """llama.cpp's logits after `tokens` on the engine's loaded model, as it is now."""
    import llama_cpp

    engine.wait_loaded()
    model = engine.model
    with model.lock:
        llama = model.llama
        llama.reset()
        llama.eval(tokens)
        ptr = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(llama.n_vocab(),)).copy()


GREEDY = ChatRequest(messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=6, temperature=0.0)


def test_adapter_from_config_loads_and_generates(tmp_path, adapters):
    _, a, _ = adapters
    pool = _pool(tmp_path, f"roles.echo.adapter={a}")
    try:
        engine = pool.engine("echo")
        text, stats = engine.complete(GREEDY)
        assert text.strip() and stats.completion_tokens > 0
        assert engine.info().adapter == "a.gguf"
        assert engine.model.active_adapter == (str(a), 1.0)
    finally:
        pool.close()


def test_switching_changes_logits_without_reloading_and_clearing_restores_base(tmp_path, adapters):
    _, a, b = adapters
    pool = _pool(tmp_path)
    try:
        engine = pool.engine("echo")
        base = next_token_logits(engine)
        llama = engine.model.llama

        engine.set_adapter(a)
        with_a = next_token_logits(engine)
        engine.set_adapter(b, scale=0.5)
        with_b = next_token_logits(engine)
        engine.set_adapter(None)
        cleared = next_token_logits(engine)
        engine.set_adapter(a)
        again_a = next_token_logits(engine)

        assert engine.model.llama is llama  # same loaded base throughout
        assert np.abs(with_a - base).max() > 0.1 and np.abs(with_b - with_a).max() > 0.1
        np.testing.assert_allclose(cleared, base, atol=1e-4)
        np.testing.assert_allclose(again_a, with_a, atol=1e-4)
        assert engine.info().adapter == "a.gguf"
    finally:
        pool.close()


def test_roles_sharing_one_base_keep_their_own_adapter(tmp_path, adapters):
    _, a, _ = adapters
    pool = _pool(tmp_path, f"roles.echo.adapter={a}", f"roles.delta.adapter={a}")
    try:
        echo, delta = pool.engine("echo"), pool.engine("delta")
        assert echo.model is delta.model  # one load
        short = ChatRequest(messages=GREEDY.messages, max_tokens=2, temperature=0.0)
        delta.complete(short)
        with_adapter = next_token_logits(delta)
        echo.set_adapter(None)
        echo.complete(short)
        assert echo.model.active_adapter == (None, 1.0)
        bare = next_token_logits(echo)
        assert np.abs(bare - with_adapter).max() > 0.1
        delta.complete(short)  # delta's adapter is re-applied for its turn, on the same base
        assert delta.model.active_adapter == (str(a), 1.0)
        np.testing.assert_allclose(next_token_logits(delta), with_adapter, atol=1e-4)
        echo.complete(short)
        np.testing.assert_allclose(next_token_logits(echo), bare, atol=1e-4)
    finally:
        pool.close()


def test_roles_with_different_adapters_share_one_base_load(tmp_path, adapters):
    _, a, _ = adapters
    pool = _pool(tmp_path, f"roles.echo.adapter={a}", "roles.delta.adapter=none")  # delta: no adapter
    try:
        echo, delta = pool.engine("echo"), pool.engine("delta")
        assert echo.model is delta.model and pool.shared_models() == 1
        short = ChatRequest(messages=GREEDY.messages, max_tokens=2, temperature=0.0)
        echo.complete(short)
        assert echo.model.active_adapter == (str(a), 1.0)
        delta.complete(short)
        assert delta.model.active_adapter == (None, 1.0)
        assert echo.info().adapter == "a.gguf" and delta.info().adapter is None
    finally:
        pool.close()


def test_adapter_for_other_dims_or_arch_is_explained(tmp_path, adapters, tiny_model_path):
    _, a, _ = adapters
    small = write_foreign_adapter(tmp_path / "small.gguf")
    qwen = write_foreign_adapter(tmp_path / "qwen.gguf", arch="qwen2", hidden=576)

    pool = _pool(tmp_path, f"roles.echo.adapter={small}")
    try:
        with pytest.raises(EngineError) as err:
            pool.engine("echo").wait_loaded()
        msg = str(err.value)
        assert "does not fit base SmolLM2-135M-Instruct.Q4_1.gguf" in msg
        assert "blk.0.attn_q.weight: adapter maps 64->64" in msg and "576->576" in msg and "Wrong base model?" in msg
    finally:
        pool.close()

    pool = _pool(tmp_path, f"roles.echo.adapter={a}")
    try:
        engine = pool.engine("echo")
        before = next_token_logits(engine)
        with pytest.raises(EngineError, match="made for architecture 'qwen2'"):
            engine.set_adapter(qwen)
        with pytest.raises(EngineError, match="not a LoRA adapter"):
            engine.set_adapter(tiny_model_path)
        # A refused switch leaves the working adapter in place.
        assert engine.info().adapter == "a.gguf"
        np.testing.assert_allclose(next_token_logits(engine), before, atol=1e-4)
    finally:
        pool.close()


def test_install_list_check_and_switch_by_name(tmp_path, adapters, monkeypatch, capsys, tiny_model_path):
    from agx.runtime.adapters import switch_role_adapter

    peft_a, _, b = adapters
    monkeypatch.setenv("AGX_ADAPTERS_DIR", str(tmp_path / "installed"))
    (tmp_path / "metrics.json").write_text(json.dumps({"node_f1": 43.8, "edge_f1": 2.3}))
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    rc = main(["-C", str(tmp_path), "adapters", "install", str(peft_a), "--base", "bundled:smollm2",
               "--name", "agenix-echo-test", "--metrics", "metrics.json", "--dataset", "train.jsonl"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "installed" / "agenix-echo-test" / "manifest.json").read_text())
    assert manifest["rank"] == 8 and manifest["alpha"] == 16 and len(manifest["base_sha256"]) == 64
    assert manifest["dataset_sha256"] and manifest["eval"]["node_f1"] == 43.8
    # A scale outside (0, 4] is refused before anything is converted.
    assert main(["-C", str(tmp_path), "adapters", "install", str(peft_a), "--base", "bundled:smollm2",
                 "--name", "agenix-echo-bad", "--scale", "0"]) == 2
    assert "--scale 0" in capsys.readouterr().err and not (tmp_path / "installed" / "agenix-echo-bad").exists()
    # Installing over it again is refused unless --force.
    assert main(["-C", str(tmp_path), "adapters", "install", str(peft_a), "--base", "echo", "--name", "agenix-echo-test"]) == 2
    capsys.readouterr()

    assert main(["-C", str(tmp_path), "--set", "roles.echo.adapter=agenix-echo-test", "adapters", "list", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "agenix-echo-test" and row["used_by"] == ["echo"] and row["rank"] == 8
    assert row["targets"] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert main(["-C", str(tmp_path), "adapters", "list"]) == 0
    out = capsys.readouterr().out
    assert "agenix-echo-test" in out and "node_f1 43.8" in out and "rank 8, alpha 16" in out

    assert main(["-C", str(tmp_path), "adapters", "check", "agenix-echo-test", "--base", "bundled:smollm2"]) == 0
    small = write_foreign_adapter(tmp_path / "small.gguf")
    assert main(["-C", str(tmp_path), "adapters", "check", str(small), "--base", "bundled:smollm2"]) == 2
    assert "Wrong base model?" in capsys.readouterr().err

    pool = _pool(tmp_path, "roles.echo.adapter=agenix-echo-test")
    try:
        engine = pool.engine("echo")
        named = next_token_logits(engine)
        assert switch_role_adapter(pool, "echo", str(b)) == b
        assert np.abs(next_token_logits(engine) - named).max() > 0.1
        assert switch_role_adapter(pool, "echo", "agenix-echo-test").parent.name == "agenix-echo-test"
        np.testing.assert_allclose(next_token_logits(engine), named, atol=1e-4)
        assert switch_role_adapter(pool, "echo", "none") is None and engine.info().adapter is None
        with pytest.raises(EngineError, match="not found"):
            switch_role_adapter(pool, "echo", "no-such-adapter")
    finally:
        pool.close()

    # --default-for makes it the role's "auto" adapter on that base (and only on that base).
    # A PEFT folder from scripts/train.py on a delta_mix mix: the mix's hash goes in the manifest.
    peft_mix = tmp_path / "peft-mix"
    shutil.copytree(peft_a, peft_mix)
    (peft_mix / "training_config.json").write_text(json.dumps({"mix_data_sha256": "ab" * 32}))
    assert main(["-C", str(tmp_path), "adapters", "install", str(peft_mix), "--base", "bundled:smollm2",
                 "--name", "agenix-echo-auto", "--default-for", "echo", "--prompt-style", "compact", "--scale", "1.2",
                 "--training-command", "scripts/train_and_convert.sh --name agenix-echo-auto"]) == 0
    manifest = json.loads((tmp_path / "installed" / "agenix-echo-auto" / "manifest.json").read_text())
    assert manifest["default_for"] == ["echo"] and manifest["prompt_style"] == "compact" and manifest["scale"] == 1.2
    assert manifest["mix_sha256"] == "ab" * 32
    assert manifest["training_command"] == "scripts/train_and_convert.sh --name agenix-echo-auto"
    assert manifest["base_size_bytes"] == tiny_model_path.stat().st_size
    pool = _pool(tmp_path)  # roles.echo.adapter = "auto", the default
    try:
        assert pool.engine("echo").info().adapter == "agenix-echo-auto"
        assert pool.engine("echo").adapter_scale == 1.2  # roles.echo.adapter_scale unset: the manifest's
        assert pool.engine("delta").info().adapter is None  # nothing is installed as Delta's default here
    finally:
        pool.close()
    capsys.readouterr()
    assert main(["-C", str(tmp_path), "adapters", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["agenix-echo-auto"]["used_by"] == ["echo"] and rows["agenix-echo-test"]["used_by"] == []
