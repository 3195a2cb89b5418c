"""Audio.tar of the gated Hub dataset BAAI/Emotiontalk: where it is, what the Hub announces for it, its download
into the Hugging Face cache, and one clear line for whatever goes wrong on the way.

Below the loading script, the exporter and the range reader alike (the loading script imports it with a relative
import, so that `datasets` copies it beside the script into its module cache).
"""

import contextlib
import datetime
import email.utils
import hashlib
import math
import os
import re
import sys
import time
import traceback
from typing import Callable, NoReturn, Optional, Tuple, TypeVar

import datasets
import huggingface_hub
from datasets.utils import tqdm

REPO_ID = "BAAI/Emotiontalk"
ARCHIVE_NAME = "Audio.tar"
HOMEPAGE = "https://huggingface.co/datasets/BAAI/Emotiontalk"
SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # what the Hub announces as the ETag of a file stored in LFS or Xet

ACCESS_HINT = f"accept the conditions at {HOMEPAGE}, then run `hf auth login` or set HF_TOKEN"
LOCAL_COPY_HINT = f"pass a local copy as data_dir=/path/to/{ARCHIVE_NAME}"
# The Hub answers 429 past its rate limit of `resolve` requests (3,000 per 5 minutes anonymous, 5,000 with a free
# account) and says when to ask again: a wait up to this long is waited out, a longer one is said in one line.
_RATE_LIMIT_WAIT_SECONDS = 60
_RATE_LIMIT_ATTEMPTS = 3
# Transport errors of the HTTP clients huggingface_hub may use: requests (0.x), httpx (1.x), httpx2 (2.x).
_HTTPX_MODULES = ("httpx", "httpx2")
_BODY_CUT_SHORT = ("requests.exceptions.ChunkedEncodingError",) + tuple(
    f"{module}.{name}" for module in _HTTPX_MODULES for name in ("RemoteProtocolError", "ReadError")
)
_NO_CONNECTION = ("requests.exceptions.ConnectionError", "requests.exceptions.Timeout") + tuple(
    f"{module}.{name}" for module in _HTTPX_MODULES for name in ("ConnectError", "TimeoutException")
)


logger = datasets.logging.get_logger(__name__)
T = TypeVar("T")


class ArchiveError(ValueError):
    """The archive, or the Hub that serves it, cannot give a correct test split; the message says what to do."""


class HubUnreachable(ArchiveError):
    """The Hub did not answer at all (no network, or a wrong HF_ENDPOINT): a copy on disk may still serve."""


def hub_file_metadata(
    revision: str = "main", token: Optional[str] = None, local_copy_hint: str = LOCAL_COPY_HINT
) -> huggingface_hub.HfFileMetadata:
    """What the Hub announces for Audio.tar (size, sha256 as ETag, and where its bytes are); fails with one clear
    line when it cannot. Past the Hub's rate limit, waits as long as it asks, up to _RATE_LIMIT_WAIT_SECONDS."""
    try:
        return waiting_out_rate_limits(lambda: huggingface_hub.get_hf_file_metadata(archive_url(revision), token=token))
    except Exception as error:
        raise_hub_error(error, revision, token, local_copy_hint)


def waiting_out_rate_limits(request: Callable[[], T]) -> T:
    """`request()`, made again after a 429 once the wait the Hub asks for is over, if it is no longer than
    _RATE_LIMIT_WAIT_SECONDS, up to _RATE_LIMIT_ATTEMPTS times in all; what it raised last is raised."""
    attempt = 1
    while True:
        try:
            return request()
        except Exception as error:
            wait = rate_limit_wait(error)
            if wait is None or wait > _RATE_LIMIT_WAIT_SECONDS or attempt == _RATE_LIMIT_ATTEMPTS:
                raise
            logger.warning(f"the Hub's rate limit is reached; waiting {wait} s, as it asks, before asking again")
            time.sleep(wait)
            attempt += 1


def archive_url(revision: str) -> str:
    """The `resolve` URL of Audio.tar at `revision`, on the Hub that HF_ENDPOINT names."""
    return huggingface_hub.hf_hub_url(REPO_ID, ARCHIVE_NAME, repo_type="dataset", revision=revision)


def rate_limit_wait(error: Exception) -> Optional[int]:
    """For a 429 from the Hub, the seconds it asks to wait (`Retry-After`, in seconds or as an HTTP date, as a proxy
    may send it; else the `t` of its `RateLimit` header; 10 without either); None for any other error."""
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None) != 429:
        return None
    headers = response.headers
    retry_after = headers.get("Retry-After", "").strip()
    if retry_after.isdigit():
        return int(retry_after)
    with contextlib.suppress(TypeError, ValueError):
        until = email.utils.parsedate_to_datetime(retry_after)
        return max(0, math.ceil((until - datetime.datetime.now(datetime.timezone.utc)).total_seconds()))
    reset = re.search(r"(?:^|;)\s*t=(\d+)", headers.get("RateLimit", ""))
    return int(reset.group(1)) if reset else 10


