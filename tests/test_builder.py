"""The loading script, run by the real `datasets` 3.6 on archives written with real WAVs."""

import io
import json
import tarfile

import datasets
import numpy as np
import pytest
import soundfile

import export_jsonl
import synthetic_archive
from conftest import BUILDER_SCRIPT
from synthetic_archive import EMOTIONS, Utterance, annotation, annotation_member, audio_member, write_archive

emotiontalk_test = export_jsonl.project_module("emotiontalk_test")


def load(data_dir, cache_dir, **kwargs):
    return datasets.load_dataset(
        BUILDER_SCRIPT, data_dir=str(data_dir), split="test", cache_dir=cache_dir, trust_remote_code=True, **kwargs
    )


def load_error(data_dir, cache_dir) -> str:
    """The message the user gets from the builder for a bad archive."""
    with pytest.raises(Exception) as raised:
        load(data_dir, cache_dir)
    error = raised.value
    while isinstance(error, datasets.exceptions.DatasetGenerationError):
        error = error.__cause__
    assert type(error).__name__ == "ArchiveError", repr(error)
    assert "\n" not in str(error)
    return str(error)


def test_split_holds_every_test_utterance_in_order(small_archive, test_utterances, datasets_cache):
    data_dir, _ = small_archive
    dataset = load(data_dir, datasets_cache)
    assert dataset.features["emotion"].names == list(EMOTIONS)
    assert dataset.column_names == [
        "sample_id", "file_path", "audio", "raw_transcription", "emotion", "speaker_id", "annotation",
    ]
    assert dataset["sample_id"] == [u.sample_id for u in test_utterances]
    assert dataset["raw_transcription"] == [u.content for u in test_utterances]
    assert dataset["speaker_id"] == [u.speaker_id for u in test_utterances]
    assert [EMOTIONS[label] for label in dataset["emotion"]] == [u.emotion for u in test_utterances]
    assert set(EMOTIONS) == {u.emotion for u in test_utterances}
    assert dataset["annotation"] == [annotation_member(u)[1].decode("utf-8") for u in test_utterances]
    assert [json.loads(text) for text in dataset["annotation"]] == [annotation(u) for u in test_utterances]
    raw_audio = dataset.cast_column("audio", datasets.Audio(decode=False))["audio"]
    assert [audio["bytes"] for audio in raw_audio] == [synthetic_archive.wav_bytes(u) for u in test_utterances]


def test_audio_decodes_at_native_rate_and_casts_to_16k(small_archive, test_utterances, datasets_cache):
    data_dir, _ = small_archive
    dataset = load(data_dir, datasets_cache)
    expected, rate = soundfile.read(io.BytesIO(synthetic_archive.wav_bytes(test_utterances[0])))
    audio = dataset[0]["audio"]
    assert audio["sampling_rate"] == rate == 44100
    np.testing.assert_allclose(audio["array"], expected, atol=1e-6)
    resampled = dataset.cast_column("audio", datasets.Audio(sampling_rate=16000))[0]["audio"]
    assert resampled["sampling_rate"] == 16000
    assert abs(len(resampled["array"]) - len(expected) * 16000 / 44100) <= 1


def test_a_build_holds_few_examples_at_once(medium_archive, datasets_cache, monkeypatch):
    """Each example carries its whole WAV, and datasets holds a batch of examples in memory before it writes them:
    the build's peak memory grows with the batch. The builder's batch holds at most 4 MB of the real archive's
    audio (390 kB a WAV on average), which kept the build under 200 MB at full size (bench/README.md)."""
    archive_path, utterances = medium_archive
    held = []
    write_examples_on_file = datasets.arrow_writer.ArrowWriter.write_examples_on_file

    def recording(writer):
        held.append(len(writer.current_examples))
        write_examples_on_file(writer)

    monkeypatch.setattr(datasets.arrow_writer.ArrowWriter, "write_examples_on_file", recording)
    assert len(load(archive_path.parent, datasets_cache)) == len(utterances)
    batch = emotiontalk_test.EmotionTalkTest.DEFAULT_WRITER_BATCH_SIZE
    assert max(held) <= batch and batch * 390_000 <= 4_000_000
    assert sum(held) == len(utterances)


