"""Profile mapping on recorded machines, peak FLOP/s lookup, overrides, and detection on this machine."""

from __future__ import annotations

import json

import pytest

from autoresearch.hardware import (
    PROFILE_TABLE,
    CudaDevice,
    Hardware,
    ProfileError,
    apply_overrides,
    detect,
    peak_bf16_flops,
    profile_for,
)


def _linux_cuda(name: str, mem: float, cap: tuple[int, int], cpu: str = "AMD EPYC 9654 96-Core Processor") -> Hardware:
    return Hardware(
        system="Linux", machine="x86_64", cpu_model=cpu, cpu_cores=16, cpu_threads=32, ram_gb=128.0,
        cuda=CudaDevice(name=name, memory_gb=mem, capability=cap), torch_version="2.13.0+cu130",
    )


def _mac(chip: str, ram: float, mlx: bool = True) -> Hardware:
    return Hardware(
        system="Darwin", machine="arm64", cpu_model=chip, cpu_cores=10, cpu_threads=10, ram_gb=ram,
        apple_chip=chip, mps_available=True, mlx_available=mlx, torch_version="2.13.0", mlx_version="0.32.4" if mlx else None,
    )


# Values as detect() records them on each machine.
MACHINES = {
    "H200": _linux_cuda("NVIDIA H200", 139.8, (9, 0)),
    "RTX 4090": _linux_cuda("NVIDIA GeForce RTX 4090", 23.6, (8, 9), cpu="AMD Ryzen 9 7950X 16-Core Processor"),
    "RTX 3060 12GB": _linux_cuda("NVIDIA GeForce RTX 3060", 11.8, (8, 6), cpu="Intel(R) Core(TM) i5-12400F"),
    "M1 8GB": _mac("Apple M1", 8.0),
    "M4 Pro 24GB": _mac("Apple M4 Pro", 24.0),
    "M2 Ultra": _mac("Apple M2 Ultra", 192.0),
    "2-core CPU": Hardware(
        system="Linux", machine="x86_64", cpu_model="Intel(R) Xeon(R) CPU @ 2.20GHz", cpu_cores=2, cpu_threads=2,
        ram_gb=23.4, torch_version="2.13.0+cpu",
    ),
}

# (profile name, backend, device, dtype, compile, seq_len, depth, vocab, dataset, has peak flops)
EXPECTED = {
    "H200": ("datacenter-cuda", "torch", "cuda", "bf16", True, 2048, 8, 8192, "climbmix", True),
    "RTX 4090": ("consumer-cuda", "torch", "cuda", "bf16", True, 1024, 6, 8192, "tinystories", True),
    "RTX 3060 12GB": ("small-cuda", "torch", "cuda", "bf16", True, 1024, 6, 8192, "tinystories", True),
    "M1 8GB": ("apple-small", "mlx", "gpu", "bf16", True, 512, 4, 4096, "tinystories", False),
    "M4 Pro 24GB": ("apple", "mlx", "gpu", "bf16", True, 512, 4, 4096, "tinystories", False),
    "M2 Ultra": ("apple-large", "mlx", "gpu", "bf16", True, 1024, 6, 4096, "tinystories", False),
    "2-core CPU": ("cpu", "torch", "cpu", "fp32", False, 256, 4, 2048, "tinystories", False),
}


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_profile_for_recorded_machines(machine: str) -> None:
    p = profile_for(MACHINES[machine])
    name, backend, device, dtype, compile_, seq, depth, vocab, dataset, has_peak = EXPECTED[machine]
    assert (p.name, p.backend, p.device, p.dtype, p.compile) == (name, backend, device, dtype, compile_)
    assert (p.seq_len, p.depth, p.vocab_size, p.dataset) == (seq, depth, vocab, dataset)
    assert (p.peak_flops is not None) == has_peak
    assert p.time_budget == 300
    assert p.total_batch_size % (p.device_batch_size * p.seq_len) == 0
    assert p.width % p.head_dim == 0
    assert p.reason.startswith(name)


def test_h200_matches_upstream_reference_config() -> None:
    p = profile_for(MACHINES["H200"])
    assert (p.seq_len, p.depth, p.width, p.head_dim, p.device_batch_size, p.total_batch_size) == (2048, 8, 512, 128, 128, 2**19)
    assert p.peak_flops == pytest.approx(989.5e12)


