"""EmotionTalk test split: Mandarin dialogue speech with utterance-level emotion labels.

A Hugging Face `datasets` loading script (needs `datasets` 3.6; later releases do not run loading scripts).
It reads `Audio.tar` of the gated Hub dataset BAAI/Emotiontalk, or a local copy given as `data_dir` (the file, or
the folder that holds it), and yields the utterances of speaker groups G00003 and G00015, ordered by `sample_id`.
"""

import dataclasses
import hashlib
import json
import os
import re
import sys
import tarfile
import time
import traceback
from typing import BinaryIO, Callable, Dict, Iterator, List, NoReturn, Optional, Tuple

import datasets
import huggingface_hub
from datasets.utils import tqdm

_CITATION = """\
@article{sun2025emotiontalk,
  title   = {EmotionTalk: An Interactive Chinese Multimodal Emotion Dataset With Rich Annotations},
  author  = {Sun, Haoqin and Wang, Xuechen and Zhao, Jinghua and Zhao, Shiwan and Zhou, Jiaming and
             Wang, Hui and He, Jiabei and Kong, Aobo and Yang, Xi and Wang, Yequan and Lin, Yonghua and Qin, Yong},
  journal = {arXiv preprint arXiv:2505.23018},
  year    = {2025}
}
"""

_DESCRIPTION = """\
EmotionTalk is an interactive Chinese multimodal emotion dataset: 19 actors in dyadic conversations,
23.6 hours of speech in 19,250 utterances, each labelled with one of seven emotions.

This script defines its test split, the 1929 utterances of speaker groups G00003 and G00015, with the 44.1 kHz
audio, the Mandarin transcription, the emotion label, the speaker and the full original annotation record.
"""

_HOMEPAGE = "https://huggingface.co/datasets/BAAI/Emotiontalk"
_LICENSE = "cc-by-nc-sa-4.0"

_REPO_ID = "BAAI/Emotiontalk"
_ARCHIVE_NAME = "Audio.tar"
_AUDIO_PREFIX = "Audio/wav/"
_TEST_GROUPS = ("G00003", "G00015")
_EMOTIONS = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")  # what the Hub announces as the ETag of a file stored in LFS or Xet
_ACCESS_HINT = f"accept the conditions at {_HOMEPAGE}, then run `hf auth login` or set HF_TOKEN"
_LOCAL_COPY_HINT = f"pass a local copy as data_dir=/path/to/{_ARCHIVE_NAME}"
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


class ArchiveError(ValueError):
    """The archive, or the Hub that serves it, cannot give a correct test split; the message says what to do."""


@dataclasses.dataclass
class EmotionTalkConfig(datasets.BuilderConfig):
    """`archive_revision`: Hub revision of Audio.tar. `archive_fingerprint` is set by the builder from the
    local archive's size and modification time, so that a changed archive gets a fresh cache."""

    archive_revision: str = "main"
    archive_fingerprint: Optional[str] = None


@dataclasses.dataclass
class _Annotation:
    member: str
    file_path: str
    transcription: str
    emotion: str
    speaker_id: str
    record_json: str


class EmotionTalkTest(datasets.GeneratorBasedBuilder):
    """EmotionTalk test split (speaker groups G00003 and G00015)."""

    VERSION = datasets.Version("1.0.0")
    # Every example carries its whole WAV (390 kB on average), and datasets holds a batch of examples, and the
    # Arrow table made of them, before it writes them: 100 for audio by default. Measured at full size
    # (bench/README.md), peak heap of the build: 416 MB at 100, 222 MB at 25, 180 MB at 10, 166 MB at 5, 141 MB at 1;
    # build time alike from 100 down to 10, slower below (more batches, each with its overhead); a cached reload reads
    # the Arrow file as fast whatever the batch.
    DEFAULT_WRITER_BATCH_SIZE = 10
    BUILDER_CONFIG_CLASS = EmotionTalkConfig
    BUILDER_CONFIGS = [EmotionTalkConfig(name="default", version=VERSION, description="The test split.")]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, *args, data_dir: Optional[str] = None, **kwargs):
        if data_dir is not None:
            kwargs["archive_fingerprint"] = archive_fingerprint(local_archive_path(data_dir))
        super().__init__(*args, data_dir=data_dir, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return dataset_info()

    def _split_generators(self, dl_manager):
        token = dl_manager.download_config.token
        revision = self.config.archive_revision
        if self.config.data_dir:
            archive_path = local_archive_path(self.config.data_dir)
        elif dl_manager.is_streaming:
            if huggingface_hub.constants.HF_HUB_OFFLINE:
                raise ArchiveError(
                    f"streaming reads {_REPO_ID}/{_ARCHIVE_NAME} from the Hub, and HF_HUB_OFFLINE is set; load without "
                    f"streaming=True (which works offline once the archive is downloaded), or {_LOCAL_COPY_HINT}"
                )
            # Read over HTTP range requests; `open` in this module is datasets' remote-aware `xopen` here.
            hub_file_metadata(revision, token)
            archive_path = f"hf://datasets/{_REPO_ID}@{revision}/{_ARCHIVE_NAME}"
        else:
            archive_path = download_archive(revision, token, dl_manager.download_config.force_download)
        return [datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs={"archive_path": archive_path})]

    def _generate_examples(self, archive_path):
        with open(archive_path, "rb") as archive_file:
            split = index_archive(archive_file, archive_path)
            yield from split.examples(lambda location: read_member(archive_file, location, archive_path))


