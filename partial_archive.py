"""The test split's part of Audio.tar, fetched from the Hub by byte range: `export_jsonl.py --test-members-only`.

The Hub answers `Range` requests on the archive's `resolve` URL, for Xet-backed files too. Where the test split's
members lie is found at run time, with few requests, and nothing found is trusted until the split is proven whole:

- Probes at evenly spaced offsets, fetched in parallel, each scan forward from where they land to the next tar
  header (a 512-byte block at a 512-aligned offset, with its checksum and magic) and read the headers that follow.
- Between two members the archive is taken to hold more of the same run when both are of one, as `tar cf` writes
  each folder in one piece: one group's audio, or one group's annotations, or, in an archive seen to interleave
  them (an annotation next to its audio, twice), one group's members. A gap between two runs is probed at its
  middle, and again (bisection), until it is small enough to fetch whole.
- The test groups' runs, and every run of annotations (a few tens of MB in all), are fetched over several
  connections at once into raw/Audio.tar.ranges/, a file per range, written under a temporary name and renamed
  once complete: a run cut off leaves whole ranges only, and the next fetches only the ranges it lacks, by the
  plan that the probes settled (plan.json), without probing again.
- The split is read from those ranges by the loading script's own code (emotiontalk_test.SplitIndex), and proven
  whole only if every annotation's WAV lies in them and its manifest is byte-identical to the one a full export of
  the archive gives (by default H2T's committed manifests/emotiontalk/zh-en.jsonl). The caller downloads the whole
  archive instead when it is not: `Unproven` says why.

The ranges stay in raw/Audio.tar.ranges/ (about a tenth of the archive) as raw/Audio.tar does in a full export, so
that a re-run has nothing to fetch and --verify has the members to compare the export with.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
import urllib.parse
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import huggingface_hub
import huggingface_hub.file_download
from datasets.utils import tqdm

import emotiontalk_test
from emotiontalk_test import _ARCHIVE_NAME as ARCHIVE_NAME
from emotiontalk_test import _AUDIO_PREFIX as AUDIO_PREFIX
from emotiontalk_test import _REPO_ID as REPO_ID
from emotiontalk_test import _TEST_GROUPS as TEST_GROUPS
from hub_download import LOCAL_COPY_HINT

ANNOUNCED_NAME = "announced.json"  # in it: the size and sha256 of the upload the ranges come from
PLAN_NAME = "plan.json"  # in it: the ranges to fetch, as the probes settled them for that upload
# The manifest that a full export of the real archive writes, which H2T commits as manifests/emotiontalk/zh-en.jsonl.
H2T_MANIFEST_SHA256 = "f5a6754c8514cf78493da47f134473656d20162d864fc7eb47e54ca06008fdd4"
BLOCK = tarfile.BLOCKSIZE
PROBE_SPACING = 128 << 20  # the first probes: 57 over the real archive, each a round trip of its own
SCAN_BYTES = 256 << 10  # a probe's first read; WAV members average 390 kB, so most probes find a header in it
# Sizes for the 7.5 GB archive, each at most a share of a smaller one (the demo's, the tests'), so that the
# boundaries between runs there do not add up to much of it, and a fetch there is still in pieces:
SMALL_GAP = 1 << 20, 512  # a gap between two runs this small is fetched whole rather than probed again
PIECE_BYTES = 8 << 20, 256  # ranges are fetched and stored in pieces this large
MAX_PROBES = 2000  # more, and the archive is not laid out in few runs: the whole of it is downloaded instead
MAX_SHARE = 0.5  # a plan to fetch more than this share of the archive is not worth its probes
CONNECTIONS = 8  # parallel requests, as hf_xet makes them


class Unproven(Exception):
    """The fetched ranges cannot be proven to hold the whole test split; the message says why, in a clause."""


@dataclasses.dataclass(frozen=True)
class Member:
    """A member of the archive whose header was read: where its headers begin, where its data lies, what it is."""

    offset: int
    data_offset: int
    size: int
    name: str
    kind: str  # "audio", "annotation", "folder" or "other"
    group: str | None  # the speaker group of its audio: from the audio's name, or from an annotation's file_path

    @property
    def end(self) -> int:
        return self.data_offset + -(-self.size // BLOCK) * BLOCK


def fetch_test_members(ranges_dir: Path, revision: str, token: str | None = None, force: bool = False) -> None:
    """Fetch into `ranges_dir` the byte ranges of Audio.tar that hold the test split's members, as far as the
    archive's layout shows them. Ranges fetched before, of the same upload, are kept (with `force`, all are fetched
    anew), and so is the plan of an earlier run, which a run cut off while fetching takes up without probing again.
    Raises Unproven where the layout does not show them in few ranges."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise emotiontalk_test.ArchiveError(emotiontalk_test.offline_message(LOCAL_COPY_HINT))
    expected = emotiontalk_test.hub_file_metadata(revision, token, LOCAL_COPY_HINT)
    url = huggingface_hub.hf_hub_url(REPO_ID, ARCHIVE_NAME, repo_type="dataset", revision=revision)
    ranges = FetchedRanges(ranges_dir)
    ranges.prepare({"sha256": expected.etag, "size": expected.size}, force)
    with RangeReader(url, token, revision, expected) as reader:
        plan = ranges.plan()
        if plan is None:
            plan = ArchiveLayout(reader, expected.size).ranges_to_fetch()
            ranges.keep_plan(plan)
        ranges.fetch(reader, plan)


