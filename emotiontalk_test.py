"""EmotionTalk test split: Mandarin dialogue speech with utterance-level emotion labels.

A Hugging Face `datasets` loading script (needs `datasets` 3.6; later releases do not run loading scripts).
It reads `Audio.tar` of the gated Hub dataset BAAI/Emotiontalk, or a local copy given as `data_dir` (the file, or
the folder that holds it), and yields the utterances of speaker groups G00003 and G00015, ordered by `sample_id`.

From the Hub it fetches only the byte ranges of the archive that hold the test split (ranged_tar.py finds them):
first the annotations, which must give H2T's published manifest (h2t_manifest.py) before the first row, then the
test WAVs, each row yielded as soon as its WAV is whole (`arriving_rows`). A build keeps the ranges in the
`datasets` download cache, where a build cut off finds them; a stream holds a few pieces in memory. Where the ranges
are not proven the whole split, one warning says why and the whole archive serves instead; where a test WAV turns
out to be missing from them, after rows were yielded, a build starts again from the whole archive with one warning,
and a stream fails with one line. Offline, or with the Hub out of reach, the ranges an earlier build of the
revision proved serve, else the whole archive in the Hugging Face cache. `test_members_only=False` downloads the
whole archive.
The modules beside it are imported relatively, so that `datasets` copies them into its module cache with it.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote

import datasets
import huggingface_hub
from datasets.utils import tqdm

from .h2t_manifest import H2T_MANIFEST_SHA256, manifest_line
from .hub_archive import ARCHIVE_NAME, HOMEPAGE, LOCAL_COPY_HINT, REPO_ID, SHA256_HEX, ArchiveError, HubUnreachable, archive_url, download_archive, hub_answer, hub_file_metadata, offline_message, raise_hub_error, unreached_line
from .ranged_tar import ArchiveLayout, ArrivingMembers, FetchedRanges, RangeFiles, RangeReader, Selection, Unproven, checked_member_name, fetch_ranges, planned

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

_LICENSE = "cc-by-nc-sa-4.0"

_AUDIO_PREFIX = "Audio/wav/"
_TEST_GROUPS = ("G00003", "G00015")
_EMOTIONS = ["angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised"]
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]+")
# In the datasets download cache: the test ranges of each upload of Audio.tar, in a folder named by its sha256, and
# in _REFS, a file per revision that names the upload its ranges were proven for, as the Hugging Face cache's refs do.
_RANGES_FOLDER = f"{REPO_ID.replace('/', '--')}--{ARCHIVE_NAME}.ranges"
_REFS = "refs"
logger = datasets.logging.get_logger(__name__)


@dataclasses.dataclass
class EmotionTalkConfig(datasets.BuilderConfig):
    """`archive_revision`: Hub revision of Audio.tar. `test_members_only`: from the Hub, fetch only the ranges of
    Audio.tar that hold the test split (False: download the whole archive). `expected_manifest_sha256`: the sha256
    of the manifest a full export of the archive gives, which proves those ranges whole (default: H2T's).
    `archive_fingerprint` is set by the builder from the local archive's size and modification time, so that a
    changed archive gets a fresh cache."""

    archive_revision: str = "main"
    test_members_only: bool = True
    expected_manifest_sha256: str = H2T_MANIFEST_SHA256
    archive_fingerprint: Optional[str] = None


@dataclasses.dataclass
class _HubArchive:
    """Audio.tar on the Hub, as a build or a stream reaches it: `announced`, what the Hub answered (None where it
    was offline, or out of reach: then `unreached` says why, as hub_answer gives it); for a build, `force` to fetch
    anew, and `ranges_dir`, where the test ranges are kept, in `ranges_root`."""

    revision: str
    token: Optional[str]
    announced: Optional[huggingface_hub.HfFileMetadata]
    unreached: Optional[HubUnreachable] = None
    force: bool = False
    ranges_root: Optional[Path] = None
    ranges_dir: Optional[Path] = None


class UnprovenLate(Unproven):
    """Found after rows were yielded: the fetched ranges are not the whole split after all."""


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
        expected_sha256 = kwargs.get("expected_manifest_sha256", H2T_MANIFEST_SHA256)
        if not SHA256_HEX.fullmatch(str(expected_sha256)):
            raise ValueError(f"expected_manifest_sha256={expected_sha256!r} is not a sha256 (64 hex digits, lower case): "
                             f"give the sha256sum of the manifest that a full export of the archive writes")
        if data_dir is not None:
            kwargs["archive_fingerprint"] = archive_fingerprint(local_archive_path(data_dir))
        super().__init__(*args, data_dir=data_dir, **kwargs)

    def _info(self) -> datasets.DatasetInfo:
        return dataset_info()

    def _split_generators(self, dl_manager):
        token = dl_manager.download_config.token
        revision = self.config.archive_revision
        if self.config.data_dir:
            source = {"archive_path": local_archive_path(self.config.data_dir)}
        elif dl_manager.is_streaming:
            if huggingface_hub.constants.HF_HUB_OFFLINE:
                raise ArchiveError(
                    f"streaming reads {REPO_ID}/{ARCHIVE_NAME} from the Hub, and HF_HUB_OFFLINE is set; load without "
                    f"streaming=True (which works offline once the archive is downloaded), or {LOCAL_COPY_HINT}"
                )
            announced = hub_file_metadata(revision, token)  # a Hub that refuses says so now, not at the first row
            source = {"hub": _HubArchive(revision, token, announced)} if self.config.test_members_only else {"archive_path": hub_path(revision)}
        else:
            source = self._downloaded(dl_manager, revision, token)
        return [datasets.SplitGenerator(name=datasets.Split.TEST, gen_kwargs=source)]

    def _downloaded(self, dl_manager, revision: str, token: Optional[str]) -> dict:
        """The test split's ranges of Audio.tar, to fetch into the download cache (or kept there by an earlier
        build) as the split is built; or, with `test_members_only=False`, the whole archive in the Hugging Face
        cache. Offline, or with the Hub out of reach, the ranges that an earlier build of `revision` proved, if
        there are any: else the whole archive, which download_archive says the Hub was not reached for."""
        force = dl_manager.download_config.force_download
        answer = hub_answer(revision, token)  # asked once: out of reach, each question costs the client's retries
        announced, unreached = answer
        if self.config.test_members_only:
            ranges_root = Path(dl_manager.download_config.cache_dir or datasets.config.DOWNLOADED_DATASETS_PATH) / _RANGES_FOLDER
            hub = _HubArchive(revision, token, announced, unreached, force, ranges_root)
            if announced is not None:
                return {"hub": dataclasses.replace(hub, ranges_dir=ranges_root / announced.etag)}
            ranges_dir = None if force else revision_ranges(ranges_root, revision)
            if ranges_dir is not None:
                if unreached:
                    logger.warning(unreached_line(f"building from the test ranges of {ARCHIVE_NAME} that an earlier build of "
                                                  f"revision {revision!r} fetched and proved"))
                return {"hub": dataclasses.replace(hub, ranges_dir=ranges_dir)}
        return {"archive_path": download_archive(revision, token, force, answer)}

    def _prepare_split(self, split_generator: datasets.SplitGenerator, **kwargs) -> None:
        """As datasets prepares it; where the test ranges turn out not to be the whole split, even after rows were
        written, again from the whole archive, with one warning. Its rows are the first attempt's and more, so it
        writes over each file of that attempt's."""
        hub = split_generator.gen_kwargs.get("hub")
        try:
            return super()._prepare_split(split_generator, **kwargs)
        except datasets.exceptions.DatasetGenerationError as error:
            reason = error.__cause__
            if not isinstance(reason, Unproven) or hub is None:
                raise
        warn_unproven(reason, "downloading")
        if hub.announced is not None:  # of no use: the whole archive replaces them (offline, they are left as they are)
            shutil.rmtree(hub.ranges_dir, ignore_errors=True)
        split_generator.gen_kwargs = {"archive_path": download_archive(hub.revision, hub.token, hub.force, (hub.announced, hub.unreached))}
        return super()._prepare_split(split_generator, **kwargs)

    def _generate_examples(self, archive_path: Optional[str] = None, hub: Optional[_HubArchive] = None):
        if hub is not None and hub.ranges_dir is not None:
            yield from built_rows(hub, self.config.expected_manifest_sha256)
            return
        if hub is not None:
            try:
                yield from streamed_rows(hub, self.config.expected_manifest_sha256)
                return
            except UnprovenLate as reason:
                raise ArchiveError(f"{REPO_ID}/{ARCHIVE_NAME}: {reason}, found after the rows before it were streamed; load "
                                   f"without streaming=True, which downloads the whole archive where the test members "
                                   f"alone are not the whole split") from None
            except Unproven as reason:  # before the first row
                warn_unproven(reason, "streaming")
            archive_path = hub_path(hub.revision)
        # In a streaming pass, `open` in this module is datasets' `xopen`, which reads an hf:// path by HTTP ranges.
        with open(archive_path, "rb") as archive_file:
            split = index_archive(archive_file, archive_path)
            yield from split.examples(lambda location: read_member(archive_file, location, archive_path))