def dataset_info() -> datasets.DatasetInfo:
    """The split's features and description; a function of its own, so that the exporter needs no builder."""
    features = datasets.Features(
        {
            "sample_id": datasets.Value("string"),
            "file_path": datasets.Value("string"),
            "audio": datasets.Audio(),
            "raw_transcription": datasets.Value("string"),
            "emotion": datasets.ClassLabel(names=_EMOTIONS),
            "speaker_id": datasets.Value("string"),
            "annotation": datasets.Value("string"),
        }
    )
    return datasets.DatasetInfo(
        description=_DESCRIPTION,
        features=features,
        homepage=_HOMEPAGE,
        license=_LICENSE,
        citation=_CITATION,
    )


class SplitIndex:
    """The test split as an archive's members give it, added one by one in any order: the test annotations by
    `sample_id`, and where the bytes of each test WAV lie (offset, size). Other members are ignored."""

    def __init__(self, archive_name: str):
        self.archive_name = archive_name
        self.annotations: Dict[str, _Annotation] = {}
        self.audio_members: Dict[str, Tuple[int, int]] = {}

    def add(self, name: str, location: Tuple[int, int], read_data: Callable[[], bytes]) -> None:
        """A file member, its data's location, and how to read its data (called for annotations only)."""
        if name.endswith(".json"):
            annotation = parse_annotation(read_data(), name, self.archive_name)
            if annotation is None:
                return
            sample_id = sample_id_of(annotation, self.archive_name)
            if sample_id in self.annotations:
                raise ArchiveError(
                    f"{self.archive_name}: members {self.annotations[sample_id].member} and {name} both annotate "
                    f"sample {sample_id}; the archive is inconsistent, download it again"
                )
            self.annotations[sample_id] = annotation
        elif name.startswith(_AUDIO_PREFIX) and is_test_path(name[len(_AUDIO_PREFIX):]):
            self.audio_members[name[len(_AUDIO_PREFIX):]] = location

    def check_not_empty(self) -> None:
        if not self.annotations:
            raise ArchiveError(
                f"{self.archive_name}: no annotation of the test groups {' or '.join(_TEST_GROUPS)}; "
                f"is this EmotionTalk's {_ARCHIVE_NAME}?"
            )

    def samples_without_audio(self) -> List[str]:
        return [sample_id for sample_id in sorted(self.annotations) if self.annotations[sample_id].file_path not in self.audio_members]

    def __len__(self) -> int:
        """How many examples `examples` yields."""
        return len(self.annotations) - len(self.samples_without_audio())

    def examples(self, read_audio: Callable[[Tuple[int, int]], bytes]) -> Iterator[Tuple[str, dict]]:
        """(key, example) ordered by `sample_id`, the audio read by `read_audio(location)`; a test annotation whose
        audio the archive lacks is left out, with a warning that names it."""
        missing = self.samples_without_audio()
        for sample_id in sorted(self.annotations):
            annotation = self.annotations[sample_id]
            if sample_id in missing:
                logger.warning(
                    f"{self.archive_name}: test annotation {annotation.member} names audio "
                    f"{_AUDIO_PREFIX}{annotation.file_path}, which the archive lacks; {sample_id} is left out"
                )
                continue
            yield sample_id, {
                "sample_id": sample_id,
                "file_path": annotation.file_path,
                "audio": {"path": f"{sample_id}.wav", "bytes": read_audio(self.audio_members[annotation.file_path])},
                "raw_transcription": annotation.transcription,
                "emotion": annotation.emotion,
                "speaker_id": annotation.speaker_id,
                "annotation": annotation.record_json,
            }
        if missing:
            logger.warning(
                f"{self.archive_name}: {len(self.annotations) - len(missing)} test utterances built, "
                f"{len(missing)} left out for missing audio: {', '.join(missing)}"
            )


