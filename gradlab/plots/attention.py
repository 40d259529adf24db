"""Attention maps: the responsibilities Z^(t) of each unrolled iteration for a few images, as a grid with
one row per iteration (as the HEMNet paper shows attention at each GEM step)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from gradlab.plots.common import PlotInputError, bare_axes, figure_title, styled, to_numpy

Z_CMAP = "magma"
CELL = 1.5  # inches per map


@styled
def attention_maps(z_maps: object, *, image: object = None, bases: int | Sequence[int] | None = None,
                   argmax: bool = True, iterations: Sequence[int] | None = None) -> Figure:
    """Z^(t) per image: rows t = 1..T, columns the input image (if given), a few bases' maps z_·k, and (with
    `argmax`) the assignment map argmax_k z_nk coloured per basis.

    z_maps: (T, K, H, W) for one image, (B, T, K, H, W) or a list of (T, K, H, W); numpy or torch. From a
    traced layer: `torch.stack(layer.trace.z[1:], 1)`. image: None, (H, W), (H, W, 3), (3, H, W), a batch or a
    list, one per z. bases: None (the 4 bases holding the most attention at t = T), n (the top n), or indices.
    iterations: the row labels (default 1..T).
    """
    maps = _z_list(z_maps)
    images = _image_list(image, len(maps))
    K = maps[0].shape[1]
    chosen = [_bases(z, bases) for z in maps]
    if not argmax and not any(chosen):
        raise PlotInputError("nothing to show: bases selects no basis and argmax=False")
    colors = _basis_colors(K)
    ncols = int(images is not None) + max(len(c) for c in chosen) + int(argmax)
    nrows = sum(len(z) for z in maps)
    fig = Figure(figsize=(CELL * ncols + 1.2, CELL * nrows + 0.6), layout="constrained")
    grid = fig.add_gridspec(nrows, ncols)
    first = 0
    for i, (z, ks) in enumerate(zip(maps, chosen)):
        col = 0
        if images is not None:
            _show_image(fig.add_subplot(grid[first:first + len(z), 0]), images[i], i)
            col = 1
        _block(fig, grid, first, col, z, ks, colors, argmax, _row_labels(iterations, len(z)))
        first += len(z)
    if any(ax.get_gid() == "z" for ax in fig.axes):
        fig.colorbar(ScalarMappable(Normalize(0, 1), Z_CMAP), ax=list(fig.axes), label=r"responsibility $z_{nk}$",
                     shrink=min(0.6, 3 / nrows))
    figure_title(fig, r"Attention maps $Z^{(t)}$ at each unrolled iteration")
    return fig


def _block(fig: Figure, grid, row0: int, col0: int, z: np.ndarray, ks: list[int], colors: ListedColormap,
           argmax: bool, labels: Sequence[int]) -> None:
    """The rows of one image: per iteration t its chosen bases' maps, then the argmax map; rows labelled t."""
    for t, label in enumerate(labels):
        row = []
        for j, k in enumerate(ks):
            row.append(ax := _map_axes(fig.add_subplot(grid[row0 + t, col0 + j]), "z"))
            ax.imshow(z[t, k], cmap=Z_CMAP, vmin=0, vmax=1, interpolation="nearest")
            if t == 0:
                ax.set_title(f"basis {k}", color=colors(k), fontsize="small", fontweight="bold")
        if argmax:
            row.append(ax := _map_axes(fig.add_subplot(grid[row0 + t, col0 + len(ks)]), "argmax"))
            ax.imshow(z[t].argmax(0), cmap=colors, vmin=-0.5, vmax=colors.N - 0.5, interpolation="nearest")
            if t == 0:
                ax.set_title(r"argmax$_k\ z_{nk}$", fontsize="small")
        row[0].set_ylabel(f"t = {label}", fontsize="small")


def _row_labels(iterations: Sequence[int] | None, T: int) -> Sequence[int]:
    if iterations is None:
        return range(1, T + 1)
    if len(iterations) != T:
        raise PlotInputError(f"iterations has {len(iterations)} labels for maps with T = {T} iterations")
    return iterations


def _map_axes(ax: Axes, gid: str) -> Axes:
    ax.set_gid(gid)
    bare_axes(ax).spines[:].set_visible(False)
    return ax


def _show_image(ax: Axes, image: np.ndarray, i: int) -> None:
    _map_axes(ax, "image")
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_title(f"input {i}", fontsize="small")


def _z_list(z_maps: object) -> list[np.ndarray]:
    items = list(z_maps) if isinstance(z_maps, list | tuple) else [z_maps]
    arrays = [to_numpy(z) for z in items]
    if len(arrays) == 1 and arrays[0].ndim == 5:
        arrays = list(arrays[0])
    for z in arrays:
        if z.ndim != 4 or z.shape[0] == 0:
            raise PlotInputError(f"z_maps must be (T, K, H, W) per image (or (B, T, K, H, W), or a list of "
                                 f"(T, K, H, W)); got an array of shape {z.shape}")
    if len({z.shape[1] for z in arrays}) > 1:
        raise PlotInputError(f"z_maps disagree on the number of bases K: {[z.shape[1] for z in arrays]}")
    return arrays


def _image_list(image: object, count: int) -> list[np.ndarray] | None:
    if image is None:
        return None
    items = list(image) if isinstance(image, list | tuple) else [image]
    arrays = [to_numpy(x) for x in items]
    if len(arrays) == 1 and arrays[0].ndim == 4:
        arrays = list(arrays[0])
    if len(arrays) != count:
        raise PlotInputError(f"got {len(arrays)} image(s) for {count} attention map stack(s): give one per image")
    return [_displayable(x) for x in arrays]


def _displayable(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3) in [0, 1]: channels-first moved last, one channel squeezed, other ranges rescaled."""
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise PlotInputError(f"image must be (H, W), (H, W, 3) or (3, H, W); got shape {image.shape}")
    low, high = np.nanmin(image), np.nanmax(image)
    if low < 0 or high > 1:
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image


def _bases(z: np.ndarray, bases: int | Sequence[int] | None) -> list[int]:
    """The bases to show: given indices (checked), or the n holding the most attention at the last iteration."""
    K = z.shape[1]
    if bases is None or isinstance(bases, int | np.integer):
        n = 4 if bases is None else int(bases)
        if n < 0:
            raise PlotInputError(f"bases={bases!r} is invalid: give a count ≥ 0 or a list of basis indices")
        return sorted(np.argsort(-z[-1].sum(axis=(1, 2)), kind="stable")[: min(n, K)].tolist())
    ks = [int(k) for k in bases]
    bad = [k for k in ks if not 0 <= k < K]
    if bad:
        raise PlotInputError(f"bases {bad} are out of range: the maps have K = {K} bases (0..{K - 1})")
    return ks


def _basis_colors(K: int) -> ListedColormap:
    """A colour per basis, the same in the column titles and in the argmax maps."""
    return ListedColormap(sns.color_palette("colorblind" if K <= 10 else "husl", K), name="bases")
