"""Audio.tar from the Hub into the export's raw/ folder: Xet first, HTTP ranges to resume, one pass over the bytes.

The exporter's own download, kept out of the loading script, which `load_dataset` copies into its cache and which
needs only `hf_hub_download` (hub_archive.download_archive). Here:

- An archive already in the Hugging Face cache (from an earlier `load_dataset`) becomes a hard link, or a copy
  where a link cannot be made, after its check.
- When the Hub announces Xet for the file and `hf_xet` is installed (and `HF_HUB_DISABLE_XET` is not set),
  huggingface_hub's `xet_get` downloads it over parallel connections. `hf_xet` checks no hash of what it receives,
  so a thread hashes the file as it is written, and the archive takes its final name only once the hash matches,
  after the export has read it.
- Otherwise, or when a Xet download fails or was cut short, huggingface_hub's `http_get` appends the rest to
  `raw/.Audio.tar.incomplete` by HTTP range, hashing the bytes as they arrive: a download resumes where the
  last one stopped, across runs. (An interrupted Xet download would start over: `hf_xet` keeps no chunks.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, Iterator

import huggingface_hub
import huggingface_hub.file_download
from datasets.utils import tqdm

from . import hub_archive
from .hub_archive import ARCHIVE_NAME, REPO_ID, SHA256_HEX

PARTIAL_NAME = f".{ARCHIVE_NAME}.incomplete"  # inside raw/: a download under way, which the next run resumes
UNVERIFIED_DIR = ".unverified"  # inside raw/: a complete Xet download, read by the export while it is hashed
# Beside it, what the Hub announced for it, so that a run stopped before the check can be checked later, offline too.
ANNOUNCED_SUFFIX = ".announced.json"
BLOCK_BYTES = 1 << 24  # files are read, hashed and copied in blocks this large (hashlib releases the GIL on them)
RECEIVE_BYTES = 1 << 16  # a download writes what it receives in chunks this large: a cut loses less than one
LOCAL_COPY_HINT = f"pass --archive /path/to/{ARCHIVE_NAME}"


def fetch_archive(archive_path: str, revision: str = "main", token: str | None = None, force: bool = False,
                  recorded: tuple[int, str] | None = None) -> tuple[str | None, PendingCheck | None]:
    """Put Audio.tar at `archive_path`, checked against the size and sha256 that the Hub announces. Returns the
    sha256 it was checked against (None where nothing could check it: offline, with no record of it) and, after a
    Xet download, a PendingCheck of it, to be confirmed before the export is reported as done.

    A file found at `archive_path` is the user's (settle_found_archive): kept if it is the Hub's upload, else named
    and left as it is, unless `force`. Offline, or where the Hub does not answer, it is taken as it is, checked
    against `recorded` (the size and sha256 an earlier export recorded for it) if given. A copy in the Hugging Face
    cache is hashed and linked (proven_cached_archive), and never changed."""
    expected, unreached = hub_archive.hub_answer(revision, token, LOCAL_COPY_HINT)
    raw_dir = os.path.dirname(archive_path)
    partial_path = os.path.join(raw_dir, PARTIAL_NAME)
    unverified_path = os.path.join(raw_dir, UNVERIFIED_DIR, ARCHIVE_NAME)
    if os.path.isfile(unverified_path):
        settled = settle_unverified(unverified_path, archive_path, partial_path, expected)
        if settled is not None:
            return settled, None
    resumed_from_found = False
    if os.path.isfile(archive_path):
        if expected is None:
            return checked_offline(archive_path, recorded, unreached), None
        resumed_from_found = settle_found_archive(archive_path, partial_path, expected, force)
        if os.path.isfile(archive_path) and not resumed_from_found:
            return expected.etag, None
    cached_path = None if resumed_from_found else proven_cached_archive(revision, expected)
    if cached_path is not None:
        if unreached is not None:
            tqdm.write(hub_archive.unreached_line(f"exporting the Hugging Face cache's copy of {ARCHIVE_NAME}, "
                                                  f"checked against the sha256 it was filed under"), file=sys.stderr)
        link_or_copy(cached_path, archive_path)
        return expected.etag if expected is not None else filed_etag(cached_path), None
    if unreached is not None:
        raise unreached
    if expected is None:
        raise hub_archive.ArchiveError(hub_archive.offline_message(LOCAL_COPY_HINT))
    os.makedirs(raw_dir, exist_ok=True)
    if xet_usable(expected, partial_path):
        archive_check = PendingCheck(partial_path, archive_path, expected.size, expected.etag)
        try:
            failure = xet_download(partial_path, expected, revision, token)
        except BaseException:  # a Ctrl-C, or the Hub's refusal: what hf_xet wrote in order is kept for the next run
            keep_prefix(partial_path, archive_check.abandon())
            raise
        if failure is None:
            archive_check.download_finished(unverified_path)
            return expected.etag, archive_check
        kept = keep_prefix(partial_path, archive_check.abandon())
        tqdm.write(f"The Xet download of {ARCHIVE_NAME} failed ({failure}); continuing over HTTP ranges from byte {kept}",
                   file=sys.stderr)
    sha256 = resume_download(partial_path, revision, token, expected.size)
    try:
        check_or_remove(partial_path, expected.size, expected.etag, sha256=sha256)
    except hub_archive.ArchiveError:
        if resumed_from_found:  # the download is gone; what was found is as it was, and named as it is
            raise hub_archive.ArchiveError(found_archive_message(archive_path, expected, "is not the start of it either")) from None
        raise
    os.replace(partial_path, archive_path)
    return expected.etag, None


def settle_found_archive(archive_path: str, partial_path: str, expected: huggingface_hub.HfFileMetadata, force: bool) -> bool:
    """An archive found in raw/ that the export does not vouch for (put there by hand, say) is the user's. It stays
    if it is the upload the Hub announces (False). Shorter than that, it may be a download cut short: it is copied
    to the partial download, to resume from and be checked whole; True, and it stays as it is meanwhile. Otherwise
    it is named and left as it is, unless `force`: then its name in raw/ goes (never what a link there points to)."""
    size = os.path.getsize(archive_path)
    sha256 = hub_archive.file_sha256(archive_path).hexdigest() if size == expected.size else None
    if sha256 == expected.etag:
        return False
    if force:
        os.remove(archive_path)
        return False
    if size >= expected.size:
        raise hub_archive.ArchiveError(found_archive_message(archive_path, expected, "is not the Hub's", sha256))
    if not os.path.isfile(partial_path) or os.path.getsize(partial_path) < size:
        copy_with_progress(archive_path, partial_path, f"Copying {ARCHIVE_NAME} to resume from it")
    tqdm.write(f"{archive_path} is shorter than the Hub's {ARCHIVE_NAME}: downloading the rest beside it, to check "
               f"whether it is the start of it", file=sys.stderr)
    return True


def found_archive_message(archive_path: str, expected: huggingface_hub.HfFileMetadata, verdict: str,
                          sha256: str | None = None) -> str:
    """The line that names an archive found in raw/ that is not the Hub's; `sha256` is its own, if hashed already."""
    sha256 = sha256 or hub_archive.file_sha256(archive_path).hexdigest()
    return (f"{archive_path} has {os.path.getsize(archive_path)} bytes and sha256 {sha256}; the Hub announces {expected.size} bytes and sha256 "
            f"{expected.etag}, so this copy {verdict}. It was left as it is: move it away to download the Hub's, "
            f"export from it with --archive {archive_path}, or replace it with --force")


