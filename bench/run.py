"""Benchmark the exporter against the least work any pipeline must do, on one archive, in one run.

(a) floor: one plain `tarfile` pass over the local archive that copies the test WAV members to a folder and
    writes a manifest, seeking past everything else;
(b) cold:  `export_jsonl.py --archive ...` with an empty `datasets` cache and an empty output folder;
(c) warm:  the same command again;
(d) parquet: `export_jsonl.py --archive ... --parquet` with an empty cache and output folder (the Parquet copy too);
(e) build:  `load_dataset("emotiontalk_test.py", data_dir=...)` into an empty `datasets` cache (the Arrow file);
(f) reload: the same again, from that cache, then a pass over every row's audio bytes (the Arrow file's read speed);
(g) stream: `load_dataset(..., streaming=True)`, one pass over every row's audio bytes, nothing cached.

Each is a fresh process, timed wall-clock, its memory sampled every 10 ms over its whole process tree: peak
anonymous memory (`RssAnon`: the program's own heap; pages of memory-mapped Arrow files and of the page cache
are not counted) and, beside it, plain peak RSS. The archive is read once before the runs, so that each finds it
in the page cache; every run writes to a fresh folder on the same disk, nothing is deleted before the last run,
and `sync` runs before each measurement so that no run pays for writing back another's output. Each is repeated
(--repeats), the floor first in even repeats and last in odd ones. The table shows the median time of each run
and, as its ratio to (a), the median over repeats of its time divided by the floor's time in the same repeat.

    python bench/run.py /tmp/bench/Audio.tar [--workdir /tmp/bench/work]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from h2t_manifest import AUDIO_DIR, manifest_line  # noqa: E402

TEST_PATH_PREFIXES = ("G00003/", "G00015/")
TEST_AUDIO_PREFIXES = tuple(f"Audio/wav/{prefix}" for prefix in TEST_PATH_PREFIXES)
RUN_NAMES = ("(a) floor: tarfile copy", "(b) export, cold", "(c) export, warm re-run", "(d) export --parquet, cold",
             "(e) load_dataset, build", "(f) load_dataset, cached reload", "(g) load_dataset, streaming pass")
LOAD_MODES = ("build", "reload", "stream")


def floor(archive_path: Path, out_dir: Path) -> None:
    """(a): copy the test WAV members and write the manifest, nothing more."""
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True)
    rows = {}
    with tarfile.open(archive_path, "r:") as archive:
        for member in archive:
            if member.name.endswith(".json"):
                record = json.loads(archive.extractfile(member).read())
                if record.get("file_path", "").startswith(TEST_PATH_PREFIXES):
                    rows[record["file_path"].rsplit("/", 1)[-1][: -len(".wav")]] = record
            elif member.isfile() and member.name.startswith(TEST_AUDIO_PREFIXES):
                (audio_dir / member.name.rsplit("/", 1)[-1]).write_bytes(archive.extractfile(member).read())
    with open(out_dir / "zh-en.jsonl", "w", encoding="utf-8") as manifest:
        for sample_id in sorted(rows):
            manifest.write(manifest_line(sample_id, rows[sample_id]["content"], rows[sample_id]["emotion_result"]))


def load(archive_path: Path, mode: str, writer_batch_size: int | None) -> None:
    """(e), (f) or (g), in this process."""
    import datasets

    options = {"data_dir": str(archive_path), "split": "test", "trust_remote_code": True}
    if mode == "stream":
        rows = datasets.load_dataset(str(PROJECT_DIR / "emotiontalk_test.py"), streaming=True, **options).decode(False)
    else:
        batch_size = {"writer_batch_size": writer_batch_size} if writer_batch_size else {}
        rows = datasets.load_dataset(str(PROJECT_DIR / "emotiontalk_test.py"), **options, **batch_size)
        if mode == "build":
            return
        rows = rows.cast_column("audio", datasets.Audio(decode=False))
    audio_bytes = sum(len(row["audio"]["bytes"]) for row in rows)
    print(f"{audio_bytes} bytes of audio read")


def process_tree_memory(pid: int) -> tuple[int, int]:
    """(RssAnon, VmRSS) in bytes, summed over `pid` and its descendants."""
    anon = rss = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        anon += int(fields.get("RssAnon", "0 kB").split()[0]) * 1024
        rss += int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    return anon, rss


def measure(command: list[str], env: dict, log_path: Path) -> dict:
    os.sync()  # the previous run's dirty pages must not be written back on this run's time
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        peak_anon = peak_rss = 0
        while process.poll() is None:
            anon, rss = process_tree_memory(process.pid)
            peak_anon, peak_rss = max(peak_anon, anon), max(peak_rss, rss)
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    if process.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {process.returncode}); see {log_path}")
    return {"seconds": seconds, "peak_anon_mb": peak_anon / 1e6, "peak_rss_mb": peak_rss / 1e6}


def median_run(measured: list[dict]) -> dict:
    """The run of median wall time, with its own memory figures."""
    return sorted(measured, key=lambda result: result["seconds"])[len(measured) // 2]


def read_through(path: Path) -> None:
    with open(path, "rb") as file:
        while file.read(1 << 24):
            pass


def machine_description() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{os.cpu_count()} cores ({cpu}), {memory_kb / 2**20:.0f} GiB RAM, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="an Audio.tar, e.g. from bench/make_archive.py")
    parser.add_argument("--workdir", type=Path, help="keep outputs and caches in a new folder inside this one (default: a temporary folder, deleted at the end)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, for medians (default 3)")
    parser.add_argument("--floor", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=LOAD_MODES, help=argparse.SUPPRESS)
    parser.add_argument("--writer-batch-size", type=int, help="for (e): instead of the builder's own setting")
    args = parser.parse_args(argv)
    archive_path = args.archive.resolve()
    if args.floor:
        floor(archive_path, args.floor)
        return 0
    if args.load:
        load(archive_path, args.load, args.writer_batch_size)
        return 0
    # A folder of its own for every run, and nothing deleted until the end: right after thousands of files were
    # deleted, ext4 creates new ones slowly (it checks each recently freed inode), which would tax whichever run
    # came next.
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="emotiontalk-bench-", dir=args.workdir))
    read_through(archive_path)
    results = {name: [] for name in RUN_NAMES}
    for repeat in range(args.repeats):
        run_dir = workdir / f"run-{repeat}"
        run_dir.mkdir()
        env = {**os.environ, "HF_HOME": str(run_dir / "hf-home"), "HF_DATASETS_CACHE": str(run_dir / "datasets-cache"),
               "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        exporter = [sys.executable, str(PROJECT_DIR / "export_jsonl.py"), "--archive", str(archive_path)]
        export_command = [*exporter, "--datadir", str(run_dir / "export")]
        parquet_command = [*exporter, "--datadir", str(run_dir / "export-parquet"), "--parquet"]
        floor_command = [sys.executable, __file__, str(archive_path), "--floor", str(run_dir / "floor")]
        batch_size = ["--writer-batch-size", str(args.writer_batch_size)] if args.writer_batch_size else []
        load_commands = [[sys.executable, __file__, str(archive_path), "--load", mode, *batch_size] for mode in LOAD_MODES]
        runs = list(zip(RUN_NAMES, (floor_command, export_command, export_command, parquet_command, *load_commands)))
        # The floor goes first in even repeats and last in odd ones, so that neither side always meets the
        # disk in the state the other left it in.
        for name, command in runs if repeat % 2 == 0 else runs[1:] + runs[:1]:
            results[name].append(measure(command, env, run_dir / f"{name[1]}.log"))
        exported = run_dir / "export" / "emotiontalk"
        for export in (exported, run_dir / "export-parquet" / "emotiontalk"):
            if (export / "zh-en.jsonl").read_bytes() != (run_dir / "floor" / "zh-en.jsonl").read_bytes():
                sys.exit(f"the manifest in {export} differs from the floor's")
    floor_seconds = [result["seconds"] for result in results[RUN_NAMES[0]]]
    # Each run against the floor of its own repeat: write speed can drift during a benchmark (on a virtual
    # machine, as fresh memory pages come into use), and the runs of one repeat meet it in much the same state.
    ratios = {name: statistics.median(result["seconds"] / floor for result, floor in zip(measured, floor_seconds))
              for name, measured in results.items()}
    every_run = {name: " ".join(f"{result['seconds']:.2f}" for result in measured) for name, measured in results.items()}
    results = {name: median_run(measured) for name, measured in results.items()}
    test_audio_mb = sum(path.stat().st_size for path in (exported / AUDIO_DIR).iterdir()) / 1e6
    print(f"archive: {archive_path} ({archive_path.stat().st_size / 1e9:.2f} GB), test audio {test_audio_mb:.1f} MB "
          f"in {len(list((exported / AUDIO_DIR).iterdir()))} WAVs; archive in the page cache for every run")
    print(f"machine: {machine_description()}\n")
    print("| run | seconds | ratio to (a) | peak anon MB | peak RSS MB | test audio MB/s | every run, s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, result in results.items():
        print(f"| {name} | {result['seconds']:.2f} | {ratios[name]:.2f} | {result['peak_anon_mb']:.0f} "
              f"| {result['peak_rss_mb']:.0f} | {test_audio_mb / result['seconds']:.1f} | {every_run[name]} |")
    cold = results[RUN_NAMES[1]]
    parquet = results[RUN_NAMES[3]]
    print(f"\ntargets: (b) at most 1.5x (a): {ratios[RUN_NAMES[1]]:.2f}x; (c) at most 0.25x (a): {ratios[RUN_NAMES[2]]:.2f}x; "
          f"(b) peak anonymous memory under 500 MB: {cold['peak_anon_mb']:.0f} MB; "
          f"(d) under 500 MB too: {parquet['peak_anon_mb']:.0f} MB")
    print(f"--parquet costs {parquet['seconds'] - cold['seconds']:+.2f} s over (b) (median runs), "
          f"{ratios[RUN_NAMES[3]] - ratios[RUN_NAMES[1]]:+.2f} in ratio to (a)")
    build = results[RUN_NAMES[4]]
    print(f"targets: (e) at most 1.4x (a): {ratios[RUN_NAMES[4]]:.2f}x; (e) peak anonymous memory under 200 MB: "
          f"{build['peak_anon_mb']:.0f} MB")
    if args.workdir:
        print(f"outputs kept in {workdir}")
    else:
        shutil.rmtree(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
