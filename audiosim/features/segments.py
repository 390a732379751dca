"""Segments: the windows over a file's frames that the library embeds and searches.

Windows of ``segment_seconds`` every ``segment_hop_seconds``; the last is aligned to the end so the tail is
covered; a file shorter than one window is one segment. A window is a *gap* and is skipped when its loudest
frame is more than ``quiet_below_peak_db`` below the file's peak (or below the absolute ``silence_db``):
relative, so that a quiet recording is as searchable as a loud one and the gaps of a noisy recording are
gaps too.
"""

from __future__ import annotations

import numpy as np

from audiosim.config import AnalysisParams


def gap_threshold_db(peak_db: float, params: AnalysisParams) -> float:
    """The level a window's loudest frame must reach to be a segment, for a file whose peak is ``peak_db``."""
    return max(peak_db - params.quiet_below_peak_db, params.silence_db)


def segment_windows(rms_db: np.ndarray, params: AnalysisParams) -> list[tuple[int, int]]:
    """Frame ranges ``[start, stop)`` of the windows of a file that are not gaps."""
    n = len(rms_db)
    if n == 0:
        return []
    width, hop = params.frames_per_segment, params.frames_per_segment_hop
    rms = rms_db.astype(np.float32)
    peak = float(rms.max())
    threshold = gap_threshold_db(peak, params)
    if n <= width:
        return [(0, n)] if peak >= threshold else []
    starts = list(range(0, n - width + 1, hop))
    if starts[-1] + width < n:
        starts.append(n - width)
    loudest = np.lib.stride_tricks.sliding_window_view(rms, width)[starts].max(axis=1)
    return [(s, s + width) for s, peak in zip(starts, loudest) if peak >= threshold]
