"""Export the EmotionTalk test split into the H2T (Hearing to Translate) layout.

    $H2T_DATADIR/emotiontalk/
      audio/zh/<sample_id>.wav   byte-identical copies of the archive's WAV members
      raw/Audio.tar              the archive (absent when --archive points elsewhere)
      raw/Audio.tar.ranges/      with --test-members-only, instead: the archive's byte ranges that hold the split
      zh-en.jsonl                the manifest: one JSON object per utterance, ordered by sample_id
      parquet/                   with --parquet: the split as Parquet shards and a dataset card (parquet_copy.py)

The exporter gets the archive (downloads it from the Hub with hub_download.py, reuses it, or takes --archive; or
fetches its test members only, as the loading script does, with ranged_tar.py), reads the split with the loading
script's own code (emotiontalk_test.py), writes each WAV and then the manifest (h2t_manifest.py) under a temporary
name renamed into place, and records what it wrote, so that a re-run with nothing to do returns at once. --verify
checks an export.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from h2t_manifest import AUDIO_DIR, DATASET_ID, H2T_MANIFEST_SHA256, MANIFEST_NAME, SOURCE_LANGUAGE, manifest_line

if TYPE_CHECKING:
    from hub_download import PendingCheck

PROJECT_DIR = Path(__file__).resolve().parent
# The project's folder as a package: the loading script imports the modules beside it relatively (so that
# `datasets` copies them with it), and so the exporter imports it, and them, as `datasets` does, inside a package.
PACKAGE = "emotiontalk_project"
ARCHIVE_NAME = "Audio.tar"
RANGES_NAME = f"{ARCHIVE_NAME}.ranges"  # beside it in raw/
STATE_NAME = ".export-state.json"
PARQUET_DIR = "parquet"
# The modules whose code decides what an export holds: a change to any of them makes a recorded export stale.
OUTPUT_MODULES = ("emotiontalk_test.py", "export_jsonl.py", "parquet_copy.py", "h2t_manifest.py", "ranged_tar.py")
# Each pair names options of which one would be ignored: the demo and --verify take no archive or revision of
# yours, and --verify writes nothing.
CONFLICTING_OPTIONS = [("--demo", "--archive"), ("--revision", "--archive"), ("--demo", "--revision"), ("--verify", "--force"),
                       ("--verify", "--parquet"), ("--verify", "--demo"), ("--verify", "--revision"),
                       ("--verify", "--test-members-only"), ("--test-members-only", "--archive"), ("--test-members-only", "--demo")]
# huggingface_hub and datasets (whose progress bar this project's code uses too) read these when imported.
PROGRESS_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


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
  python export_jsonl.py --test-members-only             fetch only the test split's part of Audio.tar (the fast way)
  python export_jsonl.py --verify                        check an export against its archive

environment:
  H2T_DATADIR           output root, unless --datadir
  HF_TOKEN              Hub token, else the one saved by `hf auth login`
  HF_ENDPOINT           a Hub mirror
  HF_HUB_OFFLINE=1      never touch the network: use raw/Audio.tar, or the Hugging Face cache's copy, as it is
  HF_HUB_DISABLE_XET=1  download over plain HTTP ranges even where the Hub offers Xet""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datadir", help="output root instead of $H2T_DATADIR")
    parser.add_argument("--archive", type=Path, help="use this archive already on disk (the file, or the folder that holds Audio.tar); no network")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit) of Audio.tar (default: main)")
    parser.add_argument("--force", action="store_true", help="redo everything: check the archive against the Hub again (unless --archive) and rewrite every file")
    parser.add_argument(
        "--parquet", action="store_true",
        help="also write parquet/: the split as Parquet shards (at most 500 MB each) with a dataset card, which "
        "load_dataset(<folder>) reads in any datasets version, 4 and 5 included, without a loading script",
    )
    parser.add_argument("--verify", action="store_true", help="check an existing export (and parquet/, if there) against its archive and exit; writes nothing")
    parser.add_argument(
        "--demo", action="store_true",
        help="write a small synthetic Audio.tar into raw/ (synthetic_archive.py, which the tests use too) and export it; no Hub access needed",
    )
    parser.add_argument(
        "--test-members-only", action="store_true",
        help="where raw/Audio.tar is not there yet, fetch from the Hub only the byte ranges that hold the test split "
        "(about a ninth of the archive) into raw/Audio.tar.ranges/, and export from them once they prove to hold the "
        "whole split; else download the whole archive, saying why. Faster, but the audio cannot be checked against "
        "the archive's sha256",
    )
    parser.add_argument(
        "--expected-manifest", type=manifest_file, metavar="MANIFEST",
        help="with --test-members-only: the manifest a full export of the archive gives, which proves the fetched "
        "split whole (default: the one H2T commits as manifests/emotiontalk/zh-en.jsonl)",
    )
    args = parser.parse_args(argv)
    if args.expected_manifest and not args.test_members_only:
        parser.error("--expected-manifest goes with --test-members-only")
    for first, second in CONFLICTING_OPTIONS:
        if all(getattr(args, option[2:].replace("-", "_")) not in (None, False) for option in (first, second)):
            parser.error(f"{first} and {second} cannot go together")
    args.revision = args.revision or "main"
    return args


def manifest_file(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("give the path of an H2T manifest file")
    return Path(text)


def main(argv: list[str] | None = None, restore_signal_handlers: bool = True) -> int:
    """Run the command; the status to exit with. Without `restore_signal_handlers`, as a script runs it, SIGINT and
    SIGTERM are ignored from the moment the work is done or reported: a late Ctrl-C would otherwise give a
    traceback on the way out, or, while Python shuts down, kill the process without a word."""
    global signals_deferred
    signals_deferred = False
    previous_handlers = {number: signal.signal(number, raise_interrupted) for number in (signal.SIGINT, signal.SIGTERM)}
    args = None
    try:
        args = parse_args(argv)
        with progress_bars_only_on_a_terminal():
            return verify(args) if args.verify else export(args)
    except Interrupted as interruption:
        remove_folders_left_empty()
        if args is not None and args.verify:
            outcome = "the export was not changed; run the same command again to finish"
        else:
            outcome = f"nothing was left half-written{kept_download(args)}; run the same command again to finish"
        print(f"{erase_a_bar()}export_jsonl.py: interrupted; {outcome}", file=sys.stderr)
        return 128 + interruption.signal_number
    except Exception as error:  # noqa: BLE001 - anything expected is reported as one line below
        remove_folders_left_empty()
        message = one_line_error(error, args)
        if message is None:
            raise
        print(f"{erase_a_bar()}export_jsonl.py: error: {message}", file=sys.stderr)
        return 1
    finally:
        signals_deferred = True
        for number, handler in previous_handlers.items():
            signal.signal(number, handler if restore_signal_handlers else signal.SIG_IGN)


@contextlib.contextmanager
def progress_bars_only_on_a_terminal() -> Iterator[None]:
    """Progress bars belong on a terminal; in a log file or a pipe they would be lines of noise before the outcome."""
    saved = {name: os.environ.get(name) for name in PROGRESS_BAR_SWITCHES}
    if not sys.stderr.isatty():
        os.environ.update(dict.fromkeys(PROGRESS_BAR_SWITCHES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def kept_download(args: argparse.Namespace | None) -> str:
    """What an interrupted export keeps of what it downloaded, for the next run to resume from, as a clause: the
    partial download (or one still being checked) and, with --test-members-only, the fetched pieces; none of the
    files that keep track of them. A run that never imported the module that downloads them downloaded none."""
    if args is None:  # interrupted while the arguments were parsed: nothing was downloaded
        return ""
    hub_download, ranged_tar = (sys.modules.get(f"{PACKAGE}.{name}") for name in ("hub_download", "ranged_tar"))
    with contextlib.suppress(ExportError, OSError):
        raw_dir = export_dir_for(args) / "raw"
        kept = 0
        if hub_download is not None:
            partial = [raw_dir / hub_download.PARTIAL_NAME, raw_dir / hub_download.UNVERIFIED_DIR / ARCHIVE_NAME]
            kept += sum(path.stat().st_size for path in partial if path.is_file())
        if args.test_members_only and ranged_tar is not None:
            kept += sum(path.stat().st_size for *_, path in ranged_tar.FetchedRanges(raw_dir / RANGES_NAME).pieces())
        if kept:
            return f"; what was downloaded so far ({kept / 1e6:.1f} MB) is kept in {raw_dir} for the next run to resume from"
    return ""


def erase_a_bar() -> str:
    """On a terminal, what erases the line of a progress bar that an interruption or failure cut off, so that the
    one line about it takes its place (a carriage return, then ANSI's erase to the end of the line)."""
    return "\r\x1b[K" if sys.stderr.isatty() else ""


def export(args: argparse.Namespace) -> int:
    export_dir = export_dir_for(args)
    state = read_state(export_dir)
    if args.demo:
        refuse_a_demo_over_the_users_export(export_dir, state)
    elif args.archive is None:
        refuse_another_revision(export_dir, state, args)
    make_folder(export_dir)
    if not os.access(export_dir, os.W_OK):
        raise ExportError(f"{export_dir}: folder is not writable; choose a writable --datadir or H2T_DATADIR")
    if args.demo:
        args.archive = write_demo_archive(export_dir / "raw" / ARCHIVE_NAME, args.force)
    archive_path = archive_for(args)
    ranges_dir = export_dir / "raw" / RANGES_NAME  # never beside an --archive elsewhere: that folder is the user's
    source_path = ranges_dir if args.test_members_only and not archive_path.is_file() else archive_path
    if not args.force and source_path.exists() and export_is_current(state, source_path, export_dir, args.parquet):
        print_summary(state, export_dir, source_path, written=0)
        print("nothing to do: the export was already complete, every file as recorded (--verify compares their bytes)")
        return 0
    check_datasets_version()
    if source_path == ranges_dir:
        proven_against = expected_manifest_sha256(args)  # before any request: a manifest that cannot be read costs nothing
        builder = import_frozen("emotiontalk_test")
        try:
            make_folder(ranges_dir.parent)
            builder.fetch_test_members(ranges_dir, args.revision, force=args.force,
                                       local_copy_hint=import_frozen("hub_download").LOCAL_COPY_HINT)
            with archive_split(ranges_dir, proven_against) as split:
                state, written = write_split(args, export_dir, *split, None)
            if args.expected_manifest:  # for the repair command of --verify
                state["expected_manifest"] = str(args.expected_manifest.resolve())
            return finish_export(export_dir, ranges_dir, state, written, archive_sha256=None)
        except builder.Unproven as reason:
            print(f"export_jsonl.py: --test-members-only: {reason}; downloading the whole archive instead", file=sys.stderr)
    archive_check, archive_sha256 = None, state.get("archive_sha256")
    if args.force or not archive_path.is_file() or not export_vouches_for(state, archive_path, args):
        archive_path, archive_sha256, archive_check = download_archive(args, state)
    with confirmed_before_errors(archive_check), archive_split(archive_path) as split:
        state, written = write_split(args, export_dir, *split, archive_check)
    if archive_check is not None:
        archive_path = Path(archive_check.archive_path)
    shutil.rmtree(ranges_dir, ignore_errors=True)  # fetched by an earlier --test-members-only: superseded
    return finish_export(export_dir, archive_path, state, written, archive_sha256)


def refuse_a_demo_over_the_users_export(export_dir: Path, state: dict) -> None:
    """The demo writes its synthetic archive and export over nothing but a demo's own: a real export, or an archive,
    manifest or WAVs put there otherwise, is the user's. A demo cut off before it recorded its export has left the
    demo archive, which tells it."""
    if state.get("demo"):
        return
    raw_archive = export_dir / "raw" / ARCHIVE_NAME
    if raw_archive.is_file() and not state and is_the_demo_archive(raw_archive):
        return
    found = [path for path in (raw_archive, export_dir / "raw" / RANGES_NAME, export_dir / MANIFEST_NAME, export_dir / STATE_NAME)
             if os.path.lexists(path)] + sorted((export_dir / AUDIO_DIR).glob("*.wav"))[:1]
    if found:
        raise ExportError(f"{export_dir} holds an export that is not the demo's ({found[0]} is there), which --demo "
                          f"never writes over; give the demo a folder of its own, e.g. --datadir demo")


def is_the_demo_archive(archive_path: Path) -> bool:
    check_datasets_version()
    import synthetic_archive

    demo_path = archive_path.with_name(f".{ARCHIVE_NAME}.demo.{os.getpid()}.tmp")
    try:
        synthetic_archive.write_small_archive(demo_path)
        return demo_path.stat().st_size == archive_path.stat().st_size and demo_path.read_bytes() == archive_path.read_bytes()
    finally:
        demo_path.unlink(missing_ok=True)


def refuse_another_revision(export_dir: Path, state: dict, args: argparse.Namespace) -> None:
    """An export of one revision of Audio.tar is not made over into another's without --force."""
    recorded = recorded_revision(state)
    if recorded not in (None, args.revision) and not args.force:
        raise ExportError(f"{export_dir} holds the export of revision {recorded!r} of Audio.tar, not {args.revision!r}; "
                          f"add --force to replace it with {args.revision!r}'s, or give that one a --datadir of its own")


def recorded_revision(state: dict) -> str | None:
    """The Hub revision of the recorded export's archive; None for one made from --archive or the demo. A state
    written before revisions were recorded is taken for main's."""
    if not state or state.get("demo"):
        return None
    return state.get("revision", "main")


def export_vouches_for(state: dict, archive_path: Path, args: argparse.Namespace) -> bool:
    """The recorded export was made from this very archive file, of the revision asked for."""
    same_revision = args.archive is not None or recorded_revision(state) == args.revision
    return same_revision and state.get("archive") == archive_fingerprint(archive_path)


def finish_export(export_dir: Path, source_path: Path, state: dict, written: int, archive_sha256: str | None) -> int:
    """Record what the export wrote, from which archive (or fetched ranges of it) and what it was checked to be, and
    say so."""
    state["archive"] = archive_fingerprint(source_path)
    state["archive_sha256"] = archive_sha256
    write_atomically(export_dir / STATE_NAME, json.dumps(state, indent=1).encode("utf-8"))
    print_summary(state, export_dir, source_path, written)
    return 0


def write_split(args: argparse.Namespace, export_dir: Path, info, row_count: int, rows: Iterator[dict],
                archive_check: PendingCheck | None) -> tuple[dict, int]:
    """Write each row's WAV (unless it is there already), the Parquet copy if asked for, then the manifest; remove
    the WAVs it does not name. The state to record, without the archive's fingerprint, and the WAVs written."""
    from datasets.utils import tqdm

    import parquet_copy

    audio_dir = export_dir / AUDIO_DIR
    make_folder(audio_dir)
    written_before = read_state(export_dir).get("wav_sizes", {})
    emotion_names = info.features["emotion"].names
    manifest_lines, wav_sizes, wav_sha256, written = [], {}, {}, 0
    summary = {"emotion": collections.Counter(), "group": collections.Counter(), "seconds": 0.0}
    if args.parquet:
        make_folder(export_dir / PARQUET_DIR)
    parquet = parquet_copy.ParquetShards(export_dir / PARQUET_DIR, info.features) if args.parquet else contextlib.nullcontext()
    with parquet, tqdm(total=row_count, desc="Writing WAVs", unit="wav", leave=False) as progress:
        for row in rows:
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
            wav_sha256[wav_path.name] = hashlib.sha256(audio_bytes).hexdigest()  # --verify tells a damaged archive by it
            summary["emotion"][emotion] += 1
            summary["group"][row["sample_id"].split("_")[0]] += 1
            summary["seconds"] += audio_seconds(audio_bytes, row["file_path"])
            progress.update()
        progress.leave = True  # kept once complete; erased if the export fails
        if archive_check is not None:  # a Xet download, hashed beside the export: nothing is final before it
            archive_check.confirm()
        card = parquet_copy.dataset_card(info, summary["group"], SOURCE_LANGUAGE, demo=args.demo)
        parquet_sizes = parquet.finish(card) if args.parquet else None
    manifest = "".join(manifest_lines).encode("utf-8")
    write_atomically(export_dir / MANIFEST_NAME, manifest)
    remove_wavs_no_longer_named(audio_dir, wav_sizes, written_before, args.force)
    state = {
        "code": code_fingerprint(),
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "wav_sizes": wav_sizes,
        "wav_sha256": wav_sha256,
        "parquet_sizes": parquet_sizes,
        "summary": summary,
        "demo": args.demo,  # for the repair command of --verify
        "revision": None if args.demo or args.archive is not None else args.revision,
    }
    return state, written


def remove_wavs_no_longer_named(audio_dir: Path, named: dict[str, int], written_before: dict[str, int], force: bool) -> None:
    """Once the new manifest is in place: the WAVs it does not name that an earlier export wrote go, and the
    temporaries of a run that was killed. Others are the user's, named and left as they are, unless `force`."""
    kept = []
    for leftover in sorted(audio_dir.iterdir()):
        if leftover.name in named:
            continue
        if leftover.name.endswith(".tmp") or (leftover.suffix == ".wav" and (force or leftover.name in written_before)):
            leftover.unlink()
        elif leftover.suffix == ".wav":
            kept.append(leftover)
    if kept:
        print(f"export_jsonl.py: {counted(len(kept), 'WAV')} not in the manifest, which no export wrote ({kept[0]}"
              f"{', …' * (len(kept) > 1)}), left as they are; H2T reads only what the manifest names, and --force "
              f"removes them", file=sys.stderr)


def verify(args: argparse.Namespace) -> int:
    """The archive is the one the export was made from (its size and sha256, and each test WAV's, as recorded);
    then every manifest row's WAV exists, decodes and equals its archive member; the manifest is exact; no stray
    WAVs; parquet/, if there, holds exactly the split's rows and features. Prints each problem, then the command
    that repairs them."""
    check_datasets_version()
    import soundfile

    import parquet_copy

    export_dir = export_dir_for(args)
    audio_dir = export_dir / AUDIO_DIR
    manifest_path = export_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ExportError(f"{manifest_path}: no manifest; run export_jsonl.py first")
    archive_path = archive_to_verify_against(args, export_dir)
    state = read_state(export_dir)
    archive_problem = archive_differs_from_record(archive_path, state)
    if archive_problem is not None:
        return report_a_changed_archive(export_dir, archive_path, state, archive_problem)
    recorded_sha256 = state.get("wav_sha256", {}) if state.get("archive", [None])[0] == str(archive_path) else {}
    problems, expected_lines, expected_wavs = [], [], set()
    # A missing file, or a manifest that is not the one recorded, makes the export stale, and a plain run of the
    # export writes it again; a file of the recorded size with other bytes takes --force, which rewrites all.
    mended_by_a_plain_run = 0
    parquet_dir = export_dir / PARQUET_DIR
    with archive_split(archive_path) as (info, _, rows):
        emotion_names = info.features["emotion"].names
        shard_check = parquet_copy.ShardCheck(parquet_dir, info.features) if parquet_dir.is_dir() else None
        for row in rows:
            wav_path = audio_dir / f"{row['sample_id']}.wav"
            recorded = recorded_sha256.get(wav_path.name)  # hashed only where there is a record to compare with
            if recorded is not None and hashlib.sha256(row["audio"]["bytes"]).hexdigest() != recorded:
                return report_a_changed_archive(export_dir, archive_path, state, f"member {row['file_path']} is not the one the export "
                                                f"was made from (its sha256 differs from the one recorded for {wav_path.name})")
            if shard_check is not None:
                shard_check.compare(row)
            expected_lines.append(manifest_line(row["sample_id"], row["raw_transcription"], emotion_names[row["emotion"]]))
            expected_wavs.add(wav_path.name)
            if not wav_path.is_file():
                problems.append(f"{wav_path}: missing")
                mended_by_a_plain_run += 1
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
        mended_by_a_plain_run += 1
    problems += [f"{path}: stray WAV, not in the manifest" for path in sorted(audio_dir.glob("*.wav")) if path.name not in expected_wavs]
    shards_checked = ""
    if shard_check is not None:
        problems += shard_check.finish()
        shards_checked = f" and {counted(len(shard_check.names()), 'Parquet shard')}"
    for problem in problems:
        print(problem)
    print(f"verified {len(expected_lines)} rows{shards_checked} in {export_dir} against {archive_path}: "
          + (counted(len(problems), "problem") if problems else "all correct"))
    if archive_path.is_dir():
        print(f"not checked: the fetched ranges against the sha256 of the whole {ARCHIVE_NAME}, which --test-members-only "
              f"does not download; a plain export downloads it, then --verify checks against it")
    if problems:
        print(f"to repair: {repair_command(export_dir, archive_path, force=len(problems) > mended_by_a_plain_run)}")
    return 1 if problems else 0


def archive_differs_from_record(archive_path: Path, state: dict) -> str | None:
    """How the archive (not the fetched ranges) differs from the one the recorded export was made from, by its size
    and, where the export knew it, its sha256 (a copy checked against the Hub's); None where it does not."""
    recorded = state.get("archive")
    if archive_path.is_dir() or not recorded or recorded[0] != str(archive_path):
        return None
    hub_archive = import_frozen("hub_archive")
    return hub_archive.archive_problem(str(archive_path), recorded[1], state.get("archive_sha256") or "",
                                       record="the export recorded for the archive it was made from")


def report_a_changed_archive(export_dir: Path, archive_path: Path, state: dict, problem: str) -> int:
    """--verify's report when its reference is what changed: the archive is named, not the WAVs, and the repair
    gets a good archive first."""
    print(f"{archive_path}: {problem}")
    print(f"verified nothing in {export_dir}: the archive to verify against is not the one the export was made from")
    repair = repair_command(export_dir, archive_path, force=True)
    if archive_path.is_file() and not state.get("demo") and recorded_revision(state) is None:  # the user's own copy
        repair = f"replace {archive_path} with a good copy of {ARCHIVE_NAME}, then run {repair}"
    print(f"to repair: {repair}")
    return 1


def archive_to_verify_against(args: argparse.Namespace, export_dir: Path) -> Path:
    """--archive, else raw/Audio.tar, else the archive the recorded export was made from."""
    if args.archive is not None:
        return archive_for(args)
    raw_archive = export_dir / "raw" / ARCHIVE_NAME
    recorded = read_state(export_dir).get("archive")
    for archive_path in (raw_archive, Path(recorded[0]) if recorded else None):
        if archive_path is not None and archive_path.exists():
            return archive_path
    if recorded:
        raise ExportError(f"{recorded[0]}: the archive the export was made from is gone; put it back, or pass "
                          f"--archive /path/to/{ARCHIVE_NAME}")
    raise ExportError(f"{raw_archive}: no archive to verify against, and none recorded by the export; "
                      f"pass --archive /path/to/{ARCHIVE_NAME}")


def repair_command(export_dir: Path, archive_path: Path, force: bool) -> str:
    """The export command that writes again, from the archive verified against, what is missing (or, with
    `force`, every file), made as the recorded export was made; the script named by its path, to run from any
    folder."""
    state = read_state(export_dir)
    command = ["python", str(PROJECT_DIR / "export_jsonl.py"), "--datadir", str(export_dir.parent)]
    if state.get("demo"):
        command.append("--demo")
    else:
        revision = recorded_revision(state)
        command += ["--revision", revision] if revision not in (None, "main") else []
        if archive_path.is_dir():
            command.append("--test-members-only")
            expected_manifest = state.get("expected_manifest")
            command += ["--expected-manifest", expected_manifest] if expected_manifest else []
        elif archive_path != export_dir / "raw" / ARCHIVE_NAME:
            command += ["--archive", str(archive_path)]
    if (export_dir / PARQUET_DIR).is_dir():
        command.append("--parquet")
    return " ".join(command + ["--force"] * force)


def counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def export_dir_for(args: argparse.Namespace) -> Path:
    if args.datadir is not None:
        datadir, source = args.datadir, "--datadir"
    else:
        datadir, source = os.environ.get("H2T_DATADIR"), "H2T_DATADIR"
    if datadir is None:
        raise ExportError("H2T_DATADIR is not set: `export H2T_DATADIR=/path/to/h2t-data` or pass --datadir")
    if not datadir.strip():
        raise ExportError(f"{source} is empty: give the folder to export into, e.g. --datadir /data/h2t")
    return Path(datadir).expanduser().resolve() / DATASET_ID


FOLDERS_CREATED: list[Path] = []


def make_folder(folder: Path) -> None:
    """`mkdir -p` that remembers the folders it made, so that a failed run can take back those it left empty."""
    missing = [path for path in (folder, *folder.parents) if not path.exists()]
    # Remembered before they are made: a Ctrl-C between the two would otherwise leave them behind.
    FOLDERS_CREATED.extend(reversed(missing))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"{folder}: cannot create the output folder ({error.strerror}); choose a writable --datadir") from None


