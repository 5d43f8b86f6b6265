#!/usr/bin/env python3
"""The course's Fashion-MNIST recipe in PyTorch, to put beside `convlab train`.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch numpy safetensors
    /tmp/venv/bin/python tools/pytorch_fashion_mnist.py train [--data DIR] [--epochs 20] [--threads 2]
    /tmp/venv/bin/python tools/pytorch_fashion_mnist.py evaluate runs/latest/model.safetensors [--data DIR]

`train` runs the recipe of the course's PyTorch chapter: the CNN (conv 5×5 32, ReLU, max-pool,
conv 5×5 64, ReLU, max-pool, flatten, linear 3136→1024, ReLU, dropout 0.5, linear →10), Adam
1e-3, batch 64, shuffled, the first 10,000 training images for validation and the other 50,000
for training, images scaled to [0, 1]; it prints the same per-epoch line as convlab, the test
accuracy, the best validation epoch, the wall time, images per second and the peak resident
memory. `evaluate` loads a checkpoint that convlab wrote into the same nn.Sequential with
`model.load_state_dict(safetensors.torch.load_file(path))` and prints its test accuracy.

The IDX files are read with the standard library (gzip, struct), from --data or the places
convlab looks: $CONVLAB_DATA, ./data/fashion-mnist, /usr/share/datasets/fashion-mnist.
"""

import argparse
import gzip
import os
import pathlib
import resource
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def find_data(explicit):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    places = [explicit] if explicit else [os.environ.get("CONVLAB_DATA"), "data/fashion-mnist",
                                          "/usr/share/datasets/fashion-mnist"]
    for place in filter(None, places):
        d = pathlib.Path(place)
        if all((d / n).exists() or (d / (n + ".gz")).exists() for n in names):
            return d
    raise SystemExit(f"no Fashion-MNIST in {places}")


def read_idx(path):
    if not path.exists():
        path = path.with_name(path.name + ".gz")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rank = data[3]
    dims = struct.unpack(f">{rank}I", data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def load(d, prefix):
    x = read_idx(d / f"{prefix}-images-idx3-ubyte")
    y = read_idx(d / f"{prefix}-labels-idx1-ubyte")
    return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def course_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=2),
        nn.Conv2d(32, 64, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=2),
        nn.Flatten(), nn.Linear(3136, 1024), nn.ReLU(), nn.Dropout(p=0.5), nn.Linear(1024, 10))


def evaluate(model, x, y, batch=500):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = model(x[i:i + batch])
            loss += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    return loss / len(y), correct / len(y)


def train(args):
    torch.set_num_threads(args.threads)
    d = find_data(args.data)
    x, y = load(d, "train")
    x_test, y_test = load(d, "t10k")
    n_valid = args.validation if args.validation is not None else len(y) // 6
    x_valid, y_valid, x_train, y_train = x[:n_valid], y[:n_valid], x[n_valid:], y[n_valid:]
    print(f"PyTorch {torch.__version__}, {args.threads} threads: {len(y_train)} training, "
          f"{len(y_valid)} validation, {len(y_test)} test images from {d}")
    torch.manual_seed(args.seed)
    model = course_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, best = time.perf_counter(), (float("inf"), 0)
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(y_train))
        loss_sum, correct = 0.0, 0
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            logits = model(x_train[idx])
            loss = F.cross_entropy(logits, y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y_train[idx]).sum().item()
        train_s = time.perf_counter() - t0
        val_loss, val_acc = evaluate(model, x_valid, y_valid)
        best = min(best, (val_loss, epoch))
        print(f"epoch {epoch:>3}  train loss {loss_sum / len(y_train):.4f} acc "
              f"{correct / len(y_train):.4f}  val loss {val_loss:.4f} acc {val_acc:.4f}  "
              f"{time.perf_counter() - t0:.1f} s  {len(y_train) / train_s:.0f} img/s", flush=True)
    wall = time.perf_counter() - start
    test_loss, test_acc = evaluate(model, x_test, y_test)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"best validation loss {best[0]:.4f} at epoch {best[1]}")
    print(f"test loss {test_loss:.4f}, test accuracy {test_acc:.4f}")
    print(f"wall {wall:.0f} s, {args.epochs * len(y_train) / wall:.0f} images/s overall, "
          f"peak RSS {rss:.0f} MiB")


def evaluate_checkpoint(args):
    from safetensors.torch import load_file

    d = find_data(args.data)
    x_test, y_test = load(d, "t10k")
    model = course_cnn()
    model.load_state_dict(load_file(args.checkpoint))
    test_loss, test_acc = evaluate(model, x_test, y_test)
    print(f"PyTorch {torch.__version__} with {args.checkpoint}: test loss {test_loss:.4f}, "
          f"test accuracy {test_acc:.4f} on {len(y_test)} images")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the course recipe")
    t.add_argument("--data")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--validation", type=int)
    e = sub.add_parser("evaluate", help="test accuracy of a convlab checkpoint in PyTorch")
    e.add_argument("checkpoint")
    e.add_argument("--data")
    args = parser.parse_args()
    train(args) if args.command == "train" else evaluate_checkpoint(args)


if __name__ == "__main__":
    main()
