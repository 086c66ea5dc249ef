"""The embedded SLM server: llama.cpp's OpenAI-compatible server on the CPU variant this machine
allows.

llama.cpp is built once with every x86-64 CPU variant as a library of its own
(deploy/llama_build.py). llama.cpp alone would pick one by what the CPU's CPUID reports,
which is not what the kernel enables: a VM can report AMX or AVX-512 that the OS does not
grant, and the first matrix product then dies with a general protection fault. So this
launcher chooses the variant itself, from the kernel's own feature list (the flags in
/proc/cpuinfo, which Linux clears for state it does not enable) and, for AMX, the
permission the kernel grants the process (arch_prctl ARCH_REQ_XCOMP_PERM). It loads that
one library before llama.cpp would load any, then runs `llama_cpp.server` unchanged.

    python -m deploy.slm_server [--cpu-variant auto|NAME] -- LLAMA_CPP_SERVER_ARGS...

It needs only the standard library and llama-cpp-python, so the SLM image runs this file
as it is. ORCH_SLM_CPU_VARIANT is read by `orchestrator dev`, which passes --cpu-variant.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

#: ggml's x86 CPU variants and the instruction sets each is compiled for, as in
#: llama.cpp's ggml/src/CMakeLists.txt (GGML_CPU_ALL_VARIANTS), weakest first.
VARIANTS: dict[str, tuple[str, ...]] = {
    "x64": (),
    "sse42": ("SSE42",),
    "sandybridge": ("SSE42", "AVX"),
    "ivybridge": ("SSE42", "AVX", "F16C"),
    "piledriver": ("SSE42", "AVX", "F16C", "FMA"),
    "haswell": ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
    "skylakex": ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512"),
    "cannonlake": ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VBMI"),
    "cascadelake": ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX512", "AVX512_VNNI"),
    "icelake": (
        *("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
        *("AVX512", "AVX512_VBMI", "AVX512_VNNI"),
    ),
    "cooperlake": (
        *("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
        *("AVX512", "AVX512_VNNI", "AVX512_BF16"),
    ),
    "zen4": (
        *("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
        *("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16"),
    ),
    "alderlake": ("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2", "AVX_VNNI"),
    "sapphirerapids": (
        *("SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"),
        *("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_TILE", "AMX_INT8"),
    ),
}

#: Each feature as the kernel names it in /proc/cpuinfo (all of them must be listed).
KERNEL_FLAGS: dict[str, tuple[str, ...]] = {
    "SSE42": ("sse4_2",),
    "AVX": ("avx",),
    "F16C": ("f16c",),
    "FMA": ("fma",),
    "AVX2": ("avx2",),
    "BMI2": ("bmi2",),
    "AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "AVX512_VBMI": ("avx512vbmi",),
    "AVX512_VNNI": ("avx512_vnni",),
    "AVX512_BF16": ("avx512_bf16",),
    "AVX_VNNI": ("avx_vnni",),
    "AMX_TILE": ("amx_tile",),
    "AMX_INT8": ("amx_int8",),
}

REBUILD_HINT = "rebuild it with `make slm-rebuild` (docs/deployment.md, 'The embedded SLM')"
_LIBRARY_PREFIX = "libggml-cpu-"

_SYS_ARCH_PRCTL = 158  # x86-64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


class VariantError(Exception):
    """No CPU variant can be loaded; the message says what to do."""


@dataclass(frozen=True)
class Choice:
    """The CPU variant chosen for this machine (name None: llama.cpp chooses, or has no
    variants)."""

    name: str | None
    path: Path | None
    granted: frozenset[str]
    note: str

    def describe(self) -> str:
        return f"llama.cpp CPU variant {self.name or 'chosen by llama.cpp'} ({self.note})"


def granted_features(cpuinfo: str, amx_permitted: bool) -> frozenset[str]:
    """The variant features that both the CPU and the kernel enable, from /proc/cpuinfo's text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            break
    granted = {feature for feature, need in KERNEL_FLAGS.items() if flags.issuperset(need)}
    if not amx_permitted:
        granted -= {"AMX_TILE", "AMX_INT8"}
    return frozenset(granted)


