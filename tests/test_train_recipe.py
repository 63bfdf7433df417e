"""The one-command Delta recipe's parts that need no training run: train.py's CPU precision choice
(--cpu-bf16), and the refusals of scripts/train_delta_smollm2.sh and the flags it hands to
scripts/train_and_convert.sh. The recipe itself is measured end to end (README, Fine-tuning:
"One command"), not run here: it trains for over an hour."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "scripts" / "train_delta_smollm2.sh"
TRAIN_AND_CONVERT = ROOT / "scripts" / "train_and_convert.sh"


def _train_module():
    spec = importlib.util.spec_from_file_location("agx_train_script", ROOT / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def test_cpu_precision_follows_cpu_bf16_flag():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: train.py takes its GPU precision path, not the CPU one tested here")
    train = _train_module()
    off = train.precision_plan("auto", "off")
    assert off["bf16"] is False and off["dtype"] == torch.float32 and off["autocast"] is None
    on = train.precision_plan("auto", "on")
    # bf16 autocast over a bf16 frozen base; peft keeps the LoRA weights fp32
    assert on["bf16"] is True and on["dtype"] == torch.bfloat16 and on["autocast"] == "bf16"
    assert on["qlora"] is False and on["fp16"] is False
    auto = train.precision_plan("auto", "auto")
    assert auto["bf16"] is train.cpu_has_native_bf16()


def test_native_bf16_needs_the_cpu_flag():
    pytest.importorskip("torch")
    train = _train_module()
    flags = _cpu_flags()
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        assert train.cpu_has_native_bf16() is False  # emulated bf16 would be slower than fp32
    else:
        assert train.cpu_has_native_bf16() is True  # the flag is there and torch's bf16 matmul ran


def _run(cmd, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_recipe_help_names_both_stages(tmp_path):
    proc = _run(["bash", str(RECIPE), "--help"], tmp_path)
    assert proc.returncode == 0
    assert "stage 1" in proc.stdout and "stage 2" in proc.stdout and "--out DIR" in proc.stdout


def test_recipe_refuses_unknown_argument_and_creates_nothing(tmp_path):
    proc = _run(["bash", str(RECIPE), "--out", str(tmp_path / "out"), "--epochs", "3"], tmp_path)
    assert proc.returncode == 2
    assert "unknown argument --epochs" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_recipe_refuses_missing_taskbench_before_training(tmp_path):
    proc = _run(["bash", str(RECIPE), "--out", str(tmp_path / "out"), "--taskbench", str(tmp_path / "nope")], tmp_path)
    assert proc.returncode == 2
    assert "--taskbench" in proc.stderr and "no such folder" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_train_and_convert_accepts_the_flags_the_recipe_passes(tmp_path):
    # The flags parse (an unknown one would stop at "unknown argument"); a bad --role then stops the
    # script before any work, so this runs in milliseconds.
    proc = _run(["bash", str(TRAIN_AND_CONVERT), "--name", "x", "--dropout", "0", "--cpu-bf16", "auto", "--no-install",
                 "--init-adapter", "somewhere", "--scale", "1.15", "--role", "planner"], tmp_path)
    assert proc.returncode == 2
    assert "unknown argument" not in proc.stderr
    assert "--role is delta or echo" in proc.stderr
