"""Time the numpy reference solutions against torch's CPU kernels, forward + backward.

Each case runs the reference forward and backward in float64 and the same operation in
torch through autograd (forward, then ``.backward(dout)``), on the same input and upstream
gradient. The table shows the best (or median) wall time of several repeats after a
warm-up, the ratio numpy / torch float64, torch float32 for context, and the largest
relative error between the two input gradients as a sanity check.

Usage: python benchmarks/reference_speed.py [--repeats 7] [--shape 64 64 32 32] [--stat median]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from solutions.batchnorm import batchnorm_backward, batchnorm_forward
from solutions.gradcheck import rel_error
from solutions.pooling import avgpool2d_backward, avgpool2d_forward, maxpool2d_backward, maxpool2d_forward


def _cases():
    """(name, numpy forward + backward, torch forward) for each benchmarked operation."""

    def pool(forward, backward, **kw):
        def run(x, dout):
            out, cache = forward(x, **kw)
            return backward(dout, cache)

        return run

    def batchnorm(x, dout):
        channels = x.shape[1]
        out, cache = batchnorm_forward(x, np.ones(channels), np.zeros(channels))
        return batchnorm_backward(dout, cache)[0]

    def torch_batchnorm(x):
        channels = x.shape[1]
        weight = torch.ones(channels, dtype=x.dtype, requires_grad=True)
        bias = torch.zeros(channels, dtype=x.dtype, requires_grad=True)
        return F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)

    return [
        ("maxpool 2x2 s2", pool(maxpool2d_forward, maxpool2d_backward, kernel_size=2),
         lambda x: F.max_pool2d(x, 2)),
        ("maxpool 3x3 s2 p1", pool(maxpool2d_forward, maxpool2d_backward, kernel_size=3, stride=2, padding=1),
         lambda x: F.max_pool2d(x, 3, 2, 1)),
        ("avgpool 2x2 s2", pool(avgpool2d_forward, avgpool2d_backward, kernel_size=2),
         lambda x: F.avg_pool2d(x, 2)),
        ("avgpool 3x3 s2 p1", pool(avgpool2d_forward, avgpool2d_backward, kernel_size=3, stride=2, padding=1),
         lambda x: F.avg_pool2d(x, 3, 2, 1)),
        ("batchnorm", batchnorm, torch_batchnorm),
    ]


def _time(fns: dict, repeats: int, stat: str) -> dict:
    """Milliseconds per call of each function, after one warm-up call each.

    The functions take turns within every repeat so that a burst of load from other
    processes hits them alike rather than skewing one column.
    """
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    pick = min if stat == "min" else statistics.median
    return {name: 1e3 * pick(t) for name, t in times.items()}


def _torch_step(forward, x: torch.Tensor, dout: torch.Tensor):
    """One autograd forward + backward, as a closure for timing."""

    def step():
        x.grad = None
        forward(x).backward(dout)

    return step


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per case (default 7)")
    parser.add_argument("--shape", type=int, nargs=4, default=[64, 64, 32, 32], metavar=("N", "C", "H", "W"))
    parser.add_argument("--stat", choices=["min", "median"], default="min",
                        help="best-of (least disturbed by other load, default) or median")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    rng = np.random.default_rng(0)
    x = rng.standard_normal(tuple(args.shape))
    print(f"input {tuple(args.shape)} float64; numpy {np.__version__}, torch {torch.__version__}, "
          f"torch.get_num_threads() = {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"forward + backward, {args.stat} of {args.repeats} after a warm-up, ms\n")
    header = f"{'case':<20}{'numpy f64':>11}{'torch f64':>11}{'ratio':>8}{'torch f32':>11}{'dx rel err':>12}"
    print(header)
    print("-" * len(header))

    for name, numpy_step, torch_forward in _cases():
        with torch.no_grad():
            out_shape = torch_forward(torch.from_numpy(x)).shape
        dout = rng.standard_normal(tuple(out_shape))
        fns = {"numpy": lambda: numpy_step(x, dout)}
        for dtype in (torch.float64, torch.float32):
            tx = torch.tensor(x, dtype=dtype, requires_grad=True)
            fns[dtype] = _torch_step(torch_forward, tx, torch.tensor(dout, dtype=dtype))
            if dtype == torch.float64:
                fns[dtype]()
                err = rel_error(numpy_step(x, dout), tx.grad.numpy())
        ms = _time(fns, args.repeats, args.stat)
        ratio = ms["numpy"] / ms[torch.float64]
        print(f"{name:<20}{ms['numpy']:>11.2f}{ms[torch.float64]:>11.2f}{ratio:>8.2f}"
              f"{ms[torch.float32]:>11.2f}{err:>12.1e}")


if __name__ == "__main__":
    main()