def hub_answer(
    revision: str, token: Optional[str], local_copy_hint: str = LOCAL_COPY_HINT
) -> Tuple[Optional[huggingface_hub.HfFileMetadata], Optional[HubUnreachable]]:
    """What the Hub announces for Audio.tar, and None; or, where it does not answer, None and why; offline, neither.
    Asked once: where the Hub is out of reach, each question costs the HTTP client's retries (some 20 s with 0.36)."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return None, None
    try:
        return hub_file_metadata(revision, token, local_copy_hint), None
    except HubUnreachable as error:
        return None, error


def download_archive(
    revision: str = "main",
    token: Optional[str] = None,
    force_download: bool = False,
    answer: Optional[Tuple[Optional[huggingface_hub.HfFileMetadata], Optional[HubUnreachable]]] = None,
) -> str:
    """Audio.tar in the Hugging Face cache, downloaded first if need be (anew with `force_download`), checked
    against the size and sha256 that the Hub announces (`answer`: the hub_answer a caller had already). The cache is
    the user's: a copy that fails the check is named, never deleted. With the Hub out of reach, the cache's copy
    serves, and one line says so."""
    if huggingface_hub.constants.HF_HUB_OFFLINE and force_download:
        raise ArchiveError(f'HF_HUB_OFFLINE is set, and download_mode="force_redownload" asks to download {REPO_ID}/'
                           f"{ARCHIVE_NAME} anew; unset HF_HUB_OFFLINE, or load without force_redownload")
    expected, unreached = answer or hub_answer(revision, token)
    try:
        archive_path = huggingface_hub.hf_hub_download(
            REPO_ID, ARCHIVE_NAME, repo_type="dataset", revision=revision, token=token, force_download=force_download,
            local_files_only=unreached is not None,
        )
    except Exception as error:
        if unreached is not None:
            raise unreached from None
        raise_hub_error(error, revision, token)
    if unreached is not None:
        logger.warning(unreached_line(f"building from the Hugging Face cache's copy of {ARCHIVE_NAME}, {archive_path}"))
    problem = None if expected is None else archive_problem(archive_path, expected.size, expected.etag)
    if problem:
        raise ArchiveError(
            f"{archive_path} in the Hugging Face cache {problem}; it was left as it is: load again with "
            f'download_mode="force_redownload" to download it anew'
        )
    return archive_path


def archive_problem(
    archive_path: str,
    expected_size: Optional[int],
    expected_sha256: str,
    record: str = "the Hub announces",
    sha256: Optional[str] = None,
) -> Optional[str]:
    """How the file differs from the size and sha256 announced ("has ... bytes, the Hub announces ..."), or None
    when it does not; `sha256` is the file's when it was hashed already."""
    size = os.path.getsize(archive_path)
    if expected_size is not None and size != expected_size:
        return f"has {size} bytes, {record} {expected_size}"
    if SHA256_HEX.fullmatch(expected_sha256 or ""):
        sha256 = sha256 or file_sha256(archive_path).hexdigest()
        if sha256 != expected_sha256:
            return f"has sha256 {sha256}, {record} {expected_sha256}"
    return None


def file_sha256(path: str, length: Optional[int] = None) -> "hashlib._Hash":
    """A sha256 object fed with the file's first `length` bytes (all of them by default), with a progress bar."""
    length = os.path.getsize(path) if length is None else length
    digest = hashlib.sha256()
    with open(path, "rb") as file, tqdm(
        total=length, unit="B", unit_scale=True, disable=length == 0, desc=f"Checking sha256 of {ARCHIVE_NAME}", leave=False
    ) as progress:
        while progress.n < length and (chunk := file.read(min(1 << 22, length - progress.n))):
            digest.update(chunk)
            progress.update(len(chunk))
        progress.leave = True
    return digest


def raise_hub_error(
    error: Exception, revision: str, token: Optional[str], local_copy_hint: str = LOCAL_COPY_HINT, resumable: bool = False
) -> NoReturn:
    """Turn a failure of huggingface_hub into one clear line; an unforeseen one keeps its cause for debugging.
    `local_copy_hint` says how the caller takes an archive already on disk; `resumable`, that the caller keeps what
    it downloaded, so that a lost connection is an interruption to resume."""
    message = hub_error_message(error, revision, token, local_copy_hint, resumable)
    if message is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
        raise ArchiveError(f"the Hub failed to serve {REPO_ID}/{ARCHIVE_NAME}{f' (HTTP {status})' if status else ''}: "
                           f"{in_one_line(error, 300)}") from error
    raise (HubUnreachable if unreachable(error) and not resumable else ArchiveError)(message) from None


