"""llama.cpp built for the CPU it runs on: the feature probe decides by running, not by CPUID; wheels are keyed
by their flags; a decode is proved in a child process, and a crash there is a message, not a dead server."""

from __future__ import annotations

import platform
import stat
import sys
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ModelCrashError, ModelProvisionError
from rag.models import llama_build
from rag.models.llama_build import FEATURES, Build, Feature, ProbeRun, candidates, probe_cpu, prove_decode
from rag.models.proof import check_decodes

# What the kernel listed on the machine whose llama.cpp crashed: AVX-512 and AMX (abridged).
SAPPHIRE_FLAGS = frozenset(["sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx512f", "avx512cd", "avx512vl",
                            "avx512dq", "avx512bw", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile",
                            "amx_int8", "amx_bf16"])


def runner_where(fails: set[str], calls: list[str] | None = None) -> llama_build.Runner:
    """Stands in for executing each feature's instruction: the named features die as the VM makes them."""
    def run(feature: Feature) -> ProbeRun:
        if calls is not None:
            calls.append(feature.name)
        return ProbeRun(False, "exit status 3") if feature.name in fails else ProbeRun(True)
    return run


def test_cpuid_says_amx_the_os_says_no_and_no_build_has_amx() -> None:
    probe = probe_cpu(SAPPHIRE_FLAGS, runner_where({"amx"}), machine="x86_64")
    assert probe.cpuid["amx"] is True and probe.runs["amx"] is False
    assert "amx" not in probe.usable
    assert probe.usable == ("sse42", "avx", "f16c", "fma", "avx2", "bmi2", "avx512", "avx512_vbmi", "avx512_vnni",
                            "avx512_bf16")
    for build in candidates(probe):
        args = build.cmake_args.split()
        assert args[0] == "-DGGML_NATIVE=OFF"
        assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(args)


def test_amx_that_runs_is_still_never_built() -> None:
    probe = probe_cpu(SAPPHIRE_FLAGS, runner_where(set()), machine="x86_64")
    assert "amx" in probe.usable
    assert "-DGGML_AMX_TILE=OFF" in candidates(probe)[0].cmake_args.split()


def test_a_feature_that_cpuid_lists_but_does_not_run_is_off_with_all_that_needs_it() -> None:
    probe = probe_cpu(SAPPHIRE_FLAGS, runner_where({"avx512"}), machine="x86_64")
    assert probe.usable == ("sse42", "avx", "f16c", "fma", "avx2", "bmi2")
    top = candidates(probe)[0].cmake_args.split()
    assert "-DGGML_AVX2=ON" in top and "-DGGML_AVX512=OFF" in top and "-DGGML_AVX512_VNNI=OFF" in top


def test_a_feature_cpuid_does_not_list_is_not_even_run() -> None:
    calls: list[str] = []
    probe = probe_cpu(frozenset({"sse4_2", "avx"}), runner_where(set(), calls), machine="x86_64")
    assert calls == ["sse42", "avx"]
    assert probe.usable == ("sse42", "avx")


def test_candidates_go_from_the_probed_set_to_avx2_to_plain_x86_64() -> None:
    probe = probe_cpu(SAPPHIRE_FLAGS, runner_where({"amx"}), machine="x86_64")
    builds = candidates(probe)
    assert [b.label for b in builds] == [
        "sse42+avx+f16c+fma+avx2+bmi2+avx512+avx512_vbmi+avx512_vnni+avx512_bf16",
        "sse42+avx+f16c+fma+avx2+bmi2", "baseline"]
    baseline = builds[-1].cmake_args.split()
    assert all(arg.endswith("=OFF") for arg in baseline)  # every option explicit: ggml's defaults turn AVX2 on
    # An AVX2 machine's first candidate is the AVX2 build itself, not tried twice.
    avx2_flags = frozenset(["sse4_2", "avx", "f16c", "fma", "avx2", "bmi2"])
    avx2_only = probe_cpu(avx2_flags, runner_where(set()), machine="x86_64")
    assert [b.label for b in candidates(avx2_only)] == ["sse42+avx+f16c+fma+avx2+bmi2", "baseline"]


def test_wheels_are_keyed_by_their_flags() -> None:
    assert Build(("sse42", "avx")).key == Build(("sse42", "avx")).key
    assert Build(("sse42", "avx")).key != Build(("sse42",)).key
    assert Build((), "aarch64").cmake_args == "-DGGML_NATIVE=OFF"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 instruction probes")
def test_the_real_probe_runs_instructions_in_a_child() -> None:
    sse42 = next(f for f in FEATURES if f.name == "sse42")
    assert llama_build.run_probe(sse42).ran  # every x86-64 machine here has SSE 4.2
    illegal = Feature("bogus", (), (), "-mavx512f", "__asm__ volatile(\"ud2\");")
    result = llama_build.run_probe(illegal)
    assert not result.ran and result.detail == "crashed with signal 4 (SIGILL)"


def crashing_python(tmp_path: Path) -> str:
    """An 'interpreter' that dies of SIGSEGV, as the AMX build did in its first decode."""
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\nkill -SEGV $$\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_a_crash_in_the_child_is_reported_not_inherited(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    proof = prove_decode(crashing_python(tmp_path), gguf, timeout=30)
    assert not proof.ok
    assert proof.detail == "crashed with signal 11 (SIGSEGV)"


def test_check_decodes_names_the_cause_and_the_fix(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(ModelCrashError) as caught:
        check_decodes(gguf, python=crashing_python(tmp_path))
    message = str(caught.value)
    assert "crashed with signal 11 (SIGSEGV) while decoding m.gguf" in message
    assert "make rebuild-llama" in message
    assert not (tmp_path / "m.gguf.proof.json").exists()  # a failed proof is never remembered


@pytest.mark.slow
def test_the_installed_build_decodes_the_model_in_a_child() -> None:
    gguf = Settings(models_dir=Path(__file__).resolve().parents[2] / "models").resolved_llm_path
    proof = prove_decode(sys.executable, gguf)
    assert proof.ok, proof.detail
    assert proof.detail.startswith("decoded ")


def test_a_model_llama_cannot_load_is_named_not_blamed_on_the_cpu(tmp_path: Path) -> None:
    gguf = tmp_path / "broken.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelProvisionError) as caught:
        check_decodes(gguf)
    assert not isinstance(caught.value, ModelCrashError)
    assert f"could not load and decode {gguf}: exit status 1" in str(caught.value)
