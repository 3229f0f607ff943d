"""Sample pictures: an image grid for image-shaped data, a scatter plot for 2-D data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import RuntimeUserError

__all__ = ["save_samples_png"]


def _image_like(values: np.ndarray) -> np.ndarray | None:
    """[n, H, W] grey images from [n, C, H, W], [n, H, W] or [n, 784]."""
    if values.ndim == 4 and values.shape[1] in (1, 3):
        return values[:, 0] if values.shape[1] == 1 else values.transpose(0, 2, 3, 1)
    if values.ndim == 3:
        return values
    if values.ndim == 2 and math.isqrt(values.shape[1]) ** 2 == values.shape[1] and values.shape[1] >= 16:
        side = math.isqrt(values.shape[1])
        return values.reshape(len(values), side, side)
    return None


def save_samples_png(samples: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name, values = _main_variable(samples)
    images = _image_like(values)
    if images is not None:
        n = len(images)
        cols = math.ceil(math.sqrt(n))
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, img in zip(axes.flat, images):
            ax.imshow(img, cmap="gray", interpolation="nearest")
    elif values.ndim == 2 and values.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(values[:, 0], values[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
        ax.set_title(f"{len(values)} samples of {name}")
    else:
        raise RuntimeUserError(f"cannot draw {name} of shape {list(values.shape[1:])} as a picture",
                               hint="use .npz for the raw samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _main_variable(samples: dict[str, np.ndarray]) -> tuple[str, np.ndarray]:
    # the largest variable is the data a person wants to see
    name = max(samples, key=lambda k: samples[k][0].size if samples[k].ndim else 0)
    return name, np.asarray(samples[name], dtype=np.float32)
