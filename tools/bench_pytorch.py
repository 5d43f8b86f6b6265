#!/usr/bin/env python3
"""Time PyTorch on the CPU on the shapes of convlab's criterion benchmarks.

Measures, for each thread count:
  * conv2d forward on the course CNN's layers L1, L2, L3 (benches/conv2d.rs), with bias;
  * conv2d forward+backward (gradients of input, weight and bias) on the same layers;
  * max_pool2d and avg_pool2d 2x2 forward, and max_pool2d forward+backward, on
    (64, 32, 28, 28) (benches/pool.rs);
  * conv1d forward (64, 16, 1000) x (32, 16, 7), padding 3, with bias (benches/conv1d.rs);
  * torch.mm on square sizes 64..1024 and on the per-image im2col products of the
    course CNN, (32x25)·(25x784) and (64x800)·(800x196) (benches/gemm.rs);
  * one training step of the course CNN, batch 64, Adam 1e-3: zero_grad, forward,
    cross-entropy, backward, step (benches/train.rs).

Run it on the same machine as `cargo bench` to compare side by side:

    pip install torch numpy
    python3 tools/bench_pytorch.py [--threads 1 2] [--repeat 10]
    python3 tools/bench_pytorch.py --quick     # smoke run, repeat=3
    python3 tools/bench_pytorch.py --only train   # sections whose title holds "train"

Method: every case runs 10 untimed warm-ups, then N timed runs; the table reports the
median. torch.set_num_threads(t) is called before the cases of each thread count t.
Tensors are float32, images NCHW. GFLOP/s follow the crate's convention: a multiply-add
counts as two, conv2d forward = 2·N·C_out·H_out·W_out·(C_in/groups)·kH·kW (padding taps
counted, bias ignored), conv1d likewise, GEMM = 2·m·k·n. Backward passes report
milliseconds only. Building and testing convlab never runs this script.
"""

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

WARMUPS = 10

# (name, input shape NCHW, weight shape (C_out, C_in, kH, kW), padding)
CONV2D_LAYERS = [
    ("L1", (64, 1, 28, 28), (32, 1, 5, 5), 2),
    ("L2", (64, 32, 14, 14), (64, 32, 5, 5), 2),
    ("L3", (8, 64, 56, 56), (64, 64, 3, 3), 1),
]
POOL_INPUT = (64, 32, 28, 28)
CONV1D = ((64, 16, 1000), (32, 16, 7), 3)  # input (N, C_in, L), weight, padding
GEMM_SQUARE = [64, 128, 256, 512, 1024]
# (name, m, k, n): weight matrix (C_out x C_in·kH·kW) times one image's im2col columns.
GEMM_IM2COL = [("L1 im2col", 32, 25, 784), ("L2 im2col", 64, 800, 196)]


def median_ms(fn, repeat):
    """Median wall time of fn() in milliseconds over `repeat` runs, after the warm-ups."""
    for _ in range(WARMUPS):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


def conv2d_flops(x_shape, w_shape, padding):
    n, _, h, w = x_shape
    c_out, c_in_per_group, kh, kw = w_shape
    h_out = h + 2 * padding - kh + 1
    w_out = w + 2 * padding - kw + 1
    return 2 * n * c_out * h_out * w_out * c_in_per_group * kh * kw


def conv1d_flops(x_shape, w_shape, padding):
    n, _, length = x_shape
    c_out, c_in_per_group, k = w_shape
    return 2 * n * c_out * (length + 2 * padding - k + 1) * c_in_per_group * k


def conv2d_forward(gen, x_shape, w_shape, padding):
    x, w, b = randn(gen, *x_shape), randn(gen, *w_shape), randn(gen, w_shape[0])

    def run():
        with torch.no_grad():
            F.conv2d(x, w, b, padding=padding)

    return run


def conv2d_backward(gen, x_shape, w_shape, padding):
    x = randn(gen, *x_shape).requires_grad_()
    w = randn(gen, *w_shape).requires_grad_()
    b = randn(gen, w_shape[0]).requires_grad_()
    # Fixed upstream gradient: d(sum(y * g))/dy = g.
    g = randn(gen, *F.conv2d(x, w, b, padding=padding).shape)

    def run():
        y = F.conv2d(x, w, b, padding=padding)
        # autograd.grad returns fresh gradients instead of accumulating into .grad.
        torch.autograd.grad((y * g).sum(), (x, w, b))

    return run


def pool_forward(gen, x_shape, pool):
    x = randn(gen, *x_shape)

    def run():
        with torch.no_grad():
            pool(x, 2)

    return run


