"""The embedding: a vector per block of frames (a segment window or a whole file) whose distances rank
sounds the way a listener does.

A block is described by what distinguishes real one-shots and notes from one another (284 numbers):

* **timbre** — power-weighted mean of MFCC c1.. (c0, the level, is left out), power-weighted standard
  deviation and mean absolute change of c0..;
* **envelope** — the level 1, 2, 4 … 64 frames after the peak (relative to it), the time to decay by 10,
  20 and 40 dB, the attack time (from the first frame within 20 dB of the peak) and the temporal centroid;
* **onset and tail spectrum** — MFCC c1.. over the 3 frames from the peak and over the 9 after them;
* **time-frequency patch** — the smoothed log-mel spectrum in 16 bands over 7 spans after the onset
  (1, 1, 2, 4 … 32 frames long), relative to its own maximum;
* **low end** — the nine 20–320 Hz bands of :mod:`audiosim.features.mfcc` over the same 7 spans.

Everything is relative to the block's own peak, and frames more than 60 dB below it are ignored, so a
sound played louder, or over a little noise, is still the same sound.

The 284 numbers are standardised and then mapped by constants learned on labelled *real* recordings
(drum one-shots of 4 GM SoundFonts' kits and 13 Hydrogen kits, GM instrument notes; each also in
augmented takes: another tuning, EQ, room and noise floor). Three small neural networks (284 → 512 →
128, ReLU), trained to tell drum classes and instrument families apart, give what tells sounds apart
(each last hidden layer, made unit-length); a linear map (group weights, within-class covariance
normalisation, PCA) keeps the rest of what the descriptors say, so sounds of no trained class stay apart
too; the parts side by side are projected to 128 dimensions. The constants are frozen in
``embedding_v3.npz`` (made by ``bench/tune_embedding.py``), so a vector never changes as the library
grows, and the same function embeds a segment window and a whole file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.mfcc import N_LOW_BANDS, Frames, dct_matrix

CONSTANTS_FILE = "embedding_v3.npz"
ACTIVE_RANGE_DB = 60.0  # frames further below the block's peak are not part of the sound
ENV_OFFSETS = (1, 2, 4, 8, 16, 32, 64)
ENV_FLOOR_DB = -40.0
DECAY_DB = (10.0, 20.0, 40.0)
ONSET_DB = -20.0  # the onset is the first frame within 20 dB of the peak
ONSET_FRAMES, LATE_FRAMES = 3, 12
PATCH_BANDS = 16
PATCH_SPANS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64))
PATCH_FLOOR_DB = -40.0
LOW_SPANS = ((0, 1), (1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64))
LOW_CLIP_DB = -25.0
_CHUNK = 8192  # frames per step when a whole long file is one block
APPLY_ROWS = 16  # rows per product of the learned map (see Transform.apply)


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    size: int
    weight: float  # its share of the distance, before the learned transform


def groups(n_mfcc: int) -> tuple[Group, ...]:
    """The descriptor groups in the order :func:`raw_descriptors` lays them out, with their weights."""
    c = n_mfcc - 1
    return (Group("mean", c, 1.0), Group("std", n_mfcc, 1.0), Group("change", n_mfcc, 0.7),
            Group("envelope", len(ENV_OFFSETS), 0.5), Group("decay", len(DECAY_DB), 0.5),
            Group("attack", 1, 0.3), Group("centroid", 1, 0.3), Group("onset", c, 0.7), Group("late", c, 0.7),
            Group("patch", PATCH_BANDS * len(PATCH_SPANS), 3.0), Group("low", N_LOW_BANDS * len(LOW_SPANS), 1.5))


def raw_dim(n_mfcc: int) -> int:
    return sum(g.size for g in groups(n_mfcc))


def group_scale(n_mfcc: int) -> np.ndarray:
    """Per-number factor that gives each group its weight whatever its size (weight / sqrt(size))."""
    return np.concatenate([np.full(g.size, g.weight / np.sqrt(g.size)) for g in groups(n_mfcc)])


# -- the raw descriptors -------------------------------------------------------------------------------------
def _level_shape(rms: np.ndarray) -> dict[str, np.ndarray]:
    """Everything that depends on the level curve alone, for blocks [shape=(B, n)] float32."""
    b, n = rms.shape
    peak_at = rms.argmax(axis=1)
    peak = rms[np.arange(b), peak_at]
    rel = rms - peak[:, None]
    active = rms >= np.maximum(peak - ACTIVE_RANGE_DB, -100.0)[:, None]
    power = np.where(active, np.power(10.0, rel / 10.0, dtype=np.float32), 0.0).astype(np.float32)
    t = np.arange(n)
    onset = np.argmax((rel >= ONSET_DB) & (t <= peak_at[:, None]), axis=1)

    after = np.clip(peak_at[:, None] + np.array(ENV_OFFSETS), 0, n - 1)
    env = np.where(peak_at[:, None] + np.array(ENV_OFFSETS) < n, np.take_along_axis(rel, after, axis=1),
                   ENV_FLOOR_DB)
    env = np.clip(env, ENV_FLOOR_DB, 0.0) / -ENV_FLOOR_DB
    decay = []
    for drop in DECAY_DB:
        below = (rel < -drop) & (t > peak_at[:, None])
        first = np.where(below.any(axis=1), below.argmax(axis=1), n)  # never: censored at the block's end
        decay.append(np.log1p(first - peak_at))
    attack = np.log1p(peak_at - onset)
    weights = power / power.sum(axis=1, keepdims=True)
    centroid = np.log1p(np.maximum((weights * (t - onset[:, None])).sum(axis=1), 0.0))
    return {"peak_at": peak_at, "onset": onset, "active": active, "power": power,
            "shape": np.column_stack([env, np.stack(decay, 1), attack, centroid]).astype(np.float32)}


def _moment_sums(mfcc: np.ndarray, power: np.ndarray) -> tuple[np.ndarray, ...]:
    """Power-weighted sums of MFCCs and their squares over blocks [shape=(B, n, n_mfcc)], in float64."""
    x = mfcc.astype(np.float64)
    w = power.astype(np.float64)[:, :, None]
    return (w * x).sum(1), (w * x * x).sum(1), w.sum(1)


def _change_sums(mfcc: np.ndarray, power: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sums for the mean absolute frame-to-frame change, each step weighted by its frames' power."""
    x = mfcc.astype(np.float64)
    both = active[:, 1:] & active[:, :-1]
    w = np.where(both, (power[:, 1:] + power[:, :-1]) / 2.0, 0.0)[:, :, None]
    return (w * np.abs(np.diff(x, axis=1))).sum(1), w.sum(1)


