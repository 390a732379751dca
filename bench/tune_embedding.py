"""Learn the embedding's frozen constants (``audiosim/features/embedding_v2.npz``) from real recordings.

Set-up (Debian/Ubuntu, as root): ``apt-get install fluidsynth timidity fluid-soundfont-gm
musescore-general-soundfont-small timgm6mb-soundfont freepats avldrums.lv2-soundfont sonic-pi-samples``.

Renders labelled real drum one-shots and instrument notes (``tests/real_sounds.py``), analyses them with
audiosim, and fits on the **tune sources only** (FluidR3 + MuseScore, TimGM6mb + sf_GMbank):

1. per-number mean and spread (standardisation), then the fixed group weights of ``embedding.groups``;
2. within-class covariance normalisation (WCCN, classes = drum classes and instrument families):
   ``T = (Sw / trace(Sw) * D + lambda I)^-1/2`` shrinks the directions in which one class varies;
3. PCA to ``--dim`` dimensions.

It prints cross-source precision@10 (neighbours from another source only) on the tune sources and on the
held-out ones (AVL kits, freepats, sonic-pi), beside a plain MFCC mean+std baseline, so a gain that does
not carry over to unseen sources shows at once.

    python bench/tune_embedding.py [--corpus DIR] [--lam 1.0] [--dim 128] [--write]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiosim.config import AnalysisParams  # noqa: E402
from audiosim.features import embedding  # noqa: E402
from tests import real_eval  # noqa: E402
from tests.real_sounds import make_drum_corpus, make_instrument_corpus  # noqa: E402

TUNE_SOURCES = ("fluid", "gm6")
OUT = ROOT / "audiosim" / "features" / embedding.CONSTANTS_FILE


def _describe(path: str) -> np.ndarray:
    from audiosim.analysis import analyze_file

    params = AnalysisParams()
    return embedding.raw_file_descriptor(analyze_file(path, params).frames, params)


def load_corpus(root: Path) -> dict:
    """Raw descriptors, baseline vectors (``tests/real_eval.py``'s, as ``bench/eval_real.py`` scores them)
    and labels of every file, cached in ``root/descriptors.npz``."""
    drums = make_drum_corpus(root / "drums")
    instruments = make_instrument_corpus(root / "instruments")
    files = [(p, lab, "drum") for p, lab in drums.items()] + [(p, lab, "instrument") for p, lab in instruments.items()]
    files.sort(key=lambda f: str(f[0]))
    cache = root / "descriptors.npz"
    names = np.array([str(p) for p, _, _ in files])
    if cache.exists():
        data = dict(np.load(cache))
        if len(data["paths"]) == len(names) and (data["paths"] == names).all() and "baseline" in data:
            return data
    n = embedding.raw_dim(AnalysisParams().n_mfcc)
    if not OUT.exists() or len(np.load(OUT)["mu"]) != n:  # analysis needs constants: the identity will do
        embedding.Transform(np.zeros(n), np.eye(n), np.ones(AnalysisParams().n_mfcc - 1, np.float32)).save(OUT)
    with ProcessPoolExecutor(2) as pool:
        raw = np.stack(list(pool.map(_describe, names, chunksize=16)))
    data = {"paths": names, "raw": raw, "baseline": real_eval.baseline_vectors(names)[0],
            "cls": np.array([f"{kind}:{lab.cls}" for _, lab, kind in files]),
            "source": np.array([lab.source for _, lab, _ in files]), "kind": np.array([k for _, _, k in files])}
    np.savez(cache, **data)
    return data


def cross_source_precision(x: np.ndarray, paths: np.ndarray, cls: np.ndarray, source: np.ndarray,
                           queries: np.ndarray) -> tuple[float, dict[str, float]]:
    """``tests/real_eval.py``'s cross-source precision@10 over in-memory vectors: the mean share of
    same-class files among the 10 nearest from other sources, for the ``queries`` rows."""
    labels = {p: (c, s) for p, c, s in zip(paths, cls, source)}
    # Enough neighbours that 10 from other sources remain whatever the query's own source holds.
    k = int(max(np.unique(source, return_counts=True)[1])) + 10
    results = real_eval.nearest_results((x, np.arange(len(x))), paths, paths[queries], k=k)
    return real_eval.cross_source_precision(results, labels)


def fit(raw: np.ndarray, cls: np.ndarray, *, lam: float, dim: int, n_mfcc: int) -> embedding.Transform:
    mu = raw.mean(0)
    sigma = raw.std(0)
    sigma[sigma < 1e-6] = 1.0
    scale = embedding.group_scale(n_mfcc) / sigma
    z = (raw - mu) * scale
    within = np.zeros((z.shape[1], z.shape[1]))
    for c in np.unique(cls):
        member = z[cls == c]
        centred = member - member.mean(0)
        within += centred.T @ centred
    within /= len(z)
    within = within / np.trace(within) * len(within)
    values, vectors = np.linalg.eigh(within + lam * np.eye(len(within)))
    wccn = vectors @ np.diag(values ** -0.5) @ vectors.T
    y = z @ wccn
    y -= y.mean(0)
    _, _, components = np.linalg.svd(y, full_matrices=False)
    matrix = np.diag(scale) @ wccn @ components[:dim].T
    c = n_mfcc - 1
    frame_scale = (1.0 / sigma[:c]).astype(np.float32)  # spread of each mean MFCC c1.. across sounds
    return embedding.Transform(mu, matrix, frame_scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/audiosim-real"))
    parser.add_argument("--lam", type=float, default=1.0)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--write", action="store_true", help=f"write the constants to {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    data = load_corpus(args.corpus)
    raw, xb, paths = data["raw"], data["baseline"], data["paths"]
    cls, source, kind = data["cls"], data["source"], data["kind"]
    tune = np.isin(source, TUNE_SOURCES)
    model = fit(raw[tune], cls[tune], lam=args.lam, dim=args.dim, n_mfcc=AnalysisParams().n_mfcc)
    x = model.apply(raw)
    print(f"{len(raw)} files; tune on {', '.join(TUNE_SOURCES)}; lambda {args.lam}, {args.dim} dims")
    print(f"{'set':<24}{'baseline':>10}{'audiosim':>10}")
    for k in ("drum", "instrument"):
        for name, queries in (("tune", tune), ("held out", ~tune)):
            sel = kind == k
            if not (queries & sel).any():
                continue
            pb, _ = cross_source_precision(xb[sel], paths[sel], cls[sel], source[sel], queries[sel])
            pa, per = cross_source_precision(x[sel], paths[sel], cls[sel], source[sel], queries[sel])
            print(f"{k + 's ' + name:<24}{pb:>10.3f}{pa:>10.3f}   " +
                  " ".join(f"{c.split(':')[1]} {v:.2f}" for c, v in per.items()))
        for s in sorted(set(source[(kind == k) & ~tune])):
            sel = kind == k
            pa, _ = cross_source_precision(x[sel], paths[sel], cls[sel], source[sel], (source == s)[sel])
            print(f"{'  ' + s:<24}{'':>10}{pa:>10.3f}")
    if args.write:
        model.save(OUT)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