def test_streaming_gives_the_same_rows(small_archive, datasets_cache):
    data_dir, _ = small_archive
    built = load(data_dir, datasets_cache).cast_column("audio", datasets.Audio(decode=False))
    streamed = load(data_dir, datasets_cache, streaming=True).cast_column("audio", datasets.Audio(decode=False))
    assert list(streamed) == list(built)


@pytest.mark.parametrize("arrangement", ["audio_first", "annotations_first", "annotations_last_reversed"])
def test_member_order_does_not_matter(tmp_path, small_archive, arrangement, datasets_cache):
    data_dir, utterances = small_archive
    standard = load(data_dir, datasets_cache)
    wavs = [audio_member(u) for u in utterances]
    jsons = [annotation_member(u) for u in utterances]
    members = {
        "audio_first": wavs + jsons,
        "annotations_first": jsons + wavs,
        "annotations_last_reversed": wavs[::-1] + jsons[::-1],
    }[arrangement]
    (tmp_path / arrangement).mkdir()
    write_archive(tmp_path / arrangement / "Audio.tar", members)
    assert load(tmp_path / arrangement, datasets_cache).to_list() == standard.to_list()


def test_replaced_archive_is_not_served_from_the_cache(tmp_path, datasets_cache):
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    first = synthetic_archive.write_small_archive(data_dir / "Audio.tar", seed=1)
    assert load(data_dir, datasets_cache)["sample_id"] == sorted(u.sample_id for u in first if u.is_test)
    second = synthetic_archive.small_corpus(seed=2)[:12]
    write_archive(data_dir / "Audio.tar", synthetic_archive.corpus_members(second, seed=2))
    reloaded = load(data_dir, datasets_cache)
    assert reloaded["raw_transcription"] == [u.content for u in sorted(second, key=lambda u: u.sample_id) if u.is_test]


def test_index_reads_only_headers_annotations_and_test_audio(small_archive, test_utterances):
    """Non-test WAV data is skipped by seeking, and no byte is read twice."""
    data_dir, utterances = small_archive
    archive_path = data_dir / "Audio.tar"
    reads = []

    class RecordingFile(io.FileIO):
        def readinto(self, buffer):
            start = self.tell()
            count = super().readinto(buffer)
            reads.append((start, start + count))
            return count

    with RecordingFile(archive_path) as raw:
        archive_file = io.BufferedReader(raw, buffer_size=512)
        split = emotiontalk_test.index_archive(archive_file, str(archive_path))
        examples = list(split.examples(lambda location: emotiontalk_test.read_member(archive_file, location, "Audio.tar")))
    with tarfile.open(archive_path) as archive:
        members = archive.getmembers()
    other_audio = [
        (m.offset_data + 512, m.offset_data + m.size - 512)
        for m in members
        if m.name.startswith("Audio/wav/") and m.isfile() and not m.name.startswith(("Audio/wav/G00003", "Audio/wav/G00015"))
    ]
    assert other_audio and all(end <= skip_start or start >= skip_end for start, end in reads for skip_start, skip_end in other_audio)
    total_read = sum(end - start for start, end in reads)
    needed = sum(m.size for m in members if m.name.endswith(".json")) + sum(len(synthetic_archive.wav_bytes(u)) for u in test_utterances)
    headers_and_end = 512 * (2 * len(members) + 2)
    assert needed < total_read <= needed + headers_and_end
    assert len(split) == len(examples) == len(test_utterances)


def test_missing_audio_is_left_out_with_a_warning(tmp_path, small_archive, test_utterances, caplog, datasets_cache):
    _, utterances = small_archive
    dropped = test_utterances[3]
    members = [m for m in synthetic_archive.corpus_members(utterances) if m[0] != audio_member(dropped)[0]]
    write_archive(tmp_path / "Audio.tar", members)
    dataset = load(tmp_path, datasets_cache)
    assert dataset["sample_id"] == [u.sample_id for u in test_utterances if u is not dropped]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(dropped.sample_id in w and dropped.file_path in w for w in warnings)
    assert any(f"{len(test_utterances) - 1} test utterances built, 1 left out" in w for w in warnings)


