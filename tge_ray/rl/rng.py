"""Counter-based random numbers: batch indices and noise as a pure function of (seed, step, slot).

Every policy of a batch draws from its own stream, keyed by its seed alone, so a policy draws
the same indices and noise whether it trains alone or beside others. The numbers are computed
with integer tensor ops on the device (no ``torch.Generator``, no host round trip), which lets
the whole update compile into one program and be captured as a CUDA graph, where the step
counter lives on the device.

The mixing function is Chris Wellons' ``lowbias32`` integer hash. All arithmetic stays inside
int64 without overflow: values are 32-bit, and a 32 x 32-bit product mod 2^32 is formed from
16-bit halves (:func:`_mul32`).
"""

from __future__ import annotations

import math

import torch

MASK32 = 0xFFFFFFFF
GOLDEN = 0x9E3779B9  # 2^32 / phi: spreads consecutive seeds and counters apart
STREAM_INDEX, STREAM_NOISE = 1, 2  # distinct streams: batch indices and Gaussian noise


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """(x * constant) mod 2^32 for int64 ``x`` in [0, 2^32), without int64 overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & MASK32


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32: a 32-bit integer hash with good avalanche; int64 in, int64 in [0, 2^32) out."""
    x = x & MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def random_bits(seeds: torch.Tensor, step: torch.Tensor, count: int, stream: int) -> torch.Tensor:
    """(P, count) uniform 32-bit integers (as int64) for policies with ``seeds`` (P,) at ``step``.

    ``step`` is a 0-d int64 tensor (it may live on the device and advance inside a graph).
    Slot j of policy p depends on (seeds[p], step, stream, j) only.
    """
    key = hash32(seeds.view(-1, 1) * 2 + 1)  # (P, 1)
    key = hash32(key ^ _mul32(step & MASK32, GOLDEN) ^ stream)
    slots = torch.arange(count, device=seeds.device, dtype=torch.int64).view(1, -1)
    return hash32(hash32(key ^ _mul32(slots, GOLDEN)) + key)


def random_indices(seeds: torch.Tensor, step: torch.Tensor, count: int, sizes: torch.Tensor) -> torch.Tensor:
    """(P, count) indices, row p uniform in [0, sizes[p]) (Lemire's multiply-shift; sizes < 2^31)."""
    bits = random_bits(seeds, step, count, STREAM_INDEX)
    return (bits * sizes.view(-1, 1)) >> 32


def random_normal(seeds: torch.Tensor, step: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(P, *shape) standard normal float32 (Box-Muller on two 24-bit uniforms per number)."""
    count = math.prod(shape)
    bits = random_bits(seeds, step, 2 * count, STREAM_NOISE)
    uniform = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 2**24)  # (0, 1), never 0
    radius = torch.sqrt(-2.0 * torch.log(uniform[:, :count]))
    normal = radius * torch.cos((2.0 * math.pi) * uniform[:, count:])
    return normal.view(-1, *shape)
