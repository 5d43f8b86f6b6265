#!/usr/bin/env python3
"""Regenerate the golden fixtures of chapters 1-2 under tests/fixtures/.

Reference results come from NumPy (np.convolve, np.correlate), SciPy (signal.convolve2d,
signal.correlate2d) and PyTorch (torch.nn.functional.conv1d, conv2d, conv3d, unfold, fold,
max_pool1d/2d, avg_pool1d/2d, adaptive pooling, conv_transpose1d), computed in float64.
Inputs are rounded to float32 first, so the same cases test the f32 kernels too. The files
record the library versions that produced them. Building and testing convlab never runs this.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy torch
    /tmp/venv/bin/python tools/gen_fixtures.py
"""

import json
import pathlib

import numpy as np
import scipy
from scipy import signal
import torch
import torch.nn.functional as F

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
rng = np.random.default_rng(20261123)


def values(*shape):
    """Random values that are exact in float32, returned as float64."""
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32).astype(np.float64)


def flat(a):
    """Values for JSON, which has no infinities or NaN: those are written as strings."""
    return [float(v) if np.isfinite(v) else str(float(v))
            for v in np.asarray(a, dtype=np.float64).ravel()]


def dilate(w, d):
    out = np.zeros(d * (len(w) - 1) + 1)
    out[::d] = w
    return out


def generator():
    return f"numpy {np.__version__}, scipy {scipy.__version__}, torch {torch.__version__}"


def signal_cases():
    cases = []
    for _ in range(160):
        n = int(rng.integers(1, 24))
        m = int(rng.integers(1, 12))
        mode = str(rng.choice(["full", "same", "valid"]))
        stride = int(rng.choice([1, 1, 2, 3]))
        dilation = int(rng.choice([1, 1, 2, 3]))
        x, w = values(n), values(m)
        wd = dilate(w, dilation)
        cases.append({
            "x": flat(x), "w": flat(w), "mode": mode, "stride": stride, "dilation": dilation,
            "convolve": flat(np.convolve(x, wd, mode)[::stride]),
            "correlate": flat(np.correlate(x, wd, mode)[::stride]),
        })
    return cases


