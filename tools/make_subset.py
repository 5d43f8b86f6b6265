#!/usr/bin/env python3
"""Write the small Fashion-MNIST subset that convlab embeds in data/fashion-mnist/.

The first 10,000 training images and labels and the first 2,000 test images and labels of the
full data set, as gzip-compressed IDX files with the original names. Only the standard library
is used. The output is byte-for-byte reproducible: gzip level 9, modification time 0 and no file
name in the gzip header.

    python3 tools/make_subset.py [SOURCE_DIR] [OUTPUT_DIR]

SOURCE_DIR defaults to /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist
package) and must hold the four original files, plain or gzip-compressed; OUTPUT_DIR defaults to
data/fashion-mnist beside this script's parent directory.
"""

import gzip
import os
import struct
import sys

TRAIN_COUNT = 10_000
TEST_COUNT = 2_000
FILES = [
    ("train-images-idx3-ubyte", TRAIN_COUNT),
    ("train-labels-idx1-ubyte", TRAIN_COUNT),
    ("t10k-images-idx3-ubyte", TEST_COUNT),
    ("t10k-labels-idx1-ubyte", TEST_COUNT),
]


def read_raw(source_dir, name):
    plain = os.path.join(source_dir, name)
    if os.path.exists(plain):
        with open(plain, "rb") as f:
            return f.read()
    with gzip.open(plain + ".gz", "rb") as f:
        return f.read()


def first_items(raw, name, count):
    """The IDX file `raw` cut to its first `count` items along the first axis."""
    zero, type_code, rank = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code != 0x08:
        sys.exit(f"{name}: not an IDX file of unsigned bytes")
    dims = list(struct.unpack(f">{rank}I", raw[4 : 4 + 4 * rank]))
    item = 1
    for d in dims[1:]:
        item *= d
    body = raw[4 + 4 * rank :]
    if len(body) != dims[0] * item:
        sys.exit(f"{name}: header says {dims[0] * item} bytes, file holds {len(body)}")
    if count > dims[0]:
        sys.exit(f"{name}: holds {dims[0]} items, fewer than {count}")
    header = struct.pack(f">HBB{rank}I", 0, 0x08, rank, count, *dims[1:])
    return header + body[: count * item]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    source_dir = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    default_output = os.path.normpath(os.path.join(here, "..", "data", "fashion-mnist"))
    output_dir = sys.argv[2] if len(sys.argv) > 2 else default_output
    os.makedirs(output_dir, exist_ok=True)
    for name, count in FILES:
        subset = first_items(read_raw(source_dir, name), name, count)
        packed = gzip.compress(subset, compresslevel=9, mtime=0)
        path = os.path.join(output_dir, name + ".gz")
        with open(path, "wb") as f:
            f.write(packed)
        print(f"{path}: {count} items, {len(subset)} bytes, {len(packed)} compressed")


if __name__ == "__main__":
    main()
