"""Layered config and every class of config error (exit 2, file + key path + expectation)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agx.config import ConfigError, load_config


def test_defaults_put_both_roles_on_the_bundled_model(tmp_path):
    cfg = load_config(tmp_path, use_user_file=False).config
    assert cfg.roles.echo.model == "bundled:smollm2" == cfg.roles.delta.model
    assert cfg.roles.echo.n_gpu_layers == -1
    assert cfg.roles.delta.sampling.temperature == 0.0


def test_layers_in_order(tmp_path, monkeypatch):
    user = tmp_path / "config" / "agx" / "agx.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[roles.echo]\nn_ctx = 1000\nn_batch = 64\n[roles.delta]\nn_ctx = 1111\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "agx.toml").write_text("[roles.echo]\nn_ctx = 2000\n[execution]\nmax_parallel = 7\n")
    env = {"AGX_ROLES__ECHO__N_CTX": "3000", "AGX_EXECUTION__MAX_PARALLEL": "9"}
    loaded = load_config(repo, environ=env, overrides=["roles.echo.n_ctx=4000"])
    cfg = loaded.config
    assert cfg.roles.echo.n_ctx == 4000  # CLI beats env beats repo beats user
    assert cfg.execution.max_parallel == 9  # env beats repo
    assert cfg.roles.echo.n_batch == 64  # user file beats defaults
    assert cfg.roles.delta.n_ctx == 1111
    assert loaded.origin_of("roles", "echo", "n_batch") == str(user)
    assert loaded.origin_of("roles", "echo", "n_ctx") == "command line --set"


def test_profile_sets_real_models_and_user_files_override_it(tmp_path):
    (tmp_path / "agx.toml").write_text("[roles.delta]\nn_ctx = 16384\n")
    cfg = load_config(tmp_path, profile="worker1", use_user_file=False).config
    assert cfg.profile == "worker1"
    assert cfg.roles.delta.model.startswith("hf://bartowski/Qwen2.5-Coder-32B-Instruct-GGUF/")
    assert cfg.roles.echo.model.endswith("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf")
    assert cfg.roles.delta.n_ctx == 16384


def test_profile_from_environment(tmp_path):
    cfg = load_config(tmp_path, environ={"AGX_PROFILE": "mac"}, use_user_file=False).config
    assert "Qwen2.5-Coder-7B" in cfg.roles.delta.model


@pytest.mark.parametrize(
    "content, key_path, expected",
    [
        ("[roles.echo\nmodel = 1", "", "invalid TOML"),
        ("[roles.echo]\nmodle = 'x'\n", "roles.echo.modle", "unknown key"),
        ("[roles.echo]\nn_ctx = 'big'\n", "roles.echo.n_ctx", "valid integer"),
        ("[roles.echo]\nn_ctx = 16\n", "roles.echo.n_ctx", "greater than or equal to 256"),
        ("[roles.delta]\nbackend = 'openai'\n", "roles.delta", "needs base_url"),
        ("[roles.delta]\nbackend = 'grpc'\n", "roles.delta.backend", "'llama_cpp' or 'openai'"),
        ("profile = 'laptop'\n", "profile", "unknown profile 'laptop'"),
        ("[execution]\nmax_parallel = 0\n", "execution.max_parallel", "greater than or equal to 1"),
    ],
)
def test_config_errors_name_file_key_and_expectation(tmp_path, content, key_path, expected):
    (tmp_path / "agx.toml").write_text(content)
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path, use_user_file=False)
    err = exc.value
    assert err.source == str(tmp_path / "agx.toml")
    assert err.key_path == key_path
    assert expected in err.expected
    assert err.exit_code == 2


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path, extra_file=tmp_path / "nope.toml", use_user_file=False)


def test_env_error_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path, environ={"AGX_ROLES__ECHO__N_GPU_LAYERS": "lots"}, use_user_file=False)
    assert exc.value.source == "environment AGX_ROLES__ECHO__N_GPU_LAYERS"
    assert exc.value.key_path == "roles.echo.n_gpu_layers"


def test_bad_set_flag(tmp_path):
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(tmp_path, overrides=["roles.echo.n_ctx"], use_user_file=False)


@pytest.mark.parametrize(
    "content",
    ["[roles.echo\n", "[roles.echo]\nn_threads = -3\n", "[wat]\nx = 1\n", "[roles.echo]\nmodel = 5\n"],
)
def test_cli_bad_config_exits_2_without_traceback(git_repo, content):
    (git_repo / "agx.toml").write_text(content)
    proc = subprocess.run([sys.executable, "-m", "agx", "models", "list"], cwd=git_repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l]
    assert len(lines) == 1 and str(git_repo / "agx.toml") in lines[0]


def test_top_level_agx_toml_is_the_documented_defaults():
    from pathlib import Path

    from agx.config.loader import DEFAULTS_FILE

    top = Path(__file__).resolve().parents[1] / "agx.toml"
    assert top.read_text() == DEFAULTS_FILE.read_text()
