"""Real-sound evaluation: does audiosim rank real recordings the way a listener would?

Set-up (Debian/Ubuntu, as root; nothing is downloaded at run time)::

    apt-get install -y fluidsynth timidity fluid-soundfont-gm musescore-general-soundfont-small \\
        timgm6mb-soundfont freepats avldrums.lv2-soundfont sonic-pi-samples

Renders labelled real drum one-shots (8 GM kits from 4 SoundFonts, the two AVL multi-velocity acoustic
kits, freepats, sonic-pi's named samples) and instrument notes (9 GM families), indexes them with the
``audiosim`` CLI, and queries every **held-out** file (sources the embedding was not tuned on: AVL,
freepats, sonic-pi; ``bench/tune_embedding.py`` tunes on FluidR3/MuseScore and TimGM6mb/GMbank):

1. cross-source precision@10 at file and segment level, per class, beside the textbook baseline
   (librosa MFCC mean + std, standardised) computed in the same run;
2. the ``audiosim map`` 2-D layout's cross-source 10-NN class purity (mean and range over 5 seeds);
3. localization: excerpts (1.5–3 s, gain 0.5–1.2×, white noise 30 dB below) of long mixes of real
   one-shots with silences between them, and of sonic-pi's long real recordings (loops, ambiences) →
   right file first, start within 0.25 s.

    python bench/eval_real.py [--corpus DIR] [--excerpts 200] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import real_eval  # noqa: E402
from tests.real_sounds import SONIC_PI, make_drum_corpus, make_instrument_corpus, make_real_mix  # noqa: E402

HELD_OUT = ("avl", "freepats", "sonicpi")
MAP_SEEDS = 5
UNLOCATABLE = ("loop_", "drone", "hum", "hiss", "sauna", "roll")


def _labels(files: dict) -> dict[str, tuple[str, str]]:
    return {os.path.abspath(p): (lab.cls, lab.source) for p, lab in files.items()}


def _table(title: str, rows: list[tuple[str, float, float]], markdown: bool) -> str:
    lines = [f"\n{title}", "| class | baseline | audiosim |", "|---|---|---|"] if markdown else \
        [f"\n{title}", f"{'class':<12}{'baseline':>10}{'audiosim':>10}"]
    for name, b, a in rows:
        lines.append(f"| {name} | {b:.3f} | {a:.3f} |" if markdown else f"{name:<12}{b:>10.3f}{a:>10.3f}")
    return "\n".join(lines)


def ranking(kind: str, files: dict, folder: Path, work: Path, markdown: bool) -> dict:
    labels = _labels(files)
    library = work / f"lib-{kind}"
    started = time.perf_counter()
    real_eval.index(library, folder)
    indexed = time.perf_counter() - started
    queries = sorted(p for p, (_, source) in labels.items() if source in HELD_OUT)
    figures = {"files": len(files), "queries": len(queries), "index_seconds": round(indexed, 1)}
    paths = sorted(labels)
    for level, window in (("file", None), ("segment", 43)):  # 43 frames: audiosim's 1 s segments
        base = real_eval.nearest_results(real_eval.baseline_vectors(paths, window=window), paths, queries)
        b_total, b_per = real_eval.cross_source_precision(base, labels)
        ours = real_eval.query_each(library, queries, level=level, k=60)
        total, per = real_eval.cross_source_precision(ours, labels)
        figures[level], figures[f"baseline_{level}"] = total, b_total
        rows = [(c, b_per.get(c, float("nan")), v) for c, v in per.items()]
        rows.append(("all", b_total, total))
        print(_table(f"{kind}, {level} level: cross-source precision@10 ({len(queries)} held-out queries)",
                     rows, markdown))
    from audiosim.library.db import Library

    with Library(library) as lib:
        by_id = {a.id: labels[a.path] for a in lib.assets() if a.path in labels}
    held = {i for i, (_, s) in by_id.items() if s in HELD_OUT}
    purity = []
    for seed in range(42, 42 + MAP_SEEDS):  # 42: the default; a layout moves with the seed
        points = json.loads(real_eval.run_cli(library, "--json", "map", "--seed", str(seed)))["points"]
        purity.append(real_eval.map_purity([p for p in points if p["asset_id"] in by_id], by_id, held))
    figures["map_purity"], figures["map_purity_range"] = float(np.mean(purity)), [min(purity), max(purity)]
    print(f"{kind}: map 2-D cross-source 10-NN purity {figures['map_purity']:.3f} "
          f"({min(purity):.3f}–{max(purity):.3f} over {MAP_SEEDS} seeds)")
    return figures


def locate(drums: dict, instruments: dict, work: Path, count: int) -> dict:
    rng = np.random.default_rng(7)
    held = real_eval.distinct_recordings({p: lab for p, lab in {**drums, **instruments}.items()
                                          if lab.source in HELD_OUT})
    held = [held[i] for i in rng.permutation(len(held))]
    mixes = work / "mixes"
    for i in range(len(held) // 30):  # disjoint clips: an excerpt's audio is in one mix only
        make_real_mix(mixes / f"mix{i}.wav", held[30 * i:30 * (i + 1)], seed=i)
    long_real = work / "long"
    long_real.mkdir(parents=True, exist_ok=True)
    for f in sorted(SONIC_PI.glob("*.flac")):
        # Loops, drones, hums and hiss repeat or stand still by design: no moment in them is findable.
        if sf.info(str(f)).duration >= 5.0 and not any(w in f.name for w in UNLOCATABLE):
            os.symlink(f, long_real / f.name)
    library = work / "lib-long"
    real_eval.index(library, mixes, long_real)
    out = {}
    for name, folder in (("mixes", mixes), ("long", long_real)):
        recordings = sorted(folder.iterdir())
        excerpts = real_eval.make_excerpts(recordings, work / f"excerpts-{name}", count, seed=3)
        out[name] = real_eval.localization(library, excerpts)
        out[name]["recordings"] = len(recordings)
        r = out[name]
        print(f"localization, {name} ({r['recordings']} recordings): {r['right']}/{r['count']} = {r['rate']:.1%} "
              f"within 0.25 s; wrong file {r['wrong_file']}; median error of right-file hits "
              f"{1000 * (r['median_error'] or 0):.0f} ms")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/audiosim-real"))
    parser.add_argument("--excerpts", type=int, default=200)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--only", choices=("ranking", "localization"), help="run one part")
    args = parser.parse_args()
    drums = make_drum_corpus(args.corpus / "drums")
    instruments = make_instrument_corpus(args.corpus / "instruments")
    with tempfile.TemporaryDirectory(prefix="audiosim-eval-") as tmp:
        work = Path(tmp)
        results = {}
        if args.only != "localization":
            results["drums"] = ranking("drums", drums, args.corpus / "drums", work, args.markdown)
            results["instruments"] = ranking("instruments", instruments, args.corpus / "instruments", work,
                                             args.markdown)
        if args.only != "ranking":
            results["localization"] = locate(drums, instruments, work, args.excerpts)
    print("\n" + json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
