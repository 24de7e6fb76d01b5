"""Whole-batch normalisation and augmentation, run on whatever device the batch is on.

Every image of a batch gets its own random crop offset and mirroring, yet the work is a
handful of tensor operations for the whole batch: no per-image Python, no worker processes
(the airbench way). The order is the paper's code's (fb.resnet.torch, on which DenseNet's
Lua code is built): normalise, mirror, zero-pad and crop, so the padding is zero *after*
normalisation.

How: the normalised batch is written into a buffer with one extra zero element per
channel, and a single ``gather`` reads every output pixel from its source pixel (the zero
for pixels in the padding). The source indices come from small per-offset tables.

Example:
    >>> import torch
    >>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> mean, std = channel_stats(images)
    >>> batch = augment(images, mean, std, padding=4, flip=True)
    >>> batch.shape, batch.dtype
    (torch.Size([8, 3, 32, 32]), torch.float32)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

#: Smallest standard deviation used to scale a channel, in 0..1 pixel units; keeps a
#: constant channel (a blank test image, a grey scan) from dividing by zero.
MIN_STD = 1.0 / 255.0
#: A crop-index table for every offset at once is kept up to this size (CIFAR's: 1.3 MB);
#: beyond it (large folder images) each batch adds its row and column indices instead.
FULL_TABLE_BYTES = 16 * 1024**2


def normalize(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    out: Tensor | None = None,
) -> Tensor:
    """Scale pixel values (0..255) to zero mean and unit variance per channel.

    Args:
        images: uint8 or float batch ``(N, C, H, W)`` in pixel units.
        mean: per-channel mean in 0..1 units (the usual ``x / 255`` convention).
        std: per-channel standard deviation in 0..1 units.
        out: float32 tensor of the batch's shape to write into (may be a strided view).

    Returns:
        A new float32 batch (``out`` when given), on the batch's device.

    Example:
        >>> import torch
        >>> black_white = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
        >>> [round(v, 4) for v in normalize(black_white, [0.5], [0.5]).flatten().tolist()]
        [-1.0, 1.0]
    """
    scale, offset = _affine(tuple(mean), tuple(std), images.device)
    if out is None:
        out = torch.empty(images.shape, device=images.device)
    # Convert, then scale and shift in place: cheaper on the CPU than a broadcasting
    # mixed-type multiply or addcmul.
    return out.copy_(images).mul_(scale).add_(offset)


@functools.lru_cache(maxsize=16)
def _affine(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(scale, offset)`` with ``pixel * scale + offset`` normalised, made once per device
    (a fresh tensor per batch would be a host-to-device copy on every step)."""
    std_t = torch.tensor(std, device=device).clamp_min(MIN_STD)
    mean_t = torch.tensor(mean, device=device)
    return (1.0 / (255.0 * std_t)).view(1, -1, 1, 1), (-mean_t / std_t).view(1, -1, 1, 1)


def augment(
    images: Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    padding: int,
    flip: bool,
) -> Tensor:
    """Normalise a batch, then give each image a random crop of its zero-padded self.

    Args:
        images: uint8 batch ``(N, C, H, W)``.
        mean: per-channel mean in 0..1 units.
        std: per-channel standard deviation in 0..1 units.
        padding: zero padding on every side before the crop back to ``H x W``.
        flip: also mirror each image left-right with probability 1/2.

    Returns:
        A float32 batch of the same shape. The random draws use torch's global generator
        on the batch's device, so ``lightning.seed_everything`` makes them repeatable.

    Example:
        >>> import torch
        >>> x = torch.arange(4, dtype=torch.uint8).reshape(1, 1, 2, 2)
        >>> torch.equal(augment(x, [0.0], [1 / 255], padding=0, flip=False), x.float())
        True
    """
    n, channels, height, width = images.shape
    pixels = height * width
    buffer = torch.empty(n, channels, pixels + 1, device=images.device)
    buffer[:, :, pixels] = 0.0  # what every pixel of the padding reads
    normalize(images, mean, std, out=buffer[:, :, :pixels].view(n, channels, height, width))
    table, rows, cols = _crop_tables(height, width, padding, flip, images.device)
    choice = torch.randint(0, len(rows) * len(cols), (n,), device=images.device)
    if table is not None:
        index = table.index_select(0, choice)
    else:
        row_of, col_of = choice // len(cols), choice % len(cols)
        index = _combine(rows.index_select(0, row_of), cols.index_select(0, col_of), pixels)
    return buffer.gather(2, index[:, None, :].expand(n, channels, pixels)).view_as(images)


@functools.lru_cache(maxsize=16)
def _crop_tables(
    height: int, width: int, padding: int, flip: bool, device: torch.device
) -> tuple[Tensor | None, Tensor, Tensor]:
    """Source indices for every crop offset: ``(full table or None, rows, cols)``.

    ``rows`` ``(offsets, H)`` holds the flat index where each output row starts reading,
    ``cols`` ``(offsets x mirrorings, W)`` the column each output column reads. A pixel
    outside the image gets ``H*W``, the buffer's zero; since every in-image flat index is
    below ``H*W``, clamping row + column to ``H*W`` keeps that right. The full table
    (every row offset with every column offset, so one lookup per batch) is made when it
    fits :data:`FULL_TABLE_BYTES`.
    """
    shifts = torch.arange(-padding, padding + 1, device=device)[:, None]
    outside = height * width
    src_rows = shifts + torch.arange(height, device=device)
    rows = torch.where((src_rows >= 0) & (src_rows < height), src_rows * width, outside)
    out_cols = torch.arange(width, device=device)
    src_cols = torch.cat([shifts + out_cols] + ([shifts + out_cols.flip(0)] if flip else []))
    cols = torch.where((src_cols >= 0) & (src_cols < width), src_cols, outside)
    if len(rows) * len(cols) * outside * 8 > FULL_TABLE_BYTES:
        return None, rows, cols
    every_row = rows.repeat_interleave(len(cols), dim=0)
    every_col = cols.repeat(len(rows), 1)
    return _combine(every_row, every_col, outside), rows, cols


def _combine(rows: Tensor, cols: Tensor, outside: int) -> Tensor:
    """Flat source index of every pixel, from per-image row and column indices."""
    return (rows[:, :, None] + cols[:, None, :]).flatten(1).clamp_(max=outside)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and standard deviation of a uint8 batch, in 0..1 units.

    A 256-bin histogram per channel gives both moments exactly in one pass, without a
    float copy of the data (50,000 CIFAR images take well under a second).

    Args:
        images: uint8 batch ``(N, C, H, W)``.

    Returns:
        ``(mean, std)``, one float per channel each.

    Example:
        >>> import torch
        >>> channel_stats(torch.tensor([[[[0, 255]]]], dtype=torch.uint8))
        ((0.5,), (0.5,))
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means: list[float] = []
    stds: list[float] = []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256)
        weights = counts.double() / counts.sum()
        mean = float((weights * values).sum())
        variance = float((weights * (values - mean) ** 2).sum())
        means.append(mean)
        stds.append(variance**0.5)
    return tuple(means), tuple(stds)
