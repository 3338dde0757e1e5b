"""Build llama-cpp-python for the CPU it runs on, and prove it decodes before anything serves.

llama-cpp-python compiles llama.cpp with ``GGML_NATIVE=ON`` by default: the compiler reads CPUID and
emits every instruction set it advertises. A virtual machine may advertise more than it lets a process
execute (Intel AMX whose tile registers the hypervisor withholds), and the first decode then dies with
SIGSEGV/SIGILL. So this module never trusts CPUID alone:

1. each x86 feature that ggml can use is *run*: a tiny C program built with that feature's compiler flags
   executes one of its instructions in a child process, and only a feature that CPUID lists **and** that
   ran is switched on (``GGML_NATIVE=OFF``, every ``GGML_*`` option set explicitly);
2. the wheel is built with ``--no-cache-dir`` into a folder keyed by its CMake flags, so a wheel built for
   another CPU (or by pip's own cache, which keys by name and version only) is never reused;
3. ``--verify GGUF`` loads the model and decodes a few tokens in a child process; when that crashes the
   next, smaller feature set is built and tried (probed set → AVX2 → plain x86-64).

AMX is never built: ggml's AMX path is what crashed on the machine that advertises it, and no machine here
can execute it, so its benefit cannot be measured (its probe still runs, to report what CPUID claimed).

Standard library only: it runs before the project is installed. ``python rag/models/llama_build.py --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
RECORD = "llama-build.json"  # beside the venv's interpreter tree: <venv>/llama-build.json


@dataclass(frozen=True)
class Feature:
    """An instruction set ggml can be built for: the CPUID flags that announce it, the CMake options it turns
    on, the compiler flags and a C statement that executes one of its instructions."""

    name: str
    cpuid: tuple[str, ...]
    cmake: tuple[str, ...]
    cflags: str
    body: str
    needs: tuple[str, ...] = ()
    build: bool = True  # False: probed and reported, never compiled into ggml


_AMX_BODY = """
  long perm = syscall(158 /* SYS_arch_prctl */, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */);
  if (perm != 0) return 3;
  unsigned char cfg[64] = {1};
  cfg[16] = 64; cfg[48] = 16;
  _tile_loadconfig(cfg); _tile_zero(0); _tile_release();
