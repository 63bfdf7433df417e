"""The OS sandbox around command tasks (`shell`, `run_tests`, any tool that runs a process).

Approval decides *whether* a command runs; the sandbox limits what it can do once it runs:

- mode "workspace-write" (default): writes only beneath the plan's worktree, the command's own
  temp directory (a fresh one per command, named by $TMPDIR/$TMP/$TEMP and removed when the command
  ends), /dev/shm and `allow_write`; the user's checkout, the user's `.git` (the worktree's commits
  are made by agx, outside the sandbox), $HOME and the shared /tmp stay read-only. (Not /tmp as a
  whole: a repository, or another program's files, may live there.)
- mode "read-only": writes only to the command's temp directory, /dev/shm and `allow_write`.
- mode "off": no sandbox.
- network = false (default): no network (Linux: a network namespace of its own, or Landlock's
  TCP rules where namespaces are refused; macOS: sandbox-exec denies network*).

Linux: Landlock (kernel >= 5.13; network rules ABI >= 4), applied by agx/execution/sandbox_exec.py
in the command's own process just before it execs /bin/sh. macOS: `sandbox-exec` with a profile
written here (sandbox-exec is deprecated by Apple but still shipped; untested in agx's CI, which is
Linux). Elsewhere, or when the kernel lacks Landlock, commands run unsandboxed and agx says so.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agx.config.schema import SandboxConfig

HELPER = Path(__file__).with_name("sandbox_exec.py")
SHARED_TEMP_DIRS = ("/dev/shm",)  # POSIX shared memory and semaphores (Python's multiprocessing)
# Devices a command may write to (or ioctl, for terminals) even in a read-only sandbox.
WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx", "/dev/random", "/dev/urandom")


@dataclass(frozen=True)
class SandboxSupport:
    """What this machine can enforce. `filesystem` / `network` name the mechanism, or are None."""

    filesystem: str | None
    network: str | None
    why_not: str = ""  # when filesystem is None: the missing OS feature

    @property
    def available(self) -> bool:
        return self.filesystem is not None


@functools.lru_cache(maxsize=1)
def probe() -> SandboxSupport:
    """Find out once per process what the OS enforces, by sandboxing a real probe process."""
    system = platform.system()
    if system == "Darwin":
        if shutil.which("sandbox-exec"):
            return SandboxSupport("sandbox-exec", "sandbox-exec")
        return SandboxSupport(None, None, "sandbox-exec is missing on this Mac")
    if system != "Linux":
        return SandboxSupport(None, None, f"agx has no sandbox for {system}")
    try:
        out = subprocess.run([sys.executable, "-I", "-S", str(HELPER), "--probe"], capture_output=True, text=True,
                             timeout=20, cwd=tempfile.gettempdir())
        found = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return SandboxSupport(None, None, f"the sandbox probe failed: {exc}")
    if found.get("abi", 0) < 1:
        return SandboxSupport(None, found.get("network"),
                              "the Linux kernel has no Landlock (needs 5.13+ with landlock in the lsm= list)")
    if "error" in found:
        return SandboxSupport(None, found.get("network"), f"Landlock refused: {found['error']}")
    return SandboxSupport(found.get("filesystem"), found.get("network"))


SCRATCH_PREFIX = "agx-task-"


def make_scratch(config: SandboxConfig | None) -> Path | None:
    """A fresh temp directory for one sandboxed command (None when there is no sandbox). Its
    name carries agx's pid, so that the first command of a later agx removes those a killed
    agx left behind."""
    if config is None or config.mode == "off":
        return None
    _sweep_stale_scratch()
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-"))


@functools.lru_cache(maxsize=1)
def _sweep_stale_scratch() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = path.name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        try:
            if not pid.isdigit() or path.lstat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # still running: its scratch dirs are in use
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def remove_scratch(scratch: Path | None) -> None:
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)


def writable_dirs(config: SandboxConfig, workdir: Path, scratch: Path | None = None) -> list[str]:
    dirs = [*SHARED_TEMP_DIRS, *(str(Path(p).expanduser()) for p in config.allow_write)]
    if scratch is not None:
        dirs.insert(0, str(scratch))
    if config.mode == "workspace-write":
        dirs.insert(0, str(workdir))
    seen: list[str] = []
    for d in dirs:
        real = os.path.realpath(d)
        if real not in seen:
            seen.append(real)
    return seen


def unavailable_notice(config: SandboxConfig) -> str | None:
    """One plain line when commands will run with fewer limits than configured; None otherwise."""
    if config.mode == "off":
        return None
    support = probe()
    if not support.available:
        return (f"no OS sandbox: {support.why_not}; approved commands run with your full permissions "
                "(they can write anywhere you can, and use the network)")
    if not config.network and support.network is None:
        return "the sandbox cannot turn the network off on this system; approved commands can use the network"
    return None


def describe(config: SandboxConfig) -> str:
    """What a command task may do, for `agx doctor` and the run header."""
    if config.mode == "off":
        return "off (execution.sandbox.mode = \"off\"): commands run with your full permissions"
    support = probe()
    if not support.available:
        return f"NONE — {support.why_not}; commands run with your full permissions"
    where = ("the plan's worktree and a temp dir per command" if config.mode == "workspace-write"
             else "a temp dir per command")
    net = "allowed (execution.sandbox.network = true)" if config.network else (
        f"off ({support.network})" if support.network else "NOT restricted (no mechanism on this system)")
    return f"{config.mode} via {support.filesystem}: writes limited to {where}; network {net}"


def wrap_command(command: str, config: SandboxConfig | None, workdir: Path,
                 scratch: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The argv that runs `command` with /bin/sh under the sandbox, and the environment it
    needs (TMPDIR and friends pointing at `scratch`, its own temp dir from make_scratch)."""
    plain = ["/bin/sh", "-c", command]
    if config is None or config.mode == "off":
        return plain, {}
    env = {name: str(scratch) for name in ("TMPDIR", "TMP", "TEMP")} if scratch is not None else {}
    support = probe()
    network_off = not config.network and support.network is not None
    if support.filesystem == "sandbox-exec":
        return ["sandbox-exec", "-p", macos_profile(config, workdir, network_off, scratch), *plain], env
    if not support.available:
        if network_off:  # no Landlock but namespaces work: still take the network away
            spec = {"landlock": False, "network": False}
            return [sys.executable, "-I", "-S", str(HELPER), json.dumps(spec), *plain], {}
        return plain, {}
    spec = {"write": writable_dirs(config, workdir, scratch), "write_files": list(WRITABLE_DEVICES),
            "network": not network_off}
    return [sys.executable, "-I", "-S", str(HELPER), json.dumps(spec), *plain], env


def _sb_string(path: str) -> str:
    return json.dumps(path)  # a double-quoted string with \" and \\ escaped, as SBPL reads it


def macos_profile(config: SandboxConfig, workdir: Path, network_off: bool, scratch: Path | None = None) -> str:
    """A sandbox-exec (SBPL) profile: everything allowed except writes outside the allowed
    directories, and the network when it is off. Paths are resolved (/tmp is /private/tmp)."""
    allowed = " ".join(f"(subpath {_sb_string(d)})" for d in writable_dirs(config, workdir, scratch))
    devices = " ".join(f"(literal {_sb_string(d)})" for d in WRITABLE_DEVICES)
    lines = [
        "(version 1)",
        "(allow default)",
        "(deny file-write*)",
        f"(allow file-write* {allowed} {devices} (regex #\"^/dev/fd/\") (regex #\"^/dev/ttys\"))",
    ]
    if network_off:
        lines += ["(deny network*)", "(allow network* (remote unix-socket))"]
    return "\n".join(lines) + "\n"