def amx_permitted() -> bool:
    """Whether the kernel lets this process use AMX tiles (it must be asked first, on Linux)."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    # syscall(2) is variadic: each argument passed as the C long it reads.
    args = (_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA)
    return int(libc.syscall(*(ctypes.c_long(a) for a in args))) == 0


def library_dir() -> Path:
    """llama-cpp-python's folder of shared libraries (found without importing it)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise VariantError("llama-cpp-python is not installed; install it with `make dev`")
    return Path(next(iter(spec.submodule_search_locations)), "lib")


def built_variants(directory: Path) -> dict[str, Path]:
    """The CPU variants the installed llama.cpp was built with, by name."""
    found = {}
    for path in sorted(directory.glob(f"{_LIBRARY_PREFIX}*.so")):
        found[path.name.removeprefix(_LIBRARY_PREFIX).removesuffix(".so")] = path
    return found


def choose(requested: str, built: dict[str, Path], granted: frozenset[str]) -> Choice:
    """The variant to load: `requested` by name, or with "auto" the widest one the OS grants."""
    if not built:
        return Choice(None, None, granted, f"built for one CPU only, not portable: {REBUILD_HINT}")
    known = {name: path for name, path in built.items() if name in VARIANTS}
    if not known:  # another architecture's variants (ARM, POWER): llama.cpp's own choice
        return Choice(None, None, granted, "not an x86-64 build")
    allowed = [name for name in known if granted.issuperset(VARIANTS[name])]
    if requested != "auto":
        if requested not in known:
            raise VariantError(
                f"CPU variant {requested!r} is not built here; built: {', '.join(sorted(known))}"
            )
        if requested not in allowed:
            missing = sorted(set(VARIANTS[requested]) - granted)
            raise VariantError(
                f"CPU variant {requested!r} needs {', '.join(missing)}, which this CPU or its "
                "kernel does not enable; set ORCH_SLM_CPU_VARIANT=auto"
            )
        return Choice(requested, known[requested], granted, "set by ORCH_SLM_CPU_VARIANT")
    if not allowed:
        raise VariantError(f"no CPU variant of llama.cpp fits this CPU; {REBUILD_HINT}")
    order = list(VARIANTS)
    best = max(allowed, key=lambda name: (len(VARIANTS[name]), order.index(name)))
    return Choice(best, known[best], granted, "the widest this CPU and kernel enable")


def choose_for_machine(requested: str = "auto") -> Choice:
    """`choose` with this machine's kernel flags, AMX permission and installed build."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    return choose(requested, built_variants(library_dir()), granted_features(text, amx_permitted()))


def load(choice: Choice) -> None:
    """Register the chosen variant with ggml, so llama.cpp loads no other."""
    if choice.path is None:
        return
    ggml = ctypes.CDLL(str(choice.path.parent / "libggml.so"))
    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
    ggml.ggml_backend_load.restype = ctypes.c_void_p
    if not ggml.ggml_backend_load(str(choice.path).encode()):
        raise VariantError(f"llama.cpp could not load {choice.path}; {REBUILD_HINT}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.slm_server", description=__doc__)
    parser.add_argument("--cpu-variant", default="auto", help="auto (default) or a variant name")
    parser.add_argument("server_args", nargs=argparse.REMAINDER, help="llama_cpp.server's own")
    args = parser.parse_args(argv)
    try:
        choice = choose_for_machine(args.cpu_variant)
        # The chosen variant is loaded first, and llama.cpp loads none of its own after it
        # (llama_backend_init loads all variants only while no backend is registered).
        load(choice)
    except VariantError as error:
        sys.exit(f"slm: {error}")
    print(f"slm: {choice.describe()}", file=sys.stderr, flush=True)
    from llama_cpp.server.__main__ import main as serve

    server_args = args.server_args[1:] if args.server_args[:1] == ["--"] else args.server_args
    sys.argv = ["llama_cpp.server", *server_args]
    serve()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
