"""What the machine can do: device and bf16 support, decided once in one place."""

from __future__ import annotations

from headcls.errors import HeadclsError


def device() -> str:
    """cpu, or the GPU of this process: under torchrun or accelerate each process has its own (LOCAL_RANK)."""
    import torch

    from headcls.runtime.distributed import ranks

    if not torch.cuda.is_available():
        return "cpu"
    here = ranks()
    return f"cuda:{here.local_rank}" if here.distributed else "cuda"


def bf16_supported() -> bool:
    """True where bf16 matrix products are fast: CUDA with bf16, or a CPU with AVX-512 BF16 or AMX."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def use_bf16(precision: str) -> bool:
    """Resolve --precision auto|bf16|fp32 to whether bf16 autocast is on."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        if not bf16_supported():
            raise HeadclsError("--precision bf16: this machine has no fast bf16 support; use auto or fp32")
        return True
    return bf16_supported()
