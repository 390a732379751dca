"""How often are a file's nearest neighbours of its own class? precision@k on a generated labelled corpus.

    .venv/bin/python bench/eval_precision.py [--per-class 20] [--seed 0] [-k 10] [--json] [--keep DIR]

Generates ``tests.corpus.make_labelled_corpus`` (kick, snare, hihat, clap, tone, bell, pad, noise, speech)
in a temporary folder, then works only through the command line, as a user would:

    python -m audiosim --library LIB --json index CORPUS
    python -m audiosim --library LIB --json query --each --level file -k 11 --exclude-self FILE...

and the same query at ``--level segment``. The query answers are JSON Lines, one document per query file
(``{"query": path, "results": [{"rank", "asset_id", "segment_id", "path", "start", "end", "distance"}]}``).
precision@k is the share of the first k results (the query's own file left out) that are of the query's
class, averaged over queries; chance is about (n_per_class - 1) / (n_files - 1). Prints a table per class
and a final ``precision@10 (file level): 0.xx`` line, or one JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.corpus import make_labelled_corpus

LEVELS = ("file", "segment")


def run_cli(
    args: list[str], *, python: str, ok: tuple[int, ...] = (0,)
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python -m audiosim ARGS`` from the project root; exit with its stderr unless it returns ``ok``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    proc = subprocess.run([python, "-m", "audiosim", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 and proc.returncode in ok:
        print(f"warning: audiosim {args[3]} exited with {proc.returncode}:\n{proc.stderr[-2000:]}", file=sys.stderr)
    if proc.returncode not in ok:
        sys.exit(f"audiosim {' '.join(args[:4])} ... failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, elapsed


def parse_json_lines(text: str) -> list[dict]:
    docs = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            docs.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"warning: not JSON: {line[:120]}", file=sys.stderr)
    return docs


def _key(path: str | Path) -> str:
    return os.path.realpath(path)


def precision_at_k(docs: list[dict], labels: dict[str, str], k: int) -> dict:
    """Per-query precision@k from query documents; the query's own file never counts."""
    per_class: dict[str, list[float]] = defaultdict(list)
    short = 0  # queries that came back with fewer than k other-file results
    unknown = 0  # results whose path is not a corpus file
    for doc in docs:
        query = _key(doc["query"])
        if query not in labels:
            raise SystemExit(f"query path not in the corpus: {doc['query']}")
        others = [r for r in sorted(doc.get("results", []), key=lambda r: r["rank"]) if _key(r["path"]) != query]
        top = others[:k]
        short += len(top) < k
        unknown += sum(_key(r["path"]) not in labels for r in top)
        hits = sum(labels.get(_key(r["path"])) == labels[query] for r in top)
        per_class[labels[query]].append(hits / k)
    scores = [p for values in per_class.values() for p in values]
    return {
        "overall": sum(scores) / len(scores) if scores else float("nan"),
        "per_class": {c: sum(v) / len(v) for c, v in sorted(per_class.items())},
        "queries": len(scores),
        "short_result_lists": short,
        "unknown_result_paths": unknown,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=20, help="files per class (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=10, help="precision@k (default 10; asks the CLI for k+1)")
    parser.add_argument("--levels", default=",".join(LEVELS), help="comma-separated: file,segment")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--keep", type=Path, help="generate corpus and library here and keep them")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs audiosim")
    args = parser.parse_args(argv)
    levels = [lvl.strip() for lvl in args.levels.split(",") if lvl.strip()]

    with tempfile.TemporaryDirectory(prefix="audiosim-eval-") as tmp:
        work = args.keep or Path(tmp)
        corpus_dir, library = work / "corpus", work / "lib"
        started = time.perf_counter()
        labelled = make_labelled_corpus(corpus_dir, per_class=args.per_class, seed=args.seed)
        generate_seconds = time.perf_counter() - started
        labels = {_key(p): c for p, c in labelled.items()}
        files = sorted(str(p) for p in labelled)

        index_proc, index_seconds = run_cli(
            ["--library", str(library), "--json", "index", str(corpus_dir)], python=args.python, ok=(0, 3)
        )  # 3: indexed, but some files failed
        report: dict = {
            "files": len(files), "classes": len(set(labelled.values())), "per_class": args.per_class,
            "seed": args.seed, "k": args.k, "chance": (args.per_class - 1) / max(1, len(files) - 1),
            "seconds": {"generate": round(generate_seconds, 2), "index": round(index_seconds, 2)},
            "index": (parse_json_lines(index_proc.stdout) or [None])[-1],
            "levels": {},
        }
        for level in levels:
            proc, seconds = run_cli(
                ["--library", str(library), "--json", "query", "--each", "--level", level, "-k", str(args.k + 1),
                 "--exclude-self", *files],
                python=args.python, ok=(0, 1),  # 1: some queries failed; their documents say why
            )
            docs = [d for d in parse_json_lines(proc.stdout) if "query" in d]
            if len(docs) != len(files):
                print(f"warning: {len(docs)} query documents for {len(files)} files at level {level}",
                      file=sys.stderr)
            report["levels"][level] = precision_at_k(docs, labels, args.k)
            report["seconds"][f"query_{level}"] = round(seconds, 2)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print_table(report, levels)
    return 0


def print_table(report: dict, levels: list[str]) -> None:
    k = report["k"]
    print(f"{report['files']} files, {report['classes']} classes x {report['per_class']}, seed {report['seed']}; "
          f"chance precision@{k} = {report['chance']:.3f}")
    index = report.get("index")
    if isinstance(index, dict) and "indexed" in index:
        print(f"indexed {index['indexed']} files, {index.get('segments', '?')} segments, "
              f"{len(index.get('failed', []))} failed")
    print("seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in report["seconds"].items()))
    header = f"{'class':<10}" + "".join(f"{'p@' + str(k) + ' ' + lvl:>16}" for lvl in levels)
    print(header)
    print("-" * len(header))
    classes = sorted({c for lvl in levels for c in report["levels"][lvl]["per_class"]})
    for c in classes:
        print(f"{c:<10}" + "".join(f"{report['levels'][lvl]['per_class'].get(c, float('nan')):>16.3f}"
                                   for lvl in levels))
    print("-" * len(header))
    print(f"{'overall':<10}" + "".join(f"{report['levels'][lvl]['overall']:>16.3f}" for lvl in levels))
    for lvl in levels:
        result = report["levels"][lvl]
        if result["short_result_lists"] or result["unknown_result_paths"]:
            print(f"note ({lvl}): {result['short_result_lists']} queries had fewer than {k} results, "
                  f"{result['unknown_result_paths']} results outside the corpus")
    if "file" in levels:
        print(f"precision@{k} (file level): {report['levels']['file']['overall']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
