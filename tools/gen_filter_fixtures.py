#!/usr/bin/env python3
"""Regenerate chapter 12's photograph and fixtures (image kernels, grayscale, PNG).

assets/images/chelsea.png: scikit-image's sample photograph `chelsea.png` (CC0, Stefan van der
Walt), shipped inside the scikit-image wheel, downscaled with Pillow (Lanczos) to 256 pixels on
its long side. assets/images/README.md records where it comes from and its licence.

tests/fixtures/chelsea_gray_pil.png: that photograph through Pillow's Image.convert('L'), the
ITU-R 601-2 luma transform in Pillow's integer arithmetic, for the grayscale test.

tests/fixtures/filters.json:
  - grayscale: small RGB images (random pixels and chosen colours) and Pillow's convert('L');
  - kernels: the course's image kernels (typed here from the course notes, independently of
    src/filters.rs) applied to a small random 8-bit image by
      scipy.signal.correlate2d / convolve2d (mode='same', boundary='fill': zero padding),
      scipy.ndimage.correlate (mode='nearest': the border pixels repeated),
    and, for the kernels whose float32 arithmetic is exact, by Pillow's
    ImageFilter.Kernel(size, weights, scale=1) (rounded, clipped to 0..255, border pixels left
    as they were; Pillow applies the kernel's first row to the row *below* each pixel).

The file records the library versions that produced it. Building and testing convlab never
runs this.

    python3 -m venv /tmp/venv-pil && /tmp/venv-pil/bin/pip install pillow numpy scipy scikit-image
    /tmp/venv-pil/bin/python tools/gen_filter_fixtures.py
"""

import json
import pathlib

import numpy as np
import PIL
import scipy
import skimage
from PIL import Image, ImageFilter
from scipy import ndimage, signal

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
IMAGES = ROOT / "assets" / "images"
LONG_SIDE = 256
rng = np.random.default_rng(20261212)

# The course's kernels (blog post on image kernels; slides for emboss), plus Sobel.
KERNELS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edges_diagonal": [[1, 0, -1], [0, 0, 0], [-1, 0, 1]],
    "edges_laplace4": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "edges_laplace8": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "box_blur": (np.ones((3, 3)) / 9).tolist(),
    "gaussian3": (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16).tolist(),
    "gaussian5": (np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256).tolist(),
    "unsharp5": None,  # filled below
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
}
unsharp = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(float)
unsharp[2, 2] = -476
KERNELS["unsharp5"] = (unsharp * (-1 / 256)).tolist()

# Kernels whose weights and sums are exact in float32, so Pillow's float32 arithmetic rounds
# the same way as an exact sum.
PIL_EXACT = ["identity", "edges_diagonal", "sharpen", "gaussian3", "gaussian5", "unsharp5",
             "emboss", "sobel_x", "sobel_y"]


def generator():
    return (f"Pillow {PIL.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"scikit-image {skimage.__version__}")


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def photo():
    src = pathlib.Path(skimage.data.__file__).parent / "chelsea.png"
    im = Image.open(src).convert("RGB")
    w, h = im.size
    scale = LONG_SIDE / max(w, h)
    size = (round(w * scale), round(h * scale))
    small = im.resize(size, Image.Resampling.LANCZOS)
    IMAGES.mkdir(parents=True, exist_ok=True)
    small.save(IMAGES / "chelsea.png", optimize=True)
    small.convert("L").save(FIXTURES / "chelsea_gray_pil.png", optimize=True)
    print(f"chelsea.png {w}x{h} -> {size[0]}x{size[1]}")


def grayscale_cases():
    chosen = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]],
                       [[0, 0, 0], [1, 1, 1], [128, 64, 32], [254, 1, 127]],
                       [[10, 200, 30], [90, 90, 91], [3, 2, 250], [255, 255, 0]]],
                      dtype=np.uint8)
    cases = []
    for rgb in [chosen, rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8),
                rng.integers(0, 256, size=(1, 64, 3), dtype=np.uint8)]:
        gray = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
        cases.append({"shape": list(rgb.shape), "rgb": rgb.ravel().tolist(),
                      "gray": gray.ravel().tolist()})
    return cases


def pil_filter(x, k):
    k = np.asarray(k, dtype=np.float64)
    kernel = ImageFilter.Kernel(k.shape[::-1], k.ravel().tolist(), scale=1)
    return np.asarray(Image.fromarray(x, "L").filter(kernel))


def kernel_cases():
    x = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
    xf = x.astype(np.float64)
    out = {"x_shape": list(x.shape), "x": x.ravel().tolist(), "kernels": {}}
    for name, k in KERNELS.items():
        k = np.asarray(k, dtype=np.float64)
        case = {
            "weights": flat(k),
            "size": k.shape[0],
            "correlate_zero": flat(signal.correlate2d(xf, k, mode="same", boundary="fill")),
            "convolve_zero": flat(signal.convolve2d(xf, k, mode="same", boundary="fill")),
            "correlate_replicate": flat(ndimage.correlate(xf, k, mode="nearest")),
            "convolve_replicate": flat(ndimage.convolve(xf, k, mode="nearest")),
        }
        if name in PIL_EXACT:
            case["pil"] = pil_filter(x, k).ravel().tolist()
        out["kernels"][name] = case
    return out


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    photo()
    data = {"generator": generator(), "grayscale": grayscale_cases(), "filters": kernel_cases()}
    (FIXTURES / "filters.json").write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print("wrote", FIXTURES / "filters.json", "with", generator())


if __name__ == "__main__":
    main()
