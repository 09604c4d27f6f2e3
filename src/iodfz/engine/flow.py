"""The integer flow of docs/INTEGER.md, forward (encode) and inverse (decode), on any backend.

Only the networks run on a backend (``run_net``); squeeze, permutations, splits and additions
are numpy everywhere. Latents are int64 arrays (B, H, W, C), a batch of equal-size tiles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from iodfz.engine import transforms
from iodfz.engine.model import Model, Net


class Backend(Protocol):
    name: str

    def run_net(self, net: Net, a: np.ndarray) -> np.ndarray: ...


@dataclass
class SplitLatents:
    """A factored-out half and its prior parameters (docs/INTEGER.md, "Split prior output"),
    (B, H, W, C) each. With a checkerboard context, ``anchors`` (H, W) marks the first pass's
    positions, whose parameters come from the split prior alone."""

    values: np.ndarray
    scale_index: np.ndarray
    mean_fp: np.ndarray
    anchors: np.ndarray | None = None

    def passes(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(values, scale index, mean_fp) of each coding pass, in the order the encoder pushes
        them (the decoder pops them in reverse: anchors first); (B, N, C) arrays."""
        arrays = (self.values, self.scale_index, self.mean_fp)
        if self.anchors is None:
            return [tuple(a.reshape(a.shape[0], -1, a.shape[-1]) for a in arrays)]
        return [tuple(a[:, where] for a in arrays) for where in (~self.anchors, self.anchors)]


def checkerboard(height: int, width: int) -> np.ndarray:
    """(height, width) bool: the first pass's positions, where row + column is even."""
    return (np.add.outer(np.arange(height), np.arange(width)) % 2) == 0


