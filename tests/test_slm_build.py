"""The embedded SLM runs on any x86-64 CPU: llama.cpp is built with no native code and every
CPU variant (deploy/llama_build.py), and the server loads the one variant that both the CPU
and the kernel enable (deploy/slm_server.py).

A machine without AMX cannot show the crash this prevents (a VM whose CPUID reports AMX
the kernel does not grant); it shows the parts of the fix: what is chosen for a given
kernel's flags, what the built libraries contain, and which library the server loaded.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import pytest

from deploy import llama_build, slm_server
from deploy.stack import EmbeddedStack

ROOT = Path(__file__).parent.parent
X86_64 = platform.machine() == "x86_64"
#: A Sapphire Rapids VM, as /proc/cpuinfo lists it (its AVX-512 and AMX flags shortened).
SAPPHIRE_RAPIDS_FLAGS = (
    "fpu sse4_2 avx f16c fma avx2 bmi2 avx512f avx512dq avx512cd avx512bw avx512vl "
    "avx512vbmi avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8"
)
ALL_BUILT = {name: Path(f"/lib/libggml-cpu-{name}.so") for name in slm_server.VARIANTS}


def cpuinfo(flags: str) -> str:
    return f"processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: {flags}\n\n"


def test_amx_is_used_only_where_the_kernel_grants_it() -> None:
    granted = slm_server.granted_features(cpuinfo(SAPPHIRE_RAPIDS_FLAGS), amx_permitted=True)
    assert slm_server.choose("auto", ALL_BUILT, granted).name == "sapphirerapids"

    refused = slm_server.granted_features(cpuinfo(SAPPHIRE_RAPIDS_FLAGS), amx_permitted=False)
    choice = slm_server.choose("auto", ALL_BUILT, refused)
    assert choice.name == "zen4"  # the widest AVX-512 variant, with no AMX instruction
    assert not {"AMX_TILE", "AMX_INT8"} & set(slm_server.VARIANTS[choice.name])


def test_avx512_that_the_kernel_does_not_enable_is_not_used() -> None:
    # A kernel that does not enable the AVX-512 state clears those flags from /proc/cpuinfo.
    without = " ".join(
        f for f in SAPPHIRE_RAPIDS_FLAGS.split() if not f.startswith(("avx512", "amx"))
    )
    granted = slm_server.granted_features(cpuinfo(without), amx_permitted=True)
    assert slm_server.choose("auto", ALL_BUILT, granted).name == "alderlake"
    assert slm_server.choose("auto", ALL_BUILT, granted - {"AVX_VNNI"}).name == "haswell"
    assert slm_server.choose("auto", ALL_BUILT, frozenset()).name == "x64"


def test_a_forced_variant_the_machine_cannot_run_is_refused_with_what_to_do() -> None:
    granted = slm_server.granted_features(cpuinfo("sse4_2 avx f16c fma avx2 bmi2"), True)
    assert slm_server.choose("haswell", ALL_BUILT, granted).name == "haswell"
    with pytest.raises(slm_server.VariantError, match="needs AVX512.*ORCH_SLM_CPU_VARIANT=auto"):
        slm_server.choose("skylakex", ALL_BUILT, granted)
    with pytest.raises(slm_server.VariantError, match="not built here"):
        slm_server.choose("haswell", {"x64": ALL_BUILT["x64"]}, granted)


def test_a_native_build_is_reported_as_not_portable() -> None:
    choice = slm_server.choose("auto", {}, frozenset())
    assert choice.path is None and "make slm-rebuild" in choice.describe()


def test_the_cache_key_changes_with_everything_that_shapes_the_wheel() -> None:
    args = llama_build.cmake_args()
    key = llama_build.cache_key("0.3.36", args, "gcc 12.2.0")
    assert key.startswith("0.3.36-")
    assert key == llama_build.cache_key("0.3.36", list(args), "gcc 12.2.0")
    assert key != llama_build.cache_key("0.3.37", args, "gcc 12.2.0")
    assert key != llama_build.cache_key("0.3.36", [*args, "-DGGML_CUDA=ON"], "gcc 12.2.0")
    assert key != llama_build.cache_key("0.3.36", args, "gcc 13.1.0")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_CPU_ALL_VARIANTS=ON" in args
    assert llama_build.locked_version(ROOT / "requirements-dev.lock") == _installed_version()


def _installed_version() -> str:
    from importlib.metadata import version

    return version("llama-cpp-python")


@pytest.mark.skipif(not X86_64, reason="the x86-64 variants")
def test_the_installed_build_is_portable() -> None:
    built = slm_server.built_variants(slm_server.library_dir())
    assert {"x64", "haswell", "skylakex", "zen4", "sapphirerapids"} <= set(built)
    # This machine gets one of them, and only what its kernel lists.
    choice = slm_server.choose_for_machine()
    flags = re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    assert flags is not None
    kernel_flags = set(flags[1].split())
    for feature in slm_server.VARIANTS[choice.name or ""]:
        assert set(slm_server.KERNEL_FLAGS[feature]) <= kernel_flags


#: AVX-512 registers and AMX tile instructions, as objdump prints them.
ZMM = re.compile(r"%zmm\d+")
AMX = re.compile(
    r"\b(ldtilecfg|sttilecfg|tileloadd|tileloaddt1|tilestored|tdpb[su][su]d|tdpbf16ps|tilezero|tilerelease)\b"
)


@pytest.mark.skipif(not X86_64, reason="the x86-64 variants")
@pytest.mark.parametrize("variant", ["haswell", "alderlake", "zen4"])
def test_a_variant_holds_no_instruction_beyond_its_features(variant: str) -> None:
    path = slm_server.built_variants(slm_server.library_dir())[variant]
    disassembly = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert len(disassembly) > 100_000  # a real library, disassembled
    features = slm_server.VARIANTS[variant]
    assert bool(ZMM.search(disassembly)) == ("AVX512" in features)
    assert AMX.search(disassembly) is None


async def test_the_server_loaded_the_chosen_variant_and_no_other(stack: EmbeddedStack) -> None:
    log = (stack.data_dir / "logs" / "slm.log").read_text()
    choice = slm_server.choose_for_machine(stack.settings.slm_cpu_variant)
    assert f"slm: {choice.describe()}" in log
    loaded = re.findall(r"loaded CPU backend from (\S+)", log)
    assert loaded and set(loaded) == {str(choice.path)}, loaded