def _bad_archive(tmp_path, utterances, extra=(), replace=None):
    """The small corpus with `extra` members added and `replace` (member name -> bytes) swapped in."""
    members = [(name, (replace or {}).get(name, data)) for name, data in synthetic_archive.corpus_members(utterances)]
    write_archive(tmp_path / "Audio.tar", [*members, *extra])
    return tmp_path


def test_unparseable_json_is_named(tmp_path, small_archive, datasets_cache):
    utterances = small_archive[1]
    name = annotation_member(utterances[0])[0]
    message = load_error(_bad_archive(tmp_path, utterances, replace={name: b'{"file_path": "G0'}), datasets_cache)
    assert name in message and "not valid JSON" in message


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"emotion_result": "happiness"}, "emotion_result 'happiness', not one of angry, disgusted"),
        ({"content": None}, "has no `content` transcription"),
        ({"file_path": None, "file_name": "G00003/G00003_01/x y.wav"}, "'x y' is not a plain name"),
    ],
)
def test_bad_test_annotation_is_named(tmp_path, small_archive, test_utterances, change, expected, datasets_cache):
    utterance = test_utterances[0]
    record = {key: value for key, value in {**annotation(utterance), **change}.items() if value is not None}
    name, data = annotation_member(utterance, record)
    message = load_error(_bad_archive(tmp_path, small_archive[1], replace={name: data}), datasets_cache)
    assert name in message and expected in message


def test_non_test_annotation_is_not_validated(tmp_path, small_archive, test_utterances, datasets_cache):
    outsider = next(u for u in small_archive[1] if not u.is_test)
    name, data = annotation_member(outsider, {**annotation(outsider), "emotion_result": "bored", "content": None})
    dataset = load(_bad_archive(tmp_path, small_archive[1], replace={name: data}), datasets_cache)
    assert len(dataset) == len(test_utterances)


def test_two_annotations_for_one_sample_are_refused(tmp_path, small_archive, test_utterances, datasets_cache):
    twin = ("Audio/json/elsewhere/copy.json", annotation_member(test_utterances[2])[1])
    message = load_error(_bad_archive(tmp_path, small_archive[1], extra=[twin]), datasets_cache)
    assert "copy.json" in message and test_utterances[2].sample_id in message