def remove_folders_left_empty() -> None:
    for folder in reversed(FOLDERS_CREATED):
        with contextlib.suppress(OSError):
            folder.rmdir()
    FOLDERS_CREATED.clear()


def archive_for(args: argparse.Namespace) -> Path:
    """--archive as given (the file, or the folder that holds Audio.tar), else raw/Audio.tar."""
    if args.archive is None:
        return export_dir_for(args) / "raw" / ARCHIVE_NAME
    archive_path = args.archive.expanduser().resolve()
    if archive_path.is_dir():
        archive_path = archive_path / ARCHIVE_NAME
    if not archive_path.is_file():
        raise ExportError(f"{archive_path}: no such file; give the path of the downloaded {ARCHIVE_NAME}, or of its folder")
    return archive_path


def download_archive(args: argparse.Namespace, state: dict) -> tuple[Path, str | None, PendingCheck | None]:
    """The archive to export from, the sha256 it was checked to have (None where nothing checked it), and, for a Xet
    download still being hashed, its PendingCheck (else None)."""
    archive_path = archive_for(args)
    if args.archive is not None:
        return archive_path, None, None
    make_folder(archive_path.parent)
    hub_download = import_frozen("hub_download")
    recorded = state.get("archive")
    recorded_check = (recorded[1], state["archive_sha256"]) if state.get("archive_sha256") and recorded[0] == str(archive_path) else None
    sha256, archive_check = hub_download.fetch_archive(str(archive_path), revision=args.revision, force=args.force,
                                                       recorded=recorded_check)
    return (archive_path if archive_check is None else Path(archive_check.path)), sha256, archive_check


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


