"""Learn the embedding's frozen constants (``audiosim/features/embedding_v3.npz``) from real recordings.

Set-up (Debian/Ubuntu, as root): ``apt-get install fluidsynth timidity fluid-soundfont-gm
musescore-general-soundfont-small timgm6mb-soundfont freepats avldrums.lv2-soundfont sonic-pi-samples
hydrogen-drumkits``.

**Training data** — labelled real drum one-shots and instrument notes (``tests/real_sounds.py``) from the
*training sources* only: the GM SoundFont kits and programs of FluidR3/MuseScore and TimGM6mb/GMbank, and
the Hydrogen drum kits (13 kits, 11 sources); every training file also in ``--copies`` other takes
(``bench/augment.py``: another tuning, EQ, room, saturation, level and noise floor). The evaluation's
held-out sources (AVL kits, freepats, sonic-pi) are never used here except to report on them.

**The fit**, on the raw descriptors of ``audiosim.features.embedding`` (284 numbers per file):

1. each number standardised over the training rows;
2. ``--networks`` small neural networks (284 → 512 → 128, ReLU; scikit-learn's ``MLPClassifier`` with L2
   penalty ``--alpha``, different seeds) trained to tell the drum classes and instrument families apart;
   the last hidden layer of each, made unit-length, describes what tells sounds apart (together they
   weigh ``--weight`` times the linear part);
3. the linear part: group weights, within-class covariance normalisation (``--lam``) and PCA to 128 — a
   map of all the descriptors, not only of what the trained classes need, so that sounds of no trained
   class stay apart too;
4. all parts side by side, PCA to ``--dim`` numbers.

**Reports** cross-source precision@10 (neighbours from another source only, as ``bench/eval_real.py``
counts): leave-one-family-out cross-validation over the training families (fluid, gm6, Hydrogen: fit on
the other two, query the third), which is what chooses the settings, and then the held-out sources, beside
the plain MFCC mean+std baseline.

    python bench/tune_embedding.py [--corpus DIR] [--copies 4] [--networks 3] [--alpha 0.3] [--weight 2]
                                   [--cv] [--write]
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audiosim.config import AnalysisParams  # noqa: E402
from audiosim.features import embedding  # noqa: E402
from tests import real_eval  # noqa: E402
from tests.real_sounds import make_drum_corpus, make_hydrogen_corpus, make_instrument_corpus  # noqa: E402

HELD_OUT = ("avl", "freepats", "sonicpi")
OUT = ROOT / "audiosim" / "features" / embedding.CONSTANTS_FILE
AUGMENT_VERSION = 1  # bump when bench/augment.py changes: cached copies are then made again
HIDDEN = (512, 128)


def family(source: str) -> str:
    """The training family of a source: the cross-validation folds."""
    return "hydrogen" if source.startswith("h:") else source


def _describe(job: tuple[str, int | None]) -> np.ndarray:
    """Raw descriptors of a file (``seed`` None) or of one augmented copy of it."""
    from audiosim.analysis import analyze_file, analyze_signal

    path, seed = job
    params = AnalysisParams()
    if seed is None:
        frames = analyze_file(path, params).frames
    else:
        import soundfile as sf
        import soxr

        from bench.augment import augment

        audio, rate = sf.read(path, always_2d=True)
        copy = augment(audio.mean(axis=1), rate, np.random.default_rng(seed))
        frames = analyze_signal(soxr.resample(copy, rate, params.sample_rate).astype(np.float32), params)
    return embedding.raw_file_descriptor(frames, params)


def load_corpus(root: Path, copies: int) -> dict:
    """Raw descriptors of every file and of ``copies`` augmented copies of each training file, the baseline
    vectors and the labels, cached in ``root/descriptors_v3.npz``."""
    files = [(p, lab, "drum") for p, lab in make_drum_corpus(root / "drums").items()]
    files += [(p, lab, "drum") for p, lab in make_hydrogen_corpus(root / "hydrogen").items()]
    files += [(p, lab, "instrument") for p, lab in make_instrument_corpus(root / "instruments").items()]
    files.sort(key=lambda f: str(f[0]))
    names = np.array([str(p) for p, _, _ in files])
    source = np.array([lab.source for _, lab, _ in files])
    train = np.flatnonzero(~np.isin(source, HELD_OUT))
    owner = np.concatenate([np.arange(len(files)), np.tile(train, copies)])
    seeds = [None] * len(files) + [1000 * r + int(i) for r in range(copies) for i in train]
    cache = root / "descriptors_v3.npz"
    key = np.array([embedding.raw_dim(AnalysisParams().n_mfcc), copies, AUGMENT_VERSION])
    if cache.exists():
        data = dict(np.load(cache))
        if len(data["paths"]) == len(names) and (data["paths"] == names).all() and (data["key"] == key).all():
            return data
    n = embedding.raw_dim(AnalysisParams().n_mfcc)
    if not OUT.exists() or len(np.load(OUT)["mu"]) != n:  # analysis needs constants: the identity will do
        embedding.Transform.identity(n, AnalysisParams().n_mfcc).save(OUT)
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        raw = np.stack(list(pool.map(_describe, zip(names[owner], seeds), chunksize=16)))
    drums_and_notes = ~np.char.startswith(source.astype(str), "h:")
    baseline = np.full((len(files), 40), np.nan)
    baseline[drums_and_notes] = real_eval.baseline_vectors(names[drums_and_notes])[0]
    data = {"paths": names, "raw": raw, "owner": owner, "baseline": baseline, "key": key, "source": source,
            "cls": np.array([f"{kind}:{lab.cls}" for _, lab, kind in files]),
            "kind": np.array([k for _, _, k in files])}
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


def _linear_part(z: np.ndarray, cls: np.ndarray, *, lam: float, n_mfcc: int, dim: int = 128) -> np.ndarray:
    """Group weights, then WCCN ``(Sw / trace(Sw) * D + lam I)^-1/2``, then PCA to ``dim``: a matrix on
    standardised descriptors, scaled so that its vectors have unit mean square length."""
    weighted = z * embedding.group_scale(n_mfcc)
    within = np.zeros((z.shape[1], z.shape[1]))
    for c in np.unique(cls):
        centred = weighted[cls == c] - weighted[cls == c].mean(0)
        within += centred.T @ centred
    within = within / np.trace(within) * len(within)
    values, vectors = np.linalg.eigh(within + lam * np.eye(len(within)))
    wccn = vectors @ np.diag(values ** -0.5) @ vectors.T
    y = weighted @ wccn
    _, _, components = np.linalg.svd(y - y.mean(0), full_matrices=False)
    matrix = np.diag(embedding.group_scale(n_mfcc)) @ wccn @ components[:dim].T
    return matrix / np.sqrt(np.mean(np.sum(((z - z.mean(0)) @ matrix) ** 2, axis=1)))


def fit(raw: np.ndarray, cls: np.ndarray, *, networks: int, alpha: float, weight: float, lam: float, dim: int,
        n_mfcc: int) -> embedding.Transform:
    from sklearn.neural_network import MLPClassifier

    mu = raw.mean(0)
    sigma = raw.std(0)
    sigma[sigma < 1e-6] = 1.0
    z = (raw - mu) / sigma
    nets = []
    for seed in range(networks):
        model = MLPClassifier(HIDDEN, alpha=alpha, max_iter=100, batch_size=256, random_state=seed).fit(z, cls)
        # The output layer only served the training: the embedding is the last hidden layer.
        nets.append(tuple(zip(model.coefs_[:-1], model.intercepts_[:-1])))
    linear = _linear_part(z, cls, lam=lam, n_mfcc=n_mfcc)
    n_parts = len(nets) * HIDDEN[-1] + linear.shape[1]
    side_by_side = embedding.Transform(mu, sigma, tuple(nets), linear, 0.0, np.eye(n_parts), np.ones(n_mfcc - 1))
    # Each network's part is unit length, the linear part unit length on average: together the networks
    # weigh ``weight`` times the linear part.
    scale = np.concatenate([np.full(len(nets) * HIDDEN[-1], weight / np.sqrt(len(nets))),
                            np.ones(linear.shape[1])])
    parts = side_by_side.apply(raw).astype(np.float64) * scale
    centre = parts.mean(0)
    _, _, components = np.linalg.svd(parts - centre, full_matrices=False)
    projection = np.diag(scale) @ components[:dim].T
    frame_scale = (1.0 / sigma[: n_mfcc - 1]).astype(np.float32)  # spread of each mean MFCC c1.. across sounds
    return embedding.Transform(mu, sigma, tuple(nets), linear, centre / scale, projection, frame_scale)


def _scores(model: embedding.Transform, data: dict, library: np.ndarray, queries: np.ndarray) -> dict:
    x = model.apply(data["raw"][: len(data["paths"])])
    out = {}
    for kind in ("drum", "instrument"):
        sel = (data["kind"] == kind) & library
        if (queries & sel).any():
            out[kind] = cross_source_precision(x[sel], data["paths"][sel], data["cls"][sel], data["source"][sel],
                                               queries[sel])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/audiosim-real"))
    parser.add_argument("--copies", type=int, default=4, help="augmented copies of each training file")
    parser.add_argument("--networks", type=int, default=3)
    parser.add_argument("--alpha", type=float, default=0.3, help="the networks' L2 penalty")
    parser.add_argument("--weight", type=float, default=2.0, help="the networks' weight beside the linear part")
    parser.add_argument("--lam", type=float, default=1.0, help="WCCN regularisation of the linear part")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--cv", action="store_true", help="also cross-validate over the training families")
    parser.add_argument("--write", action="store_true", help=f"write the constants to {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    data = load_corpus(args.corpus, args.copies)
    n = len(data["paths"])
    source, owner = data["source"], data["owner"]
    families = np.array([family(s) for s in source])
    train = ~np.isin(source, HELD_OUT)
    settings = dict(networks=args.networks, alpha=args.alpha, weight=args.weight, lam=args.lam, dim=args.dim,
                    n_mfcc=AnalysisParams().n_mfcc)
    print(f"{n} files ({train.sum()} training, {len(owner) - n} augmented copies); {args.networks} networks, "
          f"alpha {args.alpha}, weight {args.weight}, lambda {args.lam}, {args.dim} dims")
    if args.cv:
        for fold in sorted(set(families[train])):
            rows = train[owner] & (families[owner] != fold)
            model = fit(data["raw"][rows], data["cls"][owner[rows]], **settings)
            for kind, (p, per) in _scores(model, data, train, families == fold).items():
                print(f"cv {fold:<10} {kind + 's':<12}{p:>8.3f}   " +
                      " ".join(f"{c.split(':')[1]} {v:.2f}" for c, v in per.items()))
    model = fit(data["raw"][train[owner]], data["cls"][owner[train[owner]]], **settings)
    not_hydrogen = families != "hydrogen"  # the evaluation's library: bench/eval_real.py's sources
    held = np.isin(source, HELD_OUT)
    baseline = embedding.Transform.identity(40, 2)
    print(f"{'held-out set':<24}{'baseline':>10}{'audiosim':>10}")
    ours = _scores(model, data, not_hydrogen, held)
    theirs = _scores(baseline, {**data, "raw": data["baseline"]}, not_hydrogen, held)
    for kind, (p, per) in ours.items():
        print(f"{kind + 's':<24}{theirs[kind][0]:>10.3f}{p:>10.3f}   " +
              " ".join(f"{c.split(':')[1]} {v:.2f}" for c, v in per.items()))
        for s in sorted(set(source[held & (data["kind"] == kind)])):
            p_s, _ = _scores(model, data, not_hydrogen & (data["kind"] == kind), source == s)[kind]
            print(f"{'  ' + s:<24}{'':>10}{p_s:>10.3f}")
    if args.write:
        model.save(OUT)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