def checked_offline(archive_path: str, recorded: tuple[int, str] | None, unreached: hub_archive.HubUnreachable | None) -> str | None:
    """The sha256 of the archive in raw/, taken as it is offline (or with the Hub out of reach): the one an earlier
    export recorded for it, once the file proves to have it; None without a record."""
    if recorded is not None:
        size, sha256 = recorded
        problem = hub_archive.archive_problem(archive_path, size, sha256, record="the export recorded")
        if problem:
            raise hub_archive.ArchiveError(
                f"{archive_path} {problem}; it was left as it is: with the Hub within reach (HF_HUB_OFFLINE unset), "
                f"--force downloads a good copy, or {LOCAL_COPY_HINT}")
    if unreached is not None:
        tqdm.write(hub_archive.unreached_line(f"exporting {archive_path} as it is"), file=sys.stderr)
    return None if recorded is None else recorded[1]


def proven_cached_archive(revision: str, expected: huggingface_hub.HfFileMetadata | None) -> str | None:
    """The file that holds the Hugging Face cache's copy of Audio.tar at `revision` (an earlier load_dataset's),
    once hashed and found to be the upload the Hub announces, or, offline, the one the cache filed it as; else None.

    The cache is the user's: nothing in it is changed or deleted. It files a download under the ETag the Hub
    announced for it, `blobs/<etag>`, which for Audio.tar is its sha256; huggingface_hub 2.x links that name on to a
    store shared across repositories, named by the Xet hash, so the file's own name says nothing of its sha256. A
    copy filed under another upload's ETag is passed over unread; one whose bytes do not hash to its ETag is named in
    one line and left where it is."""
    cached_path = huggingface_hub.try_to_load_from_cache(REPO_ID, ARCHIVE_NAME, revision=revision, repo_type="dataset")
    if not isinstance(cached_path, str):
        return None
    filed_as = filed_etag(cached_path)
    if expected is not None and (filed_as not in (None, expected.etag) or os.path.getsize(cached_path) != expected.size):
        return None  # another upload of Audio.tar
    if expected is None and filed_as is None:
        raise hub_archive.ArchiveError(
            f"{cached_path} in the Hugging Face cache cannot be checked offline (the cache keeps no record of its "
            f"sha256 without symlinks); unset HF_HUB_OFFLINE to check it against the Hub, or {LOCAL_COPY_HINT}")
    record = "the Hub announces" if expected is not None else "the Hugging Face cache filed it as"
    problem = hub_archive.archive_problem(cached_path, None, filed_as or expected.etag, record)
    if problem is None:
        return os.path.realpath(cached_path)
    message = f"{cached_path} in the Hugging Face cache {problem}; it was left as it is"
    if expected is None:
        raise hub_archive.ArchiveError(f"{message}: unset HF_HUB_OFFLINE to download a good copy into raw/, or {LOCAL_COPY_HINT}")
    tqdm.write(f"{message}; downloading {ARCHIVE_NAME} anew into raw/", file=sys.stderr)
    return None


