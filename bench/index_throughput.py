"""Indexing throughput and memory: ``audiosim index`` against a naive librosa loop, on the same files in one run.

    .venv/bin/python bench/index_throughput.py [--quick] [--runs 3] [--workers 2] [--keep DIR] [--json]
        [--compare ROOT]

Scenarios (``--quick`` sizes in brackets), all generated with ``tests.corpus``:

* ``oneshots``  500 [60] one-shots of 0.2-2 s, 44.1 kHz, mixed mono/stereo;
* ``long4x10``  4 [2] stereo files of 10 min [1 min];
* ``long10``    1 file of 10 min [1 min], ``long60`` 1 file of 60 min [6 min] and ``long120`` 1 file of
  2 h [12 min]: peak memory should be about the same if indexing streams, whatever the length;
* ``real``      the folder given by ``--real`` (real recordings at their own rates and formats).

For each scenario, each tool's whole process is timed (imports included) in turn, round after round
(``--runs`` rounds: naive, audiosim, naive, audiosim, ...), so a change in the machine's load hits both; the
table shows the median wall time, the realtime factor (audio seconds / wall seconds), the CPU seconds of the
process tree (user + system of it and every process it waited for: steadier than wall time on a shared
machine), the peak RSS of the largest process (``/usr/bin/time -f %M``, i.e. ``ru_maxrss``, which covers
waited-for grandchildren) and the peak of the summed PSS of the process tree (sampled from
``/proc/PID/smaps_rollup`` every 50 ms, so workers count together and pages they share count once; the
largest of the runs is shown). Ratios are the medians of the per-round ratios. The machine's load average is
printed too: other work on it skews the wall times. ``--compare ROOT`` adds a third tool, audiosim from
another checkout (``PYTHONPATH=ROOT``), to measure a change side by side. audiosim runs as

    python -m audiosim --library FRESH_LIB index FOLDER --workers N

with a fresh library each run; the naive loop is ``bench/naive_mfcc.py FOLDER`` (``librosa.load`` at
22050 Hz + ``librosa.feature.mfcc`` per file). Both run once on a few files before timing, so numba's cache,
Python's bytecode cache and the OS file cache are warm for both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.corpus import make_long_file, make_oneshots

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Run:
    wall: float
    max_rss_mb: float  # largest single process
    tree_pss_mb: float  # largest sampled sum of PSS over the process tree
    returncode: int
    cpu: float = 0.0  # user + system seconds of the process and every process it waited for


# ---------------------------------------------------------------------------------------------------------
# Measuring a process


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages divided among their users, so a forked worker or a
    short-lived fork before exec is not counted twice (summed RSS over-counts both); RSS if PSS is missing."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _tree_pss(pid: int) -> int:
    children = _children_of()
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _pss(p)
        stack.extend(children.get(p, []))
    return total


def measure(cmd: list[str], *, log: Path, env: dict[str, str], cwd: Path = ROOT) -> Run:
    """Run ``cmd`` to completion in a fresh child; wall time, peak RSS of its largest process, peak tree PSS.

    A child's ``ru_maxrss`` starts at the RSS of the process that forked it (Linux keeps the high-water mark
    of the pre-exec image), so the command runs under the small ``/usr/bin/time``, which reports its child's
    peak; without it, ``os.wait4`` is used and the figure includes this script's own RSS.
    """
    timer = shutil.which("time", path="/usr/bin:/bin")
    rss_file = log.with_suffix(".maxrss")
    full = [timer, "-f", "%M", "-o", str(rss_file), *cmd] if timer else cmd
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_pss(proc.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen: it must not wait again
        done.set()
        sampler.join()
    max_rss_kb = usage.ru_maxrss
    if timer:
        lines = rss_file.read_text().split()
        max_rss_kb = int(lines[-1]) if lines and lines[-1].isdigit() else 0
        rss_file.unlink()
    return Run(wall, max_rss_kb / 1024, peak / 2**20, proc.returncode, usage.ru_utime + usage.ru_stime)


# ---------------------------------------------------------------------------------------------------------
# Audio


def _sizes(quick: bool) -> dict:
    if quick:
        return {"oneshots": 60, "long_count": 2, "long_seconds": 60.0, "longest_seconds": 360.0,
                "two_hours_seconds": 720.0}
    return {"oneshots": 500, "long_count": 4, "long_seconds": 600.0, "longest_seconds": 3600.0,
            "two_hours_seconds": 7200.0}


def generate(audio: Path, sizes: dict) -> dict[str, Path]:
    """Scenario folders under ``audio``; reused when ``audio/params.json`` matches ``sizes``."""
    folders = {name: audio / name for name in ("warmup", "oneshots", "long4x10", "long10", "long60", "long120")}
    marker = audio / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == sizes:
        return folders
    shutil.rmtree(audio, ignore_errors=True)
    make_oneshots(folders["warmup"], 4, seed=99)
    make_oneshots(folders["oneshots"], sizes["oneshots"], seed=1)
    jobs = [(folders["long4x10"] / f"long_{i}.wav", sizes["long_seconds"], i) for i in range(sizes["long_count"])]
    jobs.append((folders["long60"] / "longest.wav", sizes["longest_seconds"], 100))
    jobs.append((folders["long120"] / "two_hours.wav", sizes["two_hours_seconds"], 200))
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(make_long_file, path, seconds, seed=seed) for path, seconds, seed in jobs]
        for future in futures:
            future.result()
    folders["long10"].mkdir(parents=True)
    os.link(folders["long4x10"] / "long_0.wav", folders["long10"] / "long_0.wav")
    marker.write_text(json.dumps(sizes))
    return folders


AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def _audio_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES]


def audio_seconds(folder: Path) -> float:
    import soundfile as sf

    return sum(sf.info(p).duration for p in _audio_files(folder))


# ---------------------------------------------------------------------------------------------------------
# The benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and scenario; the median is shown")
    parser.add_argument("--workers", type=int, default=2, help="audiosim index --workers (default 2)")
    parser.add_argument("--scenarios", default="oneshots,long4x10,long10,long60",
                        help="comma-separated; 'real' indexes the folder given by --real")
    parser.add_argument("--real", type=Path, help="a folder of real recordings (any rates and formats)")
    parser.add_argument("--keep", type=Path, help="generate audio (reused if the sizes match) and logs here")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--python", default=sys.executable, help="interpreter for both tools")
    parser.add_argument("--compare", type=Path, metavar="ROOT",
                        help="also run audiosim from this checkout (another version), in the same rounds")
    parser.add_argument("--no-naive", action="store_true", help="leave the naive loop out (with --compare)")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    # Python's bytecode cache on, as in a user's install (pip compiles a package as it installs it; a
    # checkout compiles at its first run, here the warm-up): without it every run compiles audiosim's
    # modules afresh, ~0.05 s of a 10-min file's 0.8 s.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="audiosim-throughput-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        folders = generate(work / "audio", _sizes(args.quick))
        if args.real is not None:
            folders["real"] = args.real
        print(f"audio ready in {time.perf_counter() - started:.1f} s under {work / 'audio'}", file=sys.stderr)
        logs = work / "logs"
        logs.mkdir(exist_ok=True)

        def naive(folder: Path, tag: str) -> Run:
            return measure([args.python, str(ROOT / "bench" / "naive_mfcc.py"), str(folder)],
                           log=logs / f"naive-{tag}.log", env=env)

        def audiosim_from(root: Path, name: str):
            tool_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}

            def audiosim(folder: Path, tag: str) -> Run:
                library = work / "libs" / f"{name}-{tag}"
                shutil.rmtree(library, ignore_errors=True)
                run = measure([args.python, "-m", "audiosim", "--library", str(library), "index", str(folder),
                               "--workers", str(args.workers)], log=logs / f"{name}-{tag}.log", env=tool_env,
                              cwd=root)  # python -m puts the working folder first on sys.path
                shutil.rmtree(library, ignore_errors=True)
                return run

            return audiosim

        tools = {} if args.no_naive else {"naive": naive}
        tools["audiosim"] = audiosim_from(ROOT, "audiosim")
        if args.compare is not None:
            tools["compared"] = audiosim_from(args.compare.resolve(), "compared")
        for name, tool in tools.items():  # warm numba's cache and the page cache
            if tool(folders["warmup"], "warmup").returncode not in (0, 3):
                sys.exit(f"{name} failed on the warm-up folder; see {logs}/{name}-warmup.log")

        results: dict[str, dict] = {}
        load_before = [round(x, 2) for x in os.getloadavg()]
        for scenario in scenarios:
            folder = folders[scenario]
            entry: dict = {"files": len(_audio_files(folder)), "audio_seconds": audio_seconds(folder)}
            runs: dict[str, list[Run]] = {name: [] for name in tools}
            for i in range(args.runs):  # in turn, so that load changes hit every tool alike
                for name, tool in tools.items():
                    print(f"{scenario}: {name} run {i + 1}/{args.runs}", file=sys.stderr)
                    run = tool(folder, f"{scenario}-{i}")
                    if run.returncode not in (0, 3):
                        print(f"  exit code {run.returncode}; see {logs}/{name}-{scenario}-{i}.log", file=sys.stderr)
                    runs[name].append(run)
            for name in tools:
                entry[name] = summarise(runs[name], entry["audio_seconds"])
            if "naive" in runs:
                entry["naive_over_audiosim"] = _median_ratio(runs["naive"], runs["audiosim"], "wall")
                entry["naive_over_audiosim_cpu"] = _median_ratio(runs["naive"], runs["audiosim"], "cpu")
            if "compared" in runs:
                entry["compared_over_audiosim"] = _median_ratio(runs["compared"], runs["audiosim"], "wall")
                entry["compared_over_audiosim_cpu"] = _median_ratio(runs["compared"], runs["audiosim"], "cpu")
            results[scenario] = entry
        if not args.keep:
            shutil.rmtree(work / "libs", ignore_errors=True)

    report = {"quick": args.quick, "runs": args.runs, "workers": args.workers, "cpus": os.cpu_count(),
              "compare": str(args.compare) if args.compare else None,
              "load_before": load_before, "load_after": [round(x, 2) for x in os.getloadavg()],
              "scenarios": results}
    if "long10" in results and "long60" in results:
        report["memory_long60_over_long10"] = {
            name: results["long60"][name]["tree_pss_mb"] / results["long10"][name]["tree_pss_mb"] for name in tools
        }
    if "long10" in results and "long120" in results:
        report["memory_growth_long10_to_long120_mb"] = {
            name: results["long120"][name]["tree_pss_mb"] - results["long10"][name]["tree_pss_mb"] for name in tools
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


def _median_ratio(a: list[Run], b: list[Run], field: str) -> float:
    """Median over rounds of a's figure / b's figure in the same round."""
    return statistics.median(getattr(x, field) / max(getattr(y, field), 1e-9) for x, y in zip(a, b))


def summarise(runs: list[Run], seconds: float) -> dict:
    wall = statistics.median(r.wall for r in runs)
    return {
        "wall": wall,
        "walls": [round(r.wall, 3) for r in runs],
        "cpu": statistics.median(r.cpu for r in runs),
        "realtime": seconds / wall,
        "max_rss_mb": max(r.max_rss_mb for r in runs),
        "tree_pss_mb": max(r.tree_pss_mb for r in runs),
        "failed_runs": sum(r.returncode not in (0, 3) for r in runs),
        "runs_with_failed_files": sum(r.returncode == 3 for r in runs),  # audiosim: indexed, some files failed
        "runs": [asdict(r) for r in runs],
    }


def print_table(report: dict) -> None:
    print(f"{'quick' if report['quick'] else 'full'} sizes, median of {report['runs']} runs, "
          f"audiosim --workers {report['workers']}, {report['cpus']} CPUs, load average "
          f"{report['load_before'][0]:.1f} before / {report['load_after'][0]:.1f} after")
    header = (f"{'scenario':<10}{'files':>6}{'audio s':>9}  {'tool':<9}{'wall s':>8}{'x realtime':>11}"
              f"{'CPU s':>8}{'max RSS MB':>11}{'tree PSS MB':>12}")
    print(header)
    print("-" * len(header))
    for scenario, entry in report["scenarios"].items():
        names = [n for n in ("naive", "audiosim", "compared") if n in entry]
        for i, name in enumerate(names):
            r = entry[name]
            lead = f"{scenario:<10}{entry['files']:>6}{entry['audio_seconds']:>9.0f}" if i == 0 else " " * 25
            failed = f"  ({r['failed_runs']} runs failed)" if r["failed_runs"] else ""
            if r.get("runs_with_failed_files"):
                failed += f"  ({r['runs_with_failed_files']} runs with failed files)"
            print(f"{lead}  {name:<9}{r['wall']:>8.2f}{r['realtime']:>11.1f}{r['cpu']:>8.2f}{r['max_rss_mb']:>11.0f}"
                  f"{r['tree_pss_mb']:>12.0f}{failed}")
    print()
    if report.get("compare"):
        print(f"compared = audiosim from {report['compare']}")
    for scenario, entry in report["scenarios"].items():
        if "naive_over_audiosim" in entry:
            print(f"{scenario}: naive / audiosim wall time = {entry['naive_over_audiosim']:.2f}x "
                  f"(CPU {entry['naive_over_audiosim_cpu']:.2f}x)")
        if "compared_over_audiosim" in entry:
            print(f"{scenario}: compared / audiosim wall time = {entry['compared_over_audiosim']:.2f}x "
                  f"(CPU {entry['compared_over_audiosim_cpu']:.2f}x)")
    if "memory_long60_over_long10" in report:
        long10, long60 = report["scenarios"]["long10"], report["scenarios"]["long60"]
        for name, ratio in report["memory_long60_over_long10"].items():
            print(f"{name}: peak tree PSS {long10[name]['tree_pss_mb']:.0f} MB ({long10['audio_seconds'] / 60:.0f} min)"
                  f" -> {long60[name]['tree_pss_mb']:.0f} MB ({long60['audio_seconds'] / 60:.0f} min), x{ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