def test_larger_machines_never_get_a_smaller_model() -> None:
    order = ["M1 8GB", "M4 Pro 24GB", "M2 Ultra"]
    scales = [(profile_for(MACHINES[m]).seq_len * profile_for(MACHINES[m]).depth) for m in order]
    assert scales == sorted(scales)
    mems = [profile_for(MACHINES[m]).device_batch_size for m in order]
    assert mems == sorted(mems)


def test_mac_without_mlx_falls_back_to_torch_mps() -> None:
    p = profile_for(_mac("Apple M4 Pro", 24.0, mlx=False))
    assert (p.backend, p.device, p.compile) == ("torch", "mps", False)
    assert "MLX is not installed" in p.reason


def test_old_gpu_without_bf16_uses_fp16() -> None:
    p = profile_for(_linux_cuda("Tesla T4", 15.0, (7, 5)))
    assert p.dtype == "fp16" and p.peak_flops is None
    assert "no bf16" in p.reason


@pytest.mark.parametrize(
    "name,expected",
    [
        ("NVIDIA H200", 989.5e12),
        ("NVIDIA H100 80GB HBM3", 989.5e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA L4", 121e12),
        ("NVIDIA L40S", 362e12),
        ("NVIDIA GeForce RTX 4090", 165.2e12),
        ("NVIDIA GeForce RTX 4070 Ti", 80.2e12),
        ("NVIDIA GeForce RTX 4070", 58.4e12),
        ("NVIDIA GeForce RTX 3060", 25.6e12),
        ("NVIDIA GeForce RTX 3060 Ti", 32.4e12),
        ("NVIDIA GeForce RTX 5090", 209.5e12),
        ("NVIDIA GeForce RTX 4090 Laptop GPU", None),
        ("NVIDIA A10G", None),
        ("Tesla T4", None),
        ("Some Future GPU", None),
        (None, None),
    ],
)
def test_peak_flops_table(name: str | None, expected: float | None) -> None:
    got = peak_bf16_flops(name)
    assert got == (pytest.approx(expected) if expected else None)


def test_overrides_apply_and_validate() -> None:
    hw = MACHINES["2-core CPU"]
    p = profile_for(hw, {"time_budget": 20, "depth": 2, "dataset": "stdlib", "seq_len": None})
    assert (p.time_budget, p.depth, p.dataset, p.seq_len) == (20, 2, "stdlib", 256)
    assert "overridden" in p.reason and "time_budget=20" in p.reason
    with pytest.raises(ProfileError, match="unknown profile setting"):
        profile_for(hw, {"depht": 3})
    with pytest.raises(ProfileError, match="multiple of device_batch_size"):
        profile_for(hw, {"total_batch_size": 1000})
    with pytest.raises(ProfileError, match="not a valid int"):
        profile_for(hw, {"depth": "deep"})
    with pytest.raises(ProfileError, match="MLX is not installed"):
        profile_for(hw, {"backend": "mlx"})


def test_backend_override_recomputes_device() -> None:
    hw = MACHINES["2-core CPU"]
    hw_mlx = Hardware.from_dict({**hw.to_dict(), "mlx_available": True})
    p = apply_overrides(profile_for(hw_mlx), {"backend": "mlx"}, hw_mlx)
    assert (p.backend, p.device) == ("mlx", "cpu")
    p = profile_for(MACHINES["M4 Pro 24GB"], {"backend": "torch"})
    assert (p.backend, p.device) == ("torch", "mps")


def test_table_ends_with_a_catch_all() -> None:
    assert PROFILE_TABLE[-1].matches(Hardware("Plan9", "mips", "?", 1, 1, 0.5))


def test_hardware_roundtrips_through_json() -> None:
    for hw in MACHINES.values():
        assert Hardware.from_dict(json.loads(json.dumps(hw.to_dict()))) == hw


def test_detect_this_machine() -> None:
    hw = detect()
    assert hw.cpu_threads >= 1 and hw.ram_gb > 0 and hw.cpu_model
    assert hw.torch_version is not None
    p = profile_for(hw)
    assert p.backend in ("torch", "mlx")
    if hw.cuda is None and not hw.is_apple_silicon:
        assert (p.name, p.device) == ("cpu", "cpu")
