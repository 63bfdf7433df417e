"""Which llama.cpp build flags fit this machine: the portable CPU build that agx installs.

llama-cpp-python compiles llama.cpp with `GGML_NATIVE=ON` by default, i.e. `-march=native`,
which turns on every instruction set CPUID advertises. Some VMs advertise sets the guest
cannot execute (AMX on KVM guests of Sapphire Rapids hosts): the build then dies with SIGILL
on the first decode. So agx builds with `GGML_NATIVE=OFF` and turns on only what this
machine has been *seen to execute*: each instruction-set level is compiled into a tiny
program and run; a level counts only if the program exits cleanly. AMX stays off (its
kernels help batched int8 prompt processing, not decode, and it is the set that VMs lie about).

Stdlib only, and runnable as a script, because the install script calls it before agx
(or anything else) is installed:

    python3 agx/runtime/cpu_build.py cmake-args     # the CMAKE_ARGS for this machine
    python3 agx/runtime/cpu_build.py levels         # which levels ran here
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

LLAMA_CPP_PYTHON_REQUIREMENT = "llama-cpp-python>=0.3.36,<0.4"


@dataclass(frozen=True)
class IsaLevel:
    """One instruction-set level: the compiler target for the test program and the ggml flags it enables."""

    name: str
    gcc_target: str           # for __attribute__((target(...)))
    body: str                 # C statements that execute instructions of this level
    ggml_flags: tuple[str, ...]


# Ordered: each level is tried only if the one before it ran.
X86_LEVELS: tuple[IsaLevel, ...] = (
    IsaLevel(
        "avx2", "avx,avx2,fma,f16c,bmi2",
        "__m256 a = _mm256_set1_ps((float)argc); a = _mm256_fmadd_ps(a, a, a);"
        "__m256i b = _mm256_add_epi32(_mm256_set1_epi32(argc), _mm256_set1_epi32(2));"
        "__m128i h = _mm256_cvtps_ph(a, 0); unsigned x = _pdep_u32((unsigned)argc, 0xffu);"
        "return (int)(_mm256_cvtss_f32(a) + _mm256_extract_epi32(b, 0) + _mm_extract_epi16(h, 0) + x) == 12345;",
        ("GGML_AVX", "GGML_AVX2", "GGML_FMA", "GGML_F16C", "GGML_BMI2"),
    ),
    IsaLevel(
        "avx512", "avx512f,avx512bw,avx512dq,avx512vl,avx512cd",
        "__m512 a = _mm512_set1_ps((float)argc); a = _mm512_fmadd_ps(a, a, a);"
        "__m512i b = _mm512_add_epi16(_mm512_set1_epi16((short)argc), _mm512_set1_epi16(3));"
        "return (int)(_mm512_reduce_add_ps(a) + _mm_extract_epi16(_mm512_castsi512_si128(b), 0)) == 12345;",
        ("GGML_AVX512",),
    ),
    IsaLevel(
        "avx512-vnni-vbmi-bf16", "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx512bf16",
        "__m512i a = _mm512_set1_epi32(argc);"
        "__m512i d = _mm512_dpbusd_epi32(a, a, a);"
        "__m512i p = _mm512_permutexvar_epi8(a, d);"
        "__m512bh h = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1.0f), _mm512_set1_ps((float)argc));"
        "__m512 s = _mm512_dpbf16_ps(_mm512_setzero_ps(), h, h);"
        "return (int)(_mm512_reduce_add_epi32(p) + _mm512_reduce_add_ps(s)) == 12345;",
        ("GGML_AVX512_VNNI", "GGML_AVX512_VBMI", "GGML_AVX512_BF16"),
    ),
)

# Never on in agx's build, whatever CPUID says: see the module docstring.
ALWAYS_OFF = ("GGML_NATIVE", "GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def _c_source(level: IsaLevel) -> str:
    return (
        "#include <immintrin.h>\n"
        f'__attribute__((target("{level.gcc_target}"))) static int probe(int argc) {{ {level.body} }}\n'
        "int main(int argc, char **argv) { (void)argv; return probe(argc); }\n"
    )


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def level_runs(level: IsaLevel, workdir: str, cc: str) -> bool:
    """Compile the level's test program and run it: True only if it exits 0 (no SIGILL)."""
    src = os.path.join(workdir, f"{level.name}.c")
    exe = os.path.join(workdir, level.name)
    with open(src, "w", encoding="utf-8") as fh:
        fh.write(_c_source(level))
    built = subprocess.run([cc, "-O1", "-o", exe, src], capture_output=True, text=True)
    if built.returncode != 0:
        return False  # the compiler cannot target it: llama.cpp could not either
    ran = subprocess.run([exe], capture_output=True, timeout=20)
    return ran.returncode == 0


def executable_levels() -> list[str]:
    """Names of the x86 levels this machine executes (in order, stopping at the first that fails)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    cc = _compiler()
    if cc is None:
        return []
    found: list[str] = []
    with tempfile.TemporaryDirectory(prefix="agx-isa-") as workdir:
        for level in X86_LEVELS:
            if not level_runs(level, workdir, cc):
                break
            found.append(level.name)
    return found


def cmake_args(levels: list[str] | None = None, *, system: str | None = None,
               machine: str | None = None, accelerator: str | None = None) -> str:
    """The CMAKE_ARGS agx builds llama-cpp-python with on this machine.

    accelerator: "cuda" or "metal" adds that backend (from AGX_LLAMA_ACCELERATOR when None).
    Apple silicon: Metal, with llama.cpp's own CPU defaults (arm64 has no lying-CPUID problem).
    Other non-x86 machines: llama.cpp's defaults.
    """
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    accelerator = (accelerator if accelerator is not None else os.environ.get("AGX_LLAMA_ACCELERATOR", "")).lower()
    args: list[str] = []
    if system == "Darwin" and machine == "arm64":
        args.append("-DGGML_METAL=on")
    elif machine in ("x86_64", "amd64"):
        levels = executable_levels() if levels is None else levels
        enabled = {flag for level in X86_LEVELS if level.name in levels for flag in level.ggml_flags}
        args += [f"-D{flag}=OFF" for flag in ALWAYS_OFF]
        for level in X86_LEVELS:
            for flag in level.ggml_flags:
                args.append(f"-D{flag}={'ON' if flag in enabled else 'OFF'}")
    if accelerator == "cuda":
        args.append("-DGGML_CUDA=on")
    elif accelerator == "metal" and "-DGGML_METAL=on" not in args:
        args.append("-DGGML_METAL=on")
    return " ".join(args)


def rebuild_command(args: str | None = None) -> str:
    """The exact command that rebuilds llama-cpp-python for this machine in the running Python."""
    args = cmake_args() if args is None else args
    return (f'CMAKE_ARGS="{args}" {sys.executable} -m pip install --force-reinstall --no-cache-dir '
            f'--no-deps "{LLAMA_CPP_PYTHON_REQUIREMENT}"')


def _main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "cmake-args"
    if command == "cmake-args":
        print(cmake_args())
    elif command == "levels":
        print(" ".join(executable_levels()) or "(none beyond the x86-64 baseline)")
    elif command == "rebuild-command":
        print(rebuild_command())
    else:
        print(f"usage: {argv[0]} cmake-args|levels|rebuild-command", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
