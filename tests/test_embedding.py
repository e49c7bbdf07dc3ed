"""The C++ library as another verifier uses it: `cmake --install`, then examples/cpp (its own CMake
project) finds the package with find_package(lipcert), links lipcert::core (and lipcert::cuda where a
CUDA compiler built the kernels) and runs a BaB query."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lipcert as lc

ROOT = Path(__file__).resolve().parents[1]

needs_tools = pytest.mark.skipif(
    shutil.which("cmake") is None or not (ROOT / "examples" / "cpp").is_dir() or not (ROOT / "cpp").is_dir(),
    reason="needs cmake and the source tree")


def run(*cmd, cwd=None):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@needs_tools
def test_installed_package_builds_and_runs_the_example_consumer(tmp_path):
    pytest.importorskip("cmeel", reason="the C++ build finds Eigen through cmeel-eigen (in the test extra)")
    build, prefix, consumer = tmp_path / "build", tmp_path / "install", tmp_path / "consumer"
    jobs = str(os.cpu_count() or 2)
    with_cuda = shutil.which("nvcc") is not None
    # One CUDA architecture keeps the build short; its embedded PTX also runs on newer GPUs.
    run("cmake", "-S", ROOT, "-B", build, "-DLIPCERT_PYTHON=OFF", "-DLIPCERT_BENCH=OFF", "-DLIPCERT_NATIVE=OFF",
        f"-DLIPCERT_CUDA={'ON' if with_cuda else 'OFF'}", "-DCMAKE_CUDA_ARCHITECTURES=80",
        f"-DPython_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release")
    run("cmake", "--build", build, "-j", jobs)
    run("cmake", "--install", build, "--prefix", prefix)
    assert (prefix / "include" / "lipcert" / "bab.hpp").exists()
    run("cmake", "-S", ROOT / "examples" / "cpp", "-B", consumer, f"-DCMAKE_PREFIX_PATH={prefix}")
    run("cmake", "--build", consumer, "-j", jobs)
    out = json.loads(run(consumer / "bab_query"))
    assert out["status"] == "converged" and out["lower"] <= 2.0 <= out["upper"]
    assert (prefix / "include" / "lipcert" / "cuda" / "subdomain_bounds.hpp").exists() == with_cuda
    on_gpu = subprocess.run([consumer / "bab_query", "--gpu"], capture_output=True, text=True)
    if with_cuda and lc.cuda_available():
        assert on_gpu.returncode == 0, on_gpu.stderr
        assert json.loads(on_gpu.stdout)["status"] == "converged"
    else:
        assert on_gpu.returncode == 2, on_gpu.stderr  # says why: no CUDA kernels, or no device