def filed_etag(cached_path: str) -> str | None:
    """The ETag the Hugging Face cache filed a file under: the name of the blob its snapshot entry links to, if it
    is a link (the cache copies instead where symlinks are off)."""
    if not os.path.islink(cached_path):
        return None
    etag = os.path.basename(os.readlink(cached_path))
    return etag if SHA256_HEX.fullmatch(etag) else None


def check_or_remove(path: str, expected_size: int | None, expected_sha256: str, record: str = "the Hub announces",
                    sha256: str | None = None) -> None:
    """The check of a download in raw/: one that fails is removed (its name in raw/, never what a link there may
    point to), and the sha256 line raised; `sha256` is the file's when it was hashed already."""
    problem = hub_archive.archive_problem(path, expected_size, expected_sha256, record, sha256)
    if problem:
        os.remove(path)
        raise hub_archive.ArchiveError(f"downloaded {ARCHIVE_NAME} {problem}; it was deleted, run again to download it anew")


def settle_unverified(unverified_path: str, archive_path: str, partial_path: str,
                      expected: huggingface_hub.HfFileMetadata | None) -> str | None:
    """A Xet download that a stopped run left unchecked: checked against what the Hub announced for it (recorded
    beside it) and given the archive's name, or deleted with the sha256 line; its sha256 once it is the archive.
    Without a record (or of another upload than the Hub now announces) it goes on as a partial download: None."""
    announced = read_announced(unverified_path)
    try:
        if announced is not None and (expected is None or expected.etag == announced["sha256"]):
            check_or_remove(unverified_path, announced["size"], announced["sha256"], record="the Hub announced")
            os.replace(unverified_path, archive_path)
            return announced["sha256"]
        os.replace(unverified_path, partial_path)
        return None
    finally:
        remove_unverified_folder(unverified_path)


def read_announced(unverified_path: str) -> dict | None:
    try:
        with open(unverified_path + ANNOUNCED_SUFFIX, encoding="utf-8") as record:
            return json.load(record)
    except (OSError, ValueError):
        return None


