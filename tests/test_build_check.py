"""The portable llama.cpp build and the check that a build runs on this CPU (issue #11).

Real child processes throughout: children that really die from SIGILL / SIGSEGV, a real
compiler for the instruction-set probe, the real installed llama.cpp build and the real `agx`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agx.runtime import build_check, cpu_build
from agx.runtime.build_check import (BuildUnusableError, Verdict, VerdictStore, build_key, check_build,
                                     run_child_check)

REPO = Path(__file__).resolve().parents[1]
ON_X86 = cpu_build.platform.machine().lower() in ("x86_64", "amd64")


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# -- the verdict of a child process ------------------------------------------------------------

def test_child_killed_by_sigill_is_an_unusable_build():
    verdict = run_child_check(_child("import os, signal; os.kill(os.getpid(), signal.SIGILL)"))
    assert not verdict.ok
    assert verdict.signal == "SIGILL"
    assert "illegal instruction" in verdict.detail


def test_child_killed_by_a_real_segfault():
    # A genuine invalid memory read, not a signal sent by hand.
    verdict = run_child_check(_child("import ctypes; ctypes.string_at(0)"))
    assert not verdict.ok
    assert verdict.signal == "SIGSEGV"


def test_clean_exit_is_usable():
    verdict = run_child_check(_child("print('decoded 4')"))
    assert verdict.ok and verdict.signal is None


def test_nonzero_exit_is_a_failure_but_not_the_builds_signal():
    verdict = run_child_check(_child("import sys; sys.stderr.write('boom: bad file\\n'); sys.exit(3)"))
    assert not verdict.ok and verdict.signal is None
    assert "exited 3" in verdict.detail and "boom: bad file" in verdict.detail


def test_a_hanging_child_times_out():
    verdict = run_child_check(_child("import time; time.sleep(30)"), timeout=1.0)
    assert not verdict.ok and "did not finish" in verdict.detail


# -- the real check: the installed build decodes the bundled model -----------------------------

def test_installed_build_passes_and_the_verdict_is_kept(tmp_path, tiny_model_path):
    store = VerdictStore(tmp_path / "verdicts.json")
    verdict, kept = check_build(tiny_model_path, store=store)
    assert verdict.ok, verdict.detail
    assert not kept
    again, kept = check_build(tiny_model_path, store=store)
    assert kept and again == verdict  # a build already checked costs no child


def test_a_kept_verdict_is_used_without_running_the_child(tmp_path):
    store = VerdictStore(tmp_path / "verdicts.json")
    planted = Verdict(False, "killed by SIGILL (illegal instruction)", "SIGILL", 0.1, 1.0)
    store.put(build_key(), planted)
    # The model path does not exist: had a child run, it could not have produced this verdict.
    verdict, kept = check_build(tmp_path / "no-such-model.gguf", store=store)
    assert kept and verdict == planted


def test_rebuilt_library_changes_the_key(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "libggml-cpu.so").write_bytes(b"one build")
    first = build_key(lib)
    (lib / "libggml-cpu.so").write_bytes(b"another build, rebuilt")
    assert build_key(lib) != first


def test_verdict_store_survives_a_corrupt_file(tmp_path):
    path = tmp_path / "verdicts.json"
    path.write_text("{not json")
    store = VerdictStore(path)
    assert store.get("k") is None
    store.put("k", Verdict(True, "ok", None, 0.1, 1.0))
    assert store.get("k").ok


def test_unusable_message_names_the_signal_and_the_rebuild_command():
    message = build_check.unusable_message(Verdict(False, "killed by SIGILL (illegal instruction: x)", "SIGILL", 0.1, 1.0))
    assert "SIGILL" in message
    assert "CMAKE_ARGS=" in message and "--no-cache-dir" in message and "llama-cpp-python" in message
    assert sys.executable in message


def _agx(args, env, cwd):
    return subprocess.run([sys.executable, "-m", "agx", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_agx_exits_1_with_one_clear_line_when_the_build_cannot_run(tmp_path):
    """The user-facing path: a build whose check died with SIGILL stops `agx chat` before any load."""
    store_file = tmp_path / "verdicts.json"
    VerdictStore(store_file).put(build_key(), Verdict(False, "killed by SIGILL (illegal instruction: the build "
                                                             "uses CPU instructions this machine cannot execute)",
                                                      "SIGILL", 0.2, 1.0))
    env = dict(os.environ, AGX_BUILD_CHECK_FILE=str(store_file))
    done = _agx(["chat", "What is the capital of France?"], env, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "llama.cpp build" in ln]
    assert len(lines) == 1, done.stderr
    assert lines[0] == done.stderr.strip().splitlines()[-1]  # the last word, not buried in output
    assert lines[0].startswith("agx: ") and "SIGILL" in lines[0] and "CMAKE_ARGS=" in lines[0]
    assert "Traceback" not in done.stderr


def test_doctor_shows_the_check_and_its_verdict(tmp_path):
    env = dict(os.environ, AGX_BUILD_CHECK_FILE=str(tmp_path / "verdicts.json"))
    done = _agx(["doctor", "--recheck-build"], env, tmp_path)
    assert "check:    test decode OK" in done.stdout, done.stdout + done.stderr
    assert "build:    CPU instruction sets compiled in:" in done.stdout
    kept = _agx(["doctor"], env, tmp_path)
    assert "kept from an earlier check" in kept.stdout


def test_remote_roles_skip_the_check(tmp_path):
    """No in-process role: doctor says the check is skipped (and never decodes)."""
    (tmp_path / "agx.toml").write_text(
        '[roles.echo]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        '[roles.delta]\nbackend = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n')
    env = dict(os.environ, AGX_BUILD_CHECK_FILE=str(tmp_path / "verdicts.json"))
    done = _agx(["doctor"], env, tmp_path)
    assert "check:    skipped — every role uses a remote backend" in done.stdout, done.stdout + done.stderr
    assert not (tmp_path / "verdicts.json").exists()


# -- the portable build's flags ----------------------------------------------------------------

def test_x86_flags_are_portable_whatever_the_levels():
    for levels in ([], ["avx2"], ["avx2", "avx512", "avx512-vnni-vbmi-bf16"]):
        args = cpu_build.cmake_args(levels, system="Linux", machine="x86_64", accelerator="").split()
        assert "-DGGML_NATIVE=OFF" in args
        assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)
    assert "-DGGML_AVX512=OFF" in cpu_build.cmake_args(["avx2"], system="Linux", machine="x86_64", accelerator="")
    assert "-DGGML_AVX2=OFF" in cpu_build.cmake_args([], system="Linux", machine="x86_64", accelerator="")
    full = cpu_build.cmake_args(["avx2", "avx512", "avx512-vnni-vbmi-bf16"], system="Linux", machine="x86_64",
                                accelerator="cuda")
    assert "-DGGML_AVX512_VNNI=ON" in full and "-DGGML_CUDA=on" in full


def test_apple_silicon_gets_metal():
    assert cpu_build.cmake_args([], system="Darwin", machine="arm64", accelerator="") == "-DGGML_METAL=on"


@pytest.mark.skipif(not ON_X86 or cpu_build._compiler() is None, reason="needs an x86-64 CPU and a C compiler")
def test_a_level_whose_program_dies_does_not_count(tmp_path):
    trapping = cpu_build.IsaLevel("trap", "avx2", "__builtin_trap(); return 0;", ("GGML_NOTHING",))
    assert cpu_build.level_runs(trapping, str(tmp_path), cpu_build._compiler()) is False
    fine = cpu_build.IsaLevel("fine", "avx2", "return argc == 12345;", ("GGML_NOTHING",))
    assert cpu_build.level_runs(fine, str(tmp_path), cpu_build._compiler()) is True


def test_install_script_builds_with_the_chosen_flags():
    script = (REPO / "scripts" / "install.sh").read_text()
    assert "agx/runtime/cpu_build.py cmake-args" in script
    assert 'CMAKE_ARGS="$ARGS"' in script and "--no-cache-dir" in script
    assert "scripts/install.sh" in (REPO / "scripts" / "test.sh").read_text()
    assert "scripts/install.sh" in (REPO / "README.md").read_text()


@pytest.mark.skipif(not ON_X86, reason="the portable x86-64 flags apply to x86-64 CPUs only")
def test_the_installed_llama_cpp_is_the_portable_build():
    """The build this suite runs on was made by scripts/install.sh with today's flags: no AMX,
    nothing beyond what this machine executed. Fails if someone installs a native build instead."""
    stamp = Path(sys.prefix) / "agx-llama-build.txt"
    if not stamp.is_file():
        pytest.skip("llama-cpp-python was not installed by scripts/install.sh in this environment")
    recorded = stamp.read_text().strip()
    assert recorded.endswith(cpu_build.cmake_args()), (recorded, cpu_build.cmake_args())
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    assert "AMX_INT8 = 1" not in info
    assert ("AVX512 = 1" in info) == ("avx512" in cpu_build.executable_levels())


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install -y tmux)")
def test_the_shell_exits_1_with_the_line_after_restoring_the_terminal(git_repo, tmp_path):
    """`agx` (the shell) in a real terminal: the build check's verdict ends it with exit 1 and
    the one line, printed on the restored terminal rather than lost in the full-screen UI."""
    import time

    store_file = tmp_path / "verdicts.json"
    VerdictStore(store_file).put(build_key(), Verdict(False, "killed by SIGILL (illegal instruction: the build "
                                                             "uses CPU instructions this machine cannot execute)",
                                                      "SIGILL", 0.2, 1.0))
    session = f"agx-buildcheck-{os.getpid()}"
    status_file = tmp_path / "exit_status"
    env = (f"XDG_CONFIG_HOME={tmp_path / 'xdg'} XDG_CACHE_HOME={tmp_path / 'cache'} TERM=xterm-256color "
           f"AGX_BUILD_CHECK_FILE={store_file}")
    command = (f"env -u COLUMNS -u LINES {env} {sys.executable} -m agx; "
               f"echo $? > {status_file}; sleep 30")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-c", str(git_repo), command],
                   check=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not status_file.exists():
            time.sleep(0.2)
        assert status_file.exists(), "the shell never exited"
        time.sleep(0.2)
        assert status_file.read_text().strip() == "1"
        # What the person sees once the full-screen UI is gone (the line wraps at 120 columns).
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-t", session], capture_output=True,
                                text=True).stdout
        assert "agx: the llama.cpp build cannot run on this machine" in screen and "CMAKE_ARGS=" in screen, screen
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