"""

# In ggml's own order; each statement's result flows into `sink` so the compiler keeps it.
FEATURES: tuple[Feature, ...] = (
    Feature("sse42", ("sse4_2",), ("GGML_SSE42",), "-msse4.2", "sink = _mm_crc32_u32((unsigned)sink, 7u);"),
    Feature("avx", ("avx",), ("GGML_AVX",), "-mavx",
            "__m256 a = _mm256_set1_ps((float)sink); sink = (long)_mm256_cvtss_f32(_mm256_add_ps(a, a));",
            needs=("sse42",)),
    Feature("f16c", ("f16c",), ("GGML_F16C",), "-mf16c",
            "sink = _mm_extract_epi16(_mm_cvtps_ph(_mm_set1_ps((float)sink), 0), 0);", needs=("avx",)),
    Feature("fma", ("fma",), ("GGML_FMA",), "-mfma",
            "__m256 a = _mm256_set1_ps(2.0f); sink = (long)_mm256_cvtss_f32(_mm256_fmadd_ps(a, a, a));",
            needs=("avx",)),
    Feature("avx2", ("avx2",), ("GGML_AVX2",), "-mavx2",
            "__m256i a = _mm256_set1_epi32((int)sink); sink = _mm256_extract_epi32(_mm256_add_epi32(a, a), 1);",
            needs=("avx", "fma", "f16c")),
    Feature("bmi2", ("bmi2",), ("GGML_BMI2",), "-mbmi2", "sink = (long)_pdep_u32((unsigned)sink, 0xF0F0u);"),
    Feature("avx_vnni", ("avx_vnni",), ("GGML_AVX_VNNI",), "-mavx2 -mavxvnni",
            "__m256i a = _mm256_set1_epi32(3);"
            " sink = _mm256_extract_epi32(_mm256_dpbusd_avx_epi32(a, a, a), 0);", needs=("avx2",)),
    Feature("avx512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"), ("GGML_AVX512",),
            "-mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw",
            "__m512i a = _mm512_set1_epi16((short)sink); sink = _mm512_reduce_add_epi32(_mm512_add_epi16(a, a));",
            needs=("avx2",)),
    Feature("avx512_vbmi", ("avx512vbmi",), ("GGML_AVX512_VBMI",), "-mavx512f -mavx512vbmi",
            "__m512i a = _mm512_set1_epi8(1);"
            " sink = _mm512_reduce_add_epi32(_mm512_permutexvar_epi8(a, a));", needs=("avx512",)),
    Feature("avx512_vnni", ("avx512_vnni",), ("GGML_AVX512_VNNI",), "-mavx512f -mavx512vnni",
            "__m512i a = _mm512_set1_epi32(3); sink = _mm512_reduce_add_epi32(_mm512_dpbusd_epi32(a, a, a));",
            needs=("avx512",)),
    Feature("avx512_bf16", ("avx512_bf16",), ("GGML_AVX512_BF16",), "-mavx512f -mavx512bf16",
            "__m512 a = _mm512_set1_ps(1.0f);"
            " sink = (long)_mm512_reduce_add_ps(_mm512_dpbf16_ps(a, (__m512bh)_mm512_cvtne2ps_pbh(a, a),"
            " (__m512bh)_mm512_cvtne2ps_pbh(a, a)));", needs=("avx512",)),
    Feature("amx", ("amx_tile", "amx_int8"), ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"),
            "-mamx-tile -mamx-int8", _AMX_BODY, needs=("avx512",), build=False),
)
X86_OPTIONS = tuple(opt for f in FEATURES for opt in f.cmake)
AVX2_SET = ("sse42", "avx", "f16c", "fma", "avx2", "bmi2")


# --- what the CPU can run --------------------------------------------------------------------------------

def cpuid_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The flags the kernel's CPUID reading lists (first processor)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


Runner = Callable[[Feature], "ProbeRun"]


@dataclass(frozen=True)
class ProbeRun:
    ran: bool
    detail: str = ""


def run_probe(feature: Feature, cc: str = "cc") -> ProbeRun:
    """Compile ``feature``'s statement with its flags and execute it in a child process."""
    source = ("#include <immintrin.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n"
              "volatile long sink = 5;\nint main(void) {\n" + feature.body + "\n  return sink == 12345678;\n}\n")
    with tempfile.TemporaryDirectory(prefix="ggml-probe-") as tmp:
        src, exe = Path(tmp) / "probe.c", Path(tmp) / "probe"
        src.write_text(source)
        built = subprocess.run([cc, "-O0", *feature.cflags.split(), str(src), "-o", str(exe)],
                               capture_output=True, text=True)
        if built.returncode != 0:
            return ProbeRun(False, "the compiler cannot emit it: " + built.stderr.strip()[-200:])
        try:
            done = subprocess.run([str(exe)], capture_output=True, timeout=20)
        except subprocess.TimeoutExpired:
            return ProbeRun(False, "hung")
    if done.returncode == 0:
        return ProbeRun(True)
    return ProbeRun(False, describe_exit(done.returncode))


@dataclass(frozen=True)
class Probe:
    """Per feature: does CPUID list it, and did its instruction run."""

    machine: str
    cpuid: dict[str, bool]
    runs: dict[str, bool]
    details: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> tuple[str, ...]:
        """Features that CPUID lists, that ran, and whose prerequisites are usable — in ggml's order."""
        ok: list[str] = []
        for f in FEATURES:
            if self.cpuid.get(f.name) and self.runs.get(f.name) and all(n in ok for n in f.needs):
                ok.append(f.name)
        return tuple(ok)


def probe_cpu(flags: frozenset[str] | None = None, runner: Runner = run_probe,
              machine: str | None = None) -> Probe:
    """Read CPUID and run every feature it lists (a feature CPUID does not list is not run)."""
    machine = machine or platform.machine()
    if machine not in ("x86_64", "AMD64"):
        return Probe(machine, {}, {})
    flags = cpuid_flags() if flags is None else flags
    cpuid: dict[str, bool] = {}
    runs: dict[str, bool] = {}
    details: dict[str, str] = {}
    for f in FEATURES:
        cpuid[f.name] = all(flag in flags for flag in f.cpuid)
        if cpuid[f.name]:
            result = runner(f)
            runs[f.name] = result.ran
            if result.detail:
                details[f.name] = result.detail
        else:
            runs[f.name] = False
    return Probe(machine, cpuid, runs, details)