def local_archive_path(data_dir: str) -> str:
    """`data_dir` itself when it is a file, else the `Audio.tar` inside it, which must exist."""
    path = os.path.abspath(os.path.expanduser(data_dir))
    archive_path = path if os.path.isfile(path) else os.path.join(path, _ARCHIVE_NAME)
    if not os.path.isfile(archive_path):
        raise ArchiveError(f"{archive_path}: no such file; data_dir must be {_ARCHIVE_NAME}, or the folder that holds it")
    return archive_path


def archive_fingerprint(archive_path: str) -> str:
    """Path, size and modification time: cheap, and changes whenever the archive is replaced."""
    status = os.stat(archive_path)
    return f"{os.path.realpath(archive_path)}:{status.st_size}:{status.st_mtime_ns}"


def index_archive(archive_file: BinaryIO, archive_name: str) -> SplitIndex:
    """One pass over the tar headers. Member data that is not needed (every WAV) is skipped by seeking, never read."""
    split = SplitIndex(archive_name)
    for member, name in iter_members(archive_file, archive_name):
        location = (member.offset_data, member.size)
        split.add(name, location, lambda: read_member(archive_file, location, archive_name))
    split.check_not_empty()
    return split


def iter_members(archive_file: BinaryIO, archive_name: str) -> Iterator[Tuple[tarfile.TarInfo, str]]:
    """The archive's files with their checked names, folders left out; the whole archive must be there."""
    archive_size = archive_file.seek(0, os.SEEK_END)
    archive_file.seek(0)
    try:
        archive = tarfile.open(fileobj=archive_file, mode="r:")
    except tarfile.TarError as error:
        raise ArchiveError(f"{archive_name}: not a readable tar archive ({error}); download it again") from None
    # Every bar here is erased if what it follows fails, and kept once it is complete: a failure then says its one
    # line with no bar above it.
    with tqdm(total=archive_size, unit="B", unit_scale=True, desc=f"Indexing {_ARCHIVE_NAME}", leave=False) as progress:
        while True:
            try:
                member = archive.next()
            except tarfile.TarError as error:
                raise ArchiveError(f"{archive_name}: truncated or corrupt tar ({error}); download it again") from None
            if member is None:
                break
            # tarfile keeps every header it has seen; drop them so memory does not grow with the archive.
            archive.members.clear()
            progress.update(archive.offset - progress.n)
            name = checked_member_name(member, archive_name)
            if not member.isdir():
                yield member, name
        check_end_of_archive(archive_file, archive.offset, archive_name)
        progress.update(archive_size - progress.n)
        progress.leave = True


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


def check_end_of_archive(archive_file: BinaryIO, end_offset: int, archive_name: str) -> None:
    """tarfile stops quietly at a truncated header; a complete tar ends with two zero blocks."""
    archive_file.seek(end_offset)
    end_blocks = archive_file.read(2 * tarfile.BLOCKSIZE)
    if len(end_blocks) < 2 * tarfile.BLOCKSIZE or end_blocks.strip(b"\0"):
        raise ArchiveError(
            f"{archive_name}: truncated or corrupt tar (no end-of-archive marker at byte {end_offset}); download it again"
        )


def read_member(archive_file: BinaryIO, location: Tuple[int, int], archive_name: str) -> bytes:
    offset, size = location
    archive_file.seek(offset)
    data = archive_file.read(size)
    if len(data) != size:
        raise ArchiveError(f"{archive_name}: truncated tar (member at byte {offset} is cut short); download it again")
    return data


def is_test_path(file_path: str) -> bool:
    return file_path.split("/", 1)[0] in _TEST_GROUPS and "/" in file_path


