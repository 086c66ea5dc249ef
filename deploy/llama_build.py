"""Build llama-cpp-python portably, once per build configuration, and install it.

PyPI ships llama-cpp-python only as source, and its default build compiles llama.cpp with
`-march=native`: for the build machine's CPU, so a wheel built on one machine (or taken
from pip's cache) can crash on another. Every install path (the Makefile, the SLM image)
builds it here instead, with the flags below: no native code, and every x86-64 CPU variant
as a library of its own, of which deploy/slm_server.py loads the one the CPU and its
kernel enable.

The wheel is kept under a key made of everything that shapes it (the locked version, the
flags, the compiler), so a wheel built another way is never taken by mistake; pip's own
cache is not used for it. Standard library only: it runs before the virtual environment.

    python3 deploy/llama_build.py --python .venv/bin/python [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
#: Raise when the build itself changes in a way the flags do not show.
RECIPE = 1
CMAKE_ARGS = (
    # No -march=native anywhere: the base libraries run on any x86-64 CPU.
    "-DGGML_NATIVE=OFF",
    # The CPU backend as loadable libraries, one per instruction-set variant
    # (x64 up to AVX-512 and AMX), chosen at run time.
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    # ... installed beside libllama.so inside the package, where slm_server finds them.
    "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib",
)
#: llama-cpp-python's own default, for the benchmark that measures what portability costs
#: (bench/slm_builds.py); never installed by the Makefile or the image.
NATIVE_CMAKE_ARGS = ("-DGGML_NATIVE=ON",)
#: Extra flags of an operator's own (for example a GPU backend), part of the cache key.
EXTRA_ARGS_VARIABLE = "ORCH_LLAMA_CMAKE_ARGS"


def locked_version(lockfile: Path) -> str:
    """The version of llama-cpp-python pinned in a requirements lockfile."""
    match = re.search(rf"^{PACKAGE}(?:\[[^\]]*\])?==([^\s;]+)", lockfile.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{lockfile} pins no {PACKAGE}==VERSION")
    return match.group(1)


def cmake_args(extra: str = "", flavour: str = "portable") -> list[str]:
    return [*(NATIVE_CMAKE_ARGS if flavour == "native" else CMAKE_ARGS), *shlex.split(extra)]


def compiler_identity() -> str:
    """The first line of `cc --version`: another compiler may build other code."""
    compiler = os.environ.get("CC") or shutil.which("cc") or "cc"
    try:
        result = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, check=False
        )
    except OSError:
        return "no compiler"
    return (result.stdout.splitlines() or ["unknown"])[0]


def cache_key(version: str, args: list[str], compiler: str) -> str:
    """A name for one build configuration: its parts in the clear, then their digest."""
    recipe = "\n".join([PACKAGE, version, f"recipe {RECIPE}", compiler, *args])
    return f"{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "slm-orchestrator", PACKAGE)


def build(python: str, version: str, args: list[str], target: Path) -> Path:
    """Build the wheel into `target` (created whole or not at all) and return its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=target.parent, prefix=".building-", ignore_cleanup_errors=True
    ) as scratch:
        environment = {
            **os.environ,
            "CMAKE_ARGS": " ".join(args),
            "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1),
            "FORCE_CMAKE": "1",
        }
        command = [
            *(python, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir"),
            *("--no-binary", PACKAGE, "--wheel-dir", scratch, f"{PACKAGE}=={version}"),
        ]
        print(f"building {PACKAGE} {version} (minutes: it compiles llama.cpp): {' '.join(args)}")
        subprocess.run(command, env=environment, check=True)
        Path(scratch, "configuration.txt").write_text("\n".join(args) + "\n")
        os.replace(scratch, target)  # the cache holds a finished build or none
    return wheel_in(target)


def wheel_in(directory: Path) -> Path:
    wheels = sorted(directory.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"{directory} should hold one wheel; remove it and build again")
    return wheels[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="the environment to install into")
    parser.add_argument(
        "--lock",
        type=Path,
        default=Path("requirements-dev.lock"),
        help="the lockfile that pins its version (default: requirements-dev.lock)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build again even if cached")
    parser.add_argument("--no-install", action="store_true", help="only build (and cache)")
    parser.add_argument(
        "--flavour",
        choices=["portable", "native"],
        default="portable",
        help="native: -march=native, only to measure what portability costs (bench slm)",
    )
    options = parser.parse_args(argv)

    version = locked_version(options.lock)
    args = cmake_args(os.environ.get(EXTRA_ARGS_VARIABLE, ""), options.flavour)
    target = cache_root() / cache_key(version, args, compiler_identity())
    if options.rebuild and target.exists():
        shutil.rmtree(target)
    wheel = wheel_in(target) if target.exists() else build(options.python, version, args, target)
    print(f"{PACKAGE} {version}: {wheel}")
    if not options.no_install:
        install = [options.python, "-m", "pip", "install", "--no-deps", "--force-reinstall"]
        subprocess.run([*install, "--no-cache-dir", str(wheel)], check=True)


if __name__ == "__main__":
    main()
