"""Every performance benchmark in one command, and one Markdown table of figures against the targets.

    .venv/bin/python bench/suite.py [--quick] [--out bench/RESULTS.md] [--cache DIR] [--only NAME,...]

Set-up (once): ``apt-get install fluidsynth fluid-soundfont-gm musescore-general-soundfont-small
timgm6mb-soundfont freepats avldrums.lv2-soundfont sonic-pi-samples`` (the real recordings).

Each benchmark runs in its own process through its script's ``--json`` output:

1. ``index``  ``bench/index_throughput.py``: real one-shots (the drum corpus of ``tests/real_sounds.py``,
   1,776 files rendered from Debian's SoundFonts and sonic-pi's samples, a quarter of them converted to
   48 kHz FLAC, a quarter to 96 kHz 24-bit WAV and a quarter to Ogg Vorbis, so rates and formats vary)
   against the naive librosa loop; long generated files of 10 min, 1 h and 2 h (realtime factor, peak
   memory of the process tree);
2. ``query``  ``bench/query_e2e.py``: ``search()`` on a library of those real sounds grown to 10k / 100k /
   1M segments, p50 / p99, recall@50 against exact search, memory and disk per segment;
3. ``maps``   ``bench/map_timings.py``: first picture, cold, warm, transform at 2k / 10k / 50k points;
4. ``app``    ``bench/app_timings.py``: start → window, event-loop stalls while indexing and mapping,
   click → first audio block.

``--quick`` uses small sizes (a few minutes in all; its figures do not decide the targets). The Markdown
table goes to ``--out`` (default ``bench/RESULTS.md``) and the raw JSON next to it (``.json``).
Wall times on a shared machine are noisy; ratios are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PY = sys.executable


def _run(script: str, *args: str, timeout: float = 7200) -> dict:
    cmd = [PY, str(ROOT / "bench" / script), *args, "--json"]
    print(f"$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    print(f"  {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited with {proc.returncode}")
    text = proc.stdout
    return json.loads(text[text.index("{"):])


# -- the real corpus ---------------------------------------------------------------------------------------
def real_oneshots(cache: Path, limit: int | None) -> Path:
    """The real drum corpus, a quarter each as 48 kHz FLAC, 96 kHz 24-bit WAV and Ogg Vorbis."""
    import soundfile as sf
    import soxr

    from tests.real_sounds import make_drum_corpus

    files = sorted(make_drum_corpus(cache / "drums"))
    out = cache / (f"oneshots-{limit}" if limit else "oneshots")
    marker = out / ".done"
    if marker.exists():
        return out
    if limit:
        files = files[:: max(1, len(files) // limit)][:limit]
    for i, src in enumerate(files):
        rel = src.relative_to(cache / "drums")
        kind = i % 4
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == 0:
            if not target.exists():
                os.link(src, target)
            continue
        x, rate = sf.read(str(src), always_2d=True, dtype="float32")
        if kind == 1:
            sf.write(str(target.with_suffix(".flac")), soxr.resample(x, rate, 48000), 48000, subtype="PCM_16")
        elif kind == 2:
            sf.write(str(target.with_suffix(".wav")), soxr.resample(x, rate, 96000), 96000, subtype="PCM_24")
        else:
            sf.write(str(target.with_suffix(".ogg")), x, rate, format="OGG", subtype="VORBIS")
    marker.write_text("ok")
    return out


def base_library(cache: Path, audio: Path) -> Path:
    library = cache / f"library-{audio.name}"
    if not (library / ".done").exists():
        proc = subprocess.run([PY, "-m", "audiosim", "--library", str(library), "index", str(audio),
                               "--workers", "2", "--json"], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode not in (0, 3):
            raise RuntimeError(f"indexing the real corpus failed: {proc.stderr[-2000:]}")
        (library / ".done").write_text(proc.stdout)
    return library


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- the table ---------------------------------------------------------------------------------------------
def rows_for(results: dict) -> list[tuple[str, str, str, bool | None]]:
    rows: list[tuple[str, str, str, bool | None]] = []

    def add(measure: str, figure: str, target: str, met: bool | None) -> None:
        rows.append((measure, figure, target, met))

    ix = results.get("index")
    if ix:
        sc = ix["scenarios"]
        if "real" in sc:
            r = sc["real"]
            add(f"index {r['files']} real one-shots ({r['audio_seconds']:.0f} s of audio), naive / audiosim "
                "wall time", f"{r['naive_over_audiosim']:.2f}× ({r['naive']['wall']:.1f} s / "
                f"{r['audiosim']['wall']:.1f} s)", "≥ 3×", r["naive_over_audiosim"] >= 3)
        for key, label in (("long10", "10 min"), ("long60", "1 h"), ("long120", "2 h")):
            if key in sc:
                r = sc[key]
                label = f"{r['audio_seconds'] / 60:.0f} min"
                add(f"long file {label}: realtime factor (2 workers); peak tree PSS",
                    f"{r['audiosim']['realtime']:.0f}×; {r['audiosim']['tree_pss_mb']:.0f} MB "
                    f"(naive {r['naive']['realtime']:.0f}×)", "≥ 600×", r["audiosim"]["realtime"] >= 600)
        growth = ix.get("memory_growth_long10_to_long120_mb")
        if growth:
            g = growth["audiosim"]
            add("peak memory growth, longest vs shortest long file", f"{g:+.0f} MB (naive {growth['naive']:+.0f} MB)",
                "< 100 MB", g < 100)
    q = results.get("query")
    if q:
        for r in q["rows"]:
            n = r["segments"]
            big = n >= 1_000_000
            cpu = f"; CPU p50 {r['cpu_p50_ms']:.1f} ms" if "cpu_p50_ms" in r else ""
            add(f"top-50 query, {n:,} segments, end to end: p50 / p99",
                f"{r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms (store alone p50 {r['store_p50_ms']:.2f} ms{cpu})",
                "p50 ≤ 5 ms, p99 ≤ 20 ms" if big else "—",
                (r["p50_ms"] <= 5 and r["p99_ms"] <= 20) if big else None)
            same = f"; same hits {r['same_hits_at_50']:.3f}" if "same_hits_at_50" in r else ""
            add(f"recall@50 vs exact, {n:,} segments", f"{r['recall_at_50']:.3f} (worst query "
                f"{r['recall_at_50_min']:.2f}{same})", "≥ 0.95", r["recall_at_50"] >= 0.95)
            if "io_p50_ms" in r:
                st = r["stages_p50_ms"]
                cpu = f" (CPU p50 {r['io_cpu_p50_ms']:.1f} ms)" if "io_cpu_p50_ms" in r else ""
                add(f"  same, vector + metadata path only (seed, store, votes, segment and asset rows, collapse: "
                    f"the query without its alignment refinement, which takes p50 {st['refine']:.0f} ms): p50 / p99",
                    f"{r['io_p50_ms']:.1f} / {r['io_p99_ms']:.1f} ms{cpu}", "p50 ≤ 5 ms, p99 ≤ 20 ms" if big else "—",
                    (r["io_p50_ms"] <= 5 and r["io_p99_ms"] <= 20) if big else None)
        r = q["rows"][-1]
        d = r["disk_bytes_per_segment"]
        add(f"memory per segment ({r['segments']:,} segments, resident growth open + queries)",
            f"{r['memory_bytes_per_segment']:.0f} B", "—", None)
        add(f"disk per segment ({r['segments']:,}): DB + vector store",
            f"{d['db'] + d['vectors']:.0f} B ({d['db']:.0f} + {d['vectors']:.0f})", "—", None)
    if "real_library" in results:
        r = results["real_library"]
        add(f"disk per segment, real library ({r['segments']:,} segments): DB + vectors + frames",
            f"{r['bytes_per_segment']:.0f} B ({r['db']:.0f} + {r['vectors']:.0f} + {r['frames']:.0f})", "—", None)
    m = results.get("maps")
    if m:
        for r in m["rows"]:
            n = r["points"]
            cold_target = {10_000: 8, 50_000: 15}.get(n)
            add(f"map {n:,} points: first picture", f"{r['placeholder']:.2f} s", "≤ 0.5 s", r["placeholder"] <= 0.5)
            add(f"map {n:,} points: cold (kNN {r['knn']:.1f} s)", f"{r['cold']:.1f} s",
                f"≤ {cold_target} s" if cold_target else "—",
                r["cold"] <= cold_target if cold_target else None)
            add(f"map {n:,} points: warm (min_dist change)", f"{r['warm']:.1f} s",
                "≤ 3 s" if n == 10_000 else "—", r["warm"] <= 3 if n == 10_000 else None)
            add(f"map {n:,} points: transform of 5 % added points", f"{r['transform']:.2f} s", "—", None)
    a = results.get("app")
    if a:
        add("app: process start → window shown", f"{a['start_s']:.2f} s", "≤ 1.5 s", a["start_s"] <= 1.5)
        ix = a["indexing"]
        add(f"app: longest event-loop stall while indexing {ix['files']} files",
            f"{ix['max_stall_ms']:.0f} ms", "< 100 ms", ix["max_stall_ms"] < 100)
        for key, what in (("map_cold", "first map"), ("map_warm", "map recompute (min_dist)")):
            r = a[key]
            add(f"app: longest event-loop stall during the {what}, {r['points']:,} points ({r['seconds']:.1f} s)",
                f"{r['max_stall_ms']:.0f} ms", "< 100 ms", r["max_stall_ms"] < 100)
        if a.get("click_s") is not None:
            add("app: click a result → first audio block", f"{a['click_s'] * 1000:.1f} ms", "—", None)
    return rows


def markdown(rows, *, quick: bool, seconds: float) -> str:
    mark = {True: "yes", False: "**no**", None: ""}
    lines = ["| measure | figure | target | met? |", "|---|---|---|---|"]
    lines += [f"| {m} | {f} | {t} | {mark[ok]} |" for m, f, t, ok in rows]
    load = os.getloadavg()[0]
    lines += ["", f"`python bench/suite.py{' --quick' if quick else ''}`: {os.cpu_count()} cores, "
              f"{seconds / 60:.0f} min, load average {load:.1f} at the end"
              + (" (quick sizes: not the targets' sizes)" if quick else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "audiosim-bench",
                    help="generated audio and the real corpus are kept here between runs")
    ap.add_argument("--runs", type=int, help="indexing runs per tool and scenario (default 3; --quick 1)")
    ap.add_argument("--only", default="index,query,maps,app",
                    help="run these; the others' figures are taken from the previous run's JSON, if any")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    started = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    audio = real_oneshots(args.cache, 300 if quick else None)
    results: dict = {"quick": quick}
    previous = args.out.with_suffix(".json")
    if only != {"index", "query", "maps", "app"} and previous.exists():
        old = json.loads(previous.read_text())
        if old.get("quick") == quick:
            results.update({k: v for k, v in old.items() if k not in only})
    if "index" in only:
        results["index"] = _run("index_throughput.py", "--real", str(audio), "--scenarios",
                                "real,long10,long60,long120", "--runs", str(args.runs or (1 if quick else 3)),
                                "--keep", str(args.cache / ("throughput-quick" if quick else "throughput")),
                                *(["--quick"] if quick else []))
    if "query" in only or "app" in only:
        library = base_library(args.cache, audio)
        db = sum(p.stat().st_size for p in library.glob("library.db*"))
        segments = json.loads((library / ".done").read_text())["segments"]
        results["real_library"] = {"segments": segments, "db": db / segments,
                                   "vectors": _size(library / "vectors") / segments,
                                   "frames": (_size(library / "frames")
                                              + sum(p.stat().st_size for p in library.glob("frames.db*"))) / segments}
        results["real_library"]["bytes_per_segment"] = sum(results["real_library"][k]
                                                           for k in ("db", "vectors", "frames"))
    if "query" in only:
        sizes = ["10000", "100000"] if quick else ["10000", "100000", "1000000"]
        results["query"] = _run("query_e2e.py", "--base", str(library), "--sizes", *sizes,
                                "--queries", "50" if quick else "200", "--work", str(args.cache))
    if "maps" in only:
        sizes = ["2000", "10000"] if quick else ["2000", "10000", "50000"]
        results["maps"] = _run("map_timings.py", "--sizes", *sizes)
    if "app" in only:
        results["app"] = _run("app_timings.py", "--audio", str(audio), "--runs", "3")
    seconds = time.perf_counter() - started
    table = markdown(rows_for(results), quick=quick, seconds=seconds)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