def revision_ranges(ranges_root: Path, revision: str) -> Optional[Path]:
    """The folder of the ranges that a build fetched and proved for `revision`, as its record says, if it is there."""
    with contextlib.suppress(OSError):
        ranges_dir = ranges_root / (ranges_root / _REFS / quote(revision, safe="")).read_text(encoding="utf-8")
        return ranges_dir if ranges_dir.is_dir() else None
    return None


def keep_revision_ranges(ranges_root: Path, revision: str, sha256: str) -> None:
    """Record that `revision`'s ranges are those of upload `sha256`, and remove the folders of uploads that no
    revision's record names any longer (an earlier upload's)."""
    ref_path = ranges_root / _REFS / quote(revision, safe="")
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = ref_path.with_name(f".{ref_path.name}.{os.getpid()}.tmp")
    temporary.write_text(sha256, encoding="utf-8")
    os.replace(temporary, ref_path)
    named = {path.read_text(encoding="utf-8") for path in (ranges_root / _REFS).iterdir() if not path.name.startswith(".")}
    for folder in ranges_root.iterdir():
        if folder.is_dir() and folder.name != _REFS and folder.name not in named:
            shutil.rmtree(folder, ignore_errors=True)


def warn_unproven(reason: Unproven, instead: str) -> None:
    logger.warning(f"{REPO_ID}/{ARCHIVE_NAME}: the test members alone are not proven the whole split ({reason}); "
                   f"{instead} the whole archive instead")


