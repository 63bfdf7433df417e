"""Apply an OS sandbox to this process, then exec the task's command (Linux).

    python -I -S sandbox_exec.py SPEC_JSON /bin/sh -c COMMAND
    python -I -S sandbox_exec.py --probe

agx runs every command task through this file (see agx/execution/sandbox.py). It is a separate
program, not a preexec_fn, because agx's process has llama.cpp threads and running Python in a
forked child of a threaded process can deadlock. It imports nothing from agx and no
site-packages (-S), so it starts in ~20 ms.

What it applies, in this order, before exec:
1. network off (spec "network": false): a new network namespace (unshare CLONE_NEWNET; as a
   non-root user inside a new user namespace that maps only the user's own uid/gid). The
   namespace has its own loopback, brought up, so a test suite's local servers still work, but
   nothing outside the machine's namespace — the host's 127.0.0.1 included — can be reached.
   If namespaces are refused, Landlock's TCP rules (ABI >= 4) deny every TCP connect and bind.
2. Landlock (kernel >= 5.13): every kind of write (create, write, truncate, remove, rename,
   link, mknod, device ioctl) is denied except beneath the spec's "write" directories and on the
   spec's "write_files" (/dev/null and friends). Reading and executing stay allowed. With ABI >= 6
   the command can also not signal processes outside its sandbox (agx itself included).
Landlock cannot be undone by the command or its children (no_new_privs is set first).

If a requested restriction cannot be applied, the command is NOT run: the message goes to stderr
and the exit code is 126 (agx probed the kernel first, so this only happens when the kernel
changed its mind, e.g. a seccomp filter added since).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys

# Syscall numbers are the same on every architecture Linux added Landlock to after 5.13.
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# LANDLOCK_ACCESS_FS_*: the write-type rights, with the ABI that introduced each.
FS_WRITE_FILE = 1 << 1
FS_REMOVE_DIR, FS_REMOVE_FILE = 1 << 4, 1 << 5
FS_MAKE_CHAR, FS_MAKE_DIR, FS_MAKE_REG, FS_MAKE_SOCK = 1 << 6, 1 << 7, 1 << 8, 1 << 9
FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 1 << 10, 1 << 11, 1 << 12
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
WRITE_RIGHTS_ABI1 = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG
                     | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)
FILE_RIGHTS = FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV  # rights that apply to a file itself
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class SandboxFailure(Exception):
    pass


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    abi = _libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION))
    return abi if abi > 0 else 0


def write_rights(abi: int) -> int:
    rights = WRITE_RIGHTS_ABI1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def _fail(what: str) -> SandboxFailure:
    err = ctypes.get_errno()
    return SandboxFailure(f"{what}: {os.strerror(err) if err else 'failed'}")


def apply_landlock(write_dirs: list[str], write_files: list[str], *, deny_tcp: bool) -> int:
    """Restrict this process (and what it execs) to writing beneath `write_dirs`; returns the ABI."""
    abi = landlock_abi()
    if abi < 1:
        raise SandboxFailure("Landlock is not available in this kernel")
    handled = write_rights(abi)
    attr = _RulesetAttr(handled_access_fs=handled)
    size = 8
    if deny_tcp:
        if abi < 4:
            raise SandboxFailure(f"Landlock ABI {abi} cannot restrict the network (needs ABI 4)")
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_SIGNAL | (SCOPE_ABSTRACT_UNIX_SOCKET if deny_tcp else 0)
        size = 24
    fd = _libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise _fail("landlock_create_ruleset")
    try:
        for path, rights in [(d, handled) for d in write_dirs] + [(f, handled & FILE_RIGHTS) for f in write_files]:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a temp dir or device this system lacks: nothing to allow there
            try:
                if not os.path.isdir(path):
                    rights &= FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=rights, parent_fd=pfd)
                if _libc.syscall(SYS_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(RULE_PATH_BENEATH),
                                 ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                    raise _fail(f"landlock_add_rule {path}")
            finally:
                os.close(pfd)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _fail("prctl(PR_SET_NO_NEW_PRIVS)")
        if _libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise _fail("landlock_restrict_self")
    finally:
        os.close(fd)
    return abi


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _loopback_up() -> None:
    """A fresh network namespace has its loopback down; bring it up (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(s, 0x8913, ifreq))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))


def enter_network_namespace() -> str:
    """Leave the machine's network: a namespace of our own (as root directly, else inside a user
    namespace mapping only our own uid and gid). Returns how; raises SandboxFailure."""
    if _libc.unshare(CLONE_NEWNET) != 0:
        uid, gid = os.getuid(), os.getgid()
        if _libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
            raise _fail("unshare(CLONE_NEWNET)")
        try:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as exc:
            raise SandboxFailure(f"user namespace id map: {exc}") from None
        how = "network namespace (in a user namespace)"
    else:
        how = "network namespace"
    try:
        _loopback_up()
    except OSError:
        pass  # loopback stays down: still no network, only local servers inside fail too
    return how


def apply(spec: dict) -> dict:
    """Apply `spec` ({"write": [...], "write_files": [...], "network": bool}) to this process."""
    done: dict = {}
    deny_tcp = False
    if not spec.get("network", True):
        try:
            done["network"] = enter_network_namespace()
        except SandboxFailure as exc:
            done["netns_error"] = str(exc)
            deny_tcp = True  # fall back to Landlock's TCP rules
    if spec.get("landlock", True):
        abi = apply_landlock(list(spec.get("write", [])), list(spec.get("write_files", [])), deny_tcp=deny_tcp)
        done["filesystem"] = f"Landlock ABI {abi}"
        if deny_tcp:
            done["network"] = f"Landlock ABI {abi} (TCP only)"
    return done


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--probe"]:
        # Sandbox this probe itself as a task would be, and say what worked.
        out: dict = {"abi": landlock_abi()}
        deny_tcp = False
        try:
            out["network"] = enter_network_namespace()
        except SandboxFailure as exc:
            out["netns_error"] = str(exc)
            if out["abi"] >= 4:
                deny_tcp = True
                out["network"] = f"Landlock ABI {out['abi']} (TCP only)"
        if out["abi"] >= 1:
            try:
                apply_landlock([os.getcwd()], ["/dev/null"], deny_tcp=deny_tcp)
                out["filesystem"] = f"Landlock ABI {out['abi']}"
            except SandboxFailure as exc:
                out["error"] = str(exc)
        print(json.dumps(out))
        return 0
    if len(argv) < 3:
        print("usage: sandbox_exec.py SPEC_JSON PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    try:
        apply(json.loads(argv[1]))
    except (SandboxFailure, ValueError) as exc:
        print(f"agx sandbox: not running the command: {exc}", file=sys.stderr)
        return 126
    try:
        os.execv(argv[2], argv[2:])
    except OSError as exc:
        print(f"agx sandbox: cannot run {argv[2]}: {exc}", file=sys.stderr)
        return 127 if exc.errno == errno.ENOENT else 126


if __name__ == "__main__":
    sys.exit(main(sys.argv))