@contextlib.contextmanager
def ranges_split(ranges_dir: Path) -> Iterator[tuple[emotiontalk_test.SplitIndex, Callable[[tuple[int, int]], bytes]]]:
    """The test split as the fetched ranges give it, and how to read a member's data from them."""
    with RangeFiles(FetchedRanges(ranges_dir).pieces()) as files:
        split = emotiontalk_test.SplitIndex(str(ranges_dir))
        for start, end in files.regions():
            if not files.read(start, BLOCK).strip(b"\0"):
                continue  # the end-of-archive blocks, fetched with the last gap: no member
            for member in region_members(files, start, end, str(ranges_dir)):
                location = (start + member.offset_data, member.size)
                split.add(member.name, location, lambda: files.read(*location))
        yield split, lambda location: files.read(*location)


def region_members(files: RangeFiles, start: int, end: int, ranges_name: str) -> Iterator[tarfile.TarInfo]:
    """The files whose headers begin a region of the fetched ranges, in order, with their names checked as the
    builder checks them; Unproven where the bytes do not read as whole members."""
    try:
        # Buffered: tarfile reads each header by itself, and the annotations lie in thousands of small members.
        archive = tarfile.open(fileobj=io.BufferedReader(RegionFile(files, start, end), 1 << 20), mode="r:")
        while (member := archive.next()) is not None:
            archive.members.clear()
            member.name = emotiontalk_test.checked_member_name(member, ranges_name)
            if not member.isdir():
                yield member
    except tarfile.TarError as error:  # ranges that do not begin at a header; a member the builder refuses is refused here too
        raise Unproven(f"bytes {start}-{end} of the fetched ranges do not read as whole members ({error})") from None


def prove_whole(split: emotiontalk_test.SplitIndex, manifest: bytes, expected_sha256: str) -> None:
    """A split read from part of the archive is the whole split when each of its annotations has its WAV in the
    fetched ranges and its manifest is the one a full export of the archive gives."""
    without_audio = split.samples_without_audio()
    if without_audio:
        raise Unproven(f"the WAV of test sample {without_audio[0]} is not in the fetched ranges ({len(without_audio)} such samples)")
    sha256 = hashlib.sha256(manifest).hexdigest()
    if sha256 != expected_sha256:
        raise Unproven(f"the {len(split)} rows found in the fetched ranges give a manifest of sha256 {sha256[:12]}…, "
                       f"not the expected {expected_sha256[:12]}…")


