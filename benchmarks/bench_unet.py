"""Throughput of the temporal U-Net on CPU or GPU: training steps and encoder-only embedding.

Measures, after warm-up, for each model size:
- training windows/s at batch 256: one full ``DiffusionTrainerState.update`` (noise draw, forward,
  backward, fused Adam step and EMA update);
- encoding windows/s at batch 1024: ``TemporalUnet.embed`` (down path + mid blocks only) under
  ``torch.inference_mode``, as the embedding actors run it.

``--precisions fp32,bf16`` times each in fp32 and under bf16 autocast (the pipeline uses bf16 on
GPUs and fp32 on CPUs); ``--train-batches``/``--encode-batches`` add batch sizes (a GPU needs far
larger batches than 256 to fill). ``--device cuda`` times on the GPU, synchronising before each
clock read; inputs live on the device, as they do after the loader's copy.

Each size also gets its FLOP bound: the matmul/convolution FLOPs of one window, counted with
``torch.utils.flop_counter``, against the matmul speed of the device: on CPU a 256^3 fp32 matmul
on the same threads (the GEMM speed no implementation beats here), on GPU an 8192^3 matmul in
the row's precision (fp32 without TF32, or bf16). Elementwise work (GroupNorm, Mish, Adam, EMA)
is not counted, so the real ceiling lies below the bound.

Variants: ``fast`` is the project's network (dense-GEMM convolutions at short lengths, shared
step features); ``plain`` runs every convolution through ``nn.Conv1d`` as Diffuser does. Both
have identical parameters. ``--compile`` adds ``torch.compile`` rows (compile time excluded and
reported). Each measurement is the best of ``--repeats`` timed runs, because other processes may
share the cores; the load average at start and end is written down with the results.

    .venv/bin/python benchmarks/bench_unet.py                 # table + benchmarks/unet.json
    .venv/bin/python benchmarks/bench_unet.py --smoke-test    # seconds, tiny sizes
    python benchmarks/bench_unet.py --device cuda --precisions fp32,bf16 \
        --train-batches 256,4096 --encode-batches 1024,16384 --out unet-gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from bench_rl import matmul_gflops, sync  # benchmarks/ is on sys.path when this file runs as a script
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tge_ray.config import DiffusionConfig
from tge_ray.diffusion.ddpm import DiffusionTrainerState
from tge_ray.diffusion.unet import TemporalConv1d, TemporalUnet, count_parameters

REFERENCE = {"train_windows_per_s": 1024, "encode_windows_per_s": 5720}  # Diffuser impl., 2 cores
TARGET = {"train_windows_per_s": 2000, "encode_windows_per_s": 11000}
CPU = torch.device("cpu")


@contextmanager
def plain_convolutions():
    """Run TemporalConv1d as a plain nn.Conv1d (the Diffuser way) inside the block."""
    fast = TemporalConv1d.forward
    TemporalConv1d.forward = nn.Conv1d.forward
    try:
        yield
    finally:
        TemporalConv1d.forward = fast


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def device_matmul_gflops(device: torch.device, precision: str, repeats: int) -> float:
    """GFLOP/s of an 8192^3 matmul on a GPU in ``precision`` (fp32 without TF32, or bf16)."""
    n = 8192
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    generator = torch.Generator(device=device).manual_seed(0)
    a, b = (torch.randn(n, n, device=device, dtype=dtype, generator=generator) for _ in range(2))
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        seconds = _time(lambda: torch.mm(a, b), 5, repeats, device, warmup=2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / seconds / 1e9


def machine_info(threads: int, device: torch.device) -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": threads,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
    }


def _time(fn, steps: int, repeats: int, device: torch.device = CPU, warmup: int = 0) -> float:
    """Best seconds per call over ``repeats`` runs of ``steps`` calls (device synchronised)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def bench_train(obs_dim, horizon, cfg, batch, steps, repeats, warmup, compile_model, device, precision):
    torch.manual_seed(0)
    model = TemporalUnet(obs_dim, horizon, cfg).to(device)
    compile_s = 0.0
    if compile_model:
        model = torch.compile(model, mode=None if compile_model == "default" else compile_model)
    state = DiffusionTrainerState(model, cfg, seed=0, device=device, bf16=precision == "bf16")
    x0 = torch.randn(batch, horizon, obs_dim, device=device)
    start = time.perf_counter()
    for _ in range(warmup):
        state.update(x0)
    sync(device)
    compile_s = time.perf_counter() - start if compile_model else 0.0
    seconds = _time(lambda: state.update(x0), steps, repeats, device)
    loss = state.mean_loss()
    if not loss == loss:  # NaN: a broken precision path must not be reported as a speed
        raise RuntimeError(f"training loss is NaN ({precision} on {device})")
    return batch / seconds, compile_s


