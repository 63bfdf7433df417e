"""Does this llama.cpp build run on this CPU? Checked once per build and machine, in a child.

A llama.cpp compiled for instructions the CPU cannot execute (AMX or AVX-512 that a VM
advertises but does not enable, a native build copied to an older machine) kills the process
with SIGILL on the first decode, with no word of why. Before agx's first in-process model load
it runs a child process that loads the bundled model and decodes a few tokens; a child killed
by a signal becomes `BuildUnusableError`: one line saying what happened and the exact command
that rebuilds llama-cpp-python for this machine. The verdict is kept per build (the library
files' size and mtime) and CPU (model name and flags) under ~/.cache/agx/, so later starts pay
only a few stat calls. Remote-backend roles never load llama.cpp and never get here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agx.runtime.engine import EngineError

CHILD_TIMEOUT_S = 120.0
VERDICT_FILE = "build-check.json"

# The child: load, evaluate a prompt of a few dozen tokens as one batch, decode 4 tokens
# greedily, say so. Both halves matter: on the KVM guest that motivated this check, a native
# build's AMX kernels run only for batched matrix products (prompt processing), so a one-token
# prompt decoded fine and the first real request died. Kept tiny so a failure can only be the build.
_CHILD = """
import sys
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_batch=64, n_threads=int(sys.argv[2]), verbose=False)
prompt = "Answer in one word. " * 6 + "The capital of France is"
out = llm.create_completion(prompt, max_tokens=4, temperature=0.0)
print("decoded", len(out["choices"][0]["text"]))
"""


class BuildUnusableError(EngineError):
    """The llama.cpp build cannot run on this machine; the message says how to rebuild it."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str          # "decoded in 0.4 s" / "killed by SIGILL (illegal instruction)" / ...
    signal: str | None   # the signal's name when the child died from one
    seconds: float
    checked_at: float

    def line(self) -> str:
        return ("OK — " if self.ok else "FAILED — ") + self.detail


def llama_lib_dir() -> Path | None:
    """llama_cpp's folder of shared libraries, found without importing llama_cpp."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        lib = Path(folder) / "lib"
        if lib.is_dir():
            return lib
    return None


def _cpu_identity() -> str:
    """CPU model and the flags the kernel lists (a VM moved to another host changes them)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "flags", "Features")):
                    parts.append(line.strip())
                elif not line.strip():
                    break  # the first processor describes them all
    except OSError:
        pass
    return "\n".join(parts)


def build_key(lib_dir: Path | None = None) -> str:
    """One key per (llama.cpp build, CPU, Python): a rebuild or a new machine checks again."""
    lib_dir = lib_dir if lib_dir is not None else llama_lib_dir()
    h = hashlib.sha256()
    h.update(_cpu_identity().encode())
    h.update(sys.version.encode())
    if lib_dir is not None and lib_dir.is_dir():
        for lib in sorted(lib_dir.iterdir()):
            try:
                st = lib.stat()
            except OSError:
                continue
            h.update(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_SIGNAL_MEANING = {
    "SIGILL": "illegal instruction: the build uses CPU instructions this machine cannot execute",
    "SIGSEGV": "segmentation fault",
    "SIGBUS": "bus error",
    "SIGABRT": "aborted",
}


def run_child_check(command: list[str], timeout: float = CHILD_TIMEOUT_S) -> Verdict:
    """Run `command` as the check's child and turn how it ended into a verdict."""
    start = time.monotonic()
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        took = time.monotonic() - start
        return Verdict(False, f"the check did not finish in {timeout:.0f} s", None, took, time.time())
    took = time.monotonic() - start
    if done.returncode == 0:
        return Verdict(True, f"loaded and decoded in {took:.1f} s", None, took, time.time())
    if done.returncode < 0:
        name = _signal_name(-done.returncode)
        meaning = _SIGNAL_MEANING.get(name, "killed")
        return Verdict(False, f"killed by {name} ({meaning})", name, took, time.time())
    tail = [ln for ln in (done.stderr or "").strip().splitlines() if ln.strip()][-1:] or ["no message"]
    return Verdict(False, f"exited {done.returncode}: {tail[0][:300]}", None, took, time.time())


class VerdictStore:
    """The kept verdicts, one per build key, in a small JSON file (losing it costs one check)."""

    def __init__(self, path: Path):
        self.path = path

    def get(self, key: str) -> Verdict | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Verdict(**data[key])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, verdict: Verdict) -> None:
        from agx.workspace.files import atomic_write

        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        data[key] = asdict(verdict)
        data = dict(list(data.items())[-16:])  # a few builds and machines, not a history
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(data, indent=1).encode())
        except OSError:
            pass  # an unwritable cache only costs the next start another check


def default_store() -> VerdictStore:
    """~/.cache/agx/build-check.json, or the file AGX_BUILD_CHECK_FILE names (the test suite
    shares one across its per-test cache folders, so the child runs once per suite, not per test)."""
    from agx.config.paths import xdg_agx_dir

    override = os.environ.get("AGX_BUILD_CHECK_FILE")
    return VerdictStore(Path(override) if override else xdg_agx_dir("XDG_CACHE_HOME", ".cache") / VERDICT_FILE)


def check_build(model_path: Path | str, *, store: VerdictStore | None = None, force: bool = False,
                n_threads: int = 1) -> tuple[Verdict, bool]:
    """(verdict, from_cache) for this build and machine, decoding with `model_path` in a child."""
    store = store or default_store()
    key = build_key()
    if not force:
        kept = store.get(key)
        if kept is not None:
            return kept, True
    verdict = run_child_check([sys.executable, "-c", _CHILD, str(model_path), str(n_threads)])
    if verdict.ok or verdict.signal is not None:
        store.put(key, verdict)  # other failures (a broken file, a timeout) are not the build's verdict
    return verdict, False


def unusable_message(verdict: Verdict) -> str:
    from agx.runtime.cpu_build import rebuild_command

    return (f"the llama.cpp build cannot run on this machine: a test decode was {verdict.detail}. "
            f"Rebuild llama-cpp-python for this CPU: {rebuild_command()}")


_checked = threading.Lock()
_passed = False


def ensure_build_usable() -> None:
    """Before the first in-process load: raise BuildUnusableError if the build cannot run here.

    Skipped when the bundled model is not installed (nothing small to test with) or when
    AGX_SKIP_BUILD_CHECK=1 (for a build the user has vouched for).
    """
    global _passed
    if _passed or os.environ.get("AGX_SKIP_BUILD_CHECK") == "1":
        return
    with _checked:
        if _passed:
            return
        from agx.runtime.bundled import bundled_model_path

        model = bundled_model_path()
        if model is None:
            _passed = True
            return
        verdict, _ = check_build(model)
        if verdict.signal is not None:
            raise BuildUnusableError(unusable_message(verdict))
        _passed = True  # other failures are left to the real load, which reports its own error
