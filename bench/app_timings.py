"""The app as a user feels it: start → window shown, longest event-loop stall while indexing and while a map
recomputes, click → first audio block. Offscreen Qt (``QT_QPA_PLATFORM=offscreen``), the real MainWindow.

    .venv/bin/python bench/app_timings.py --audio FOLDER [--runs 3] [--json]

* ``start``  ``python -m audiosim`` (a new process, imports included) until the window is shown
  (``AUDIOSIM_GUI_SMOKE`` makes the app print that moment and quit); the parent's clock, median of
  ``--runs``.
* ``stall``  in this process: the window opens an empty library, waits for its start-up warm-up, then a
  10 ms QTimer heartbeat (``tests.gui.helpers.StallMeter``) runs while ``FOLDER`` is indexed
  (``MainWindow.index_paths``, as a drop does), and while the map window computes its first map of that
  library (segment level) and again after a ``min_dist`` change (warm). The figure is the longest gap
  between ticks minus the 10 ms interval.
* ``click``  ``tests/gui/playback_probe.py`` in a subprocess with ALSA's default device captured to a
  file: search by a region, click the top result, time to the first audio block holding its samples.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_times(library: Path, runs: int, tmp: Path) -> list[float]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "AUDIOSIM_GUI_SMOKE": "1",
           "AUDIOSIM_SETTINGS": str(tmp / "start.ini"), "AUDIOSIM_LIBRARY": str(library)}
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "audiosim"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        for line in proc.stdout:
            if line.startswith("window shown"):
                out.append(time.perf_counter() - t)
                break
        proc.wait(timeout=60)
    return out


def stalls(audio: Path, tmp: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import tests.gui.conftest  # noqa: F401 - sounddevice with a silent default device
    from audiosim.gui.app import create_app, create_window
    from audiosim.gui.settings import Settings
    from tests.gui.helpers import StallMeter, wait_for_signal

    app = create_app()
    library = tmp / "stall-library"
    window = create_window(str(library), Settings(tmp / "stall.ini"), warm_up=True)

    def wait_for(signal, timeout_ms: int = 600_000):
        return wait_for_signal(signal, timeout_ms)

    wait_for(window.warmedUp)
    from audiosim.projection import warm_up

    warm_up()  # the app compiles UMAP's kernels after its warm-up; a user opening a map later has them
    out: dict = {}
    meter = StallMeter()
    meter.start()
    t = time.perf_counter()
    window.index_paths([str(audio)])
    (report,) = wait_for(window.indexingFinished)
    meter.stop()
    out["indexing"] = {"files": report.indexed, "seconds": time.perf_counter() - t,
                       "max_stall_ms": meter.max_stall * 1000, "ticks": len(meter.gaps)}
    app.processEvents()
    window.open_map()
    explorer = window.explorer
    explorer.level_combo.setCurrentIndex(explorer.level_combo.findData("segment"))
    meter = StallMeter()
    meter.start()
    t = time.perf_counter()
    explorer.recompute()
    (result,) = wait_for(explorer.mapReady)
    meter.stop()
    out["map_cold"] = {"points": len(result), "seconds": time.perf_counter() - t,
                       "max_stall_ms": meter.max_stall * 1000}
    meter = StallMeter()
    meter.start()
    t = time.perf_counter()
    explorer.min_dist_slider.setValue(0.3)
    (result,) = wait_for(explorer.mapReady)
    meter.stop()
    out["map_warm"] = {"points": len(result), "kind": result.kind, "seconds": time.perf_counter() - t,
                       "max_stall_ms": meter.max_stall * 1000}
    explorer.close()
    window.close()
    return out


def click_latency(library: Path, audio_file: Path, tmp: Path) -> float | None:
    from tests.gui.conftest import asoundrc

    home = tmp / "home"
    asoundrc(home, tmp / "played.raw")
    env = {**os.environ, "HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "tests.gui.playback_probe", str(library), str(audio_file),
                           "0.0", "0.5", str(tmp / "click.ini")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])["latency"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--audio", type=Path, required=True, help="a folder of audio to index in the window")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--part", choices=["all", "stall"], default="all", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part == "stall":  # the GUI part, in its own process (a fresh QApplication and numba state)
        print(json.dumps(stalls(args.audio, args.tmp)))
        return 0
    with tempfile.TemporaryDirectory(prefix="audiosim-app-") as name:
        tmp = Path(name)
        proc = subprocess.run([sys.executable, __file__, "--audio", str(args.audio), "--part", "stall",
                               "--tmp", str(tmp)], capture_output=True, text=True, cwd=ROOT,
                              env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=1800)
        if proc.returncode != 0:
            sys.exit(f"stall run failed:\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        library = tmp / "stall-library"  # indexed by the stall run: the start and click runs open it
        starts = start_times(library, args.runs, tmp)
        report["start_s"] = statistics.median(starts) if starts else None
        report["start_runs"] = starts
        first = sorted(p for p in args.audio.rglob("*") if p.suffix.lower() in (".wav", ".flac"))[0]
        report["click_s"] = click_latency(library, first, tmp)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"start → window shown: {report['start_s']:.2f} s (runs {', '.join(f'{s:.2f}' for s in starts)})")
    ix = report["indexing"]
    print(f"indexing {ix['files']} files in {ix['seconds']:.1f} s: longest stall {ix['max_stall_ms']:.0f} ms")
    for key in ("map_cold", "map_warm"):
        m = report[key]
        print(f"{key}: {m['points']} points in {m['seconds']:.1f} s: longest stall {m['max_stall_ms']:.0f} ms")
    if report["click_s"] is not None:
        print(f"click → first audio block: {report['click_s'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