# --- what to build ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Build:
    """One candidate build: the features compiled in, and the CMake arguments that say so."""

    features: tuple[str, ...]
    machine: str = "x86_64"

    @property
    def cmake_args(self) -> str:
        args = ["-DGGML_NATIVE=OFF"]
        if self.machine in ("x86_64", "AMD64"):
            on = {opt for f in FEATURES if f.name in self.features and f.build for opt in f.cmake}
            args += [f"-D{opt}={'ON' if opt in on else 'OFF'}" for opt in X86_OPTIONS]
        return " ".join(args)

    @property
    def key(self) -> str:
        """Names the wheel: package version, Python, platform and flags — never reused across flag sets."""
        tag = f"{PACKAGE}=={VERSION}|{sys.implementation.cache_tag}|{sys.platform}|{self.machine}|{self.cmake_args}"
        return hashlib.sha256(tag.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return "+".join(f for f in self.features if _feature(f).build) or "baseline"


def _feature(name: str) -> Feature:
    return next(f for f in FEATURES if f.name == name)


def candidates(probe: Probe) -> list[Build]:
    """Most capable first: every usable feature, then AVX2-class, then plain x86-64 (no duplicates)."""
    usable = tuple(f for f in probe.usable if _feature(f).build)
    if probe.machine not in ("x86_64", "AMD64"):
        return [Build((), probe.machine)]
    sets = [usable, tuple(f for f in usable if f in AVX2_SET), ()]
    out: list[Build] = []
    for features in sets:
        build = Build(features, probe.machine)
        if build.cmake_args not in {b.cmake_args for b in out}:
            out.append(build)
    return out


# --- building and installing -----------------------------------------------------------------------------

def wheel_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rag" / "llama-cpp-python"


def build_wheel(python: str, build: Build, cache: Path) -> Path:
    """The wheel for ``build``: the one in its keyed folder, else compiled now (about 6 minutes on 2 cores)."""
    folder = cache / build.key
    found = sorted(folder.glob("llama_cpp_python-*.whl"))
    if found:
        return found[-1]
    tmp = Path(tempfile.mkdtemp(prefix=build.key + ".", dir=_mkdir(cache)))
    env = {**os.environ, "CMAKE_ARGS": build.cmake_args,
           "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))}
    _say(f"compiling {PACKAGE} {VERSION} for {build.label} ({build.cmake_args}); about 6 minutes on 2 cores")
    started = time.perf_counter()
    try:
        subprocess.run([python, "-m", "pip", "wheel", "--quiet", "--no-cache-dir", "--no-deps",
                        "--no-binary", PACKAGE, f"{PACKAGE}=={VERSION}", "-w", str(tmp)], env=env, check=True)
        wheel = next(tmp.glob("llama_cpp_python-*.whl"))
        (tmp / "build.json").write_text(json.dumps({"cmake_args": build.cmake_args, "features": build.features,
                                                    "seconds": round(time.perf_counter() - started, 1)}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)  # a whole folder or none: an interrupted build leaves no wheel behind
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / wheel.name


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def install(python: str, wheel: Path) -> None:
    subprocess.run([python, "-m", "pip", "uninstall", "--quiet", "--yes", PACKAGE], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-cache-dir", f"{wheel}[server]"], check=True)


def record_path(python: str) -> Path:
    """``<venv>/llama-build.json`` for the venv whose interpreter is ``python``."""
    prefix = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                            check=True).stdout.strip()
    return Path(prefix) / RECORD


def installed_key(python: str) -> str | None:
    """The key of the build recorded in the venv, when llama_cpp also imports there."""
    try:
        record = json.loads(record_path(python).read_text())
    except (OSError, ValueError):
        return None
    ok = subprocess.run([python, "-c", "import llama_cpp"], capture_output=True).returncode == 0
    return record.get("key") if ok else None


def write_record(python: str, build: Build, probe: Probe, wheel: Path, proof: Proof | None) -> Path:
    path = record_path(python)
    path.write_text(json.dumps({
        "package": f"{PACKAGE}=={VERSION}", "key": build.key, "features": list(build.features),
        "cmake_args": build.cmake_args, "wheel": str(wheel), "probe": asdict(probe),
        "proof": asdict(proof) if proof else None}, indent=2) + "\n")
    return path


# --- proving a decode ------------------------------------------------------------------------------------

_PROOF = """
import json, sys, time
started = time.perf_counter()
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, n_threads_batch=2, verbose=False)
out = llm.create_completion("1, 2, 3, 4,", max_tokens=4, temperature=0.0)
print(json.dumps({"text": out["choices"][0]["text"], "seconds": round(time.perf_counter() - started, 2)}))
"""


@dataclass(frozen=True)
class Proof:
    """The outcome of loading a GGUF and decoding a few tokens in a child process."""

    ok: bool
    seconds: float
    detail: str  # what the child decoded, or how it died


def prove_decode(python: str, gguf: Path, timeout: float = 600.0) -> Proof:
    """Load ``gguf`` with the installed llama.cpp and decode four tokens, in a child process: a crash in
    native code ends the child, not the caller."""
    started = time.perf_counter()
    try:
        done = subprocess.run([python, "-c", _PROOF, str(gguf)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Proof(False, round(time.perf_counter() - started, 2), f"no decode within {timeout:.0f} s")
    seconds = round(time.perf_counter() - started, 2)
    if done.returncode == 0:
        try:
            return Proof(True, seconds, "decoded " + repr(json.loads(done.stdout.strip().splitlines()[-1])["text"]))
        except (ValueError, IndexError, KeyError):
            return Proof(False, seconds, "the child printed no decode: " + done.stdout.strip()[-300:])
    tail = done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []
    return Proof(False, seconds, describe_exit(done.returncode) + (f": {tail[0][-300:]}" if tail else ""))


def describe_exit(returncode: int) -> str:
    """``signal 11 (SIGSEGV)`` for a child killed by a signal, else ``exit status N``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"crashed with signal {-returncode} ({name})"
    return f"exit status {returncode}"


# --- the command -----------------------------------------------------------------------------------------

def ensure(python: str, verify: Path | None, force: bool, cache: Path, probe: Probe | None = None) -> int:
    """Install the most capable build that runs here; with ``verify``, the first whose decode succeeds."""
    probe = probe or probe_cpu()
    _report_probe(probe)
    builds = candidates(probe)
    current = installed_key(python)
    if not force and verify is None and current == builds[0].key:
        _say(f"{PACKAGE} {VERSION} already built for this CPU ({builds[0].label})")
        return 0
    for build in builds:
        wheel = build_wheel(python, build, cache)
        if current != build.key:
            install(python, wheel)
            current = build.key
        proof = prove_decode(python, verify) if verify is not None else None
        write_record(python, build, probe, wheel, proof)
        if proof is None or verify is None or proof.ok:
            _say(f"installed {PACKAGE} {VERSION} for {build.label}" + (f"; {proof.detail}" if proof else ""))
            return 0
        _say(f"the {build.label} build {proof.detail} while decoding {verify.name}; trying a smaller feature set")
    _say(f"no build of {PACKAGE} decodes {verify} on this machine")
    return 1


def _report_probe(probe: Probe) -> None:
    for f in FEATURES:
        if probe.cpuid.get(f.name):
            state = "runs" if probe.runs.get(f.name) else "does NOT run (" + probe.details.get(f.name, "?") + ")"
            built = "" if f.build else "; never built"
            _say(f"  {f.name}: CPUID lists it, {state}{built}")


def _say(message: str) -> None:
    print(f"llama-build: {message}", flush=True)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the venv's interpreter to install into")
    parser.add_argument("--verify", type=Path, help="a GGUF to decode in a child process; on a crash, fall back")
    parser.add_argument("--force", action="store_true", help="reinstall even when the recorded build matches")
    parser.add_argument("--cache", type=Path, default=wheel_cache(), help="folder of flag-keyed wheels")
    parser.add_argument("--probe-only", action="store_true", help="print what runs here and the builds to try")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.probe_only:
        probe = probe_cpu()
        _report_probe(probe)
        for b in candidates(probe):
            _say(f"candidate {b.label}: {b.cmake_args} (key {b.key})")
        return 0
    return ensure(args.python, args.verify, args.force, args.cache)


if __name__ == "__main__":
    sys.exit(main())
