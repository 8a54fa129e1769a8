"""Canny edges: the control image a "canny" ControlNet expects, made from any picture without downloaded weights.

The classic four stages in numpy: Gaussian smoothing, Sobel gradients, thinning to one-pixel ridges (non-maximum
suppression along the gradient direction) and hysteresis (weak edges survive only when connected to strong
ones). Thresholds are on the same scale as OpenCV's ``Canny`` (L1 norm of 3×3 Sobel gradients of 8-bit grey),
so the usual 100/200 mean the same here. Pure numpy: safe on any thread.
"""

from __future__ import annotations

import math

import numpy as np

#: Hysteresis rounds at most (each grows the kept edges by one pixel; real edges settle in far fewer).
_MAX_ROUNDS = 4096


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy, dx) with edge padding: out[y, x] = a[y + dy, x + dx]."""
    h, w = a.shape
    padded = np.pad(a, 1, mode="edge")
    return padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def _gaussian(grey: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return grey
    radius = max(1, math.ceil(3 * sigma))
    xs = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(xs**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    out = grey
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect" if min(out.shape) > radius else "edge")
        n = out.shape[axis]
        out = sum(k * np.take(padded, np.arange(i, i + n), axis=axis) for i, k in enumerate(kernel))
    return out.astype(np.float32)


def canny(rgb: np.ndarray, low: float = 100.0, high: float = 200.0, sigma: float = 1.0) -> np.ndarray:
    """White one-pixel edges on black (uint8 H×W×3, read-only) of an RGB (or grey) uint8 picture."""
    if not 0 <= low <= high:
        raise ValueError("Canny thresholds need 0 ≤ low ≤ high.")
    image = rgb.astype(np.float32)
    grey = image if image.ndim == 2 else image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    g = _gaussian(grey, sigma)
    s = _shifted
    gx = (s(g, -1, 1) + 2 * s(g, 0, 1) + s(g, 1, 1)) - (s(g, -1, -1) + 2 * s(g, 0, -1) + s(g, 1, -1))
    gy = (s(g, 1, -1) + 2 * s(g, 1, 0) + s(g, 1, 1)) - (s(g, -1, -1) + 2 * s(g, -1, 0) + s(g, -1, 1))
    magnitude = np.abs(gx) + np.abs(gy)

    # Non-maximum suppression: keep a pixel only where it is a ridge across the edge (direction in 4 bins).
    angle = (np.degrees(np.arctan2(gy, gx)) + 180.0) % 180.0
    bins = ((angle + 22.5) // 45).astype(np.int8) % 4  # 0: horizontal gradient, 1: 45°, 2: vertical, 3: 135°
    neighbours = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    ridge = np.zeros(magnitude.shape, bool)
    for b, ((ay, ax), (by, bx)) in neighbours.items():
        # Strict on one side, as OpenCV does: of two equal pixels across a step, only one stays.
        keep = (magnitude > s(magnitude, ay, ax)) & (magnitude >= s(magnitude, by, bx))
        ridge |= (bins == b) & keep
    magnitude = np.where(ridge, magnitude, 0.0)

    # Hysteresis: grow the strong edges through the weak ones (8-connected) until nothing changes.
    weak = magnitude >= low
    edges = magnitude >= high
    for _ in range(_MAX_ROUNDS):
        grown = edges.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy or dx:
                    grown |= s(edges, dy, dx)
        grown &= weak
        if np.array_equal(grown, edges):
            break
        edges = grown
    out = np.repeat((edges * np.uint8(255))[..., None], 3, axis=2)
    out.setflags(write=False)
    return out