def _timbre(sums: tuple[np.ndarray, ...]) -> np.ndarray:
    wx, wxx, w, wdx, wd = sums
    mean = wx / w
    std = np.sqrt(np.maximum(wxx / w - mean * mean, 0.0))
    change = np.where(wd > 0, wdx / np.maximum(wd, 1e-30), 0.0)
    return np.concatenate([mean[:, 1:], std, change], axis=1)


@lru_cache(maxsize=4)
def _patch_basis(params: AnalysisParams) -> np.ndarray:
    """MFCC → log-mel → 16 pooled bands in one matrix [shape=(n_mfcc, PATCH_BANDS)]."""
    dct = dct_matrix(params)  # (n_mfcc, n_mels)
    pool = np.zeros((dct.shape[1], PATCH_BANDS), np.float32)
    for band, rows in enumerate(np.array_split(np.arange(dct.shape[1]), PATCH_BANDS)):
        pool[rows, band] = 1.0 / len(rows)
    return dct @ pool


def _span_matrix(spans: tuple[tuple[int, int], ...]) -> np.ndarray:
    m = np.zeros((len(spans), spans[-1][1]), np.float32)
    for i, (a, b) in enumerate(spans):
        m[i, a:b] = 1.0
    return m


def _after(array: np.ndarray, start: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``array[b, start[b] + j]`` for j < count [shape=(B, count, …)], and where that frame exists."""
    n = array.shape[1]
    index = start[:, None] + np.arange(count)
    valid = index < n
    picked = np.take_along_axis(array, np.minimum(index, n - 1).reshape(index.shape + (1,) * (array.ndim - 2)),
                                axis=1)
    return picked, valid


def _local(mfcc: np.ndarray, low: np.ndarray, level: dict, params: AnalysisParams) -> np.ndarray:
    """Onset and tail spectrum, time-frequency patch and low end: only the first 64 frames matter."""
    onset, peak_at, power = level["onset"], level["peak_at"], level["power"]
    head, head_valid = _after(mfcc, peak_at, LATE_FRAMES)
    head = head[:, :, 1:].astype(np.float32)
    first = head_valid[:, :ONSET_FRAMES, None]
    onset_spec = (head[:, :ONSET_FRAMES] * first).sum(1) / first.sum(1)
    tail = head_valid[:, ONSET_FRAMES:, None]
    late_spec = np.where(tail.any(1), (head[:, ONSET_FRAMES:] * tail).sum(1) / np.maximum(tail.sum(1), 1),
                         onset_spec)

    n_patch = PATCH_SPANS[-1][1]
    frames, valid = _after(mfcc, onset, n_patch)
    bands = frames.astype(np.float32) @ _patch_basis(params)  # (B, 64, 16) log-mel in dB
    spans = _span_matrix(PATCH_SPANS)
    count = valid.astype(np.float32) @ spans.T  # (B, 7)
    total = np.einsum("sj,bjk->bsk", spans, bands * valid[:, :, None])
    patch = np.where(count[:, :, None] > 0, total / np.maximum(count, 1)[:, :, None], np.nan)
    patch = patch - np.nanmax(patch.reshape(len(patch), -1), axis=1)[:, None, None]
    patch = np.nan_to_num(np.maximum(patch, PATCH_FLOOR_DB), nan=PATCH_FLOOR_DB) / 10.0

    n_low = LOW_SPANS[-1][1]
    lows, _ = _after(low, onset, n_low)
    weight, _ = _after(power, onset, n_low)  # zero past the block's end and outside the sound
    spans = _span_matrix(LOW_SPANS)
    mass = weight @ spans.T
    total = np.einsum("sj,bjk->bsk", spans, np.maximum(lows.astype(np.float32), LOW_CLIP_DB) * weight[:, :, None])
    low_profile = np.where(mass[:, :, None] > 0, total / np.maximum(mass, 1e-30)[:, :, None], LOW_CLIP_DB) / 10.0
    return np.concatenate([onset_spec, late_spec, patch.transpose(0, 2, 1).reshape(len(patch), -1),
                           low_profile.transpose(0, 2, 1).reshape(len(patch), -1)], axis=1)


def raw_descriptors(mfcc: np.ndarray, rms_db: np.ndarray, low: np.ndarray, params: AnalysisParams) -> np.ndarray:
    """The 284 raw numbers of equally long blocks: mfcc [shape=(B, n, n_mfcc)], rms_db (B, n),
    low (B, n, N_LOW_BANDS) → [shape=(B, raw_dim)] float64."""
    rms = rms_db.astype(np.float32)
    level = _level_shape(rms)
    timbre = _timbre(_moment_sums(mfcc, level["power"]) + _change_sums(mfcc, level["power"], level["active"]))
    return np.concatenate([timbre, level["shape"], _local(mfcc, low, level, params)], axis=1)


def raw_file_descriptor(frames: Frames, params: AnalysisParams) -> np.ndarray:
    """:func:`raw_descriptors` of a whole file as one block, in memory that does not grow with its length
    beyond the frames themselves (the timbre sums are accumulated a chunk at a time)."""
    rms = frames.rms_db.astype(np.float32)[None]
    level = _level_shape(rms)
    power, active = level["power"], level["active"]
    n = rms.shape[1]
    sums = [0.0] * 5
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        part = _moment_sums(frames.mfcc[None, start:stop], power[:, start:stop])
        part += _change_sums(frames.mfcc[None, start:stop + 1], power[:, start:stop + 1],
                             active[:, start:stop + 1])  # one frame of overlap: the step across chunks
        sums = [a + b for a, b in zip(sums, part)]
    timbre = _timbre(tuple(sums))
    local = _local(frames.mfcc[None], frames.low[None], level, params)
    return np.concatenate([timbre, level["shape"], local], axis=1)[0]


# -- the learned map ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Transform:
    """The learned map from raw descriptors to a vector, frozen as constants.

    ``z = (raw - mu) / sigma``; each of the small ``networks`` (ReLU layers ``h = max(h @ W + b, 0)``) maps
    ``z`` to a unit-length vector of what tells sound classes apart; ``z @ linear`` is the linear part
    (group weights, within-class covariance normalisation, PCA); the parts side by side, centred, are
    projected to ``dim`` numbers: ``vector = ([unit(net(z)) …, z @ linear] - centre) @ projection``.
    ``frame_scale`` puts MFCC c1.. on one footing for frame alignment (``audiosim.search``).
    """

    mu: np.ndarray
    sigma: np.ndarray
    networks: tuple[tuple[tuple[np.ndarray, np.ndarray], ...], ...]
    linear: np.ndarray
    centre: np.ndarray
    projection: np.ndarray
    frame_scale: np.ndarray

    @property
    def dim(self) -> int:
        return self.projection.shape[1]

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """[shape=(B, raw_dim)] → [shape=(B, dim)] float32, computed in the constants' precision.

        The rows go through the products :data:`APPLY_ROWS` at a time (the last block padded): BLAS rounds
        a row differently with the number of rows beside it (~1e-6), so a row's vector would otherwise
        depend on what else was in its batch. Blocked, it depends on the row alone, and the indexer can
        embed many files at once and still give each the vectors a query or another pool computes."""
        raw = np.asarray(raw, self.mu.dtype)
        out = np.empty((len(raw), self.dim), np.float32)
        for start in range(0, len(raw), APPLY_ROWS):
            block = raw[start:start + APPLY_ROWS]
            if len(block) < APPLY_ROWS:
                block = np.concatenate([block, np.zeros((APPLY_ROWS - len(block), raw.shape[1]), raw.dtype)])
            out[start:start + APPLY_ROWS] = self._apply_block(block)[:len(raw) - start]
        return out

    def _apply_block(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.mu) / self.sigma
        parts = []
        for layers in self.networks:
            h = z
            for weights, bias in layers:
                h = np.maximum(h @ weights + bias, 0.0)
            parts.append(h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-12))
        parts.append(z @ self.linear)
        return ((np.concatenate(parts, axis=1) - self.centre) @ self.projection).astype(np.float32)

    def save(self, path) -> None:
        """Network weights in float32 (half the size; the vectors move by ~1e-7 of their length)."""
        layers = {f"net{i}_{j}_{part}": value.astype(np.float32) for i, net in enumerate(self.networks)
                  for j, layer in enumerate(net) for part, value in zip(("w", "b"), layer)}
        np.savez_compressed(path, mu=self.mu, sigma=self.sigma, linear=self.linear, centre=self.centre,
                 projection=self.projection, frame_scale=self.frame_scale, **layers)

    @classmethod
    def load(cls, file) -> Transform:
        """The frozen constants, in float32: the products then move half the bytes and run ~1.7x faster
        (a window alone 0.13 -> 0.08 ms, 256 at once 13 -> 5 ms); the vectors move by < 1e-6 of their
        length, as they did when the weights were saved in float32."""
        data = {name: value.astype(np.float32) for name, value in np.load(file).items()}
        networks = []
        while f"net{len(networks)}_0_w" in data:
            i, net = len(networks), []
            while f"net{i}_{len(net)}_w" in data:
                j = len(net)
                net.append((data[f"net{i}_{j}_w"], data[f"net{i}_{j}_b"]))
            networks.append(tuple(net))
        return cls(data["mu"], data["sigma"], tuple(networks), data["linear"], data["centre"],
                   data["projection"], data["frame_scale"])

    @classmethod
    def identity(cls, n_raw: int, n_mfcc: int) -> Transform:
        """The raw descriptors themselves (what a fit starts from)."""
        return cls(np.zeros(n_raw), np.ones(n_raw), (), np.eye(n_raw), np.zeros(n_raw), np.eye(n_raw),
                   np.ones(n_mfcc - 1, np.float32))


@lru_cache(maxsize=1)
def transform() -> Transform:
    with resources.files("audiosim.features").joinpath(CONSTANTS_FILE).open("rb") as f:
        return Transform.load(f)


def embedding_dim(params: AnalysisParams) -> int:
    return transform().dim


def window_descriptors(frames: Frames, windows: list[tuple[int, int]], params: AnalysisParams, *,
                       batch: int = 256) -> Iterator[tuple[list[int], np.ndarray]]:
    """The raw descriptors of frame windows ``[start, stop)``, ``batch`` windows of one length at a time:
    (their indices in ``windows``, [shape=(len(indices), raw_dim)])."""
    by_length: dict[int, list[int]] = {}
    for i, (start, stop) in enumerate(windows):
        by_length.setdefault(stop - start, []).append(i)
    for width, members in by_length.items():
        views = [np.lib.stride_tricks.sliding_window_view(a, width, axis=0)
                 for a in (frames.mfcc, frames.rms_db, frames.low)]
        for i in range(0, len(members), batch):
            rows = members[i:i + batch]
            starts = np.array([windows[r][0] for r in rows])
            mfcc, rms, low = (v[starts] for v in views)
            yield rows, raw_descriptors(mfcc.transpose(0, 2, 1), rms, low.transpose(0, 2, 1), params)


def embed_windows(frames: Frames, windows: list[tuple[int, int]], params: AnalysisParams, *,
                  batch: int = 256) -> np.ndarray:
    """Embeddings of frame windows ``[start, stop)`` [shape=(len(windows), dim)] float32, ``batch`` windows
    at a time so that memory stays flat however long the file is."""
    out = np.empty((len(windows), embedding_dim(params)), np.float32)
    for rows, raw in window_descriptors(frames, windows, params, batch=batch):
        out[rows] = transform().apply(raw)
    return out


def file_descriptor(frames: Frames, params: AnalysisParams) -> np.ndarray | None:
    """The raw descriptor of the whole file [shape=(raw_dim,)]; None when it is silent."""
    if len(frames) == 0 or float(np.max(frames.rms_db)) < params.silence_db:
        return None
    return raw_file_descriptor(frames, params)


def file_embedding(frames: Frames, params: AnalysisParams) -> np.ndarray | None:
    """One vector for the whole file (the same description over all of it); None when it is silent."""
    raw = file_descriptor(frames, params)
    return None if raw is None else transform().apply(raw[None])[0]
