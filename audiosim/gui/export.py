"""Export: a result list as CSV, JSON or M3U, and one result as a trimmed WAV of exactly its segment.
No Qt here (the drag-out and the dialogs call these)."""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from pathlib import Path

import soundfile as sf

from audiosim.gui.audio_io import Clip

EXPORT_FORMATS = {"csv": "CSV (*.csv)", "json": "JSON (*.json)", "m3u": "M3U playlist (*.m3u *.m3u8)"}
# Keep the file's own sample format when it can hold the samples exactly; otherwise 32-bit float.
_EXACT_SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "PCM_U8", "PCM_S8"}


def hit_row(hit) -> dict:
    asset = hit.asset
    return {
        "rank": hit.rank, "path": hit.path, "name": os.path.basename(hit.path),
        "start": round(hit.start, 3), "end": round(hit.end, 3), "distance": round(float(hit.distance), 5),
        "loudness": None if asset is None or asset.avg_loudness is None else round(asset.avg_loudness, 2),
        "duration": None if asset is None or asset.duration is None else round(asset.duration, 3),
        "asset_id": hit.asset_id, "segment_id": hit.segment_id,
    }


def export_results(hits: list, path: str | os.PathLike, *, query: str | None = None) -> Path:
    """Write ``hits`` to ``path``; the format comes from the extension (.csv, .json, .m3u/.m3u8)."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    rows = [hit_row(h) for h in hits]
    if ext == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["rank", "path"])
            writer.writeheader()
            writer.writerows(rows)
    elif ext == "json":
        path.write_text(json.dumps({"query": query, "results": rows}, indent=2, ensure_ascii=False),
                        encoding="utf-8")
    elif ext in ("m3u", "m3u8"):
        lines = ["#EXTM3U"]
        for r in rows:
            # Players that understand VLC's options start and stop at the segment; others play the file.
            lines += [f"#EXTINF:{max(1, round(r['end'] - r['start']))},{r['name']} "
                      f"[{r['start']:.2f}-{r['end']:.2f} s]",
                      f"#EXTVLCOPT:start-time={r['start']:.3f}", f"#EXTVLCOPT:stop-time={r['end']:.3f}",
                      r["path"]]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        raise ValueError(f"unknown export format {path.suffix!r}: use .csv, .json or .m3u")
    return path


def segment_file_name(path: str, start: float, end: float) -> str:
    stem = re.sub(r"[^\w\- .]+", "_", Path(path).stem).strip() or "segment"
    return f"{stem} {start:.2f}-{end:.2f}s.wav"


def write_clip_wav(clip: Clip, dest: str | os.PathLike) -> Path:
    """Write the clip's samples as WAV, exactly (its own sample format when possible), atomically."""
    dest = Path(dest)
    subtype = clip.subtype if clip.subtype in _EXACT_SUBTYPES else "FLOAT"
    tmp = dest.with_name(dest.name + ".part")
    sf.write(tmp, clip.samples, clip.sample_rate, subtype=subtype, format="WAV")
    os.replace(tmp, dest)
    return dest


def drag_folder() -> Path:
    """Where drag-out WAVs are written (the receiving app copies them; the OS cleans the temp folder)."""
    folder = Path(tempfile.gettempdir()) / f"audiosim-drag-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
