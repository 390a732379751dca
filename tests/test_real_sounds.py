"""On real recordings from Debian packages (sources the embedding was never tuned on), audiosim ranks
same-class sounds from other kits far above the textbook MFCC baseline, and finds noisy, re-levelled
excerpts of long real recordings at the right time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import real_eval
from tests.real_sounds import make_drum_corpus, make_real_mix, missing_packages

pytestmark = pytest.mark.skipif(bool(missing_packages()),
                                reason=f"Debian packages missing: {' '.join(missing_packages())}")

# Queries come from held-out sources only (bench/tune_embedding.py fits the embedding on FluidR3/MuseScore,
# GM6 and the Hydrogen kits); the library also holds three FluidR3 kits, so that every class has neighbours
# in other kits.
HELD_OUT_DRUMS = ("blackpearl", "redzeppelin", "freepats", "sonicpi")
HELD_OUT = ("avl", "freepats", "sonicpi")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    drums = make_drum_corpus(root / "drums", sources=(*HELD_OUT_DRUMS, "fluidr3"),
                             kits=("standard", "room", "jazz"))
    library = root / "library"
    real_eval.index(library, root / "drums")
    labels = {os.path.abspath(p): (lab.cls, lab.source) for p, lab in drums.items()}
    return root, drums, library, labels


def test_cross_kit_ranking_beats_the_mfcc_baseline_by_far(held_out):
    _, drums, library, labels = held_out
    queries = sorted(p for p, (_, source) in labels.items() if source in HELD_OUT)
    ours, per_class = real_eval.cross_source_precision(real_eval.query_each(library, queries, level="file"),
                                                       labels)
    baseline, _ = real_eval.cross_source_precision(
        real_eval.nearest_results(real_eval.baseline_vectors(sorted(labels)), sorted(labels),
                                  queries), labels)
    assert len(queries) >= 200
    # Measured 0.835 (baseline 0.503; rimshot, the weakest class, 0.48) with embedding version 3.
    assert ours >= 0.80, (ours, per_class)
    assert ours - baseline >= 0.25, (ours, baseline)
    assert min(per_class.values()) >= 0.35, per_class  # no class left behind


def test_segment_level_ranking_holds_too(held_out):
    _, _, library, labels = held_out
    queries = sorted(p for p, (_, source) in labels.items() if source in HELD_OUT)[::2]
    ours, per_class = real_eval.cross_source_precision(
        real_eval.query_each(library, queries, level="segment"), labels)
    assert ours >= 0.75, (ours, per_class)  # measured 0.80


def test_noisy_relevelled_excerpts_of_a_real_mix_are_found_at_the_right_time(held_out, tmp_path):
    root, drums, _, _ = held_out
    clips = real_eval.distinct_recordings({p: lab for p, lab in drums.items() if lab.source in HELD_OUT})[:40]
    mix = tmp_path / "mixes" / "mix.wav"
    make_real_mix(mix, clips, seed=5)
    library = tmp_path / "library"
    real_eval.index(library, mix.parent)
    excerpts = real_eval.make_excerpts([mix], tmp_path / "excerpts", 30, seed=11)
    found = real_eval.localization(library, excerpts)
    # Measured 29/30 here (and 30/30 with excerpt seeds 12 and 13); 25/30 before the search heard the
    # candidates through the excerpt's noise floor.
    assert found["rate"] >= 0.9 and found["wrong_file"] <= 1, found
    assert found["median_error"] is not None and found["median_error"] <= 0.05, found


def test_a_quiet_real_recording_is_as_searchable_as_a_loud_one(held_out, tmp_path):
    """Gaps are relative to a file's own peak: the softest AVL velocity layers (peak RMS near -60 dBFS)
    used to fall under an absolute silence floor and could not be searched at all."""
    _, drums, library, labels = held_out
    softest = sorted((p for p in drums if "_v30" in Path(p).name), key=str)[:10]
    results = real_eval.query_each(library, softest, level="segment", k=5)
    assert all(results[os.path.abspath(p)] for p in softest)