def max_pool_backward(gen, x_shape):
    x = randn(gen, *x_shape).requires_grad_()
    g = randn(gen, *F.max_pool2d(x, 2).shape)

    def run():
        torch.autograd.grad((F.max_pool2d(x, 2) * g).sum(), x)

    return run


def conv1d_forward(gen, x_shape, w_shape, padding):
    x, w, b = randn(gen, *x_shape), randn(gen, *w_shape), randn(gen, w_shape[0])

    def run():
        with torch.no_grad():
            F.conv1d(x, w, b, padding=padding)

    return run


def mm(gen, m, k, n):
    a, b = randn(gen, m, k), randn(gen, k, n)
    return lambda: torch.mm(a, b)


def course_cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, kernel_size=5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, kernel_size=5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(1024, 10))


def train_step(gen):
    torch.manual_seed(0)
    model = course_cnn()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(64, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)

    def run():
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return run


def build_sections(gen):
    """Sections as (title, [(case name, benchmark closure, FLOPs or None)])."""
    conv_fwd, conv_bwd = [], []
    for name, x_shape, w_shape, pad in CONV2D_LAYERS:
        label = f"{name} {x_shape} x {w_shape} p{pad}"
        flops = conv2d_flops(x_shape, w_shape, pad)
        conv_fwd.append((label, conv2d_forward(gen, x_shape, w_shape, pad), flops))
        conv_bwd.append((label, conv2d_backward(gen, x_shape, w_shape, pad), None))
    x_shape, w_shape, pad = CONV1D
    gemm = [(f"{s}x{s}x{s}", mm(gen, s, s, s), 2 * s**3) for s in GEMM_SQUARE]
    gemm += [(f"{name} {m}x{k}x{n}", mm(gen, m, k, n), 2 * m * k * n)
             for name, m, k, n in GEMM_IM2COL]
    return [
        ("conv2d forward (with bias)", conv_fwd),
        ("conv2d forward+backward (grads of input, weight, bias)", conv_bwd),
        ("pooling 2x2 forward",
         [(f"max_pool2d {POOL_INPUT}", pool_forward(gen, POOL_INPUT, F.max_pool2d), None),
          (f"avg_pool2d {POOL_INPUT}", pool_forward(gen, POOL_INPUT, F.avg_pool2d), None)]),
        ("max_pool2d 2x2 forward+backward",
         [(f"{POOL_INPUT}", max_pool_backward(gen, POOL_INPUT), None)]),
        ("conv1d forward (with bias)",
         [(f"{x_shape} x {w_shape} p{pad}", conv1d_forward(gen, x_shape, w_shape, pad),
           conv1d_flops(x_shape, w_shape, pad))]),
        ("torch.mm float32 (m x k x n)", gemm),
        ("train step, course CNN, batch 64, Adam (images/s = 64000 / ms)",
         [("course CNN", train_step(gen), None)]),
    ]


def print_table(title, rows):
    headers = ("case", "threads", "median ms", "GFLOP/s")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n== {title}")

    def line(cells):
        # Case names left-aligned, numbers right-aligned.
        return "  ".join(c.ljust(wd) if i == 0 else c.rjust(wd)
                         for i, (c, wd) in enumerate(zip(cells, widths)))

    print(line(headers))
    print(line(["-" * wd for wd in widths]))
    for row in rows:
        print(line(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread counts to measure (default: 1 2)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--repeat", type=int, default=10,
                       help=f"timed runs per case, after {WARMUPS} warm-ups (default: 10)")
    group.add_argument("--quick", action="store_true", help="smoke run: --repeat 3")
    parser.add_argument("--only", default="",
                        help="measure only the sections whose title contains this text")
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat

    print(f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"threads {' '.join(map(str, args.threads))}, median of {repeat} runs "
          f"after {WARMUPS} warm-ups, float32")

    sections = [s for s in build_sections(torch.Generator().manual_seed(0))
                if args.only in s[0]]
    results = {title: [] for title, _ in sections}
    # Thread count is the outer loop so set_num_threads is called once per count.
    for threads in args.threads:
        torch.set_num_threads(threads)
        for title, cases in sections:
            for name, fn, flops in cases:
                ms = median_ms(fn, repeat)
                gflops = f"{flops / (ms * 1e6):.2f}" if flops else "-"
                results[title].append((name, str(threads), f"{ms:.3f}", gflops))
    for title, cases in sections:
        # Group each case's thread counts together (stable sort keeps thread order).
        order = {name: i for i, (name, _, _) in enumerate(cases)}
        print_table(title, sorted(results[title], key=lambda r: order[r[0]]))


if __name__ == "__main__":
    main()
