"""Write a synthetic Audio.tar with the shape of the real one, for the benchmark.

Groups G00001-G00019, about 19,250 utterances; the test groups G00003 and G00015 with their real counts (793 and
1136) and the real label counts; durations drawn around the real mean (4.4 s) at 44.1 kHz 16-bit; Chinese
transcripts; each annotation next to its audio unless --layout says otherwise. Deterministic for a given seed.
With --test-manifest (H2T's manifests/emotiontalk/zh-en.jsonl), the test groups are that manifest's rows, so that
the archive's test split gives that very manifest, as the real archive does: what `export_jsonl.py
--test-members-only` needs to prove a split complete.

    python bench/make_archive.py /tmp/bench/Audio.tar                 # full size, about 7.5 GB
    python bench/make_archive.py /tmp/bench/Audio.tar --scale 0.01    # 1% of the utterances, 1% of the durations
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tqdm import tqdm  # noqa: E402

import synthetic_archive  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="where to write the archive")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply utterance counts and durations by this (default 1)")
    parser.add_argument("--duration-scale", type=float, help="multiply durations by this instead of --scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=synthetic_archive.LAYOUTS, default="paired", help="the order of the members (default: paired)")
    parser.add_argument("--test-manifest", type=Path, help="an H2T manifest of the test split whose rows the test groups are")
    args = parser.parse_args(argv)
    test_manifest = args.test_manifest.read_text(encoding="utf-8").splitlines() if args.test_manifest else None
    corpus = synthetic_archive.real_shape_corpus(args.scale, args.duration_scale, args.seed, test_manifest)
    args.archive.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.archive.with_name(f".{args.archive.name}.tmp")
    members = tqdm(synthetic_archive.layout_members(corpus, args.layout, args.seed), total=2 * len(corpus), desc="Writing members", unit="member")
    synthetic_archive.write_archive(temporary, members)
    os.replace(temporary, args.archive)
    test = [u for u in corpus if u.is_test]
    print(f"{args.archive}: {args.archive.stat().st_size / 1e9:.2f} GB, {len(corpus)} utterances "
          f"({sum(u.seconds for u in corpus) / 3600:.1f} h), test split {len(test)} ({sum(u.seconds for u in test) / 3600:.2f} h)")


if __name__ == "__main__":
    main()
