"""Benchmark a user's first run: from an empty datadir and an empty Hugging Face cache, through the Hub.

The stand-in Hub of the tests (tests/stand_in_hub.py) serves the archive on 127.0.0.1 as a distant Hub does: each
connection capped at --rate MB/s, so that the network sets the pace and not this machine's disk, --delay seconds
added to every request, and `resolve` answered with a 302 to a signed storage URL. Over each transport the Hub
offers, plain HTTP ranges (the `resolve` URL) and Xet storage (parallel xorb fetches by the real `hf_xet`), side by
side in one run:

(a) download: huggingface_hub's own download of Audio.tar alone (`hf_hub_download`);
(b) pipeline: the pipeline the exporter replaces, (a) and then the plain `tarfile` copy of bench/run.py (its floor);
(c) export:   `python export_jsonl.py`, which downloads, checks and exports;
(d) members:  `python export_jsonl.py --test-members-only`, which fetches only the ranges that hold the test split.
    It proves them whole against the manifest a full export gives: H2T's, for an archive that bench/make_archive.py
    wrote with --test-manifest, else the one given with --expected-manifest.
(e) build:    `load_dataset("emotiontalk_test.py", split="test")`, which fetches the test members alone into the
    `datasets` cache, proven whole by the same manifest, and builds the split, then reads every row's audio bytes;
(f) stream:   the same with `streaming=True`, which yields each row as its WAV arrives, and holds a few pieces in
    memory; the table gives the seconds from the `load_dataset` call to its first row.
Every run but (a) and (b) writes the manifest of what it got, and they must be the pipeline's. `--runs` picks some.

Each is a fresh process with a fresh HF_HOME and output folder, timed wall-clock, its peak anonymous memory
sampled over its process tree (as bench/run.py does, whose `measure` it uses), and its own peak RSS (`ru_maxrss`,
the kernel's high-water mark); what it read from files
(`rchar` of /proc/self/io at its exit, which counts read() and pread() but not the sockets' recv) is given as a
multiple of the archive's size, and so are the bytes the stand-in Hub sent; and the `resolve` requests it answered,
which the Hub counts against a rate limit. Each is repeated, in a rotating order; the table shows medians, and each
ratio is the median over repeats of the ratio to (a) or (b) within a repeat. Outputs are deleted after each run:
they are 7.5 GB at full size.

    python bench/from_hub.py /data/bench/Audio.tar [--rate 150] [--delay 0.02] [--repeats 3]

Without an archive it writes a synthetic one of the real archive's shape (--synthetic-scale of its utterances, at
half their length: 1/50 gives 75 MB) into its working folder, takes the manifest that an export of it from disk
writes as (d)'s proof, and runs all of the above on it: the Hub path, tried without Hub access. Whatever it
writes goes, however the run ends.

    python bench/from_hub.py --repeats 1
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import os
import resource
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests"), str(BENCH_DIR)]

import synthetic_archive  # noqa: E402
from h2t_manifest import MANIFEST_NAME, manifest_line  # noqa: E402
from run import floor, machine_description  # noqa: E402
from run import measure as measure_run  # noqa: E402
from stand_in_hub import GOOD_TOKEN, StandInHub  # noqa: E402

RUN_NAMES = {"download": "(a) hf_hub_download alone", "pipeline": "(b) (a), then the tarfile copy", "export": "(c) export_jsonl.py",
             "members": "(d) export_jsonl.py --test-members-only", "build": "(e) load_dataset, build",
             "stream": "(f) load_dataset, streaming pass"}
PARTIAL_KINDS = ("members", "build", "stream")  # they fetch the test members alone, once proven whole
TRANSPORTS = ("ranges", "xet")


def child(kind: str, out_dir: Path, io_report: Path, expected_manifest: str | None) -> None:
    """One measured run, in this process; what it read, its peak RSS and (for a stream) when its first row came
    are written to `io_report` as it exits."""
    first_row: list[float] = []
    atexit.register(lambda: io_report.write_text(
        Path("/proc/self/io").read_text() + f"maxrss_kb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\n"
        + "".join(f"first_row: {seconds}\n" for seconds in first_row)))
    if kind in ("export", "members"):
        sys.argv = [str(PROJECT_DIR / "export_jsonl.py"), "--datadir", str(out_dir)]
        if kind == "members":
            sys.argv += ["--test-members-only"] + (["--expected-manifest", expected_manifest] if expected_manifest else [])
        runpy.run_path(sys.argv[0], run_name="__main__")
        return
    if kind in ("build", "stream"):
        first_row.append(load_split(kind == "stream", out_dir, expected_manifest))
        return
    import huggingface_hub

    archive_path = huggingface_hub.hf_hub_download("BAAI/Emotiontalk", "Audio.tar", repo_type="dataset")
    if kind == "pipeline":
        floor(Path(archive_path), out_dir)


def load_split(streaming: bool, out_dir: Path, expected_manifest: str | None) -> float:
    """The split by load_dataset from the Hub, every row's audio bytes read, and its manifest written as an export
    writes it; the seconds from the `load_dataset` call to the first row."""
    import datasets

    options = {"expected_manifest_sha256": hashlib.sha256(Path(expected_manifest).read_bytes()).hexdigest()} if expected_manifest else {}
    called = time.perf_counter()
    rows = datasets.load_dataset(str(PROJECT_DIR / "emotiontalk_test.py"), split="test", trust_remote_code=True,
                                 streaming=streaming, **options)
    emotions = rows.features["emotion"].names
    lines, first_row = [], None
    for row in rows.cast_column("audio", datasets.Audio(decode=False)):
        first_row = first_row or time.perf_counter() - called
        if row["audio"]["bytes"]:
            lines.append(manifest_line(row["sample_id"], row["raw_transcription"], emotions[row["emotion"]]))
    (out_dir / "emotiontalk").mkdir(parents=True)
    (out_dir / "emotiontalk" / MANIFEST_NAME).write_text("".join(lines), encoding="utf-8")
    return first_row


def measure(kind: str, hub: StandInHub, run_dir: Path, expected_manifest: Path | None) -> dict:
    """One run, timed and sampled for memory by bench/run.py's `measure`, with what it read from files and what the
    Hub sent."""
    run_dir.mkdir(parents=True)
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": GOOD_TOKEN, "HF_HOME": str(run_dir / "hf-home"),
           "HF_DATASETS_CACHE": str(run_dir / "datasets-cache"), "TQDM_DISABLE": "1"}
    env.pop("HF_HUB_DISABLE_XET", None)
    io_report = run_dir / "io.txt"
    command = [sys.executable, __file__, "--child", kind, str(run_dir / "out"), str(io_report), str(expected_manifest or "")]
    hub.bytes_sent = hub.resolve_requests = 0
    result = measure_run(command, env, run_dir / "log.txt")
    fallback = [line for line in (run_dir / "log.txt").read_text().splitlines() if "the whole archive instead" in line]
    if kind in PARTIAL_KINDS and fallback:
        sys.exit(f"bench/from_hub.py: {RUN_NAMES[kind][:3]} fell back to the whole archive ({fallback[0]}); is --expected-manifest right?")
    io = dict(line.split(": ") for line in io_report.read_text().splitlines())
    return {**result, "read": int(io["rchar"]) / hub.size, "sent": hub.bytes_sent / hub.size, "resolves": hub.resolve_requests,
            "maxrss_mb": int(io["maxrss_kb"]) * 1024 / 1e6, "first_row": float(io["first_row"]) if kind == "stream" else None,
            "manifest": manifest_of(kind, run_dir / "out")}


def manifest_of(kind: str, out_dir: Path) -> bytes | None:
    if kind == "download":
        return None
    return (out_dir / "zh-en.jsonl" if kind == "pipeline" else out_dir / "emotiontalk" / "zh-en.jsonl").read_bytes()


def synthetic_archive_and_manifest(workdir: Path, scale: float) -> tuple[Path, Path]:
    """An archive of the real one's shape in `workdir`, written as `tar cf` writes a folder, and the manifest that
    the exporter writes for it from disk."""
    corpus = synthetic_archive.real_shape_corpus(scale, duration_scale=0.5)
    archive_path = synthetic_archive.write_archive(workdir / "Audio.tar", synthetic_archive.layout_members(corpus, "tar_cf"))
    exported = subprocess.run([sys.executable, str(PROJECT_DIR / "export_jsonl.py"), "--archive", str(archive_path),
                               "--datadir", str(workdir / "from-disk")], capture_output=True, text=True)
    if exported.returncode:
        sys.exit(exported.stderr.strip())
    return archive_path, workdir / "from-disk" / "emotiontalk" / "zh-en.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, nargs="?",
                        help="an Audio.tar, e.g. from bench/make_archive.py (default: a synthetic one, written here and removed)")
    parser.add_argument("--synthetic-scale", type=float, default=0.02,
                        help="without an archive: the share of the real archive's utterances in the synthetic one (default 0.02)")
    parser.add_argument("--rate", type=float, default=150, help="each connection's cap, in MB/s (default 150)")
    parser.add_argument("--delay", type=float, default=0.02, help="added to every request, in seconds (default 0.02)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, for medians (default 3)")
    parser.add_argument("--workdir", type=Path, help="put the runs' outputs in a new folder inside this one")
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=TRANSPORTS, help="(default: both)")
    parser.add_argument("--runs", nargs="+", choices=RUN_NAMES, default=list(RUN_NAMES),
                        help="which runs (default: all); a ratio needs its baseline, download or pipeline, among them")
    parser.add_argument("--expected-manifest", type=Path, help="for (d): the manifest a full export of the archive gives")
    parser.add_argument("--child", nargs=4, metavar=("KIND", "OUT", "IO_REPORT", "MANIFEST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]), args.child[3] or None)
        return 0
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="emotiontalk-from-hub-", dir=args.workdir))
    try:
        if args.archive is None:
            args.archive, args.expected_manifest = synthetic_archive_and_manifest(workdir, args.synthetic_scale)
        transports = tuple(args.transports)
        kinds = [kind for kind in RUN_NAMES if kind in args.runs]
        results = {(transport, kind): [] for transport in transports for kind in kinds}
        with StandInHub(args.archive.resolve(), rate_limit=args.rate * 1e6, delay=args.delay, redirect=True) as hub:
            print(f"archive: {args.archive} ({hub.size / 1e9:.2f} GB), served on 127.0.0.1 at {args.rate:g} MB/s per connection, "
                  f"{args.delay * 1000:g} ms a request, `resolve` redirected to signed storage")
            print(f"machine: {machine_description()}\n")
            for repeat in range(args.repeats):
                for transport in transports if repeat % 2 == 0 else transports[::-1]:
                    hub.xet = transport == "xet"
                    for kind in kinds[repeat % len(kinds):] + kinds[: repeat % len(kinds)]:
                        run_dir = workdir / f"{transport}-{kind}-{repeat}"
                        results[transport, kind].append(measure(kind, hub, run_dir, args.expected_manifest and args.expected_manifest.resolve()))
                        shutil.rmtree(run_dir)
                        print(f"  repeat {repeat}, {transport}, {kind}: {results[transport, kind][-1]['seconds']:.1f} s", flush=True)
                    manifests = {results[transport, kind][-1]["manifest"] for kind in kinds if kind != "download"}
                    if len(manifests) > 1:
                        sys.exit(f"over {transport}, the exports' manifests differ from the pipeline's")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n| transport | run | seconds | ratio to (a) | ratio to (b) | first row, s | Hub sent, x archive | "
          "`resolve` requests | read from files, x archive | peak RSS MB | peak anon MB | every run, s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for (transport, kind), measured in results.items():
        ratios = [f"{statistics.median(c['seconds'] / b['seconds'] for c, b in zip(measured, results[transport, baseline])):.2f}"
                  if (transport, baseline) in results else "–" for baseline in ("download", "pipeline")]
        first_row = f"{statistics.median(m['first_row'] for m in measured):.2f}" if kind == "stream" else "–"
        every_run = " ".join(f"{m['seconds']:.1f}" for m in measured)
        print(f"| {transport} | {RUN_NAMES[kind]} | {statistics.median(m['seconds'] for m in measured):.1f} | "
              f"{ratios[0]} | {ratios[1]} | {first_row} | {statistics.median(m['sent'] for m in measured):.3f} | "
              f"{statistics.median(m['resolves'] for m in measured):.0f} | {statistics.median(m['read'] for m in measured):.2f} | "
              f"{max(m['maxrss_mb'] for m in measured):.0f} | {max(m['peak_anon_mb'] for m in measured):.0f} | {every_run} |")
    if all((transport, "download") in results for transport in TRANSPORTS):
        speedup = statistics.median(r["seconds"] for r in results["ranges", "download"]) / statistics.median(
            x["seconds"] for x in results["xet", "download"])
        print(f"\nXet's parallel connections against one ranged stream, (a) over ranges / (a) over Xet: {speedup:.2f}x")
    print("targets: (c)/(b) at most 1.10 over ranges with no second full read, at most 1.25 over Xet; (d) at most "
          "0.155x the archive's bytes sent and 0.15x (a)'s time over ranges; (e) at most 0.12x (a)'s time, (f) 0.25x; "
          "(e) and (f) at most 0.16x the archive's bytes, 3 `resolve` requests each; (f)'s first row within 3 s (5 s "
          "at 4 MB/s a connection), its peak RSS at most 400 MB; at most 10 `resolve` requests for (d)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