def flops_per_window(obs_dim: int, horizon: int, cfg: DiffusionConfig, batch: int = 16) -> tuple[float, float]:
    """(training step, encoding) matmul + convolution FLOPs per window, counted on one batch."""
    torch.manual_seed(0)
    model = TemporalUnet(obs_dim, horizon, cfg)
    state = DiffusionTrainerState(model, cfg, seed=0)
    x = torch.randn(batch, horizon, obs_dim)
    with FlopCounterMode(display=False) as train_count:
        state.update(x)
    model.eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as encode_count:
        model.embed(x)
    return train_count.get_total_flops() / batch, encode_count.get_total_flops() / batch


def bench_encode(obs_dim, horizon, cfg, batch, steps, repeats, warmup, compile_model, device, precision):
    torch.manual_seed(0)
    model = TemporalUnet(obs_dim, horizon, cfg).to(device).eval().requires_grad_(False)
    embed = (torch.compile(model.embed, mode=None if compile_model == "default" else compile_model)
             if compile_model else model.embed)
    x = torch.randn(batch, horizon, obs_dim, device=device)
    with torch.inference_mode(), autocast(device, precision):
        start = time.perf_counter()
        for _ in range(warmup):
            embed(x)
        sync(device)
        compile_s = time.perf_counter() - start if compile_model else 0.0
        seconds = _time(lambda: embed(x), steps, repeats, device)
    return batch / seconds, compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row; the best counts")
    parser.add_argument("--train-steps", type=int, default=10, help="steps per timed training run")
    parser.add_argument("--encode-steps", type=int, default=10, help="calls per timed encoding run")
    parser.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                        help="add torch.compile rows (MODE: default, reduce-overhead = CUDA graphs on a GPU, ...)")
    parser.add_argument("--variants", default="fast,plain", help="comma list of fast, plain")
    parser.add_argument("--sizes", default="reference,h1,obs17", help="comma list of reference, default, h1, obs17")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (cuda:N)")
    parser.add_argument("--precisions", default="fp32", help="comma list of fp32, bf16 (autocast)")
    parser.add_argument("--train-batches", default="256", help="comma list of training batch sizes")
    parser.add_argument("--encode-batches", default="1024", help="comma list of encoding batch sizes")
    parser.add_argument("--out", default=str(Path(__file__).with_name("unet.json")))
    parser.add_argument("--smoke-test", action="store_true", help="tiny sizes, seconds")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here; use --device cpu")
    precisions = args.precisions.split(",")
    if not set(precisions) <= {"fp32", "bf16"}:
        parser.error(f"--precisions {args.precisions!r}: expected a comma list of fp32, bf16")
    torch.set_num_threads(args.threads)
    train_batches = [int(b) for b in args.train_batches.split(",")]
    encode_batches = [int(b) for b in args.encode_batches.split(",")]
    sizes = [
        # (label, obs_dim, horizon, cfg): the reference is also the project default
        # (DiffusionConfig() and windows.horizon = 32; hopper has 11-dim states).
        ("reference", "reference = project default (dim 32, 1-2-4-8, H 32, obs 11)", 11, 32, DiffusionConfig()),
        ("default", "tge run default (dim 16, 1-2-4-8, H 32, obs 11)", 11, 32, DiffusionConfig(dim=16)),
        ("h1", "single-step ablation (H 1, obs 11)", 11, 1, DiffusionConfig()),
        ("obs17", "walker2d/halfcheetah states (H 32, obs 17)", 17, 32, DiffusionConfig()),
    ]
    sizes = [size[1:] for size in sizes if size[0] in args.sizes.split(",")]
    if args.smoke_test:
        sizes = [("smoke (dim 8, 1-2, H 8, obs 3)", 3, 8, DiffusionConfig(dim=8, dim_mults=(1, 2)))]
        train_batches, encode_batches = [16], [32]
        args.repeats, args.train_steps, args.encode_steps = 1, 2, 2
    warmup = 3
    load_before = os.getloadavg()
    if device.type == "cuda":
        peak = {p: device_matmul_gflops(device, p, args.repeats) for p in precisions}
        peak_what = "8192^3 matmul on the GPU"
    else:
        peak = dict.fromkeys(precisions, matmul_gflops(args.repeats, "cpu"))
        peak_what = f"256^3 fp32 matmul, {args.threads} threads"
    for precision, gflops in peak.items():
        print(f"{peak_what}, {precision}: {gflops:.0f} GFLOP/s")
    rows = []
    for label, obs_dim, horizon, cfg in sizes:
        params = count_parameters(TemporalUnet(obs_dim, horizon, cfg))
        train_flops, encode_flops = flops_per_window(obs_dim, horizon, cfg)
        for variant in args.variants.split(","):
            for compiled in ([False, args.compile] if args.compile else [False]):
                for precision in precisions:
                    flop_bound = {
                        "train_mflop_per_window": round(train_flops / 1e6, 2),
                        "encode_mflop_per_window": round(encode_flops / 1e6, 2),
                        "train_flop_bound_windows_per_s": round(peak[precision] * 1e9 / train_flops, 1),
                        "encode_flop_bound_windows_per_s": round(peak[precision] * 1e9 / encode_flops, 1),
                    }
                    for train_batch, encode_batch in zip(train_batches, encode_batches, strict=True):
                        ctx = plain_convolutions() if variant == "plain" else nullcontext()
                        with ctx:
                            train, train_compile_s = bench_train(
                                obs_dim, horizon, cfg, train_batch, args.train_steps, args.repeats,
                                warmup, compiled, device, precision)
                            encode, encode_compile_s = bench_encode(
                                obs_dim, horizon, cfg, encode_batch, args.encode_steps, args.repeats,
                                warmup, compiled, device, precision)
                        row = {
                            "size": label, "variant": variant + (f"+compile({compiled})" if compiled else ""),
                            "device": str(device), "precision": precision,
                            "parameters": params, "train_batch": train_batch, "encode_batch": encode_batch,
                            "train_windows_per_s": round(train, 1), "encode_windows_per_s": round(encode, 1),
                            **flop_bound,
                        }
                        if compiled:
                            row["warmup_with_compile_s"] = {"train": round(train_compile_s, 1),
                                                            "encode": round(encode_compile_s, 1)}
                        rows.append(row)
                        print(f"{label:<62} {row['variant']:<30} {precision:<5} {train_batch:>6}/{encode_batch:<6} "
                              f"{params/1e6:5.2f}M  train {train:9.0f} w/s   encode {encode:10.0f} w/s", flush=True)
    load_after = os.getloadavg()

    print()
    print(f"{'size':<62} {'variant':<30} {'prec':<5} {'batches':>13} {'train w/s':>10} {'(bound)':>9} "
          f"{'encode w/s':>11} {'(bound)':>10}")
    for row in rows:
        print(f"{row['size']:<62} {row['variant']:<30} {row['precision']:<5} "
              f"{row['train_batch']:>6}/{row['encode_batch']:<6} {row['train_windows_per_s']:>10.0f} "
              f"{row['train_flop_bound_windows_per_s']:>9.0f} {row['encode_windows_per_s']:>11.0f} "
              f"{row['encode_flop_bound_windows_per_s']:>10.0f}")
    print(f"bound = {peak_what} / counted matmul+conv FLOPs per window")
    print(f"reference (Diffuser impl., 2 cores): train {REFERENCE['train_windows_per_s']}, "
          f"encode {REFERENCE['encode_windows_per_s']}; targets: train {TARGET['train_windows_per_s']}, "
          f"encode {TARGET['encode_windows_per_s']}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(above {args.threads} means other processes shared the cores)")
    if args.smoke_test:
        return
    result = {
        "machine": machine_info(args.threads, device),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "method": (f"best of {args.repeats} timed runs after {warmup} warm-up calls, device synchronised "
                   "before each clock read; training = full update step (noise, forward, backward, fused "
                   "Adam, EMA); encoding = embed() under inference_mode; precision per row (bf16 = autocast)"),
        "reference": REFERENCE,
        "target": TARGET,
        "peak_matmul": {"what": peak_what, "gflops": {p: round(g, 1) for p, g in peak.items()}},
        **({"matmul_256_gflops": round(peak["fp32"], 1)} if device.type == "cpu" and "fp32" in peak else {}),
        "rows": rows,
        "command": " ".join(["benchmarks/bench_unet.py", *__import__("sys").argv[1:]]),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