def torch_padding(spec, n, k, stride, dilation):
    """The padding argument for torch and the (left, right) zeros it stands for."""
    span = dilation * (k - 1) + 1
    if spec == "valid":
        return "valid", (0, 0)
    if spec == "same":
        total = span - 1
        return "same", (total // 2, total - total // 2)
    if spec == "full":
        return span - 1, (span - 1, span - 1)
    if spec == "keras_same":
        # TensorFlow's SAME: out = ceil(n / s), the odd zero on the right.
        out = -(-n // stride)
        total = max((out - 1) * stride + span - n, 0)
        return None, (total // 2, total - total // 2)
    return spec, (spec, spec)


def conv1d_call(x, w, b, stride, padding, pads, dilation, groups):
    as_tensor = (lambda a: a if isinstance(a, torch.Tensor) else torch.from_numpy(a))
    xt, wt = as_tensor(x), as_tensor(w)
    bt = None if b is None else as_tensor(b)
    if padding is None:
        xt = F.pad(xt, pads)
        padding = 0
    return F.conv1d(xt, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv1d_cases():
    cases, errors = [], []
    while len(cases) < 120:
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in = groups * int(rng.integers(1, 4))
        c_out = groups * int(rng.integers(1, 4))
        batch = int(rng.integers(1, 4))
        k = int(rng.integers(1, 7))
        length = int(rng.integers(1, 20))
        stride = int(rng.choice([1, 1, 2, 3]))
        dilation = int(rng.choice([1, 1, 2, 3]))
        specs = ["valid", "same", "full", "keras_same", 0, 1, 2, 3]
        spec = specs[int(rng.choice(len(specs), p=[.12, .12, .08, .12, .14, .14, .14, .14]))]
        x = values(batch, c_in, length)
        w = values(c_out, c_in // groups, k)
        b = values(c_out) if rng.random() < 0.7 else None
        padding, pads = torch_padding(spec, length, k, stride, dilation)
        case = {
            "x": flat(x), "x_shape": list(x.shape), "w": flat(w), "w_shape": list(w.shape),
            "b": None if b is None else flat(b), "stride": stride, "padding": spec,
            "pads": list(pads), "dilation": dilation, "groups": groups,
        }
        try:
            y = conv1d_call(x, w, b, stride, padding, pads, dilation, groups)
        except RuntimeError as e:
            case["error"] = str(e).splitlines()[0]
            if len(errors) < 40:
                errors.append(case)
            continue
        case["y"] = flat(y.numpy())
        case["y_shape"] = list(y.shape)
        # Autograd's gradients of L = Σ y·G for a random G.
        g = values(*y.shape)
        xg, wg = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
        bg = None if b is None else torch.from_numpy(b).requires_grad_()
        (conv1d_call(xg, wg, bg, stride, padding, pads, dilation, groups)
         * torch.from_numpy(g)).sum().backward()
        case.update({"grad_out": flat(g), "grad_x": flat(xg.grad), "grad_w": flat(wg.grad),
                     "grad_b": None if bg is None else flat(bg.grad)})
        cases.append(case)
    return cases, errors


def conv1d_shape_errors():
    """Hand-picked calls that PyTorch refuses; convlab must refuse them too."""
    picks = [
        # (x_shape, w_shape, b_len, stride, padding, dilation, groups)
        ((2, 4, 5), (3, 4, 6), None, 1, 0, 1, 1),      # kernel longer than the input
        ((2, 4, 5), (3, 4, 3), None, 1, 0, 3, 1),      # dilated kernel longer than the input
        ((2, 4, 5), (3, 4, 3), None, 0, 0, 1, 1),      # stride 0
        ((2, 4, 5), (3, 4, 3), None, 1, 0, 0, 1),      # dilation 0
        ((2, 4, 5), (3, 4, 3), None, 2, "same", 1, 1),  # 'same' with a stride
        ((2, 4, 5), (3, 2, 3), None, 1, 0, 1, 2),      # C_out not divisible by groups
        ((2, 4, 5), (3, 2, 3), None, 1, 0, 1, 3),      # C_in / groups != weight channels
        ((2, 4, 5), (4, 4, 3), None, 1, 0, 1, 2),      # weight channels != C_in / groups
        ((2, 4, 5), (4, 4, 3), 3, 1, 0, 1, 1),         # bias length != C_out
        ((2, 4, 5), (0, 4, 3), None, 1, 0, 1, 1),      # no output channels
        ((2, 4, 5), (3, 4, 0), None, 1, 0, 1, 1),      # empty kernel
        ((2, 4, 5), (3, 4, 3), None, 1, 0, 1, 0),      # groups 0
        ((2, 4, 0), (3, 4, 1), None, 1, 1, 1, 1),      # empty signal with padding
        ((2, 4, 0), (3, 4, 1), None, 1, 0, 1, 1),      # empty signal
    ]
    errors = []
    for xs, ws, blen, stride, padding, dilation, groups in picks:
        x, w = torch.zeros(xs, dtype=torch.float64), torch.zeros(ws, dtype=torch.float64)
        b = None if blen is None else torch.zeros(blen, dtype=torch.float64)
        try:
            F.conv1d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        except RuntimeError as e:
            errors.append({"x_shape": list(xs), "w_shape": list(ws), "b_len": blen,
                           "stride": stride, "padding": padding, "dilation": dilation,
                           "groups": groups, "error": str(e).splitlines()[0]})
        else:
            raise SystemExit(f"torch accepted {xs} {ws}; it is not an error case")
    # PyTorch accepts an empty batch. (It also accepts zero input channels, but returns an
    # (N, 0, L_out) tensor, pytorch/pytorch#56998; convlab returns the bias there, see chapter 1.)
    accepted = []
    for xs, ws in [((0, 4, 5), (3, 4, 3))]:
        b = values(ws[0])
        y = F.conv1d(torch.zeros(xs, dtype=torch.float64), torch.zeros(ws, dtype=torch.float64),
                     torch.from_numpy(b))
        accepted.append({"x_shape": list(xs), "w_shape": list(ws), "b": flat(b),
                         "y": flat(y.numpy()), "y_shape": list(y.shape)})
    return errors, accepted


def pool_cases():
    cases = []
    for _ in range(400):
        n = int(rng.integers(1, 16))
        k = int(rng.integers(1, 7))
        stride = int(rng.choice([0, 1, 2, 3, 4])) if rng.random() < 0.9 else 0
        padding = int(rng.integers(0, 4))
        dilation = int(rng.choice([1, 1, 2, 3]))
        ceil = bool(rng.random() < 0.5)
        x = torch.zeros(1, 1, n)
        try:
            out = F.max_pool1d(x, k, stride=stride if stride else None, padding=padding,
                               dilation=dilation, ceil_mode=ceil).shape[-1]
        except RuntimeError:
            out = None
        cases.append({"n": n, "kernel": k, "stride": stride or None, "padding": padding,
                      "dilation": dilation, "ceil_mode": ceil, "out": out})
    return cases


def conv_transpose_cases():
    cases = []
    for _ in range(200):
        n = int(rng.integers(1, 12))
        k = int(rng.integers(1, 6))
        stride = int(rng.integers(1, 4))
        padding = int(rng.integers(0, 4))
        dilation = int(rng.integers(1, 4))
        output_padding = int(rng.integers(0, 3))
        try:
            out = F.conv_transpose1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=stride,
                                     padding=padding, dilation=dilation,
                                     output_padding=output_padding).shape[-1]
        except RuntimeError:
            out = None
        cases.append({"n": n, "kernel": k, "stride": stride, "padding": padding,
                      "dilation": dilation, "output_padding": output_padding, "out": out})
    return cases


PADDING_SPECS = ["valid", "same", "full", "keras_same", 0, 1, 2]


def convnd_case(dims, max_size, max_kernel):
    """One random conv2d/conv3d call, its result or PyTorch's refusal."""
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in = groups * int(rng.integers(1, 3))
    c_out = groups * int(rng.integers(1, 3))
    batch = int(rng.integers(1, 3))
    sizes = [int(rng.integers(1, max_size)) for _ in range(dims)]
    kernel = [int(rng.integers(1, max_kernel)) for _ in range(dims)]
    strides = [int(rng.choice([1, 1, 2, 3])) for _ in range(dims)]
    dilations = [int(rng.choice([1, 1, 2])) for _ in range(dims)]
    if rng.random() < 0.6:
        specs = [PADDING_SPECS[int(rng.integers(len(PADDING_SPECS)))]] * dims
    else:
        specs = [PADDING_SPECS[int(rng.integers(len(PADDING_SPECS)))] for _ in range(dims)]
        # PyTorch's 'same' exists only with stride 1; per axis, convlab holds to that too.
        specs = ["keras_same" if sp == "same" and s > 1 else sp for sp, s in zip(specs, strides)]
    resolved = [torch_padding(sp, n, k, s, d)
                for sp, n, k, s, d in zip(specs, sizes, kernel, strides, dilations)]
    pads = [p for _, p in resolved]
    x = values(batch, c_in, *sizes)
    w = values(c_out, c_in // groups, *kernel)
    b = values(c_out) if rng.random() < 0.7 else None
    case = {"x": flat(x), "x_shape": list(x.shape), "w": flat(w), "w_shape": list(w.shape),
            "b": None if b is None else flat(b), "strides": strides, "paddings": specs,
            "pads": [list(p) for p in pads], "dilations": dilations, "groups": groups}
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    bt = None if b is None else torch.from_numpy(b)
    conv = F.conv2d if dims == 2 else F.conv3d
    native = [p for p, _ in resolved]
    try:
        if len(set(map(str, specs))) == 1 and isinstance(native[0], str):
            # One rule for every axis: let PyTorch apply its own 'valid' / 'same'.
            y = conv(xt, wt, bt, stride=strides, padding=native[0], dilation=dilations,
                     groups=groups)
        else:
            # Zeros placed by hand (F.pad takes the last axis first), then no padding.
            flat_pads = [v for l, r in reversed(pads) for v in (l, r)]
            y = conv(F.pad(xt, flat_pads), wt, bt, stride=strides, padding=0,
                     dilation=dilations, groups=groups)
    except RuntimeError as e:
        case["error"] = str(e).splitlines()[0]
        return case
    case["y"] = flat(y.numpy())
    case["y_shape"] = list(y.shape)
    # Autograd's gradients of L = Σ y·G for a random G.
    g = values(*y.shape)
    xg, wg = xt.clone().requires_grad_(), wt.clone().requires_grad_()
    bg = None if bt is None else bt.clone().requires_grad_()
    if len(set(map(str, specs))) == 1 and isinstance(native[0], str):
        yg = conv(xg, wg, bg, stride=strides, padding=native[0], dilation=dilations, groups=groups)
    else:
        flat_pads = [v for l, r in reversed(pads) for v in (l, r)]
        yg = conv(F.pad(xg, flat_pads), wg, bg, stride=strides, padding=0, dilation=dilations,
                  groups=groups)
    (yg * torch.from_numpy(g)).sum().backward()
    case.update({"grad_out": flat(g), "grad_x": flat(xg.grad), "grad_w": flat(wg.grad),
                 "grad_b": None if bg is None else flat(bg.grad)})
    return case


def convnd_cases(dims, count, max_size, max_kernel):
    cases, errors = [], []
    while len(cases) < count:
        case = convnd_case(dims, max_size, max_kernel)
        if "error" in case:
            if len(errors) < 20:
                errors.append(case)
        else:
            cases.append(case)
    return {"cases": cases, "errors": errors}


def unfold_cases():
    cases = []
    while len(cases) < 60:
        batch, c = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        kernel = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
        stride = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        padding = [int(rng.integers(0, 3)), int(rng.integers(0, 3))]
        dilation = [int(rng.integers(1, 3)), int(rng.integers(1, 3))]
        x = values(batch, c, h, w)
        args = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation)
        try:
            cols = F.unfold(torch.from_numpy(x), **args)
        except RuntimeError:
            continue
        y = values(*cols.shape)
        folded = F.fold(torch.from_numpy(y), output_size=(h, w), **args)
        cases.append({"x": flat(x), "x_shape": list(x.shape), "kernel": kernel,
                      "stride": stride, "padding": padding, "dilation": dilation,
                      "unfold": flat(cols.numpy()), "unfold_shape": list(cols.shape),
                      "cols": flat(y), "fold": flat(folded.numpy())})
    return cases


def signal2d_cases():
    cases = []
    for _ in range(120):
        x = values(int(rng.integers(1, 9)), int(rng.integers(1, 9)))
        w = values(int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        mode = str(rng.choice(["full", "same", "valid"]))
        case = {"x": flat(x), "x_shape": list(x.shape), "w": flat(w), "w_shape": list(w.shape),
                "mode": mode}
        try:
            case["convolve"] = flat(signal.convolve2d(x, w, mode))
            case["correlate"] = flat(signal.correlate2d(x, w, mode))
            case["shape"] = list(signal.convolve2d(x, w, mode).shape)
        except ValueError as e:
            case["error"] = str(e)
        cases.append(case)
    return cases


def ties(*shape):
    """Small integers, so windows often hold equal maxima (PyTorch keeps the first)."""
    return rng.integers(-3, 4, size=shape).astype(np.float64)


def pool_case(dims):
    """One random pooling call of every kind on the same input, with PyTorch's results."""
    batch, c = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    sizes = [int(rng.integers(1, 10)) for _ in range(dims)]
    x = ties(batch, c, *sizes) if rng.random() < 0.5 else values(batch, c, *sizes)
    kernel = [int(rng.integers(1, 5)) for _ in range(dims)]
    stride = [int(rng.integers(1, 4)) for _ in range(dims)] if rng.random() < 0.7 else None
    padding = [int(rng.integers(0, k // 2 + 1)) for k in kernel]
    dilation = [int(rng.choice([1, 1, 2])) for _ in range(dims)]
    ceil = bool(rng.random() < 0.5)
    include = bool(rng.random() < 0.7)
    divisor = int(rng.integers(1, 7)) if dims == 2 and rng.random() < 0.3 else None
    adaptive = [int(rng.integers(1, 6)) for _ in range(dims)]
    xt = torch.from_numpy(x)
    case = {"x": flat(x), "x_shape": list(x.shape), "kernel": kernel, "stride": stride,
            "padding": padding, "dilation": dilation, "ceil_mode": ceil,
            "count_include_pad": include, "divisor_override": divisor, "adaptive": adaptive}
    fns = {1: (F.max_pool1d, F.avg_pool1d, F.adaptive_max_pool1d, F.adaptive_avg_pool1d),
           2: (F.max_pool2d, F.avg_pool2d, F.adaptive_max_pool2d, F.adaptive_avg_pool2d)}[dims]
    max_pool, avg_pool, adaptive_max, adaptive_avg = fns
    try:
        y, i = max_pool(xt, kernel, stride=stride, padding=padding, dilation=dilation,
                        ceil_mode=ceil, return_indices=True)
        case["max"], case["max_index"], case["max_shape"] = flat(y), i.flatten().tolist(), list(y.shape)
        # A window holding only padding has the value −inf and an index past its map; PyTorch's
        # backward then adds its gradient to the next map's memory, which is not a derivative
        # of anything. Gradients are recorded only for calls without such windows.
        if torch.isfinite(y).all():
            g = values(*y.shape)
            xg = xt.clone().requires_grad_()
            yg = max_pool(xg, kernel, stride=stride, padding=padding, dilation=dilation,
                          ceil_mode=ceil)
            (yg * torch.from_numpy(g)).sum().backward()
            case["max_grad_out"], case["max_grad_x"] = flat(g), flat(xg.grad)
    except RuntimeError as e:
        case["max_error"] = str(e).splitlines()[0]
    avg_args = dict(stride=stride, padding=padding, ceil_mode=ceil, count_include_pad=include)
    if dims == 2:
        avg_args["divisor_override"] = divisor
    try:
        y = avg_pool(xt, kernel, **avg_args)
        case["avg"], case["avg_shape"] = flat(y), list(y.shape)
        g = values(*y.shape)
        xg = xt.clone().requires_grad_()
        (avg_pool(xg, kernel, **avg_args) * torch.from_numpy(g)).sum().backward()
        case["avg_grad_out"], case["avg_grad_x"] = flat(g), flat(xg.grad)
    except RuntimeError as e:
        case["avg_error"] = str(e).splitlines()[0]
    out = adaptive[0] if dims == 1 else adaptive
    y, i = adaptive_max(xt, out, return_indices=True)
    case["adaptive_max"], case["adaptive_max_index"] = flat(y), i.flatten().tolist()
    case["adaptive_avg"] = flat(adaptive_avg(xt, out))
    return case


def activation_cases():
    cases = []
    extremes = np.array([1e4, -1e4, 700.0, -700.0, 88.0, -88.0, 0.0, -0.0])
    for shape in [(3, 5), (2, 3, 4), (4,), (1, 7)]:
        for _ in range(3):
            x = rng.uniform(-5, 5, size=shape)
            flat_x = x.ravel()
            picks = rng.integers(0, len(flat_x), size=min(3, len(flat_x)))
            flat_x[picks] = rng.choice(extremes, size=len(picks))
            x = flat_x.astype(np.float32).astype(np.float64).reshape(shape)
            xt = torch.from_numpy(x)
            case = {"x": flat(x), "shape": list(shape),
                    "relu": flat(F.relu(xt)), "leaky_relu": flat(F.leaky_relu(xt, 0.01)),
                    "leaky_relu_0_2": flat(F.leaky_relu(xt, 0.2)),
                    "sigmoid": flat(torch.sigmoid(xt)), "tanh": flat(torch.tanh(xt)),
                    "softmax": [flat(F.softmax(xt, dim=a)) for a in range(len(shape))],
                    "log_softmax": [flat(F.log_softmax(xt, dim=a)) for a in range(len(shape))]}
            # Autograd's gradients of Σ f(x)·G for a random G.
            g = torch.from_numpy(values(*shape))

            def grad_of(f):
                xg = xt.clone().requires_grad_()
                (f(xg) * g).sum().backward()
                return flat(xg.grad)

            case.update({
                "grad_out": flat(g),
                "grad_relu": grad_of(F.relu),
                "grad_leaky_relu": grad_of(lambda v: F.leaky_relu(v, 0.01)),
                "grad_sigmoid": grad_of(torch.sigmoid),
                "grad_tanh": grad_of(torch.tanh),
                "grad_softmax": [grad_of(lambda v, a=a: F.softmax(v, dim=a))
                                 for a in range(len(shape))],
                "grad_log_softmax": [grad_of(lambda v, a=a: F.log_softmax(v, dim=a))
                                     for a in range(len(shape))],
            })
            cases.append(case)
    return cases


REDUCTIONS = ["none", "mean", "sum"]


def loss_cases():
    """Random calls of every loss with PyTorch's options, and PyTorch's results."""
    cases = []
    for _ in range(120):
        batch, classes = int(rng.integers(1, 5)), int(rng.integers(2, 6))
        extra = [int(rng.integers(1, 4))] if rng.random() < 0.3 else []
        shape = [batch, classes] + extra
        reduction = REDUCTIONS[int(rng.integers(3))]
        logits = rng.uniform(-4, 4, size=shape).astype(np.float32).astype(np.float64)
        sample_shape = [batch] + extra
        classes_t = rng.integers(0, classes, size=sample_shape)
        ignore = -100
        if rng.random() < 0.3:
            ignore = int(rng.integers(0, classes))
        weight = values(classes) + 1.5 if rng.random() < 0.5 else None
        smoothing = float(rng.choice([0.0, 0.0, 0.1, 0.3]))
        probs = rng.dirichlet(np.ones(classes), size=sample_shape)
        probs = np.moveaxis(probs, -1, 1).astype(np.float32).astype(np.float64)
        lt, wt = torch.from_numpy(logits), None if weight is None else torch.from_numpy(weight)
        tt = torch.from_numpy(classes_t)
        case = {"logits": flat(logits), "shape": shape, "classes": classes_t.ravel().tolist(),
                "probabilities": flat(probs), "weight": None if weight is None else flat(weight),
                "ignore_index": ignore, "label_smoothing": smoothing, "reduction": reduction}
        try:
            case["cross_entropy"] = flat(F.cross_entropy(
                lt, tt, weight=wt, ignore_index=ignore, label_smoothing=smoothing,
                reduction=reduction))
        except RuntimeError as e:
            case["cross_entropy_error"] = str(e).splitlines()[0]
        case["cross_entropy_probs"] = flat(F.cross_entropy(
            lt, torch.from_numpy(probs), weight=wt, label_smoothing=smoothing,
            reduction=reduction))
        log_p = F.log_softmax(lt, dim=1)
        case["log_probs"] = flat(log_p)
        case["nll_loss"] = flat(F.nll_loss(log_p, tt, weight=wt, ignore_index=ignore,
                                           reduction=reduction))
        # Binary losses on the same logits read as independent outputs.
        p = torch.sigmoid(lt)
        y = torch.from_numpy((rng.random(shape) < 0.5).astype(np.float64))
        if rng.random() < 0.2:
            p = p.clone()
            p.view(-1)[0] = float(rng.choice([0.0, 1.0]))  # exercises the −100 clamp
        ew = torch.from_numpy(values(*shape[-1:]) + 1.5) if rng.random() < 0.4 else None
        pw = torch.from_numpy(values(shape[-1]) + 2.0) if rng.random() < 0.4 else None
        # Autograd's gradients: of the loss itself, or of Σ loss·G per element for 'none'.
        upstream = values(*([batch] + extra)) if reduction == "none" else None

        def grad_of(fn, arg):
            arg = arg.clone().detach().requires_grad_()
            out = fn(arg)
            (out * torch.from_numpy(upstream_for(out))).sum().backward()
            return flat(arg.grad)

        def upstream_for(out):
            if reduction != "none":
                return np.array(1.0)
            return upstream if out.shape == tuple(upstream.shape) else binary_upstream

        binary_upstream = values(*shape)
        case["upstream"] = None if upstream is None else flat(upstream)
        case["binary_upstream"] = flat(binary_upstream)
        case["grad_cross_entropy"] = grad_of(lambda z: F.cross_entropy(
            z, tt, weight=wt, ignore_index=ignore, label_smoothing=smoothing,
            reduction=reduction), lt)
        case["grad_cross_entropy_probs"] = grad_of(lambda z: F.cross_entropy(
            z, torch.from_numpy(probs), weight=wt, label_smoothing=smoothing,
            reduction=reduction), lt)
        case["grad_nll_loss"] = grad_of(lambda z: F.nll_loss(
            z, tt, weight=wt, ignore_index=ignore, reduction=reduction), log_p.detach())
        case.update({"p": flat(p), "y": flat(y),
                     "element_weight": None if ew is None else flat(ew),
                     "pos_weight": None if pw is None else flat(pw),
                     "bce": flat(F.binary_cross_entropy(p, y, weight=ew, reduction=reduction)),
                     "bce_logits": flat(F.binary_cross_entropy_with_logits(
                         lt, y, weight=ew, pos_weight=pw, reduction=reduction))})
        case["grad_bce"] = grad_of(lambda q: F.binary_cross_entropy(
            q, y, weight=ew, reduction=reduction), p.detach())
        case["grad_bce_logits"] = grad_of(lambda z: F.binary_cross_entropy_with_logits(
            z, y, weight=ew, pos_weight=pw, reduction=reduction), lt)
        cases.append(case)
    return cases


def course_network():
    """The course's 6x6 example, end to end, with PyTorch autograd's gradients."""
    x = torch.tensor([[[[7., 6., 8., 5., 1., 3.], [8., 6., 5., 3., 5., 5.],
                        [9., 1., 1., 5., 3., 5.], [4., 5., 5., 9., 2., 6.],
                        [9., 5., 3., 1., 2., 2.], [4., 4., 8., 8., 9., 8.]]]],
                     dtype=torch.float64, requires_grad=True)
    w = torch.tensor([[[[1., 1., 0.], [-1., 1., -1.], [0., -1., -1.]]],
                      [[[1., 1., 0.], [-1., 1., -1.], [-1., 0., -1.]]]],
                     dtype=torch.float64, requires_grad=True)
    b = torch.ones(2, dtype=torch.float64, requires_grad=True)
    fc_w = torch.ones(1, 8, dtype=torch.float64, requires_grad=True)
    fc_b = torch.ones(1, dtype=torch.float64, requires_grad=True)
    h = F.conv2d(x, w, b)
    m = F.max_pool2d(h, 2)
    y = F.linear(m.flatten(1), fc_w, fc_b)
    y.sum().backward()
    return {"y": flat(y.detach()), "grad_x": flat(x.grad), "grad_w": flat(w.grad),
            "grad_b": flat(b.grad), "grad_fc_w": flat(fc_w.grad), "grad_fc_b": flat(fc_b.grad)}


def write(name, payload):
    payload = {"generator": generator(), **payload}
    path = OUT / name
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size} bytes")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write("signal.json", {"cases": signal_cases()})
    cases, random_errors = conv1d_cases()
    shape_errors, accepted = conv1d_shape_errors()
    write("conv1d.json", {"cases": cases, "errors": random_errors + shape_errors,
                          "accepted": accepted})
    write("shape.json", {"pool": pool_cases(), "conv_transpose": conv_transpose_cases()})
    write("conv2d.json", convnd_cases(2, 100, 10, 5))
    write("conv3d.json", convnd_cases(3, 30, 6, 4))
    write("unfold.json", {"cases": unfold_cases()})
    write("signal2d.json", {"cases": signal2d_cases()})
    write("pool.json", {"pool1d": [pool_case(1) for _ in range(150)],
                        "pool2d": [pool_case(2) for _ in range(150)]})
    write("activation.json", {"cases": activation_cases()})
    write("loss.json", {"cases": loss_cases()})
    write("course_network.json", course_network())


if __name__ == "__main__":
    main()
