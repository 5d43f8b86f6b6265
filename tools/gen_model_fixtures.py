#!/usr/bin/env python3
"""Regenerate the whole-model fixtures of chapters 9 and 10.

tests/fixtures/course_cnn.safetensors: the course's Fashion-MNIST CNN in PyTorch, one forward
and backward pass and one Adam step, for the whole-model parity test.

tests/fixtures/keras_mnist_pytorch.safetensors: a state_dict saved by safetensors.torch from
PyTorch's twin of the Keras MNIST convnet (torch.manual_seed(0) initialisation), with the
model's float64 probabilities on a fixed batch in its metadata, for loading PyTorch's files.

The weights and the batch are given by formulas that convlab's test evaluates the same way in
f64, so no weights need storing:

    parameter number j of the state_dict (0.weight, 0.bias, 3.weight, ...), element k:
        ((k·7919 + 101·j) mod 2003 / 1001.5 − 1) · (1 / √fan_in)
    image pixel k of the batch (4, 1, 28, 28):  ((k·131 + 7) mod 256) / 255
    labels: 0, 3, 7, 9

Dropout is set to p = 0 (its masks come from each library's own generator), everything else is
the course's model in training mode. Stored in float64: the logits, the loss, the gradient of
every parameter except fc1's weight, which is stored as its two factors (∂L/∂W = Gᵀ·X with G
the gradient at fc1's output and X its input, 4 rows each), and the parameters after one step of
torch.optim.Adam(lr=1e-3) (fc1's weight at every 1009th element). The same in float32 from the
float32 model.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors numpy
    /tmp/venv/bin/python tools/gen_model_fixtures.py
"""

import pathlib

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "course_cnn.safetensors"


def model(dtype):
    m = nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(p=0.0), nn.Linear(1024, 10),
    ).to(dtype)
    with torch.no_grad():
        for j, (name, p) in enumerate(m.state_dict().items()):
            fan_in = {"0": 25, "3": 800, "7": 3136, "10": 1024}[name.split(".")[0]]
            k = np.arange(p.numel(), dtype=np.int64)
            v = (((k * 7919 + 101 * j) % 2003) / 1001.5 - 1.0) * (1.0 / np.sqrt(float(fan_in)))
            p.copy_(torch.from_numpy(v.reshape(p.shape)).to(dtype))
    return m


def run(dtype, suffix):
    m = model(dtype)
    m.train()
    k = np.arange(4 * 28 * 28, dtype=np.int64)
    x = torch.from_numpy((((k * 131 + 7) % 256) / 255.0).reshape(4, 1, 28, 28)).to(dtype)
    y = torch.tensor([0, 3, 7, 9])
    captured = {}
    fc1 = m[7]
    fc1.register_forward_hook(lambda mod, inp, out: captured.update(x=inp[0].detach()))
    fc1.register_full_backward_hook(lambda mod, gin, gout: captured.update(g=gout[0].detach()))
    logits = m(x)
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    out = {
        f"logits{suffix}": logits.detach(),
        f"loss{suffix}": loss.detach().reshape(1),
        f"fc1_input{suffix}": captured["x"],
        f"fc1_grad_output{suffix}": captured["g"],
    }
    for name, p in m.named_parameters():
        if name != "7.weight":
            out[f"grad.{name}{suffix}"] = p.grad.detach().clone()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    opt.step()
    for name, p in m.named_parameters():
        v = p.detach().clone()
        if name == "7.weight":
            v = v.reshape(-1)[::1009].clone()
        out[f"adam.{name}{suffix}"] = v
    return {k: v.numpy() for k, v in out.items()}


def keras_mnist():
    import json
    from safetensors.torch import save_file as save_torch

    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(576, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1),
    )
    k = np.arange(1, 2 * 28 * 28 + 1, dtype=np.int64)
    x = torch.from_numpy((((k * 37) % 256) / 255.0).reshape(2, 1, 28, 28))
    with torch.no_grad():
        p = m.double()(x).reshape(-1).tolist()
    state = {name: t.float().contiguous() for name, t in m.state_dict().items()}
    path = OUT.parent / "keras_mnist_pytorch.safetensors"
    save_torch(state, str(path), metadata={"format": "pt", "probabilities": json.dumps(p)})
    print(path)


keras_mnist()
tensors = {**run(torch.float64, ""), **run(torch.float32, ".f32")}
save_file(tensors, str(OUT), metadata={"generator": f"torch {torch.__version__}"})
print(OUT, sum(v.size for v in tensors.values()), "values")