@contextlib.contextmanager
def archive_split(archive_path: Path, proven_against: str | None = None) -> Iterator[tuple]:
    """The split's DatasetInfo, its row count, and its rows, read from the archive by the loading script's own code,
    as `load_dataset` would give them in Arrow's storage form (audio as the archive's bytes, emotion as its label
    number). The builder's module is imported, not loaded by `datasets`, which would copy it into its module cache:
    the exporter writes nothing outside the export. The archive's headers are read here, so that an archive the
    builder refuses fails before any progress bar is drawn.

    `archive_path` may be the folder of ranges that --test-members-only fetched; with `proven_against` (the sha256
    of the manifest a full export gives), they must prove to hold the whole split first."""
    builder = import_frozen("emotiontalk_test")
    info = builder.dataset_info()
    with contextlib.ExitStack() as stack:
        if archive_path.is_dir():
            split, read_audio = stack.enter_context(builder.ranges_split(archive_path))
            if proven_against is not None:
                builder.prove_whole(split, proven_against)
        else:
            archive_file = stack.enter_context(open(archive_path, "rb"))
            split = builder.index_archive(archive_file, str(archive_path))
            read_audio = lambda location: builder.read_member(archive_file, location, str(archive_path))  # noqa: E731
        examples = split.examples(read_audio)
        yield info, len(split), (info.features.encode_example(example) for _, example in examples)


