"""The short real run: scripts/train_and_convert.sh on CPU — data -> a few training steps of
scripts/train.py on the bundled SmolLM2 -> GGUF adapter -> installed with a manifest — then agx
loads the adapter by name and generates with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agx.config import load_config
from agx.runtime.engine import ChatRequest
from agx.runtime.pool import EnginePool

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("trl")
pytest.importorskip("peft")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a real training run; minutes on a busy 2-core machine
def test_train_and_convert_then_agx_generates_with_the_adapter(tmp_path, monkeypatch):
    adapters = tmp_path / "adapters"
    env = {**os.environ, "AGX_ADAPTERS_DIR": str(adapters), "PYTHON": sys.executable, "NUM_GPUS": "0",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["bash", str(ROOT / "scripts" / "train_and_convert.sh"), "--name", "tiny-delta", "--out", str(tmp_path / "run"),
           "--count", "14", "--eval-limit", "0", "--max-steps", "2", "--rank", "4", "--alpha", "8",
           "--grad-accum", "1", "--max-seq-len", "1024", "--threads", "2",
           # a tiny time budget: training stops after the first step and still saves the adapter
           "--time-budget-min", "0.01", "--", "--limit", "2", "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]

    peft_dir = tmp_path / "run" / "peft"
    metrics = json.loads((peft_dir / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["stopped_by_time_budget"] is True
    assert metrics["tokens_seen"] > 0 and metrics["tokens_per_second"] > 0
    config = json.loads((peft_dir / "training_config.json").read_text())
    assert config["precision"]["qlora"] is False and config["args"]["rank"] == 4  # CPU: no QLoRA (fp32 LoRA; bf16 autocast where the CPU has native bf16)
    assert (peft_dir / "adapter_model.safetensors").is_file()

    manifest = json.loads((adapters / "tiny-delta" / "manifest.json").read_text())
    assert manifest["rank"] == 4 and manifest["alpha"] == 8
    assert set(manifest["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(manifest["dataset_sha256"]) == 64 and len(manifest["base_sha256"]) == 64
    assert manifest["eval"]["train"]["steps"] == 1

    monkeypatch.setenv("AGX_ADAPTERS_DIR", str(adapters))
    cfg = load_config(tmp_path, overrides=["roles.delta.adapter=tiny-delta", "roles.delta.n_threads=2",
                                           "roles.delta.n_ctx=1024"], use_user_file=False).config
    pool = EnginePool(cfg, tmp_path)
    try:
        engine = pool.engine("delta")
        text, stats = engine.complete(ChatRequest(messages=[{"role": "user", "content": "Run the tests."}],
                                                  max_tokens=8, temperature=0.0))
        assert stats.completion_tokens > 0 and text
        assert engine.info().adapter == "tiny-delta"  # the installed adapter, selected by name
    finally:
        pool.close()
