"""Export the EmotionTalk test split into the H2T (Hearing to Translate) layout.

    $H2T_DATADIR/emotiontalk/
      audio/zh/<sample_id>.wav   byte-identical copies of the archive's WAV members
      raw/Audio.tar              the archive (absent when --archive points elsewhere)
      zh-en.jsonl                the manifest: one JSON object per utterance, ordered by sample_id
      parquet/                   with --parquet: the split as Parquet shards and a dataset card, for datasets 4 and 5

The exporter gets the archive (downloads it from the Hub, reuses it, or takes --archive), builds the dataset
with emotiontalk_test.py, writes each WAV and then the manifest under a temporary name renamed into place,
and records what it wrote, so that a re-run with nothing to do returns at once. --verify checks an export.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import hashlib
import importlib
import io
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from hub_download import PendingCheck

PROJECT_DIR = Path(__file__).resolve().parent
BUILDER_SCRIPT = PROJECT_DIR / "emotiontalk_test.py"
DATASET_ID = "emotiontalk"
SOURCE_LANGUAGE, TARGET_LANGUAGE = "zh", "en"
AUDIO_DIR = Path("audio") / SOURCE_LANGUAGE  # inside the export folder, and so in every manifest row's src_audio
MANIFEST_NAME = f"{SOURCE_LANGUAGE}-{TARGET_LANGUAGE}.jsonl"
ARCHIVE_NAME = "Audio.tar"
STATE_NAME = ".export-state.json"
PARQUET_DIR = "parquet"
MAX_PARQUET_SHARD_BYTES = 500_000_000  # datasets' own MAX_SHARD_SIZE, and what the Hub's Parquet conversion uses
# pyarrow's writer holds about three times a row group's bytes while it writes it: 100 rows of audio (datasets'
# choice) would take the export from 110 MB to over 500 MB at full size (bench/README.md); 16 MB keep it flat.
PARQUET_ROW_GROUP_BYTES = 16_000_000


class ExportError(Exception):
    """A problem the user can fix; printed as one line."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is, so that every temporary file is removed on the way out."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal_number = signal_number


SIGNALS_RECEIVED: list[int] = []
signals_deferred = False


def raise_interrupted(signal_number: int, frame) -> None:
    SIGNALS_RECEIVED.append(signal_number)
    if not signals_deferred:
        raise Interrupted(signal_number)