class RangeReader:
    """Byte ranges of the archive by HTTP, through huggingface_hub's `http_get` (with its retries and errors) from
    several threads at once.

    The ranges are read where the Hub's `resolve` URL sends them: for a file in LFS or Xet storage, a URL on the
    storage's host, signed for about an hour, which takes no `Authorization` header. So one `resolve` request, which
    the Hub counts against its rate limit, serves every range, instead of one each; once the signature expires
    (403 from the storage), the URL is resolved again."""

    def __init__(self, url: str, token: str | None, revision: str, announced: huggingface_hub.HfFileMetadata):
        self.url, self.token, self.revision, self.size = url, token, revision, announced.size
        self.pool = concurrent.futures.ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="range")
        self.resolving = threading.Lock()
        self.source = self.source_of(announced)

    def source_of(self, announced: huggingface_hub.HfFileMetadata) -> tuple[str, dict]:
        """Where to read the bytes, and with which headers: the token goes to the Hub's host only."""
        headers = huggingface_hub.utils.build_hf_headers(token=self.token)
        location = announced.location or self.url
        if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(self.url).netloc:
            headers.pop("authorization", None)
        return location, headers

    def resolve_again(self, expired: str) -> None:
        """A fresh signed URL, unless another thread got one since `expired` failed."""
        with self.resolving:
            if self.source[0] == expired:
                self.source = self.source_of(emotiontalk_test.hub_file_metadata(self.revision, self.token, LOCAL_COPY_HINT))

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, function: Callable, items: list) -> list:
        """`function` applied to each item on the pool's connections, results in order; the first error raised."""
        return list(self.pool.map(function, items))

    def read(self, start: int, end: int, into: BinaryIO | None = None, progress: tqdm | None = None) -> bytes | None:
        """Bytes [start, end) of the archive; into `into` if given (a file), else returned."""
        target = into or io.BytesIO()
        for attempt in range(2):
            location, headers = self.source
            try:
                huggingface_hub.file_download.http_get(
                    location,
                    BoundedWriter(target, end - start),
                    headers={**headers, "Range": f"bytes={start}-{end - 1}"},
                    expected_size=end - start,
                    displayed_filename=ARCHIVE_NAME,
                    # One bar for all the ranges (a private parameter of http_get, in 0.36 and 2.x alike); none for probes.
                    _tqdm_bar=progress or tqdm(disable=True),
                )
                break
            except RangeNotHonoured as error:
                raise Unproven(str(error)) from None
            except Exception as error:  # noqa: BLE001 - huggingface_hub's and the HTTP client's errors, said in one line
                status = getattr(getattr(error, "response", None), "status_code", None)
                if attempt == 0 and status == 403 and location != self.url:
                    self.resolve_again(location)
                    continue
                emotiontalk_test.raise_hub_error(error, self.revision, self.token, LOCAL_COPY_HINT, resumable=True)
        return None if into else target.getvalue()


class RangeNotHonoured(Exception):
    """The server sent more bytes than the range asked for: the whole file, say."""


class BoundedWriter:
    """A file that takes no more than `limit` bytes: a server that answers a range with the whole archive is
    stopped at once, not after 7.5 GB."""

    def __init__(self, file: BinaryIO, limit: int):
        self.file, self.limit = file, limit
        self.start = file.tell()

    def write(self, data: bytes) -> int:
        if self.file.tell() - self.start + len(data) > self.limit:
            raise RangeNotHonoured(f"the Hub answered a request for {self.limit} bytes with more; it may ignore byte ranges")
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        return self.file.truncate(size)


