"""A query's noise floor, and stored frames heard through it.

An excerpt recorded or bounced with some noise differs from the clean original most where the original is
quiet: its gaps and decaying tails are noise instead of silence, so every feature of those frames (the
spectrum, the level, the low end) looks unlike the stored ones. Rather than hoping the features ignore
that, the comparison adds the query's own noise to the candidate: the floor is estimated from the query's
quietest frames, brought to the candidate's level with the gain between the two, and added in the power
domain to the candidate's stored frames. A clean query has a floor near the analysis floor and changes
nothing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from audiosim.config import AnalysisParams
from audiosim.features.mfcc import LOW_FLOOR_DB, Frames, dct_matrix

QUIET_SHARE = 0.1  # the quietest tenth of the query's frames stand for its noise
MIN_QUIET_FRAMES = 3
NEGLIGIBLE_DB = -90.0  # a floor this low is the analysis floor: nothing to add


@dataclasses.dataclass(frozen=True)
class NoiseFloor:
    """Mean noise power of a query in its own scale: per mel band (smoothed log-mel, dB), in all (dB, like
    ``rms_db``) and in the low-frequency bands (dB, absolute)."""

    log_mel: np.ndarray
    rms_db: float
    low_db: np.ndarray


def _power_mean_db(db: np.ndarray, axis: int = 0) -> np.ndarray:
    return 10.0 * np.log10(np.mean(np.power(10.0, db / 10.0), axis=axis))


def _db_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.power(10.0, a / 10.0) + np.power(10.0, b / 10.0))


def noise_floor(frames: Frames, params: AnalysisParams) -> NoiseFloor | None:
    """The noise floor of ``frames`` (a query), or ``None`` when it is too low to matter.

    A query without any quiet moment gives the level of its quietest frames: added to a candidate, that
    costs at most its quietest frames a few dB, which count for little in any comparison."""
    if len(frames) == 0:
        return None
    rms = frames.rms_db.astype(np.float32)
    quiet = np.argsort(rms)[: max(MIN_QUIET_FRAMES, int(len(rms) * QUIET_SHARE))]
    rms_db = float(_power_mean_db(rms[quiet]))
    if rms_db < NEGLIGIBLE_DB:
        return None
    log_mel = _power_mean_db(frames.mfcc[quiet].astype(np.float32) @ dct_matrix(params))
    low_db = _power_mean_db(frames.low[quiet].astype(np.float32) + rms[quiet, None])
    return NoiseFloor(log_mel.astype(np.float32), rms_db, low_db.astype(np.float32))


def with_noise_floor(frames: Frames, floor: NoiseFloor, gain_db: float, params: AnalysisParams) -> Frames:
    """``frames`` as they would be with ``floor`` added; ``gain_db`` is the query's level minus theirs."""
    dct = dct_matrix(params)
    log_mel = _db_sum(frames.mfcc.astype(np.float32) @ dct, floor.log_mel - gain_db)
    rms = frames.rms_db.astype(np.float32)
    noisy_rms = _db_sum(rms, np.float32(floor.rms_db - gain_db))
    low = _db_sum(frames.low.astype(np.float32) + rms[:, None], floor.low_db - gain_db) - noisy_rms[:, None]
    return Frames((log_mel @ dct.T).astype(np.float32), noisy_rms.astype(np.float32),
                  np.maximum(low, LOW_FLOOR_DB).astype(np.float32))


def gain_db(query_rms: np.ndarray, target_rms: np.ndarray, offset: int) -> float:
    """The query's level minus the target's with the query placed at ``offset``, as the difference of
    their loudest frames: unlike a frame-by-frame mean, it hardly moves when the placement is a few frames
    off an onset."""
    n = len(query_rms)
    lo, hi = max(0, -offset), min(n, len(target_rms) - offset)
    if hi <= lo:
        return 0.0
    return float(np.max(query_rms[lo:hi].astype(np.float32))
                 - np.max(target_rms[lo + offset:hi + offset].astype(np.float32)))


def without_noise_floor(frames: Frames, floor: NoiseFloor, params: AnalysisParams) -> Frames:
    """``frames`` with ``floor`` taken away (spectral subtraction, twice the floor so that what is left of a
    noise-only frame falls far below the sound): the query as it would be without its noise."""
    dct = dct_matrix(params)
    rms = frames.rms_db.astype(np.float32)
    clean_rms = _db_minus(rms, floor.rms_db)
    log_mel = _db_minus(frames.mfcc.astype(np.float32) @ dct, floor.log_mel)
    low = _db_minus(frames.low.astype(np.float32) + rms[:, None], floor.low_db) - clean_rms[:, None]
    return Frames((log_mel @ dct.T).astype(np.float32), clean_rms.astype(np.float32),
                  np.clip(low, LOW_FLOOR_DB, 0.0).astype(np.float32))


def _db_minus(a: np.ndarray, b: np.ndarray, *, over: float = 2.0, residue_db: float = -100.0) -> np.ndarray:
    power = np.power(10.0, a / 10.0) - over * np.power(10.0, b / 10.0)
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (residue_db / 10.0)))
