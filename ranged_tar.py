"""A tar archive on an HTTP server, read in part: the members a caller wants, found by a few probes and fetched by
byte range, and read back as tar members. It knows tar and HTTP; what is wanted, and what proves it found, is the
caller's (the loading script's `Selection` and proof).

- Probes at evenly spaced offsets, fetched in parallel, each scan forward from where they land to the next tar
  header (a 512-byte block at a 512-aligned offset, with its checksum and magic) and read the headers that follow.
  The caller's `Selection` tells each member's kind and group from its name (or, for some kinds, its data).
- Between two members the archive is taken to hold more of the same run when both are of one, as `tar cf` writes
  each folder in one piece: one group's members of one kind or, in an archive seen to interleave two kinds (next
  to each other, twice), one group's members. A gap between two runs is probed at its middle, and again
  (bisection), until it is small enough to fetch whole.
- The wanted groups' runs, and every run of the kinds wanted everywhere, are fetched over several connections at
  once into a folder, a file per piece, written under a temporary name and renamed once complete, beside the plan
  that the probes settled (written whole as soon as probing ends) and the upload they belong to: a run cut off
  leaves whole pieces only, and the next fetches only the pieces it lacks, without probing again.
- Or they are read as they arrive (`ArrivingMembers`): the plan sets apart the runs of the kinds the caller reads
  later (the audio), so that the rest (the annotations) can be read, and proven, first; then those runs come in
  the archive's order, a few pieces ahead of the reader, into memory or into the folder as above.
- The bytes are read where the server's URL redirects to (a signed storage URL, for a file in the Hub's storage):
  one request of the URL serves every range, and another is made only once the signature expires.
- Member names are checked as a full read of the archive checks them (`checked_member_name`): an archive with a
  link, an absolute path or `..` is refused as soon as a probe or the fetched pieces show it.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import itertools
import json
import os
import shutil
import tarfile
import threading
import urllib.parse
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, NoReturn

import huggingface_hub
import huggingface_hub.file_download
from datasets.utils import tqdm

from .hub_archive import ArchiveError, waiting_out_rate_limits

ANNOUNCED_NAME = "announced.json"  # in it: the size and sha256 of the upload the pieces come from
PLAN_NAME = "plan.json"  # in it: the ranges to fetch, as the probes settled them for that upload
PROBED_NAME = "probed.json"  # in it: what the probes of a run stopped before the plan was settled had found
BLOCK = tarfile.BLOCKSIZE
PROBE_SPACING = 128 << 20  # the first probes: 57 over a 7.5 GB archive, each a round trip of its own
SCAN_BYTES = 256 << 10  # a probe's first read; members of a few hundred kB are mostly found in it
# Sizes for a 7.5 GB archive, each at most a share of a smaller one (the demo's, the tests'), so that the
# boundaries between runs there do not add up to much of it, and a fetch there is still in pieces:
SMALL_GAP = 1 << 20, 512  # a gap between two runs this small is fetched whole rather than probed again
PIECE_BYTES = 4 << 20, 256  # ranges are fetched and stored in pieces this large
# A stream's first pieces are smaller, each twice the one before: its first row waits for the first piece alone.
FIRST_PIECE_BYTES = 256 << 10, 8192
MAX_PROBES = 2000  # more, and the archive is not laid out in few runs: the whole of it is downloaded instead
MAX_SHARE = 0.5  # a plan to fetch more than this share of the archive is not worth its probes
CONNECTIONS = 8  # parallel requests, as hf_xet makes them
AHEAD = CONNECTIONS + 2  # pieces fetched, or being fetched, ahead of the one the reader waits for


class Unproven(Exception):
    """The fetched ranges cannot be proven to hold what the caller wants; the message says why, in a clause."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a caller wants of an archive, and how its members tell. `classify(name, data)` gives a member's kind
    ("other" for one of no kind the caller knows) and group, from its name or, for a kind whose group its data
    tells, from its data (None where only part of it was read: the member is then read whole). `groups`: those
    whose members are wanted; `everywhere`: the kinds wanted in every group, where they lie in runs of their own."""

    classify: Callable[[str, bytes | None], tuple[str, str | None]]
    groups: tuple[str, ...]
    everywhere: tuple[str, ...]
    later: tuple[str, ...] = ()  # the kinds whose runs are read after the rest, as a stream (Plan)


@dataclasses.dataclass(frozen=True)
class Plan:
    """The ranges to fetch, each beginning with a member's header: `later`, the runs of the Selection's `later`
    kinds, and `first`, the rest, which is read before them (a caller proves from it what it will read)."""

    first: list[tuple[int, int]]
    later: list[tuple[int, int]]

    @property
    def ranges(self) -> list[tuple[int, int]]:
        return merge(self.first + self.later)

    def pieces(self, archive_size: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The first ranges and the later ones cut into pieces, each fetched by a request of its own, of PIECE_BYTES
        at most: the first ranges in pieces that keep every connection busy, the later ones in pieces that begin at
        FIRST_PIECE_BYTES and double."""
        piece_bytes = scaled(PIECE_BYTES, archive_size)
        share = -(-sum(end - start for start, end in self.first) // CONNECTIONS // BLOCK) * BLOCK
        first_piece = scaled(FIRST_PIECE_BYTES, archive_size)
        return (cut(self.first, itertools.repeat(max(BLOCK, min(piece_bytes, share)))),
                cut(self.later, (min(piece_bytes, first_piece << doubling) for doubling in itertools.count())))

    def as_json(self) -> dict:
        return {"first": self.first, "later": self.later}


@dataclasses.dataclass(frozen=True)
class Member:
    """A member of the archive whose header was read: where its headers begin, where its data lies, what it is."""

    offset: int
    data_offset: int
    size: int
    name: str
    kind: str  # the Selection's kind, or "folder"
    group: str | None

    @property
    def end(self) -> int:
        return self.data_offset + -(-self.size // BLOCK) * BLOCK


def fetch_ranges(ranges_dir: Path, reader: RangeReader, selection: Selection, force: bool = False) -> None:
    """Fetch into `ranges_dir` the byte ranges that hold the selected members, as far as the archive's layout shows
    them. Pieces fetched before, of the same upload, are kept (with `force`, all are fetched anew), and so is the
    plan of an earlier run, which a run cut off while fetching takes up without probing again. Raises Unproven
    where the layout does not show them in few ranges."""
    ranges = FetchedRanges(ranges_dir)
    ranges.fetch(reader, planned(ranges, reader, selection, force).ranges)


def planned(ranges: FetchedRanges, reader: RangeReader, selection: Selection, force: bool = False) -> Plan:
    """The plan of the ranges that hold the selected members: an earlier run's, kept in `ranges` with the pieces it
    fetched of the same upload (none with `force`), else the probes' (going on from what those of a run cut off
    found), kept there at once."""
    ranges.prepare({"sha256": reader.announced.etag, "size": reader.size}, force)
    plan = ranges.plan()
    if plan is None:
        layout = ArchiveLayout(reader, selection, ranges.read_json(PROBED_NAME))
        try:
            plan = layout.ranges_to_fetch()
        except BaseException:  # a Ctrl-C or a lost connection while probing: the next run goes on from what was found
            ranges.keep_json(PROBED_NAME, layout.found())
            raise
        ranges.keep_json(PLAN_NAME, plan.as_json())
        (ranges.folder / PROBED_NAME).unlink(missing_ok=True)
    return plan


def in_pieces(ranges: list[tuple[int, int]], archive_size: int) -> list[tuple[int, int]]:
    """The ranges cut into pieces of PIECE_BYTES at most, each fetched by a request of its own."""
    return cut(ranges, itertools.repeat(scaled(PIECE_BYTES, archive_size)))


def cut(ranges: list[tuple[int, int]], sizes: Iterator[int]) -> list[tuple[int, int]]:
    """The ranges cut into pieces of the `sizes` in turn."""
    pieces = []
    for start, end in ranges:
        while start < end:
            pieces.append((start, min(end, start + next(sizes))))
            start = pieces[-1][1]
    return pieces


def checked_member_name(member: tarfile.TarInfo, archive_name: str) -> str:
    """The member's name without a leading `./`; links, special files and paths leaving the archive are refused."""
    name = member.name[2:] if member.name.startswith("./") else member.name
    if member.issym() or member.islnk():
        problem = "is a link"
    elif not (member.isfile() or member.isdir()):
        problem = "is not a regular file"
    elif name.startswith("/") or ".." in name.split("/"):
        problem = "has a path outside the archive"
    else:
        return name
    raise ArchiveError(f"{archive_name}: member {member.name} {problem}; refusing the archive, download it again")


def checked_files(archive_file: BinaryIO, archive_name: str, what: str,
                  wanted: Callable[[str], bool] = lambda name: False) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    """The files of a tar stream read from its start (`what` it is, for the error), in order, with their names
    checked as a full read checks them, and the data of those `wanted(name)` (None for the others); Unproven where
    the bytes do not read as whole members."""
    try:
        archive = tarfile.open(fileobj=archive_file, mode="r:")
        # Iterated, not walked by next(): a stream that begins with the end-of-archive blocks has no first member,
        # after which Python 3.10's next() seeks back to its start.
        for member in archive:
            archive.members.clear()
            member.name = checked_member_name(member, archive_name)
            if not member.isdir():
                yield member, archive.extractfile(member).read() if wanted(member.name) else None
    except tarfile.TarError as error:  # bytes that do not begin at a header; a member the builder refuses is refused here too
        raise Unproven(f"{what} do not read as whole members ({error})") from None


class RangeReader:
    """Byte ranges of a file by HTTP, through huggingface_hub's `http_get` (with its retries and errors) from
    several threads at once.

    The ranges are read where the file's URL sends them (`announced.location`): for a file in the Hub's LFS or Xet
    storage, a URL on the storage's host, signed for about an hour, which takes no `Authorization` header. So one
    request of the URL, which the Hub counts against its rate limit, serves every range, instead of one each; once
    the signature expires (403 from the storage), `resolve()` asks for the URL's answer again. `fail(error)` raises
    the caller's error for whatever else goes wrong."""

    def __init__(self, url: str, announced: huggingface_hub.HfFileMetadata, token: str | None,
                 resolve: Callable[[], huggingface_hub.HfFileMetadata], fail: Callable[[Exception], NoReturn]):
        self.url, self.announced, self.token, self.resolve, self.fail = url, announced, token, resolve, fail
        self.size = announced.size
        self.name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
        self.pool = concurrent.futures.ThreadPoolExecutor(CONNECTIONS, thread_name_prefix="range")
        self.resolving = threading.Lock()
        self.source = self.source_of(announced)

    def source_of(self, announced: huggingface_hub.HfFileMetadata) -> tuple[str, dict]:
        """Where to read the bytes, and with which headers: the token goes to the URL's own host only."""
        headers = huggingface_hub.utils.build_hf_headers(token=self.token)
        location = announced.location or self.url
        if urllib.parse.urlsplit(location).netloc != urllib.parse.urlsplit(self.url).netloc:
            headers.pop("authorization", None)
        return location, headers

    def resolve_again(self, expired: str) -> None:
        """A fresh signed URL, unless another thread got one since `expired` failed."""
        with self.resolving:
            if self.source[0] == expired:
                self.source = self.source_of(self.resolve())

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def map(self, function: Callable, items: list) -> list:
        """`function` applied to each item on the pool's connections, results in order. The first error (or a
        Ctrl-C) is raised as soon as it comes, and the items still queued are cancelled, not fetched first."""
        stopped = threading.Event()  # set by the thread that failed, before it can take another item

        def unless_stopped(item):
            if stopped.is_set():
                return None
            try:
                return function(item)
            except BaseException:
                stopped.set()
                raise

        futures = [self.pool.submit(unless_stopped, item) for item in items]
        try:
            for future in concurrent.futures.as_completed(futures):
                future.result()
        except BaseException:
            stopped.set()
            for future in futures:
                future.cancel()
            raise
        return [future.result() for future in futures]

    def in_order(self, function: Callable, items: list) -> Iterator:
        """`function` applied to each item on the pool's connections, the results in order as the caller takes them,
        AHEAD items at most begun beyond the one it waits for. Closed (or failing), it cancels those not begun."""
        items = iter(items)
        begun = collections.deque(self.pool.submit(function, item) for item in itertools.islice(items, AHEAD))
        try:
            while begun:
                result = begun.popleft().result()
                begun.extend(self.pool.submit(function, item) for item in itertools.islice(items, 1))
                yield result
        finally:
            for future in begun:
                future.cancel()

    def read(self, start: int, end: int, into: BinaryIO | None = None, progress: tqdm | None = None) -> bytes | None:
        """Bytes [start, end) of the file; into `into` if given (a file), else returned."""
        target = into or io.BytesIO()
        for attempt in range(2):
            location, headers = self.source
            try:
                # A 429 (from a mirror that serves the bytes itself, without a redirect) comes before any byte.
                waiting_out_rate_limits(lambda: huggingface_hub.file_download.http_get(
                    location,
                    BoundedWriter(target, end - start),
                    headers={**headers, "Range": f"bytes={start}-{end - 1}"},
                    expected_size=end - start,
                    displayed_filename=self.name,
                    # One bar for all the ranges (a private parameter of http_get, in 0.36 and 2.x alike); none for probes.
                    _tqdm_bar=progress or tqdm(disable=True),
                ))
                break
            except RangeNotHonoured as error:
                raise Unproven(str(error)) from None
            except Exception as error:  # noqa: BLE001 - huggingface_hub's and the HTTP client's errors, said by the caller
                status = getattr(getattr(error, "response", None), "status_code", None)
                if attempt == 0 and status == 403 and location != self.url:
                    self.resolve_again(location)
                    continue
                self.fail(error)
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
            raise RangeNotHonoured(f"the server answered a request for {self.limit} bytes with more; it may ignore byte ranges")
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self.file.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        return self.file.truncate(size)


class ArchiveLayout:
    """What probes show of the archive's members, and the byte ranges that hold the test split's."""

    def __init__(self, reader: RangeReader, selection: Selection, found: dict | None = None):
        """`found`: what the probes of an earlier run found (`found()`), to go on from."""
        self.reader, self.selection, self.size = reader, selection, reader.size
        found = found or {}
        # By offset; folders are left out (they hold nothing).
        self.known = {member[0]: Member(*member) for member in found.get("known", [])}
        # The folders' entries seen: where each begins and ends.
        self.folders = {int(offset): end for offset, end in found.get("folders", {}).items()}
        # By group: where members of two kinds adjoin.
        self.interleaving = {group: set(offsets) for group, offsets in found.get("interleaving", {}).items()}
        self.members_end = found.get("members_end", self.size)  # until the end-of-archive blocks are found
        self.probes = found.get("probes", 0)

    def found(self) -> dict:
        """What the probes found so far, for a later run to go on from (in JSON's terms)."""
        return {"known": [dataclasses.astuple(member) for member in self.known.values()], "folders": self.folders,
                "interleaving": {group: sorted(offsets) for group, offsets in self.interleaving.items()},
                "members_end": self.members_end, "probes": self.probes}

    def ranges_to_fetch(self) -> Plan:
        """Probe until every gap between known members is settled; the ranges to fetch, merged and sorted, and
        which of them are runs of the Selection's `later` kinds."""
        if not self.known:  # nothing found by an earlier run to go on from
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
        later = intersect(merged, self.later_runs())
        return Plan(first=subtract(merged, later), later=later)

    def later_runs(self) -> list[tuple[int, int]]:
        """Where members of the Selection's `later` kinds lie in runs of their own: such members, and the gaps between
        two of one run. In an interleaving group, none: its members are read with the rest."""
        def later(member: Member) -> bool:
            return member.kind in self.selection.later and not self.interleaved(member.group)

        runs = [(member.offset, member.end) for member in self.known.values() if later(member)]
        runs += [(before.end, after.offset) for before, after in self.gaps()
                 if later(before) and later(after) and self.same_run(before, after)]
        return merge(runs, self.past_folders)

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
        """Members of two kinds of the group were seen next to each other twice: the archive interleaves them."""
        return len(self.interleaving.get(group, ())) >= 2

    def relevant(self, member: Member) -> bool:
        """A member of the wanted groups, or of a kind wanted everywhere, in a run of that kind."""
        return member.group in self.selection.groups or (member.kind in self.selection.everywhere and not self.interleaved(member.group))

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
                if member.group is not None and member.group == next_member.group and member.kind != next_member.kind:
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
        members = members_in(data[header:], offset + header, self.selection, self.reader.name)
        last = members[-1] if members else None
        if last is not None and last.kind not in ("other", "folder") and last.group is None and last.data_offset + last.size > offset + len(data):
            # Its data, which tells its group, runs past what was read: it is read in full.
            data = self.reader.read(last.data_offset, last.data_offset + last.size)
            members[-1] = dataclasses.replace(last, group=self.selection.classify(last.name, data)[1])
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


def members_in(data: bytes, start: int, selection: Selection, archive_name: str) -> list[Member]:
    """The members whose headers lie wholly in `data`, which begins with a header at archive offset `start`."""
    members = []
    with contextlib.suppress(tarfile.TarError):  # at the end of `data`, a header cut short
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        while (info := archive.next()) is not None:
            archive.members.clear()
            members.append(member_of(info, start, data, selection, archive_name))
    return members


def member_of(info: tarfile.TarInfo, start: int, data: bytes, selection: Selection, archive_name: str) -> Member:
    """The member a probe read, its name checked as a full read checks it: an archive that would be refused is
    refused as soon as a probe sees why."""
    name = checked_member_name(info, archive_name)
    if info.isdir():
        kind, group = "folder", None
    else:
        member_data = data[info.offset_data : info.offset_data + info.size]
        kind, group = selection.classify(name, member_data if len(member_data) == info.size else None)
    return Member(start + info.offset, start + info.offset_data, info.size, name, kind, group)


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

    def prepare(self, announced: dict, force: bool) -> None:
        """Keep the pieces of this upload (none with `force`), and no half-written one."""
        if force or self.read_json(ANNOUNCED_NAME) != announced:
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        for temporary in self.folder.glob(".*.tmp"):
            temporary.unlink()
        self.keep_json(ANNOUNCED_NAME, announced)

    def plan(self) -> Plan | None:
        """The ranges an earlier run settled for this upload, if it got that far."""
        plan = self.read_json(PLAN_NAME)
        if not isinstance(plan, dict):  # none, or written by an earlier version, which the probes replace
            return None
        return Plan(*([(start, end) for start, end in plan[part]] for part in ("first", "later")))

    def read_json(self, name: str):
        try:
            return json.loads((self.folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def keep_json(self, name: str, value) -> None:
        """`value` as the JSON of a file of the folder, written whole."""
        temporary = self.folder / f".{name}.tmp"
        temporary.write_text(json.dumps(value), encoding="utf-8")
        os.replace(temporary, self.folder / name)

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
        pieces = in_pieces(subtract(ranges, [(start, end) for start, end, _ in self.pieces()]), reader.size)
        total = sum(end - start for start, end in pieces)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"Fetching parts of {reader.name}", leave=False) as progress:
            reader.map(lambda piece: self.fetch_piece(reader, *piece, progress), pieces)
            progress.leave = True

    def fetch_piece(self, reader: RangeReader, start: int, end: int, progress: tqdm) -> None:
        self.keep_piece(start, end, lambda piece: reader.read(start, end, into=piece, progress=progress))

    def keep_piece(self, start: int, end: int, write: Callable[[BinaryIO], object]) -> None:
        """The piece of bytes [start, end), as `write` writes it into a file, kept under its name once whole."""
        path = self.folder / f"{start:013d}-{end:013d}"
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            with open(temporary, "wb") as piece:
                write(piece)
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def intersect(ranges: list[tuple[int, int]], others: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of `ranges` that `others` cover (both sorted and disjoint)."""
    return [(max(start, other_start), min(end, other_end)) for start, end in ranges for other_start, other_end in others
            if max(start, other_start) < min(end, other_end)]


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
    """Pieces of the archive, (start, end, file), as one sparse view of it: bytes at archive offsets, from whichever
    pieces hold them, and the members that begin each region the pieces cover. `where` names them."""

    def __init__(self, pieces: list[tuple[int, int, Path]], where: str):
        self.pieces, self.where = sorted(pieces, key=lambda piece: piece[:2]), where
        self.starts = [start for start, _, _ in self.pieces]
        self.files: dict[Path, BinaryIO] = {}

    def __enter__(self) -> "RangeFiles":
        return self

    def __exit__(self, *exc_info) -> None:
        for file in self.files.values():
            file.close()

    def regions(self) -> list[tuple[int, int]]:
        """The contiguous ranges the pieces cover: each begins with a member's header and ends with a member."""
        return merge([(start, end) for start, end, _ in self.pieces])

    def members(self) -> Iterator[tuple[str, tuple[int, int]]]:
        """The files in the pieces, with their checked names and their data's location (offset, size)."""
        for start, end in self.regions():
            if not self.read(start, BLOCK).strip(b"\0"):
                continue  # the end-of-archive blocks, fetched with the last gap: no member
            # Buffered: tarfile reads each header by itself, and the annotations lie in thousands of small members.
            region = io.BufferedReader(RegionFile(self, start, end), 1 << 20)
            for member, _ in checked_files(region, self.where, f"bytes {start}-{end} of the fetched ranges"):
                yield member.name, (start + member.offset_data, member.size)

    def read(self, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of the archive; ArchiveError if a piece lacks some."""
        chunks, position, end = [], offset, offset + size
        for start, stop, piece in self.pieces[max(0, bisect.bisect_right(self.starts, offset) - 1):]:
            if stop <= position:
                continue
            if start > position or position >= end:
                break
            file = self.files.get(piece) or self.files.setdefault(piece, open(piece, "rb"))
            file.seek(position - start)
            chunks.append(file.read(min(stop, end) - position))
            position = min(stop, end)
        if position < end:
            raise ArchiveError(f"bytes {position}-{end} of the archive are not in {self.where}")
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


class ArrivingMembers:
    """The members of a plan's ranges, read in archive order while their pieces arrive, AHEAD pieces at most fetched
    beyond the one being read: into memory, for a stream, which writes nothing; or, with `kept` (a build), read from
    the pieces that folder holds, and fetched into it where it lacks them, so that a run cut off fetches only the
    rest. Without a reader (the Hub out of reach), the folder must hold them all. Each piece is read once."""

    def __init__(self, reader: RangeReader | None, plan: Plan, where: str, kept: FetchedRanges | None = None):
        self.reader, self.kept, self.where = reader, kept, where
        self.first, self.later = plan.pieces(reader.size if reader else kept.read_json(ANNOUNCED_NAME)["size"])
        planned_pieces = set(self.first + self.later)
        self.in_folder = {}
        for start, end, path in kept.pieces() if kept else []:
            if (start, end) in planned_pieces:
                self.in_folder[start, end] = path
            else:  # of an earlier plan: the folder keeps the plan's pieces alone
                path.unlink()
        self.progress = tqdm(total=sum(end - start for start, end in planned_pieces), unit="B", unit_scale=True,
                             desc=f"Fetching parts of {reader.name if reader else where}", leave=False)

    def __enter__(self) -> "ArrivingMembers":
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.progress.leave = exc_type is None  # a failure says its one line with no bar above it
        self.progress.close()

    def members(self, pieces: list[tuple[int, int]], wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes | None]]:
        """The files in `pieces` (`first` or `later`, in order), with their checked names, and the data of those
        `wanted(name)` (None for the others), each as soon as its bytes are there. Unproven where the pieces do not
        read as whole members, or (without a reader) the folder lacks one."""
        # Adjoining pieces make one run, read as one stream of tar members; each piece's run, numbered:
        runs = itertools.accumulate(start != previous_end for (start, _), (_, previous_end) in zip(pieces, [(0, None), *pieces]))
        fetching = self.reader.in_order(self.piece, pieces) if self.reader else (self.piece(span) for span in pieces)
        with contextlib.closing(fetching) as arriving:
            for _, run in itertools.groupby(zip(runs, arriving), key=lambda item: item[0]):
                for member, data in checked_files(ChunksFile(data for _, data in run), self.where, f"the fetched ranges ({self.where})", wanted):
                    yield member.name, data

    def piece(self, span: tuple[int, int]) -> bytes:
        """The bytes of a planned piece: the folder's, or fetched (and kept, for a build)."""
        start, end = span
        if span in self.in_folder:
            self.progress.update(end - start)
            return self.in_folder[span].read_bytes()
        if self.reader is None:
            raise Unproven(f"bytes {start}-{end} of the archive are not in {self.where}")
        data = self.reader.read(start, end, progress=self.progress)
        if self.kept:
            self.kept.keep_piece(start, end, lambda piece: piece.write(data))
        return data


class ChunksFile:
    """Chunks of bytes, taken from an iterator as they are read, as a file that tarfile reads from start to end: it
    seeks forward only, past bytes it drops (tarfile's own stream mode copies its buffer on every header read)."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks, self.chunk, self.position = chunks, memoryview(b""), 0

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        skip = offset - self.position if whence == os.SEEK_SET else offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or skip < 0:
            raise io.UnsupportedOperation("a stream of chunks seeks forward only")
        while skip and self.next_chunk():
            skipped = min(skip, len(self.chunk))
            self.chunk, self.position, skip = self.chunk[skipped:], self.position + skipped, skip - skipped
        return self.position

    def read(self, size: int = -1) -> bytes:
        parts = []
        while size and self.next_chunk():
            part = self.chunk if size < 0 else self.chunk[:size]
            parts.append(part)
            self.chunk, self.position = self.chunk[len(part):], self.position + len(part)
            size -= len(part) if size > 0 else 0
        return b"".join(parts)

    def next_chunk(self) -> bool:
        """Whether there is a chunk to read from, taking the next where the last is read whole."""
        while not self.chunk:
            chunk = next(self.chunks, None)
            if chunk is None:
                return False
            self.chunk = memoryview(chunk)
        return True