def parse_annotation(raw_json: bytes, member_name: str, archive_name: str) -> Optional[_Annotation]:
    """The test annotation in a JSON member; None for JSON that is not an annotation or not of the test split."""
    try:
        record_json = raw_json.decode("utf-8-sig")
        record = json.loads(record_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArchiveError(f"{archive_name}: member {member_name} is not valid JSON ({error}); download it again") from None
    if not isinstance(record, dict):
        return None
    file_path = record.get("file_path", record.get("file_name"))
    if not isinstance(file_path, str) or not is_test_path(file_path):
        return None
    where = f"{archive_name}: test annotation {member_name} ({file_path})"
    transcription = record.get("content")
    if not isinstance(transcription, str) or not transcription:
        raise ArchiveError(f"{where} has no `content` transcription; the archive is damaged, download it again")
    emotion = record.get("emotion_result")
    if emotion not in _EMOTIONS:
        raise ArchiveError(f"{where} has emotion_result {emotion!r}, not one of {', '.join(_EMOTIONS)}")
    speaker_id = record.get("speaker_id")
    return _Annotation(
        member=member_name,
        file_path=file_path,
        transcription=transcription,
        emotion=emotion,
        speaker_id="" if speaker_id is None else str(speaker_id),
        record_json=record_json,
    )


def sample_id_of(annotation: _Annotation, archive_name: str) -> str:
    """The audio file name without `.wav`, which must be a plain name: it becomes a file name downstream."""
    file_name = annotation.file_path.rsplit("/", 1)[-1]
    sample_id = file_name[: -len(".wav")] if file_name.endswith(".wav") else ""
    if not _PLAIN_NAME.fullmatch(sample_id):
        raise ArchiveError(
            f"{archive_name}: test annotation {annotation.member} names audio {annotation.file_path!r}, whose sample_id "
            f"{sample_id!r} is not a plain name (letters, digits, _ and - before .wav)"
        )
    return sample_id


def hub_file_metadata(
    revision: str = "main", token: Optional[str] = None, local_copy_hint: str = _LOCAL_COPY_HINT
) -> huggingface_hub.HfFileMetadata:
    """What the Hub announces for Audio.tar (size, sha256 as ETag, and where its bytes are); fails with one clear
    line when it cannot. Past the Hub's rate limit, waits as long as it asks, up to _RATE_LIMIT_WAIT_SECONDS."""
    url = huggingface_hub.hf_hub_url(_REPO_ID, _ARCHIVE_NAME, repo_type="dataset", revision=revision)
    for attempt in range(_RATE_LIMIT_ATTEMPTS):
        try:
            return huggingface_hub.get_hf_file_metadata(url, token=token)
        except Exception as error:
            wait = rate_limit_wait(error)
            if wait is None or wait > _RATE_LIMIT_WAIT_SECONDS or attempt == _RATE_LIMIT_ATTEMPTS - 1:
                raise_hub_error(error, revision, token, local_copy_hint)
            logger.warning(f"the Hub's rate limit is reached; waiting {wait} s, as it asks, before asking again")
            time.sleep(wait)


def rate_limit_wait(error: Exception) -> Optional[int]:
    """For a 429 from the Hub, the seconds it asks to wait (`Retry-After`, or the `t` of its `RateLimit` header,
    10 without either); None for any other error."""
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None) != 429:
        return None
    headers = response.headers
    retry_after = headers.get("Retry-After", "")
    reset = re.search(r"(?:^|;)\s*t=(\d+)", headers.get("RateLimit", ""))
    return int(retry_after) if retry_after.isdigit() else int(reset.group(1)) if reset else 10


def download_archive(revision: str = "main", token: Optional[str] = None, force_download: bool = False) -> str:
    """Audio.tar in the Hugging Face cache, downloaded first if need be (anew with `force_download`), checked
    against the size and sha256 that the Hub announces. The cache is the user's: a copy that fails the check is
    named, never deleted."""
    expected = None if huggingface_hub.constants.HF_HUB_OFFLINE else hub_file_metadata(revision, token)
    try:
        archive_path = huggingface_hub.hf_hub_download(
            _REPO_ID, _ARCHIVE_NAME, repo_type="dataset", revision=revision, token=token, force_download=force_download
        )
    except Exception as error:
        raise_hub_error(error, revision, token)
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
    if _SHA256_HEX.fullmatch(expected_sha256 or ""):
        sha256 = sha256 or file_sha256(archive_path).hexdigest()
        if sha256 != expected_sha256:
            return f"has sha256 {sha256}, {record} {expected_sha256}"
    return None