def read_wav(read, wav: bytes):
    """`read` (a soundfile function) applied to the WAV's bytes. soundfile reads them through C callbacks, which
    print an exception raised in them and swallow it, an interruption's too; so one waits until soundfile returns."""
    global signals_deferred
    signals_deferred = True
    try:
        return read(io.BytesIO(wav))
    finally:
        signals_deferred = False
        if SIGNALS_RECEIVED:
            raise Interrupted(SIGNALS_RECEIVED[0])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Export the EmotionTalk test split (1929 utterances) as $H2T_DATADIR/emotiontalk/"
        "{audio/zh/*.wav, raw/Audio.tar, zh-en.jsonl}. Without --archive, Audio.tar is downloaded from the gated "
        "Hub dataset BAAI/Emotiontalk into raw/ (over Xet where the Hub offers it, else by HTTP range, resuming a "
        "partial download), or hard-linked from the Hugging Face cache if an earlier load_dataset put it there, "
        "unless it is already in raw/.",
        epilog="""examples:
  python export_jsonl.py --demo --datadir demo           try it on a small synthetic archive, no Hub access
  H2T_DATADIR=/data/h2t python export_jsonl.py           download Audio.tar (or reuse it) and export
  python export_jsonl.py --archive /downloads/Audio.tar  export an archive already on disk, no network
  python export_jsonl.py --verify                        check an export against its archive

environment:
  H2T_DATADIR           output root, unless --datadir
  HF_TOKEN              Hub token, else the one saved by `hf auth login`
  HF_ENDPOINT           a Hub mirror
  HF_HUB_OFFLINE=1      never touch the network: use raw/Audio.tar, or the Hugging Face cache's copy, as it is
  HF_HUB_DISABLE_XET=1  download over plain HTTP ranges even where the Hub offers Xet""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datadir", type=Path, help="output root instead of $H2T_DATADIR")
    parser.add_argument("--archive", type=Path, help="use this Audio.tar already on disk; no network")
    parser.add_argument("--revision", default="main", help="Hub revision (branch, tag or commit) of Audio.tar (default: main)")
    parser.add_argument("--force", action="store_true", help="redo everything: check the archive against the Hub again (unless --archive) and rewrite every file")
    parser.add_argument(
        "--parquet", action="store_true",
        help="also write parquet/: the split as Parquet shards (at most 500 MB each) with a dataset card, which "
        "load_dataset(<folder>) reads in any datasets version, 4 and 5 included, without a loading script",
    )
    parser.add_argument("--verify", action="store_true", help="check an existing export (and parquet/, if there) against the archive and exit")
    parser.add_argument(
        "--demo", action="store_true",
        help="write a small synthetic Audio.tar into raw/ (synthetic_archive.py, which the tests use too) and export it; no Hub access needed",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, restore_signal_handlers: bool = True) -> int:
    """Run the command; the status to exit with. Without `restore_signal_handlers`, as a script runs it, SIGINT and
    SIGTERM are ignored from the moment the work is done or reported: a late Ctrl-C would otherwise give a
    traceback on the way out, or, while Python shuts down, kill the process without a word."""
    global signals_deferred
    signals_deferred = False
    previous_handlers = {number: signal.signal(number, raise_interrupted) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = parse_args(argv)
        if args.verify:
            return verify(export_dir_for(args), archive_for(args))
        return export(args)
    except Interrupted as interruption:
        remove_folders_left_empty()
        print("\nexport_jsonl.py: interrupted; nothing was left half-written, run the same command again to finish",
              file=sys.stderr)
        return 128 + interruption.signal_number
    except Exception as error:  # noqa: BLE001 - anything expected is reported as one line below
        remove_folders_left_empty()
        message = one_line_error(error)
        if message is None:
            raise
        print(f"export_jsonl.py: error: {message}", file=sys.stderr)
        return 1
    finally:
        signals_deferred = True
        for number, handler in previous_handlers.items():
            signal.signal(number, handler if restore_signal_handlers else signal.SIG_IGN)


def export(args: argparse.Namespace) -> int:
    export_dir = export_dir_for(args)
    make_folder(export_dir)
    if not os.access(export_dir, os.W_OK):
        raise ExportError(f"{export_dir}: folder is not writable; choose a writable --datadir or H2T_DATADIR")
    audio_dir = export_dir / AUDIO_DIR
    manifest_path = export_dir / MANIFEST_NAME
    if args.demo:
        args.archive = write_demo_archive(export_dir / "raw" / ARCHIVE_NAME, args.force)
    archive_path = archive_for(args)
    state = read_state(export_dir)
    if not args.force and archive_path.is_file() and export_is_current(state, archive_path, export_dir, args.parquet):
        print_summary(state, export_dir, archive_path, written=0)
        return 0
    check_datasets_version()
    archive_check = None
    if args.force or not archive_path.is_file() or state.get("archive") != archive_fingerprint(archive_path):
        archive_path, archive_check = download_archive(args)
    make_folder(audio_dir)
    from tqdm.auto import tqdm

    with confirmed_before_errors(archive_check):
        info, rows = split_rows(archive_path)
    emotion_names = info.features["emotion"].names
    manifest_lines, wav_sizes, written = [], {}, 0
    summary = {"emotion": collections.Counter(), "group": collections.Counter(), "seconds": 0.0}
    parquet = ParquetShards(export_dir / PARQUET_DIR, info.features) if args.parquet else contextlib.nullcontext()
    with parquet:
        with confirmed_before_errors(archive_check):
            for row in tqdm(rows, desc="Writing WAVs", unit="wav"):
                wav_path = audio_dir / f"{row['sample_id']}.wav"
                audio_bytes = row["audio"]["bytes"]
                if args.force or not file_has_bytes(wav_path, audio_bytes):
                    write_atomically(wav_path, audio_bytes)
                    written += 1
                if args.parquet:
                    parquet.add(row)
                emotion = emotion_names[row["emotion"]]
                manifest_lines.append(manifest_line(row["sample_id"], row["raw_transcription"], emotion))
                wav_sizes[wav_path.name] = len(audio_bytes)
                summary["emotion"][emotion] += 1
                summary["group"][row["sample_id"].split("_")[0]] += 1
                summary["seconds"] += audio_seconds(audio_bytes, row["file_path"])
        if archive_check is not None:  # a Xet download, hashed beside the export: nothing is final before it
            archive_path = Path(archive_check.confirm())
        parquet_sizes = parquet.finish(dataset_card(info, summary["group"])) if args.parquet else None
    manifest = "".join(manifest_lines).encode("utf-8")
    write_atomically(manifest_path, manifest)
    # Only now that the new manifest is in place may WAVs it does not name go.
    for leftover in audio_dir.iterdir():
        if leftover.name not in wav_sizes and (leftover.suffix == ".wav" or leftover.name.endswith(".tmp")):
            leftover.unlink()
    state = {
        "code": code_fingerprint(),
        "archive": archive_fingerprint(archive_path),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "wav_sizes": wav_sizes,
        "parquet_sizes": parquet_sizes,
        "summary": summary,
    }
    write_atomically(export_dir / STATE_NAME, json.dumps(state, indent=1).encode("utf-8"))
    print_summary(state, export_dir, archive_path, written)
    return 0


class ParquetShards:
    """The split as Parquet files of at most MAX_PARQUET_SHARD_BYTES, in row groups of about PARQUET_ROW_GROUP_BYTES,
    written as the rows arrive. Their schema carries the features (as datasets writes them), so that
    `load_dataset(<folder>)` restores Audio and ClassLabel. Until the last row tells how many shards there are,
    they have temporary names, which are removed if the export fails."""

    def __init__(self, parquet_dir: Path, features):
        self.parquet_dir = parquet_dir
        self.schema = features.arrow_schema
        self.temporary_paths: list[Path] = []
        self.writer = None
        self.shard_bytes = 0
        self.row_group: list[dict] = []
        self.row_group_bytes = 0

    def __enter__(self) -> "ParquetShards":
        make_folder(self.parquet_dir)
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.close()
        for path in self.temporary_paths:
            path.unlink(missing_ok=True)

    def add(self, row: dict) -> None:
        import pyarrow.parquet

        # Audio dominates; the text columns are counted too. 1% is left for Parquet's own pages and footer.
        row_bytes = len(row["audio"]["bytes"]) + sum(len(value.encode()) for value in row.values() if isinstance(value, str))
        if self.writer is not None and self.shard_bytes + row_bytes > 0.99 * MAX_PARQUET_SHARD_BYTES:
            self.close_shard()
        if self.writer is None:
            self.temporary_paths.append(self.parquet_dir / f".shard-{len(self.temporary_paths)}.{os.getpid()}.tmp")
            # No dictionaries: pyarrow would try one on the audio bytes first, in memory, before it gives up.
            self.writer = pyarrow.parquet.ParquetWriter(self.temporary_paths[-1], self.schema, use_dictionary=False)
            self.shard_bytes = 0
        self.row_group.append(row)
        self.shard_bytes += row_bytes
        self.row_group_bytes += row_bytes
        if self.row_group_bytes >= PARQUET_ROW_GROUP_BYTES:
            self.write_row_group()

    def write_row_group(self) -> None:
        import pyarrow

        if self.row_group:
            self.writer.write_table(pyarrow.Table.from_pylist(self.row_group, schema=self.schema))
            self.row_group, self.row_group_bytes = [], 0

    def close_shard(self) -> None:
        self.write_row_group()
        self.writer.close()
        self.writer = None

    def finish(self, card: str) -> dict[str, int]:
        """Name the shards test-0000i-of-0000N, write the card, remove shards of an earlier export; the sizes by name."""
        if self.writer is not None:
            self.close_shard()
        names = parquet_shard_names(len(self.temporary_paths))
        for temporary, name in zip(self.temporary_paths, names):
            os.replace(temporary, self.parquet_dir / name)
        write_atomically(self.parquet_dir / "README.md", card.encode("utf-8"))
        for stale in self.parquet_dir.glob("*.parquet"):
            if stale.name not in names:
                stale.unlink()
        return {name: (self.parquet_dir / name).stat().st_size for name in names}


def parquet_shard_names(count: int) -> list[str]:
    """The names of an export's shards, as the Hub names the split's files: test-00000-of-00002.parquet, ..."""
    return [f"test-{index:05d}-of-{count:05d}.parquet" for index in range(count)]


def dataset_card(info, group_rows: dict[str, int]) -> str:
    """The Hugging Face dataset card of the Parquet copy: what EmotionTalk is (the first paragraph of the loading
    script's description), its licence and citation, and what this copy holds, counted."""
    groups = " and ".join(f"{group} ({rows})" for group, rows in sorted(group_rows.items()))
    return f"""---
license: {info.license}
language:
- {SOURCE_LANGUAGE}
pretty_name: EmotionTalk (test split, Parquet)
task_categories:
- automatic-speech-recognition
- audio-classification
- translation
configs:
- config_name: default
  data_files:
  - split: test
    path: test-*.parquet
---

# EmotionTalk test split (Parquet)

{info.description.split(chr(10) * 2)[0]}

This folder holds its test split, the {sum(group_rows.values())} utterances of speaker groups {groups}, as Parquet
files, written by `export_jsonl.py --parquet` from `Audio.tar` of the gated Hub dataset
[BAAI/Emotiontalk]({info.homepage}). Each file carries the dataset's features in its schema, so any release of
`datasets` (3.6, 4 and 5 alike) loads it without a loading script:

```python
from datasets import Audio, load_dataset

ds = load_dataset("path/to/this/folder", split="test")
ds = ds.cast_column("audio", Audio(decode=False))  # the WAV bytes; decoding to arrays needs torchcodec in datasets 4 and 5
```

Features: `sample_id`, `file_path`, `audio` (the archive's WAV member, byte for byte, 44.1 kHz), `raw_transcription`,
`emotion` (ClassLabel: {", ".join(info.features["emotion"].names)}), `speaker_id`, `annotation` (the original
JSON annotation). Rows are ordered by `sample_id`.

## Licence and access

EmotionTalk is released by its authors under the licence `{info.license}`. This copy is the same data: the
licence and the access conditions of {info.homepage} apply to it unchanged. Share it only with
people who have accepted those conditions, for instance in a private or gated Hub repository.

## Citation

```bibtex
{info.citation.strip()}
```
"""


def verify(export_dir: Path, archive_path: Path) -> int:
    """Every manifest row's WAV exists, decodes and equals its archive member; the manifest is exact; no stray WAVs;
    parquet/, if there, holds exactly the split's rows and features."""
    import soundfile

    audio_dir = export_dir / AUDIO_DIR
    manifest_path = export_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: no manifest; run export_jsonl.py first")
    if not archive_path.is_file():
        raise ExportError(f"{archive_path}: no archive to verify against; pass --archive /path/to/{ARCHIVE_NAME}")
    check_datasets_version()
    problems, expected_lines, expected_wavs = [], [], set()
    info, rows = split_rows(archive_path)
    emotion_names = info.features["emotion"].names
    parquet_dir = export_dir / PARQUET_DIR
    shard_rows = parquet_rows(parquet_dir, info.features) if parquet_dir.is_dir() else None
    for row in rows:
        if shard_rows is not None:
            shard, shard_row = next(shard_rows, (parquet_dir, "has fewer rows than the archive's split"))
            if shard_row != row:
                problems.append(f"{shard}: " + (shard_row if isinstance(shard_row, str) else f"row {row['sample_id']} differs from the archive's split"))
                shard_rows = None  # after one difference the rows no longer line up: one problem is enough
        expected_lines.append(manifest_line(row["sample_id"], row["raw_transcription"], emotion_names[row["emotion"]]))
        wav_path = audio_dir / f"{row['sample_id']}.wav"
        expected_wavs.add(wav_path.name)
        if not wav_path.is_file():
            problems.append(f"{wav_path}: missing")
            continue
        wav_bytes = wav_path.read_bytes()
        if wav_bytes != row["audio"]["bytes"]:
            problems.append(f"{wav_path}: differs from its archive member {row['file_path']}")
            continue
        try:
            read_wav(soundfile.read, wav_bytes)
        except soundfile.SoundFileError as error:
            problems.append(f"{wav_path}: does not decode ({error})")
    manifest_lines = manifest_path.read_bytes().splitlines(keepends=True)
    expected_manifest_lines = "".join(expected_lines).encode("utf-8").splitlines(keepends=True)
    if manifest_lines != expected_manifest_lines:
        line = next(
            (number for number, (actual, expected) in enumerate(zip(manifest_lines, expected_manifest_lines), 1) if actual != expected),
            min(len(manifest_lines), len(expected_manifest_lines)) + 1,
        )
        problems.append(f"{manifest_path}: line {line} differs from the manifest of the archive's test split")
    problems += [f"{path}: stray WAV, not in the manifest" for path in sorted(audio_dir.glob("*.wav")) if path.name not in expected_wavs]
    if shard_rows is not None and next(shard_rows, None) is not None:
        problems.append(f"{parquet_dir}: more rows than the archive's split")
    shard_names = sorted(path.name for path in parquet_dir.glob("*.parquet"))
    if shard_names != parquet_shard_names(len(shard_names)):
        problems.append(f"{parquet_dir}: holds {', '.join(shard_names)}, not the shards of one export "
                        f"(test-<i>-of-<n>); load_dataset would read them all: run export_jsonl.py --parquet --force")
    for problem in problems:
        print(problem)
    shards_checked = f" and {len(shard_names)} Parquet shard{'s' * (len(shard_names) != 1)}" if parquet_dir.is_dir() else ""
    print(f"verified {len(expected_lines)} rows{shards_checked} in {export_dir}: "
          + (f"{len(problems)} problems" if problems else "all correct"))
    return 1 if problems else 0


def parquet_rows(parquet_dir: Path, features) -> Iterator[tuple[Path, dict | str]]:
    """Each row of the Parquet shards in order, with its shard; for a shard that cannot be read, or whose features
    are not the split's, what is wrong with it instead of its (remaining) rows."""
    import datasets
    import pyarrow
    import pyarrow.parquet

    for shard in sorted(parquet_dir.glob("*.parquet")):
        try:
            shard_file = pyarrow.parquet.ParquetFile(shard)
            if datasets.Features.from_arrow_schema(shard_file.schema_arrow) != features:
                yield shard, "its features are not the split's"
                continue
            # Row group by row group: iter_batches would hold far more (700 MB against 180 MB at full size).
            for index in range(shard_file.num_row_groups):
                yield from ((shard, row) for row in shard_file.read_row_group(index).to_pylist())
        except (pyarrow.ArrowException, OSError) as error:
            yield shard, f"unreadable ({str(error).splitlines()[0]})"


def export_dir_for(args: argparse.Namespace) -> Path:
    datadir = args.datadir or os.environ.get("H2T_DATADIR")
    if not datadir:
        raise ExportError("H2T_DATADIR is not set: `export H2T_DATADIR=/path/to/h2t-data` or pass --datadir")
    return Path(datadir).expanduser().resolve() / DATASET_ID


FOLDERS_CREATED: list[Path] = []


def make_folder(folder: Path) -> None:
    """`mkdir -p` that remembers the folders it made, so that a failed run can take back those it left empty."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"{folder}: cannot create the output folder ({error.strerror}); choose a writable --datadir") from None
    FOLDERS_CREATED.extend(reversed(missing))


def remove_folders_left_empty() -> None:
    for folder in reversed(FOLDERS_CREATED):
        with contextlib.suppress(OSError):
            folder.rmdir()
    FOLDERS_CREATED.clear()


def archive_for(args: argparse.Namespace) -> Path:
    """--archive as given, else raw/Audio.tar."""
    if args.archive is not None:
        archive_path = args.archive.expanduser().resolve()
        if archive_path.is_dir():  # the folder that holds it, as data_dir= takes it
            archive_path = archive_path / ARCHIVE_NAME
        if archive_path.name != ARCHIVE_NAME:
            raise ExportError(f"{archive_path}: the archive must be named {ARCHIVE_NAME} (rename or link it)")
        if not archive_path.is_file():
            raise ExportError(f"{archive_path}: no such file; give the path of the downloaded {ARCHIVE_NAME}, or of its folder")
        return archive_path
    return export_dir_for(args) / "raw" / ARCHIVE_NAME


def download_archive(args: argparse.Namespace) -> tuple[Path, PendingCheck | None]:
    """The archive to export from, and, for a Xet download still being hashed, its PendingCheck (else None)."""
    archive_path = archive_for(args)
    if args.archive is not None:
        return archive_path, None
    make_folder(archive_path.parent)
    hub_download = import_frozen("hub_download")
    archive_check = hub_download.fetch_archive(str(archive_path), revision=args.revision)
    return (archive_path if archive_check is None else Path(archive_check.path)), archive_check


@contextlib.contextmanager
def confirmed_before_errors(archive_check: PendingCheck | None) -> Iterator[None]:
    """An export that fails while its download is still being hashed reports a damaged download first: a
    flipped byte explains an unreadable member better than the member's own error does."""
    try:
        yield
    except Exception:
        if archive_check is not None:
            archive_check.confirm()
        raise


def split_rows(archive_path: Path) -> tuple:
    """The split's DatasetInfo, and its rows as emotiontalk_test.py yields them, in Arrow's storage form: audio as
    the archive's bytes, emotion as its label number.

    Streamed: the exporter needs each row once, and a cached Arrow copy of all the test audio would cost a
    second full write of it (bench/README.md). The caller has checked the version of datasets."""
    datasets = import_frozen("datasets")
    dataset = datasets.load_dataset(
        str(BUILDER_SCRIPT), data_dir=str(archive_path.parent), split="test", streaming=True, trust_remote_code=True
    )
    # A row-wise `map` makes datasets 3.6 apply the features to each streamed row in Python; iterating the
    # dataset itself would convert every row to Arrow and back (bench/README.md).
    rows = iter(dataset.decode(False).map(lambda row: row))
    # The first row is read here: an archive the builder refuses fails before any progress bar is drawn.
    first_row = next(rows, None)
    return dataset.info, (rows if first_row is None else itertools.chain([first_row], rows))


def import_frozen(module_name: str):
    """Import a module with the garbage collector held off, and freeze what the import made. Importing datasets
    (directly, or through the loading script) makes some 100,000 objects that live as long as the process (pandas,
    pyarrow, aiohttp); the collector would walk them again and again while they are made, and once more at exit,
    and free none: 0.25 s of a 2.5 s export of the bench/ archive. Frozen, they are left out of every collection."""
    gc.disable()
    try:
        return importlib.import_module(module_name)
    finally:
        gc.freeze()
        gc.enable()


def check_datasets_version() -> None:
    import importlib.metadata  # here, not at the top: it takes 50 ms, and before main() a Ctrl-C gets a traceback

    try:
        version = importlib.metadata.version("datasets")
    except importlib.metadata.PackageNotFoundError:
        raise ExportError("datasets is not installed: pip install -r requirements.txt") from None
    if int(version.split(".")[0]) >= 4:
        raise ExportError(
            f"datasets {version} is installed, but loading scripts need datasets 3.6: pip install 'datasets>=3.6,<4' "
            f"(in an environment of its own if yours needs datasets 4; `--parquet` there makes a copy that yours loads)"
        )


def manifest_line(sample_id: str, transcription: str, emotion: str) -> str:
    record = {
        "dataset_id": DATASET_ID,
        "sample_id": sample_id,
        "src_audio": (DATASET_ID / AUDIO_DIR / f"{sample_id}.wav").as_posix(),
        "src_ref": transcription,
        "tgt_ref": None,
        "src_lang": SOURCE_LANGUAGE,
        "tgt_lang": TARGET_LANGUAGE,
        "benchmark_metadata": {"context": "short", "emotion": emotion, "dataset_type": "emotion"},
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


@contextlib.contextmanager
def temporary_beside(path: Path) -> Iterator[Path]:
    """A temporary name beside `path`, renamed to `path` if the block succeeds and removed however it ends:
    `path` is always absent, old, or complete."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    with temporary_beside(path) as temporary:
        temporary.write_bytes(data)


def file_has_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def audio_seconds(wav: bytes, member_path: str) -> float:
    import soundfile

    try:
        return read_wav(soundfile.info, wav).duration
    except soundfile.SoundFileError as error:
        raise ExportError(f"archive member Audio/wav/{member_path} is not a readable WAV ({error}); download the archive again") from None


def archive_fingerprint(archive_path: Path) -> list:
    status = archive_path.stat()
    return [str(archive_path), status.st_size, status.st_mtime_ns]


def code_fingerprint() -> str:
    return hashlib.sha256(BUILDER_SCRIPT.read_bytes() + Path(__file__).read_bytes()).hexdigest()


def read_state(export_dir: Path) -> dict:
    try:
        return json.loads((export_dir / STATE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def export_is_current(state: dict, archive_path: Path, export_dir: Path, parquet: bool) -> bool:
    """The recorded export came from this archive and this code, with parquet/ if asked for, and its files are all
    still there."""
    if state.get("code") != code_fingerprint() or state.get("archive") != archive_fingerprint(archive_path):
        return False
    manifest_path = export_dir / MANIFEST_NAME
    if not manifest_path.is_file() or hashlib.sha256(manifest_path.read_bytes()).hexdigest() != state["manifest_sha256"]:
        return False
    parquet_dir = export_dir / PARQUET_DIR
    if parquet and not (state["parquet_sizes"] and files_have_sizes(parquet_dir, state["parquet_sizes"])
                        and sorted(path.name for path in parquet_dir.glob("*.parquet")) == sorted(state["parquet_sizes"])):
        return False
    return files_have_sizes(export_dir / AUDIO_DIR, state["wav_sizes"])


def files_have_sizes(folder: Path, sizes: dict[str, int]) -> bool:
    try:
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except FileNotFoundError:
        return False


def write_demo_archive(archive_path: Path, force: bool) -> Path:
    if archive_path.is_file() and not force:
        return archive_path
    check_datasets_version()
    import synthetic_archive

    make_folder(archive_path.parent)
    with temporary_beside(archive_path) as temporary:
        synthetic_archive.write_small_archive(temporary)
    return archive_path


def print_summary(state: dict, export_dir: Path, archive_path: Path, written: int) -> None:
    summary = state["summary"]
    rows = sum(summary["emotion"].values())
    print(f"\nEmotionTalk test split -> {export_dir}")
    print(f"  {'emotion':<12}{'rows':>6}")
    for emotion, count in sorted(summary["emotion"].items()):
        print(f"  {emotion:<12}{count:>6}")
    print(f"  {'group':<12}{'rows':>6}")
    for group, count in sorted(summary["group"].items()):
        print(f"  {group:<12}{count:>6}")
    print(f"  {'total':<12}{rows:>6}   {summary['seconds'] / 3600:.2f} hours of audio ({summary['seconds']:.0f} s)")
    print(f"  manifest    {export_dir / MANIFEST_NAME}")
    print(f"  audio       {export_dir / AUDIO_DIR}  ({rows} WAVs, {written} written this run)")
    if state["parquet_sizes"]:
        parquet_sizes = state["parquet_sizes"]
        print(f"  parquet     {export_dir / PARQUET_DIR}  ({len(parquet_sizes)} shards, {sum(parquet_sizes.values()) / 1e6:.1f} MB)")
        for name, size in parquet_sizes.items():
            print(f"    {name}  {size / 1e6:9.1f} MB")
    print(f"  archive     {archive_path}")


def one_line_error(error: BaseException) -> str | None:
    """The message for an error the user can act on, or None for a bug (which keeps its traceback)."""
    # By name: load_dataset runs its own copy of emotiontalk_test.py, whose ArchiveError is another class object.
    if isinstance(error, ExportError) or type(error).__name__ == "ArchiveError":
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}; nothing was left half-written, fix this and run again"
    return None


if __name__ == "__main__":
    sys.exit(main(restore_signal_handlers=False))