def in_one_line(error: BaseException, limit: int) -> str:
    """The error's message as one line of at most `limit` characters; huggingface_hub spreads some over several
    ("Bad request:", then what the server said, if it said anything), after a blank one."""
    words = " ".join(line.strip() for line in str(error).splitlines() if line.strip()).rstrip(":")
    return (words or type(error).__name__)[:limit]


def unreachable(error: Exception) -> bool:
    """No answer from the Hub: no connection, or huggingface_hub's word for it."""
    return not huggingface_hub.constants.HF_HUB_OFFLINE and isinstance(
        error, (huggingface_hub.errors.LocalEntryNotFoundError, *http_client_errors(_NO_CONNECTION)))


def unreached_line(what: str) -> str:
    """The line that says a copy on disk serves because the Hub did not answer."""
    return (f"the Hub at {huggingface_hub.constants.ENDPOINT} was not reached; {what}, so a newer upload of "
            f"{REPO_ID}/{ARCHIVE_NAME} could not be checked for")


def hub_error_message(
    error: Exception,
    revision: str,
    token: Optional[str] = None,
    local_copy_hint: str = LOCAL_COPY_HINT,
    resumable: bool = False,
) -> Optional[str]:
    """One line that says what went wrong with the Hub and what to do about it; None for a failure not foreseen."""
    errors = huggingface_hub.errors
    if isinstance(error, http_client_errors(_BODY_CUT_SHORT + (_NO_CONNECTION if resumable else ()))):
        return (
            f"the download of {REPO_ID}/{ARCHIVE_NAME} was interrupted ({in_one_line(error, 120)}); "
            f"run the same command again" + " to resume where it stopped" * resumable
        )
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return offline_message(local_copy_hint)
    if unreachable(error):
        return (
            f"cannot reach the Hub at {huggingface_hub.constants.ENDPOINT} for {REPO_ID}/{ARCHIVE_NAME} and it is not "
            f"downloaded yet; {local_copy_hint}, or set HF_HUB_OFFLINE=1 once the archive is downloaded"
        )
    # Only a revision the user gave can be wrong on their side; the default one missing is the Hub's (or a mirror's).
    check = (
        "check the revision you asked for" if revision != "main"
        else f"see {HOMEPAGE}, and check HF_ENDPOINT if you set it (the Hub is {huggingface_hub.constants.ENDPOINT} now)"
    )
    if isinstance(error, errors.RevisionNotFoundError):
        return f"revision {revision!r} of {REPO_ID} not found on the Hub; {check}"
    if isinstance(error, errors.EntryNotFoundError):
        return f"{ARCHIVE_NAME} not found in {REPO_ID} at revision {revision!r}; {check}"
    if raised_by_xet(error):
        return (
            f"the Xet download of {REPO_ID}/{ARCHIVE_NAME} failed ({in_one_line(error, 160)}); run the same "
            f"command again, or set HF_HUB_DISABLE_XET=1 to download over plain HTTP"
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 429:
        return (
            f"the Hub refuses more requests for now (its rate limit; it asks to wait {rate_limit_wait(error)} s): "
            f"run the same command again then"
        )
    if isinstance(error, errors.RepositoryNotFoundError) or status in (401, 403):
        if (token or huggingface_hub.get_token()) is None:
            return f"{REPO_ID} is gated and no Hub token was found: {ACCESS_HINT}"
        return f"your Hub token has no access to the gated {REPO_ID} (HTTP {status}): {ACCESS_HINT}"
    return None


def raised_by_xet(error: Exception) -> bool:
    """An error of hf_xet's own, which it raises as RuntimeError (with huggingface_hub 1.x and later) or OSError
    (0.36) out of huggingface_hub's `xet_get`, the last Python frame before its code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].name == "xet_get"


def offline_message(local_copy_hint: str = LOCAL_COPY_HINT) -> str:
    return f"HF_HUB_OFFLINE is set and {REPO_ID}/{ARCHIVE_NAME} is not downloaded yet; unset it to download, or {local_copy_hint}"


def http_client_errors(qualified_names: Tuple[str, ...]) -> Tuple[type, ...]:
    """The named exception classes of the HTTP clients already imported. An error raised by a client means that
    client was imported, so none has to be imported here: each environment has only the one its hub uses."""
    classes = []
    for qualified_name in qualified_names:
        module_name, _, class_name = qualified_name.rpartition(".")
        error_class = getattr(sys.modules.get(module_name), class_name, None)
        if error_class is not None:
            classes.append(error_class)
    return tuple(classes)