def hub_path(revision: str) -> str:
    """Audio.tar on the Hub, as a path that a streaming pass opens (through HfFileSystem)."""
    return f"hf://datasets/{REPO_ID}@{revision}/{ARCHIVE_NAME}"


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
        homepage=HOMEPAGE,
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
        elif (file_path := test_audio_path(name)) is not None:
            self.audio_members[file_path] = location

    def check_not_empty(self) -> None:
        if not self.annotations:
            raise ArchiveError(
                f"{self.archive_name}: no annotation of the test groups {' or '.join(_TEST_GROUPS)}; "
                f"is this EmotionTalk's {ARCHIVE_NAME}?"
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
            yield sample_id, example(sample_id, annotation, read_audio(self.audio_members[annotation.file_path]))
        if missing:
            logger.warning(
                f"{self.archive_name}: {len(self.annotations) - len(missing)} test utterances built, "
                f"{len(missing)} left out for missing audio: {', '.join(missing)}"
            )


def example(sample_id: str, annotation: _Annotation, audio: bytes) -> dict:
    return {
        "sample_id": sample_id,
        "file_path": annotation.file_path,
        "audio": {"path": f"{sample_id}.wav", "bytes": audio},
        "raw_transcription": annotation.transcription,
        "emotion": annotation.emotion,
        "speaker_id": annotation.speaker_id,
        "annotation": annotation.record_json,
    }


def local_archive_path(data_dir: str) -> str:
    """`data_dir` itself when it is a file, else the `Audio.tar` inside it, which must exist."""
    path = os.path.abspath(os.path.expanduser(data_dir))
    archive_path = path if os.path.isfile(path) else os.path.join(path, ARCHIVE_NAME)
    if not os.path.isfile(archive_path):
        raise ArchiveError(f"{archive_path}: no such file; data_dir must be {ARCHIVE_NAME}, or the folder that holds it")
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
    with tqdm(total=archive_size, unit="B", unit_scale=True, desc=f"Indexing {ARCHIVE_NAME}", leave=False) as progress:
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


def test_audio_path(member_name: str) -> Optional[str]:
    """The `file_path` of a test WAV that the member is, if it is one."""
    file_path = member_name[len(_AUDIO_PREFIX):]
    return file_path if member_name.startswith(_AUDIO_PREFIX) and is_test_path(file_path) else None


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


def member_kind(name: str, data: Optional[bytes]) -> Tuple[str, Optional[str]]:
    """What a member of Audio.tar is, for ranged_tar's probes: "audio" of the group its path names, "annotation" of
    the group of the audio its `file_path` names (None until its data is read whole), or "other"."""
    if name.startswith(_AUDIO_PREFIX) and name.endswith(".wav"):
        return "audio", name[len(_AUDIO_PREFIX):].split("/", 1)[0]
    if not name.endswith(".json"):
        return "other", None
    with contextlib.suppress(ValueError, AttributeError):
        record = json.loads(data.decode("utf-8-sig"))
        file_path = record.get("file_path", record.get("file_name"))
        if isinstance(file_path, str):
            return "annotation", file_path.split("/", 1)[0]
    return "annotation", None


# The test groups' audio and annotations, and every run of annotations: an annotation's group is told by its data only.
_TEST_MEMBERS = Selection(member_kind, _TEST_GROUPS, ("annotation",), later=("audio",))


def fetch_test_members(
    ranges_dir: Path, revision: str, token: Optional[str] = None, force: bool = False, local_copy_hint: str = LOCAL_COPY_HINT,
) -> None:
    """Fetch into `ranges_dir` the byte ranges of Audio.tar on the Hub that hold the test split's members, as far as
    the archive's layout shows them (ranged_tar.fetch_ranges); Unproven where it does not show them in few ranges."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ArchiveError(offline_message(local_copy_hint))
    with hub_range_reader(revision, token, local_copy_hint) as reader:
        fetch_ranges(ranges_dir, reader, _TEST_MEMBERS, force)


def streamed_rows(hub: _HubArchive, expected_sha256: str) -> Iterator[Tuple[str, dict]]:
    """The test split's rows as its ranges of Audio.tar arrive in memory (arriving_rows), for a streaming pass."""
    with hub_range_reader(hub.revision, hub.token, kept=False, announced=hub.announced) as reader:
        plan = ArchiveLayout(reader, _TEST_MEMBERS).ranges_to_fetch()
        with ArrivingMembers(reader, plan, f"{REPO_ID}/{ARCHIVE_NAME} as streamed") as members:
            yield from arriving_rows(members, expected_sha256)


def built_rows(hub: _HubArchive, expected_sha256: str) -> Iterator[Tuple[str, dict]]:
    """The test split's rows as its ranges of Audio.tar arrive in `hub.ranges_dir` (arriving_rows), where those an
    earlier build fetched are read, not fetched again; once they prove the whole split, recorded as the revision's.
    With the Hub out of reach, the folder's pieces alone."""
    kept = FetchedRanges(hub.ranges_dir)
    with contextlib.ExitStack() as stack:
        if hub.announced is None:
            reader, plan = None, kept.plan()
            if plan is None:
                raise Unproven(f"{hub.ranges_dir} holds no plan of the ranges")
        else:
            reader = stack.enter_context(hub_range_reader(hub.revision, hub.token, announced=hub.announced))
            plan = planned(kept, reader, _TEST_MEMBERS, hub.force)
        members = stack.enter_context(ArrivingMembers(reader, plan, str(hub.ranges_dir), kept))
        yield from arriving_rows(members, expected_sha256)
    if reader is not None:
        keep_revision_ranges(hub.ranges_root, hub.revision, hub.announced.etag)


def arriving_rows(members: ArrivingMembers, expected_sha256: str) -> Iterator[Tuple[str, dict]]:
    """The test split's rows, ordered by `sample_id`, as the planned pieces arrive. Before the first row, the
    annotations (in the first ranges) are proven to give the expected manifest (prove_manifest). Then each row comes
    as soon as its WAV is whole; a WAV that comes before its turn is held until then: in an archive whose WAVs are
    in name order, none; in one whose WAVs are shuffled, as many as come before the next row's, at worst a whole
    group's. What shows the ranges not the whole split after all (a test WAV not in them, found at the end; a test
    annotation among the WAVs) raises UnprovenLate."""
    split, held = SplitIndex(members.where), {}

    def wanted(name: str) -> bool:
        return name.endswith(".json") or test_audio_path(name) is not None

    for name, data in members.members(members.first, wanted):
        if (file_path := test_audio_path(name)) is not None:
            held[file_path] = data
        else:
            split.add(name, None, lambda: data)
    split.check_not_empty()
    prove_manifest(split, expected_sha256)
    samples = sorted(split.annotations.items())
    file_paths = {annotation.file_path for _, annotation in samples}
    held = {file_path: data for file_path, data in held.items() if file_path in file_paths}
    turn = 0

    def due() -> Iterator[Tuple[str, dict]]:
        """The rows whose WAVs are held, from the one whose turn it is."""
        nonlocal turn
        while turn < len(samples) and samples[turn][1].file_path in held:
            sample_id, annotation = samples[turn]
            turn += 1
            yield sample_id, example(sample_id, annotation, held.pop(annotation.file_path))

    yield from due()
    try:
        for name, data in members.members(members.later, wanted):
            if (file_path := test_audio_path(name)) in file_paths:
                held[file_path] = data
                yield from due()
            elif name.endswith(".json") and parse_annotation(data, name, members.where) is not None:
                raise Unproven(f"test annotation {name} lies among the WAVs, apart from the others")
    except Unproven as reason:
        raise UnprovenLate(str(reason)) from None
    missing = [sample_id for sample_id, annotation in samples[turn:] if annotation.file_path not in held]
    if missing:
        raise UnprovenLate(audio_missing(missing))


def hub_range_reader(revision: str, token, local_copy_hint: str = LOCAL_COPY_HINT, kept: bool = True,
                     announced: Optional[huggingface_hub.HfFileMetadata] = None) -> RangeReader:
    """A RangeReader of Audio.tar on the Hub, which says what goes wrong in hub_archive's lines; `kept`: what it
    fetches is kept, and a run cut off resumes from it; `announced`: what the Hub announced, if asked already."""
    announced = announced or hub_file_metadata(revision, token, local_copy_hint)
    return RangeReader(
        archive_url(revision), announced, token,
        resolve=lambda: hub_file_metadata(revision, token, local_copy_hint),
        fail=lambda error: raise_hub_error(error, revision, token, local_copy_hint, resumable=kept),
    )


@contextlib.contextmanager
def ranges_split(ranges_dir: Path) -> Iterator[Tuple[SplitIndex, Callable[[Tuple[int, int]], bytes]]]:
    """The test split as the ranges fetched into `ranges_dir` give it, and how to read a member's data from them."""
    with RangeFiles(FetchedRanges(ranges_dir).pieces(), str(ranges_dir)) as files:
        yield split_of(files), lambda location: files.read(*location)


def split_of(files: RangeFiles) -> SplitIndex:
    split = SplitIndex(files.where)
    for name, location in files.members():
        split.add(name, location, lambda: files.read(*location))
    return split


def prove_whole(split: SplitIndex, expected_sha256: str) -> None:
    """A split read from part of the archive is the whole split when each of its annotations has its WAV in the
    fetched ranges and its manifest is the one a full export of the archive gives (prove_manifest)."""
    without_audio = split.samples_without_audio()
    if without_audio:
        raise Unproven(audio_missing(without_audio))
    prove_manifest(split, expected_sha256)


def audio_missing(sample_ids: List[str]) -> str:
    return f"the WAV of test sample {sample_ids[0]} is not in the fetched ranges ({len(sample_ids)} such samples)"


def prove_manifest(split: SplitIndex, expected_sha256: str) -> None:
    """Unproven unless the split's annotations give the manifest a full export of the archive gives (by sha256):
    then the ranges hold every test annotation, and each with the transcription and emotion of the whole split's."""
    manifest = "".join(manifest_line(sample_id, annotation.transcription, annotation.emotion)
                       for sample_id, annotation in sorted(split.annotations.items())).encode("utf-8")
    sha256 = hashlib.sha256(manifest).hexdigest()
    if sha256 != expected_sha256:
        raise Unproven(f"the {len(split.annotations)} annotations found in the fetched ranges give a manifest of sha256 "
                       f"{sha256[:12]}…, not the expected {expected_sha256[:12]}…")