def expected_manifest_sha256(args: argparse.Namespace) -> str:
    if args.expected_manifest is None:
        return H2T_MANIFEST_SHA256
    try:
        return hashlib.sha256(args.expected_manifest.read_bytes()).hexdigest()
    except OSError as error:
        raise ExportError(f"{args.expected_manifest}: {error.strerror}; --expected-manifest takes an H2T manifest file") from None


def import_frozen(module_name: str):
    """A module of the project's package (project_module), imported with the garbage collector held off, and what
    the import made frozen. Importing datasets (directly, or through the loading script) makes some 100,000 objects
    that live as long as the process (pandas, pyarrow, aiohttp); the collector would walk them again and again while
    they are made, and once more at exit, and free none: 0.25 s of a 2.5 s export of the bench/ archive. Frozen,
    they are left out of every collection."""
    gc.disable()
    try:
        return project_module(module_name)
    finally:
        gc.freeze()
        gc.enable()


def project_module(module_name: str):
    """The project's module of that name, imported inside PACKAGE, a package made of the project's folder."""
    if PACKAGE not in sys.modules:
        spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
        spec.submodule_search_locations = [str(PROJECT_DIR)]
        sys.modules[PACKAGE] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{PACKAGE}.{module_name}")


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
    return hashlib.sha256(b"".join((PROJECT_DIR / name).read_bytes() for name in OUTPUT_MODULES)).hexdigest()