def file_sha256(path: str, length: Optional[int] = None) -> "hashlib._Hash":
    """A sha256 object fed with the file's first `length` bytes (all of them by default), with a progress bar."""
    length = os.path.getsize(path) if length is None else length
    digest = hashlib.sha256()
    with open(path, "rb") as file, tqdm(
        total=length, unit="B", unit_scale=True, disable=length == 0, desc=f"Checking sha256 of {_ARCHIVE_NAME}", leave=False
    ) as progress:
        while progress.n < length and (chunk := file.read(min(1 << 22, length - progress.n))):
            digest.update(chunk)
            progress.update(len(chunk))
        progress.leave = True
    return digest


def raise_hub_error(
    error: Exception, revision: str, token: Optional[str], local_copy_hint: str = _LOCAL_COPY_HINT, resumable: bool = False
) -> NoReturn:
    """Turn a failure of huggingface_hub into one clear line; an unforeseen one keeps its cause for debugging.
    `local_copy_hint` says how the caller takes an archive already on disk; `resumable`, that the caller keeps what
    it downloaded, so that a lost connection is an interruption to resume."""
    message = hub_error_message(error, revision, token, local_copy_hint, resumable)
    if message is None:
        raise ArchiveError(f"the Hub failed to serve {_REPO_ID}/{_ARCHIVE_NAME}: {str(error).splitlines()[0]}") from error
    raise ArchiveError(message) from None


def hub_error_message(
    error: Exception,
    revision: str,
    token: Optional[str] = None,
    local_copy_hint: str = _LOCAL_COPY_HINT,
    resumable: bool = False,
) -> Optional[str]:
    """One line that says what went wrong with the Hub and what to do about it; None for a failure not foreseen."""
    errors = huggingface_hub.errors
    if isinstance(error, http_client_errors(_BODY_CUT_SHORT + (_NO_CONNECTION if resumable else ()))):
        return (
            f"the download of {_REPO_ID}/{_ARCHIVE_NAME} was interrupted ({str(error).splitlines()[0][:120]}); "
            f"run the same command again to resume where it stopped"
        )
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return offline_message(local_copy_hint)
    if isinstance(error, (errors.LocalEntryNotFoundError, *http_client_errors(_NO_CONNECTION))):
        return (
            f"cannot reach the Hub at {huggingface_hub.constants.ENDPOINT} for {_REPO_ID}/{_ARCHIVE_NAME} and it is not "
            f"downloaded yet; {local_copy_hint}, or set HF_HUB_OFFLINE=1 once the archive is downloaded"
        )
    # Only a revision the user gave can be wrong on their side; the default one missing is the Hub's (or a mirror's).
    check = (
        "check the revision you asked for" if revision != "main"
        else f"see {_HOMEPAGE}, and check HF_ENDPOINT if you set it (the Hub is {huggingface_hub.constants.ENDPOINT} now)"
    )
    if isinstance(error, errors.RevisionNotFoundError):
        return f"revision {revision!r} of {_REPO_ID} not found on the Hub; {check}"
    if isinstance(error, errors.EntryNotFoundError):
        return f"{_ARCHIVE_NAME} not found in {_REPO_ID} at revision {revision!r}; {check}"
    if raised_by_xet(error):
        return (
            f"the Xet download of {_REPO_ID}/{_ARCHIVE_NAME} failed ({str(error).splitlines()[0][:160]}); run the same "
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
            return f"{_REPO_ID} is gated and no Hub token was found: {_ACCESS_HINT}"
        return f"your Hub token has no access to the gated {_REPO_ID} (HTTP {status}): {_ACCESS_HINT}"
    return None


def raised_by_xet(error: Exception) -> bool:
    """An error of hf_xet's own, which it raises as RuntimeError (with huggingface_hub 1.x and later) or OSError
    (0.36) out of huggingface_hub's `xet_get`, the last Python frame before its code."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].name == "xet_get"


def offline_message(local_copy_hint: str = _LOCAL_COPY_HINT) -> str:
    return f"HF_HUB_OFFLINE is set and {_REPO_ID}/{_ARCHIVE_NAME} is not downloaded yet; unset it to download, or {local_copy_hint}"


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