def remove_unverified_folder(unverified_path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(unverified_path + ANNOUNCED_SUFFIX)
    with contextlib.suppress(OSError):
        os.rmdir(os.path.dirname(unverified_path))


def xet_usable(expected: huggingface_hub.HfFileMetadata, partial_path: str) -> bool:
    """The Hub announces Xet, hf_xet is there and allowed, and nothing is kept from an earlier download (which
    Xet would throw away: it keeps no chunks)."""
    return (expected.xet_file_data is not None and huggingface_hub.file_download.is_xet_available()
            and not (os.path.exists(partial_path) and os.path.getsize(partial_path) > 0))


def xet_download(partial_path: str, expected: huggingface_hub.HfFileMetadata, revision: str, token: str | None) -> str | None:
    """Download into `partial_path` over Xet; None once done, else why it failed, for the ranged download to take
    over. A refusal of the Hub's token route (gated, 401, 403) is raised as the Hub's."""
    try:
        huggingface_hub.file_download.xet_get(
            incomplete_path=Path(partial_path),
            xet_file_data=expected.xet_file_data,
            headers=huggingface_hub.utils.build_hf_headers(token=token),
            expected_size=expected.size,
            displayed_filename=ARCHIVE_NAME,
        )
    except huggingface_hub.errors.HfHubHTTPError as error:
        hub_archive.raise_hub_error(error, revision, token, LOCAL_COPY_HINT)
    except Exception as error:  # noqa: BLE001 - hf_xet raises RuntimeError or OSError for whatever went wrong in it
        return hub_archive.in_one_line(error, 160)
    return None


def keep_prefix(partial_path: str, length: int) -> int:
    """Keep the first `length` bytes of a failed Xet download at `partial_path`, for the ranged download to go on
    from. hf_xet writes each byte once, in order, so they are final; but its writer may still append after
    `xet_get` has failed, so they go on in a file of their own, and the one hf_xet may still hold is let go.
    With nothing to keep, no file is left."""
    xet_path = f"{partial_path}.xet"
    os.replace(partial_path, xet_path)
    copied = 0
    try:
        with open(xet_path, "rb") as source, open(partial_path, "wb") as kept:
            while copied < length and (block := source.read(min(BLOCK_BYTES, length - copied))):
                copied += kept.write(block)
    finally:
        os.remove(xet_path)
        if copied == 0:
            Path(partial_path).unlink(missing_ok=True)
    return copied


def resume_download(partial_path: str, revision: str, token: str | None, expected_size: int | None) -> str:
    """Append the rest of Audio.tar to `partial_path` by HTTP range (huggingface_hub's `http_get`, which shows
    progress); the sha256 of the whole file, from the bytes as they were written."""
    url = hub_archive.archive_url(revision)
    if expected_size is not None and os.path.exists(partial_path) and os.path.getsize(partial_path) > expected_size:
        os.remove(partial_path)  # longer than the file: left from another upload of it
    with open(partial_path, "ab") as partial_file, small_chunks_and_quiet_retries():
        hashing_file = HashingFile(partial_file)
        try:
            huggingface_hub.file_download.http_get(
                url,
                hashing_file,
                resume_size=hashing_file.tell(),
                headers=huggingface_hub.utils.build_hf_headers(token=token),
                expected_size=expected_size,
                displayed_filename=ARCHIVE_NAME,
            )
        except Exception as error:
            hub_archive.raise_hub_error(error, revision, token, LOCAL_COPY_HINT, resumable=hashing_file.tell() > 0)
    return hashing_file.sha256.hexdigest()


@contextlib.contextmanager
def small_chunks_and_quiet_retries() -> Iterator[None]:
    """huggingface_hub's `http_get` writes what it receives in chunks of its DOWNLOAD_CHUNK_SIZE (10 MiB), which it
    reads when called: on a link cut more often than that, no run would keep a byte, and a Ctrl-C loses what came
    since the last chunk. Chunks of RECEIVE_BYTES keep nearly all. It also warns of each retry in two lines, which
    the one line that a failure ends with says better; they are left out."""
    saved_chunk_bytes = huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE
    retry_logger = logging.getLogger(huggingface_hub.file_download.__name__)
    saved_level = retry_logger.level
    huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = RECEIVE_BYTES
    retry_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = saved_chunk_bytes
        retry_logger.setLevel(saved_level)


class HashingFile:
    """The partial download as `http_get` writes to it, hashed on the way: the part kept from earlier runs once,
    then every block as it is appended. `http_get` only appends, except that it goes back to byte 0 when a server
    answers a range request with the whole file; the hash then goes back with it."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.name = file.name
        self.sha256 = hub_archive.file_sha256(file.name, file.tell())

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self.file.write(data)

    def tell(self) -> int:
        return self.file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        position = self.file.seek(offset, whence)
        self.sha256 = hub_archive.file_sha256(self.name, position)
        return position

    def truncate(self, size: int | None = None) -> int:
        return self.file.truncate(size)


class PendingCheck:
    """The sha256 of a Xet download, computed by a thread that follows hf_xet as it writes the file (hf_xet 1.8
    writes it in order, each byte once), so that the check costs no pass of its own and overlaps the download.
    Once the download is finished, the file waits in raw/.unverified/ and the export reads it from there;
    `confirm` waits for the hash, then gives the archive its final name, or deletes it and raises the one-line
    error."""

    def __init__(self, partial_path: str, archive_path: str, expected_size: int | None, expected_sha256: str):
        self.path, self.archive_path = partial_path, archive_path
        self.expected_size, self.expected_sha256 = expected_size, expected_sha256
        self.sha256: str | None = None
        self.hashed = 0
        self.error: OSError | None = None
        self.failure: hub_archive.ArchiveError | None = None
        self.finished = threading.Event()
        self.abandoned = False
        open(partial_path, "wb").close()  # hf_xet writes into this very file: the thread's descriptor sees it all
        self.thread = threading.Thread(target=self.follow, name="hash Audio.tar", daemon=True)
        self.thread.start()

    def follow(self) -> None:
        digest = hashlib.sha256()
        try:
            with open(self.path, "rb") as file:
                while True:
                    # Read the flags before the read, which then sees every byte written before they were set.
                    finished, abandoned = self.finished.is_set(), self.abandoned
                    block = file.read(BLOCK_BYTES)
                    if block:
                        digest.update(block)
                        self.hashed += len(block)
                    elif abandoned:
                        return
                    elif finished:
                        self.sha256 = digest.hexdigest()
                        return
                    else:
                        time.sleep(0.02)
        except OSError as error:
            self.error = error

    def download_finished(self, unverified_path: str) -> None:
        """The whole file is written: it waits in raw/.unverified/, with what the Hub announced for it."""
        os.makedirs(os.path.dirname(unverified_path), exist_ok=True)
        record_path = unverified_path + ANNOUNCED_SUFFIX
        with open(f"{record_path}.tmp", "w", encoding="utf-8") as record:
            json.dump({"sha256": self.expected_sha256, "size": self.expected_size}, record)
        os.replace(f"{record_path}.tmp", record_path)
        os.replace(self.path, unverified_path)
        self.path = unverified_path
        self.finished.set()

    def abandon(self) -> int:
        """Stop hashing once what is written so far is hashed; how many bytes of the file's start are final: those
        hashed, or none when the file has holes (an hf_xet that writes out of order, whose bytes may not be)."""
        self.abandoned = True
        self.thread.join()
        status = os.stat(self.path)
        return self.hashed if status.st_blocks * 512 >= status.st_size else 0

    def confirm(self) -> str:
        """The archive's final path, once the hash matched; else the file is deleted and the sha256 line raised, as
        often as it is asked."""
        self.thread.join()
        if self.failure is not None:
            raise self.failure
        if self.path == self.archive_path:
            return self.archive_path
        try:
            if self.error is not None:
                raise self.error
            # Older hf_xet releases (1.1, say) write the file out of order, so the thread may have read holes that
            # were filled later: a hash that does not match is taken again from the file as it now is.
            sha256 = self.sha256 if self.sha256 == self.expected_sha256 else None
            try:
                check_or_remove(self.path, self.expected_size, self.expected_sha256, sha256=sha256)
            except hub_archive.ArchiveError as error:  # an hf_xet with a chunk cache (1.1) may serve it again
                self.failure = hub_archive.ArchiveError(
                    f"{error}; if it comes back damaged, set HF_HUB_DISABLE_XET=1 to download it over plain HTTP")
                raise self.failure from None
            os.replace(self.path, self.archive_path)
        finally:
            remove_unverified_folder(self.path)
        self.path = self.archive_path
        return self.archive_path


def link_or_copy(source_path: str, archive_path: str) -> None:
    """A hard link to `source_path`, or a copy with a progress bar across filesystems; renamed into place."""
    temporary = os.path.join(os.path.dirname(archive_path), f".{ARCHIVE_NAME}.link.tmp")
    os.makedirs(os.path.dirname(archive_path), exist_ok=True)
    if os.path.lexists(temporary):  # left by a run that was killed
        os.remove(temporary)
    try:
        try:
            os.link(source_path, temporary)
        except OSError:  # another filesystem, or one without hard links
            copy_with_progress(source_path, temporary)
        os.replace(temporary, archive_path)
    finally:
        if os.path.lexists(temporary):
            os.remove(temporary)


def copy_with_progress(source_path: str, destination_path: str, description: str = f"Copying {ARCHIVE_NAME} from the cache") -> None:
    with open(source_path, "rb") as source, open(destination_path, "wb") as copy, tqdm(
        total=os.path.getsize(source_path), unit="B", unit_scale=True, desc=description, leave=False
    ) as progress:
        while chunk := source.read(BLOCK_BYTES):
            copy.write(chunk)
            progress.update(len(chunk))
        progress.leave = True  # kept once complete; erased if the copy fails
