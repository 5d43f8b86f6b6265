#!/usr/bin/env python3
"""Regenerate tests/fixtures/optim.json: runs of torch.optim's SGD, Adam, AdamW and RMSprop.

Three small parameters (named like a Sequential's state_dict: "0.weight", "0.bias", "3.weight")
take STEPS optimizer steps from gradients drawn here at random and stored in the fixture (no
autograd), for many option combinations. Each run records the parameter values after every step,
computed once in float64 and once in float32 from the same inputs (all exactly representable in
float32), and the optimizer's state after the last step of each under convlab's flat names
("0.weight.exp_avg", "0.weight.step"). Some runs change the learning rate before a step, as a
step-decay schedule does. PyTorch runs its single-tensor implementation (foreach=False), the one
it uses for CPU tensors. The file records the torch version. Building and testing convlab never
runs this.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy torch
    /tmp/venv/bin/python tools/gen_optim_fixtures.py
"""

import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "optim.json"
rng = np.random.default_rng(20261124)

PARAMS = [("0.weight", (3, 2)), ("0.bias", (4,)), ("3.weight", (2, 1, 2, 2))]
STEPS = 5
# Gradients of very different sizes from step to step, so that AMSGrad's running maximum of the
# second moment differs from the second moment itself. Powers of two keep them exact in float32.
GRAD_SCALE = [1.0, 4.0, 0.25, 0.5, 0.125]

# (optimizer, label, options as given to torch.optim, {step index: new learning rate}).
RUNS = [
    ("sgd", "plain", {"lr": 0.1}, {}),
    ("sgd", "defaults", {}, {}),
    ("sgd", "momentum", {"lr": 0.1, "momentum": 0.9}, {}),
    ("sgd", "dampening", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}, {}),
    ("sgd", "nesterov", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, {}),
    ("sgd", "weight decay", {"lr": 0.1, "weight_decay": 0.1}, {}),
    ("sgd", "momentum + weight decay", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01}, {}),
    ("sgd", "nesterov + weight decay",
     {"lr": 0.05, "momentum": 0.7, "nesterov": True, "weight_decay": 0.05}, {}),
    ("sgd", "momentum, lr decay", {"lr": 0.1, "momentum": 0.9}, {3: 0.01}),
    ("adam", "defaults", {}, {}),
    ("adam", "lr", {"lr": 0.05}, {}),
    ("adam", "betas", {"lr": 0.01, "betas": (0.8, 0.95)}, {}),
    ("adam", "eps", {"lr": 0.01, "eps": 0.1}, {}),
    ("adam", "weight decay", {"lr": 0.01, "weight_decay": 0.1}, {}),
    ("adam", "amsgrad", {"lr": 0.01, "amsgrad": True}, {}),
    ("adam", "amsgrad + weight decay",
     {"lr": 0.02, "betas": (0.5, 0.9), "weight_decay": 0.05, "amsgrad": True}, {}),
    ("adam", "lr decay", {"lr": 0.05}, {2: 0.005}),
    ("adamw", "defaults", {}, {}),
    ("adamw", "weight decay", {"lr": 0.01, "weight_decay": 0.1}, {}),
    ("adamw", "amsgrad", {"lr": 0.05, "weight_decay": 0.2, "amsgrad": True}, {}),
    ("adamw", "lr decay", {"lr": 0.05, "weight_decay": 0.5}, {3: 0.02}),
    ("rmsprop", "defaults", {}, {}),
    ("rmsprop", "alpha, eps", {"lr": 0.005, "alpha": 0.9, "eps": 1e-3}, {}),
    ("rmsprop", "momentum", {"lr": 0.01, "momentum": 0.9}, {}),
    ("rmsprop", "centered", {"centered": True}, {}),
    ("rmsprop", "weight decay", {"weight_decay": 0.1}, {}),
    ("rmsprop", "centered + momentum",
     {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True}, {}),
    ("rmsprop", "momentum, lr decay", {"lr": 0.02, "momentum": 0.8}, {2: 0.002}),
]

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}


def exact32(*shape):
    """Random values that are exact in float32, as float64."""
    return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32).astype(np.float64)


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


INITIAL = [exact32(*shape) for _, shape in PARAMS]
GRADS = [[exact32(*shape) * s for _, shape in PARAMS] for s in GRAD_SCALE]


def run(kind, options, lr_changes, dtype):
    params = [torch.tensor(v, dtype=dtype) for v in INITIAL]
    opt = OPTIMIZERS[kind](params, foreach=False, **options)
    values = []
    for step in range(STEPS):
        if step in lr_changes:
            for group in opt.param_groups:
                group["lr"] = lr_changes[step]
        for p, g in zip(params, GRADS[step]):
            p.grad = torch.tensor(g, dtype=dtype)
        opt.step()
        values.append([flat(p.detach()) for p in params])
    state = {}
    for (name, _), p in zip(PARAMS, params):
        for key, tensor in opt.state[p].items():
            state[f"{name}.{key}"] = flat(tensor)
    return values, state


def main():
    runs = []
    for kind, label, options, lr_changes in RUNS:
        f64, state = run(kind, options, lr_changes, torch.float64)
        f32, state32 = run(kind, options, lr_changes, torch.float32)
        runs.append({
            "optimizer": kind,
            "label": label,
            "options": options,
            "lr_changes": [[step, lr] for step, lr in sorted(lr_changes.items())],
            "f64": f64,
            "f32": f32,
            "state": state,
            "state_f32": state32,
        })
    fixture = {
        "generator": f"torch {torch.__version__}, numpy {np.__version__}",
        "params": [{"name": n, "shape": list(s), "value": flat(v)}
                   for (n, s), v in zip(PARAMS, INITIAL)],
        "grads": [[flat(g) for g in step] for step in GRADS],
        "runs": runs,
    }
    OUT.write_text(json.dumps(fixture, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(runs)} runs)")


if __name__ == "__main__":
    main()