class ArchiveLayout:
    """What probes show of the archive's members, and the byte ranges that hold the test split's."""

    def __init__(self, reader: RangeReader, size: int):
        self.reader, self.size = reader, size
        self.known: dict[int, Member] = {}  # by offset; folders are left out (they hold nothing)
        self.folders: dict[int, int] = {}  # the folders' entries seen: where each begins and ends
        self.interleaving: dict[str, set[int]] = {}  # by group: where an annotation and an audio member adjoin
        self.members_end = size  # until the end-of-archive blocks are found
        self.probes = 0

    def ranges_to_fetch(self) -> list[tuple[int, int]]:
        """Probe until every gap between known members is settled; the ranges to fetch, merged and sorted."""
        # The first probe alone: a server that answers a range with the whole archive is found before the others.
        self.probe([(0, min(self.size, PROBE_SPACING))])
        self.probe([(offset, min(self.size, offset + PROBE_SPACING)) for offset in range(PROBE_SPACING, self.size, PROBE_SPACING)])
        while gaps := [(self.past_folders(before.end), after.offset) for before, after in self.gaps() if self.decide(before, after) == "split"]:
            if self.probes + len(gaps) > MAX_PROBES:
                raise Unproven(f"the archive's members are not laid out in few runs ({self.probes} probes did not settle them)")
            self.probe([(start + (end - start) // 2 // BLOCK * BLOCK, end) for start, end in gaps], gaps)
        ranges = [(member.offset, member.end) for member in self.known.values() if self.relevant(member)]
        ranges += [(before.end, after.offset) for before, after in self.gaps() if self.decide(before, after) == "fetch"]
        merged = merge(ranges, self.past_folders)
        share = sum(end - start for start, end in merged) / self.size
        if share > MAX_SHARE:
            raise Unproven(f"the test members are spread over {share:.0%} of the archive")
        return merged

    def gaps(self) -> list[tuple[Member, Member]]:
        """Consecutive known members with unknown bytes between them, from the archive's start to its members' end."""
        start = Member(0, 0, 0, "", "start", None)
        end = Member(self.members_end, self.members_end, 0, "", "end", None)
        members = [start, *sorted(self.known.values(), key=lambda member: member.offset), end]
        return [(before, after) for before, after in zip(members, members[1:]) if self.past_folders(before.end) < after.offset]

    def past_folders(self, offset: int) -> int:
        """Past the folders known to begin at `offset`, one after the other."""
        while offset in self.folders:
            offset = self.folders[offset]
        return offset

    def decide(self, before: Member, after: Member) -> str:
        """"fetch", "skip" or "split" the gap between two members."""
        if self.same_run(before, after):
            return "fetch" if self.relevant(before) else "skip"
        return "fetch" if after.offset - before.end <= scaled(SMALL_GAP, self.size) else "split"

    def same_run(self, before: Member, after: Member) -> bool:
        if before.group is None or before.group != after.group:
            return False
        return before.kind == after.kind or self.interleaved(before.group)

    def interleaved(self, group: str) -> bool:
        """The group's annotations were seen next to its audio twice: the archive interleaves them."""
        return len(self.interleaving.get(group, ())) >= 2

    def relevant(self, member: Member) -> bool:
        """A member of the test groups, or an annotation in a run of annotations."""
        return member.group in TEST_GROUPS or (member.kind == "annotation" and not self.interleaved(member.group))

    def probe(self, spans: list[tuple[int, int]], gaps: list[tuple[int, int]] | None = None) -> None:
        """Read the members from the first header in each span. Where a gap's span shows no member in the gap, read
        them from the gap's start instead, where a member begins (or the end-of-archive blocks do)."""
        self.probes += len(spans)
        found = self.reader.map(lambda span: self.members_from(*span), spans)
        missed = [gap for gap, members in zip(gaps or [], found)
                  if not any(gap[0] <= member.offset < gap[1] and member.kind != "folder" for member in members or [])]
        self.probes += len(missed)
        found += self.reader.map(lambda gap: self.members_from(gap[0], gap[0] + BLOCK, at_start=True), missed)
        for members in found:
            self.folders.update((member.offset, member.end) for member in members or [] if member.kind == "folder")
            files = [member for member in members or [] if member.kind != "folder"]
            for member, next_member in zip(files, files[1:]):
                if member.group is not None and member.group == next_member.group and {member.kind, next_member.kind} == {"audio", "annotation"}:
                    self.interleaving.setdefault(member.group, set()).add(member.offset)
            self.known.update((member.offset, member) for member in files)

    def members_from(self, offset: int, limit: int, at_start: bool = False) -> list[Member] | None:
        """The members whose headers follow the first header in [offset, limit), read from there (SCAN_BYTES at a
        time, until a header is found); None if there is none. `at_start`: a member begins at `offset`, or the
        end-of-archive blocks do."""
        if at_start:
            data = self.reader.read(offset, min(self.size, offset + SCAN_BYTES))
            if not data[:BLOCK].strip(b"\0"):
                self.members_end = min(self.members_end, offset)
                return []
            header = 0 if is_header(data[:BLOCK]) else None
        else:
            data, header = b"", None
            while header is None and offset + len(data) < limit:
                scanned = len(data)
                data += self.reader.read(offset + scanned, min(limit, offset + scanned + SCAN_BYTES))
                header = next((at for at in range(scanned, len(data) - BLOCK + 1, BLOCK) if is_header(data[at : at + BLOCK])), None)
        if header is None:
            return None
        members = members_in(data[header:], offset + header)
        last = members[-1] if members else None
        if last is not None and last.kind == "annotation" and last.group is None and last.data_offset + last.size > offset + len(data):
            # Its data runs past what was read: what it annotates is read in full.
            annotation = self.reader.read(last.data_offset, last.data_offset + last.size)
            members[-1] = dataclasses.replace(last, group=annotated_group(annotation, last.size))
        return members


def scaled(size: tuple[int, int], archive_size: int) -> int:
    """A size of the ones above for an archive: its bytes, or the archive's share, whichever is less (whole blocks)."""
    return max(BLOCK, min(size[0], archive_size // size[1]) // BLOCK * BLOCK)


def is_header(block: bytes) -> bool:
    """A tar header block: the ustar magic (POSIX or GNU), and a checksum that matches."""
    if block[257:262] != b"ustar":
        return False
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def members_in(data: bytes, start: int) -> list[Member]:
    """The members whose headers lie wholly in `data`, which begins with a header at archive offset `start`."""
    members = []
    with contextlib.suppress(tarfile.TarError):  # at the end of `data`, a header cut short
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        while (info := archive.next()) is not None:
            archive.members.clear()
            members.append(member_of(info, start, data))
    return members


def member_of(info: tarfile.TarInfo, start: int, data: bytes) -> Member:
    """The member a probe read, its name checked as the builder checks it: an archive the builder would refuse is
    refused as soon as a probe sees why."""
    name = emotiontalk_test.checked_member_name(info, ARCHIVE_NAME)
    group = None
    if info.isdir():
        kind = "folder"
    elif name.startswith(AUDIO_PREFIX) and name.endswith(".wav"):
        kind, group = "audio", name[len(AUDIO_PREFIX):].split("/", 1)[0]
    elif name.endswith(".json"):
        kind, group = "annotation", annotated_group(data[info.offset_data : info.offset_data + info.size], info.size)
    else:
        kind = "other"
    return Member(start + info.offset, start + info.offset_data, info.size, name, kind, group)


def annotated_group(data: bytes, size: int) -> str | None:
    """The speaker group of the audio an annotation names (the first part of its file_path), if all of it was read."""
    if len(data) < size:
        return None
    with contextlib.suppress(ValueError):
        record = json.loads(data.decode("utf-8-sig"))
        file_path = record.get("file_path", record.get("file_name")) if isinstance(record, dict) else None
        if isinstance(file_path, str):
            return file_path.split("/", 1)[0]
    return None


def merge(ranges: list[tuple[int, int]], past_folders: Callable[[int], int] = lambda offset: offset) -> list[tuple[int, int]]:
    """The ranges as few as can be: those that overlap or touch, or lie apart by nothing but folders, as one."""
    merged: list[list[int]] = []
    for start, end in sorted(ranges):
        if merged and start <= past_folders(merged[-1][1]):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


class FetchedRanges:
    """raw/Audio.tar.ranges/: pieces of the archive, each a file named <start>-<end> by its byte range, and the
    size and sha256 of the upload they come from."""

    def __init__(self, folder: Path):
        self.folder = folder

    def announced(self) -> dict | None:
        try:
            return json.loads((self.folder / ANNOUNCED_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def prepare(self, announced: dict, force: bool) -> None:
        """Keep the pieces of this upload (none with `force`), and no half-written one."""
        if force or self.announced() != announced:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for temporary in self.folder.glob(".*.tmp"):
            temporary.unlink()
        write_whole(self.folder / ANNOUNCED_NAME, json.dumps(announced))

    def plan(self) -> list[tuple[int, int]] | None:
        """The ranges an earlier run settled for this upload, if it got that far."""
        try:
            return [(start, end) for start, end in json.loads((self.folder / PLAN_NAME).read_text(encoding="utf-8"))]
        except (OSError, ValueError, TypeError):
            return None

    def keep_plan(self, ranges: list[tuple[int, int]]) -> None:
        write_whole(self.folder / PLAN_NAME, json.dumps(ranges))

    def pieces(self) -> list[tuple[int, int, Path]]:
        pieces = []
        for path in self.folder.glob("*-*"):
            start, _, end = path.name.partition("-")
            if start.isdigit() and end.isdigit() and path.stat().st_size == int(end) - int(start):
                pieces.append((int(start), int(end), path))
        return sorted(pieces)

    def fetch(self, reader: RangeReader, ranges: list[tuple[int, int]]) -> None:
        """Fetch what the pieces lack of `ranges`, in pieces of PIECE_BYTES at most, over parallel connections; a
        piece outside them (of an earlier plan) goes, so that the pieces read as the ranges' members alone."""
        for start, end, path in self.pieces():
            if not any(begin <= start and end <= stop for begin, stop in ranges):
                path.unlink()
        missing = subtract(ranges, [(start, end) for start, end, _ in self.pieces()])
        piece_bytes = scaled(PIECE_BYTES, reader.size)
        pieces = [(start, min(end, start + piece_bytes)) for begin, end in missing for start in range(begin, end, piece_bytes)]
        total = sum(end - start for start, end in pieces)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"Fetching the test members of {ARCHIVE_NAME}", leave=False) as progress:
            reader.map(lambda piece: self.fetch_piece(reader, *piece, progress), pieces)
            progress.leave = True

    def fetch_piece(self, reader: RangeReader, start: int, end: int, progress: tqdm) -> None:
        path = self.folder / f"{start:013d}-{end:013d}"
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            with open(temporary, "wb") as piece:
                reader.read(start, end, into=piece, progress=progress)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def write_whole(path: Path, text: str) -> None:
    """`text` into `path`, under a temporary name first: the file is whole, or as it was."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def subtract(ranges: list[tuple[int, int]], held: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` that `held` (sorted, disjoint) does not cover."""
    missing = []
    for start, end in ranges:
        for held_start, held_end in held:
            if held_end <= start or held_start >= end:
                continue
            if held_start > start:
                missing.append((start, held_start))
            start = max(start, held_end)
        if start < end:
            missing.append((start, end))
    return missing


class RangeFiles:
    """The pieces of the archive as one sparse view: bytes at archive offsets, from whichever pieces hold them."""

    def __init__(self, pieces: list[tuple[int, int, Path]]):
        self.pieces = pieces
        self.starts = [start for start, _, _ in pieces]
        self.files: dict[Path, BinaryIO] = {}

    def __enter__(self) -> "RangeFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        for file in self.files.values():
            file.close()

    def regions(self) -> list[tuple[int, int]]:
        """The contiguous ranges the pieces cover: each begins with a member's header and ends with a member."""
        return merge([(start, end) for start, end, _ in self.pieces])

    def read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of the archive; ArchiveError if a piece lacks some."""
        chunks, position, end = [], offset, offset + size
        for start, stop, path in self.pieces[max(0, bisect.bisect_right(self.starts, offset) - 1):]:
            if stop <= position:
                continue
            if start > position or position >= end:
                break
            file = self.files.get(path) or self.files.setdefault(path, open(path, "rb"))
            file.seek(position - start)
            chunks.append(file.read(min(stop, end) - position))
            position = min(stop, end)
        if position < end:
            raise emotiontalk_test.ArchiveError(f"bytes {position}-{end} of {ARCHIVE_NAME} were not fetched")
        return b"".join(chunks)


class RegionFile(io.RawIOBase):
    """One contiguous region of the fetched ranges as a file of its own, for tarfile to walk its headers."""

    def __init__(self, files: RangeFiles, start: int, end: int):
        self.files, self.start, self.end, self.position = files, start, end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.end - self.start}[whence] + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        size = max(0, min(len(buffer), self.end - self.start - self.position))
        data = self.files.read(self.start + self.position, size) if size else b""
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)