@pytest.mark.parametrize(
    "kind, name, expected",
    [
        (tarfile.SYMTYPE, "Audio/wav/G00003/link.wav", "is a link"),
        (tarfile.LNKTYPE, "Audio/wav/G00003/hard.wav", "is a link"),
        (tarfile.FIFOTYPE, "Audio/wav/G00003/pipe.wav", "is not a regular file"),
        (tarfile.REGTYPE, "/etc/evil.json", "has a path outside the archive"),
        (tarfile.REGTYPE, "Audio/../../evil.json", "has a path outside the archive"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, small_archive, kind, name, expected, datasets_cache):
    _bad_archive(tmp_path, small_archive[1])
    with tarfile.open(tmp_path / "Audio.tar", "a") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
        archive.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    message = load_error(tmp_path, datasets_cache)
    assert name in message and expected in message


@pytest.mark.parametrize("cut", ["inside_member", "at_member_boundary", "inside_header"])
def test_truncated_archive_is_refused(tmp_path, small_archive, cut, datasets_cache):
    data_dir, _ = small_archive
    with tarfile.open(data_dir / "Audio.tar") as archive:
        last = archive.getmembers()[-1]
        size = {"inside_member": last.offset_data + 100, "at_member_boundary": last.offset, "inside_header": last.offset + 200}[cut]
    data = (data_dir / "Audio.tar").read_bytes()[:size]
    (tmp_path / "Audio.tar").write_bytes(data)
    assert "truncated" in load_error(tmp_path, datasets_cache)


def test_non_tar_file_is_refused(tmp_path, datasets_cache):
    (tmp_path / "Audio.tar").write_bytes(b"<html>Access denied</html>\n" * 100)
    assert "not a readable tar archive" in load_error(tmp_path, datasets_cache)


def test_archive_without_test_annotations_is_refused(tmp_path, datasets_cache):
    outsider = Utterance("G00007", 1, 1, 1, "嗯。", "sad", 0.1)
    write_archive(tmp_path / "Audio.tar", [annotation_member(outsider), audio_member(outsider)])
    assert "no annotation of the test groups G00003 or G00015" in load_error(tmp_path, datasets_cache)


def test_missing_archive_is_named(tmp_path, datasets_cache):
    message = load_error(tmp_path, datasets_cache)
    assert str(tmp_path / "Audio.tar") in message and "data_dir must be Audio.tar, or the folder that holds it" in message


def test_data_dir_may_be_the_archive_itself(tmp_path, small_archive, test_utterances, datasets_cache):
    data_dir, _ = small_archive
    renamed = tmp_path / "emotiontalk-audio.tar"
    (data_dir / "Audio.tar").rename(renamed)
    assert load(renamed, datasets_cache)["sample_id"] == [u.sample_id for u in test_utterances]


def test_file_name_is_accepted_for_file_path(tmp_path, datasets_cache):
    utterance = Utterance("G00015", 1, 2, 3, "你好，world!", "happy", 0.2)
    record = annotation(utterance)
    record["file_name"] = record.pop("file_path")
    write_archive(tmp_path / "Audio.tar", [annotation_member(utterance, record), audio_member(utterance)])
    assert load(tmp_path, datasets_cache)["sample_id"] == [utterance.sample_id]


def test_bom_and_dot_slash_member_names(tmp_path, datasets_cache):
    utterance = Utterance("G00003", 2, 1, 7, "嗯。", "sad", 0.2)
    name, data = annotation_member(utterance)
    wav_name, wav = audio_member(utterance)
    write_archive(tmp_path / "Audio.tar", [(f"./{name}", b"\xef\xbb\xbf" + data), (f"./{wav_name}", wav)])
    assert load(tmp_path, datasets_cache)["sample_id"] == [utterance.sample_id]


def test_a_damaged_header_mid_archive_is_refused(tmp_path, small_archive, datasets_cache):
    """tarfile ends quietly at a header whose checksum is wrong, unless it is the first: the builder must not."""
    data_dir, _ = small_archive
    with tarfile.open(data_dir / "Audio.tar") as archive:
        members = archive.getmembers()
    data = bytearray((data_dir / "Audio.tar").read_bytes())
    data[members[len(members) // 2].offset + 148] ^= 0x01  # a digit of the header's checksum field
    (tmp_path / "Audio.tar").write_bytes(bytes(data))
    assert "truncated or corrupt" in load_error(tmp_path, datasets_cache)


def test_an_archive_cut_inside_a_json_member_says_truncated(tmp_path, small_archive, datasets_cache):
    write_archive(tmp_path / "whole.tar", synthetic_archive.corpus_members(small_archive[1], audio_first_every=1))
    with tarfile.open(tmp_path / "whole.tar") as archive:
        last = archive.getmembers()[-1]
    assert last.name.endswith(".json")
    (tmp_path / "Audio.tar").write_bytes((tmp_path / "whole.tar").read_bytes()[: last.offset_data + 10])
    message = load_error(tmp_path, datasets_cache)
    assert "truncated" in message and "not valid JSON" not in message


def test_an_expected_manifest_sha256_that_is_no_sha256_is_refused_at_once(small_archive, datasets_cache):
    with pytest.raises(ValueError, match=r"expected_manifest_sha256='xyz' is not a sha256 \(64 hex digits"):
        load(small_archive[0], datasets_cache, expected_manifest_sha256="xyz")