def read_state(export_dir: Path) -> dict:
    try:
        return json.loads((export_dir / STATE_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
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
    print(f"EmotionTalk test split -> {export_dir}")
    print(f"  {'emotion':<12}{'rows':>6}")
    for emotion, count in sorted(summary["emotion"].items()):
        print(f"  {emotion:<12}{count:>6}")
    print(f"  {'group':<12}{'rows':>6}")
    for group, count in sorted(summary["group"].items()):
        print(f"  {group:<12}{count:>6}")
    print(f"  {'total':<12}{rows:>6}   {summary['seconds'] / 3600:.2f} hours of audio ({summary['seconds']:.0f} s)")
    print(f"  manifest    {export_dir / MANIFEST_NAME}")
    print(f"  audio       {export_dir / AUDIO_DIR}  ({rows} WAVs, {written} written this run)")
    parquet_sizes = state["parquet_sizes"]
    if parquet_sizes and not files_have_sizes(export_dir / PARQUET_DIR, parquet_sizes):  # a run without --parquet left it
        print(f"  parquet     {export_dir / PARQUET_DIR}  (not as the export recorded it: --parquet writes it again)")
    elif parquet_sizes:
        print(f"  parquet     {export_dir / PARQUET_DIR}  ({counted(len(parquet_sizes), 'shard')}, "
              f"{sum(parquet_sizes.values()) / 1e6:.1f} MB)")
        for name, size in parquet_sizes.items():
            print(f"    {name}  {size / 1e6:9.1f} MB")
    print(f"  archive     {archive_path}")


def one_line_error(error: BaseException, args: argparse.Namespace | None) -> str | None:
    """The message for an error the user can act on, or None for a bug (which keeps its traceback)."""
    # By name: the loading script's module, whose ArchiveError this is, is imported only when it is needed.
    if isinstance(error, ExportError) or "ArchiveError" in (cls.__name__ for cls in type(error).__mro__):
        return str(error)
    if isinstance(error, OSError) and error.strerror:
        # A failed write() names no file (a full disk, say): the folder being written is named instead.
        where = error.filename or export_dir_for(args)
        return f"{where}: {error.strerror}; nothing was left half-written, fix this and run again"
    return None


if __name__ == "__main__":
    sys.exit(main(restore_signal_handlers=False))