def squeeze(z: np.ndarray) -> np.ndarray:
    b, h, w, c = z.shape
    z = z.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4)
    return z.reshape(b, h // 2, w // 2, 4 * c)


def unsqueeze(z: np.ndarray) -> np.ndarray:
    b, h, w, c4 = z.shape
    c = c4 // 4
    z = z.reshape(b, h, w, c, 2, 2).transpose(0, 1, 4, 2, 5, 3)
    return z.reshape(b, 2 * h, 2 * w, c)


def input_map(model: Model, x: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) → int64 latents: the model's colour transform, luma centred."""
    z = x.astype(np.int64)
    if model.config.get("colour", "none") == "ycocg-r":
        y, co, cg = transforms.ycocg_r(z[..., 0], z[..., 1], z[..., 2])
        return np.stack([y - 128, co, cg], axis=-1)
    return z - 128


def output_map(model: Model, z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`input_map`."""
    if model.config.get("colour", "none") == "ycocg-r":
        z = np.stack(transforms.ycocg_r_inverse(z[..., 0] + 128, z[..., 1], z[..., 2]), axis=-1)
        return z.astype(np.uint8)
    return (z + 128).astype(np.uint8)


def _wavelet(model: Model, level: int) -> str:
    """The fixed wavelet of this level's squeeze: the model's, at its first ``wavelet_levels``
    levels (the first one only when the key is absent)."""
    first = model.config.get("wavelet_levels", 1)
    return model.config.get("wavelet", "none") if level < first else "none"


def wavelet_squeeze(z: np.ndarray, wavelet: str) -> np.ndarray:
    """squeeze, then each channel's four slots hold its (LL, HL, LH, HH) bands instead of its
    (dy, dx) samples ("haar": per 2×2 block; "legall53": over the whole tile)."""
    if wavelet == "none":
        return squeeze(z)
    b, h, w, c = z.shape
    if wavelet == "haar":
        groups = squeeze(z).reshape(b, h // 2, w // 2, c, 4)
        bands = transforms.haar(*(groups[..., k] for k in range(4)))
    else:
        bands = transforms.legall53(z.transpose(0, 3, 1, 2))
        bands = tuple(band.transpose(0, 2, 3, 1) for band in bands)
    return np.stack(bands, axis=-1).reshape(b, h // 2, w // 2, 4 * c)


def wavelet_unsqueeze(z: np.ndarray, wavelet: str) -> np.ndarray:
    if wavelet == "none":
        return unsqueeze(z)
    b, h, w, c4 = z.shape
    groups = z.reshape(b, h, w, c4 // 4, 4)
    if wavelet == "haar":
        blocks = transforms.haar_inverse(*(groups[..., k] for k in range(4)))
        return unsqueeze(np.stack(blocks, axis=-1).reshape(b, h, w, c4))
    bands = (groups[..., k].transpose(0, 3, 1, 2) for k in range(4))
    return np.ascontiguousarray(transforms.legall53_inverse(*bands).transpose(0, 2, 3, 1))


def prior_outputs(model: Model, backend: Backend, level: int, kept: np.ndarray) -> np.ndarray:
    """The split prior network's raw output y: mean_fp channels, then scale channels."""
    return backend.run_net(model.priors[level], kept)


def context_outputs(
    model: Model,
    backend: Backend,
    level: int,
    y: np.ndarray,
    kept: np.ndarray,
    first_pass: np.ndarray,
) -> np.ndarray:
    """The split prior's output ``y`` plus the checkerboard context network's, which sees the
    kept half and the factored-out half's first-pass values (zero elsewhere)."""
    seen = np.concatenate([kept, first_pass], axis=-1)
    return y + backend.run_net(model.contexts[level], seen)


def prior_params(model: Model, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale index, mean_fp) from a prior output y: the scale half clamped to the grid."""
    half = y.shape[-1] // 2
    scales = int(model.config["scale_count"])
    return np.clip(y[..., half:], 0, scales - 1), y[..., :half]


def forward(model: Model, backend: Backend, x: np.ndarray) -> tuple[list[SplitLatents], np.ndarray]:
    """uint8 samples (B, H, W, 3), H and W multiples of 2^levels → split levels and top latents."""
    z = input_map(model, x)
    splits = []
    for level in range(model.levels):
        z = wavelet_squeeze(z, _wavelet(model, level))
        for perm, net in zip(model.perms[level], model.couplings[level], strict=True):
            z = z[..., perm]
            n = z.shape[-1] // 2
            z[..., n:] += backend.run_net(net, z[..., :n])
        if level < model.levels - 1:
            half = z.shape[-1] // 2
            kept, out = np.ascontiguousarray(z[..., :half]), np.ascontiguousarray(z[..., half:])
            y = prior_outputs(model, backend, level, kept)
            anchors = None
            if model.contexts:
                anchors = checkerboard(*out.shape[1:3])
                first_pass = np.where(anchors[..., None], out, 0)
                y_second = context_outputs(model, backend, level, y, kept, first_pass)
                y = np.where(anchors[..., None], y, y_second)
            scale_index, mean_fp = prior_params(model, y)
            splits.append(SplitLatents(out, scale_index, mean_fp, anchors))
            z = kept
    return splits, z


DecodeSplit = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def _decode_level(
    model: Model, backend: Backend, level: int, kept: np.ndarray, decode_split: DecodeSplit
) -> np.ndarray:
    """The factored-out half of ``level``, pass by pass (the reverse of SplitLatents.passes)."""
    y = prior_outputs(model, backend, level, kept)
    if not model.contexts:
        return decode_split(level, *prior_params(model, y))
    b, h, w, c = y.shape
    anchors = checkerboard(h, w)
    out = np.zeros((b, h, w, c // 2), np.int64)
    out[:, anchors] = decode_split(level, *prior_params(model, y[:, anchors]))
    y = context_outputs(model, backend, level, y, kept, out)
    out[:, ~anchors] = decode_split(level, *prior_params(model, y[:, ~anchors]))
    return out


def replay(splits: list[SplitLatents]) -> DecodeSplit:
    """A ``decode_split`` that hands back stored coding passes in the decoder's order — the
    flow's inverse without the coder (engine benchmarks, backend checks)."""
    queues = {level: [p[0] for p in s.passes()][::-1] for level, s in enumerate(splits)}
    return lambda level, scale_index, mean_fp: queues[level].pop(0).reshape(scale_index.shape)


def inverse(
    model: Model, backend: Backend, top: np.ndarray, decode_split: DecodeSplit
) -> np.ndarray:
    """Top latents → uint8 samples. ``decode_split(level, scale_index, mean_fp)`` returns the
    values of a coding pass of that level's factored-out half once their prior parameters are
    known (the coder's job), in the parameters' shape."""
    z = top.astype(np.int64)
    for level in reversed(range(model.levels)):
        if level < model.levels - 1:
            z = np.concatenate([z, _decode_level(model, backend, level, z, decode_split)], axis=-1)
        for perm, net in zip(
            reversed(model.perms[level]), reversed(model.couplings[level]), strict=True
        ):
            n = z.shape[-1] // 2
            z[..., n:] -= backend.run_net(net, z[..., :n])
            restored = np.empty_like(z)
            restored[..., perm] = z
            z = restored
        z = wavelet_unsqueeze(z, _wavelet(model, level))
    return output_map(model, z)


def test_input(levels: int) -> np.ndarray:
    """The fixed test-vector image: 2 tiles of 2×3 units of 2^levels pixels (16×24 for three
    levels), smooth gradients plus integer-hash noise."""
    unit = 1 << levels
    b, y, x, c = np.meshgrid(
        np.arange(2), np.arange(2 * unit), np.arange(3 * unit), np.arange(3), indexing="ij"
    )
    noise = (b * 7919 + y * 104729 + x * 1299709 + c * 15485863) % 2147483647 % 61
    return ((y * 9 + x * 5 + c * 40 + b * 90 + noise) % 256).astype(np.uint8)


def latent_hashes(splits: list[SplitLatents], top: np.ndarray) -> dict[str, str]:
    """SHA-256 of every level's latents and prior parameters (int32 little-endian)."""

    def h(a: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(a, dtype="<i4").tobytes()).hexdigest()

    out = {"top": h(top)}
    for level, s in enumerate(splits):
        out[f"l{level}.values"] = h(s.values)
        out[f"l{level}.scale_index"] = h(s.scale_index)
        out[f"l{level}.mean_fp"] = h(s.mean_fp)
    return out
