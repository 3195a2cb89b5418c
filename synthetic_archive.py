"""Synthetic EmotionTalk archives: real WAVs and annotations in the layout of the real `Audio.tar`.

One generator for the tests, the benchmark (`bench/make_archive.py`) and `export_jsonl.py --demo`.
Annotations sit under `Audio/json/`, audio under `Audio/wav/<file_path>`, both nested by speaker and
dialogue as in the real archive; everything is deterministic for a given seed. The real archive's member order is
not known, so the members can come in several orders (LAYOUTS).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import tarfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile

EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
TEST_GROUPS = ("G00003", "G00015")
SAMPLE_RATE = 44100

# Real test split of EmotionTalk: 793 + 1136 utterances with these labels.
REAL_TEST_COUNTS = {"G00003": 793, "G00015": 1136}
REAL_TEST_EMOTIONS = {
    "angry": 345, "disgusted": 137, "fearful": 89, "happy": 177, "neutral": 944, "sad": 94, "surprised": 143,
}
REAL_TOTAL_UTTERANCES = 19250
REAL_MEAN_SECONDS = 4.4

# Written for these fixtures, in the style of the real transcripts: Chinese and ASCII punctuation,
# Latin letters, the corpus's [over] overlap marks, spaces kept as they are.
PHRASES = (
    "你今天怎么来得这么早？",
    "OK，那我们就按照这个方案来办吧。",
    "哎呀，我的手机又找不到了！",
    "[over]等一下[/over]，你先听我说完。",
    "这个WiFi密码是多少啊?",
    "嗯， 好吧，我知道了。",
    "真的吗？你可别骗我啊！",
    "他怎么能这样对待你呢，太过分了。",
    "我们去吃KFC吧, 我请客!",
    "【over/】不是，我不是那个意思【/over】。",
    "唉，最近工作压力太大了……",
    "哇！这也太漂亮了吧！",
    "你把那个PPT发给我一下。",
    "别说了，我不想听。",
)


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance of the synthetic corpus: what its annotation says and how long its audio is."""

    group: str
    speaker: int
    dialogue: int
    index: int
    content: str
    emotion: str
    seconds: float

    @property
    def speaker_id(self) -> str:
        return f"{self.group}_{self.speaker:02d}"

    @property
    def sample_id(self) -> str:
        return f"{self.speaker_id}_{self.dialogue:02d}_{self.index:03d}"

    @property
    def file_path(self) -> str:
        return f"{self.group}/{self.speaker_id}/{self.speaker_id}_{self.dialogue:02d}/{self.sample_id}.wav"

    @property
    def is_test(self) -> bool:
        return self.group in TEST_GROUPS


def wav_bytes(utterance: Utterance, seed: int = 0) -> bytes:
    """A mono 16-bit WAV at 44.1 kHz: a tone plus noise, different for every utterance."""
    rng = np.random.default_rng([seed, utterance.speaker, utterance.dialogue, utterance.index, ord(utterance.group[-1])])
    frames = max(1, int(round(utterance.seconds * SAMPLE_RATE)))
    tone = np.sin(2 * np.pi * rng.uniform(100, 400) * np.arange(frames) / SAMPLE_RATE)
    signal = 0.3 * tone + 0.05 * rng.standard_normal(frames)
    buffer = io.BytesIO()
    soundfile.write(buffer, (signal * 32767).astype(np.int16), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def annotation(utterance: Utterance) -> dict:
    """The annotation record of an utterance, with the fields of the real corpus."""
    return {
        "file_path": utterance.file_path,
        "speaker_id": utterance.speaker_id,
        "content": utterance.content,
        "emotion_result": utterance.emotion,
        "data": [{"annotator": f"A{n}", "emotion": utterance.emotion} for n in range(1, 4)],
        "paragraphs": [{"start": 0.0, "end": round(utterance.seconds, 3), "text": utterance.content}],
        "sourceAttr": {"caption": f"一位说话人用{utterance.emotion}的语气说话。", "gender": "female"},
    }


def annotation_member(utterance: Utterance, record: dict | None = None) -> tuple[str, bytes]:
    record = annotation(utterance) if record is None else record
    name = f"Audio/json/{utterance.file_path[: -len('.wav')]}.json"
    return name, json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")


def audio_member(utterance: Utterance, seed: int = 0) -> tuple[str, bytes]:
    return f"Audio/wav/{utterance.file_path}", wav_bytes(utterance, seed)


def corpus_members(utterances: Iterable[Utterance], seed: int = 0, audio_first_every: int = 2) -> Iterator[tuple[str, bytes]]:
    """Members for the utterances, each annotation next to its audio; every `audio_first_every`-th WAV comes first."""
    for position, utterance in enumerate(utterances):
        pair = [annotation_member(utterance), audio_member(utterance, seed)]
        if audio_first_every and position % audio_first_every == 0:
            pair.reverse()
        yield from pair


# Orders of an archive's members: "paired", each annotation next to its audio, group after group; "tar_cf", as
# `tar cf` or Python's tarfile.add write a folder: Audio/json/ and Audio/wav/ each in one piece, every folder's
# subtree in one piece, siblings in the file system's order (shuffled here); "tar_sorted", the same with siblings in
# name order, as `tar --sort=name` writes them; "grouped", group after group in a shuffled order, each group's
# annotations next to its audio; "scattered", every member at a random place.
LAYOUTS = ("paired", "tar_cf", "tar_sorted", "grouped", "scattered")


def layout_members(utterances: list[Utterance], layout: str, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Members for the utterances in one of LAYOUTS; each WAV is made as it is yielded."""
    if layout == "paired":
        yield from corpus_members(utterances, seed)
        return
    rng = random.Random(seed)
    parts = [("annotation", utterance) for utterance in utterances] + [("audio", utterance) for utterance in utterances]
    if layout in ("tar_cf", "tar_sorted"):
        folders = {"annotation": "json", "audio": "wav"}
        paths = [([folders[kind], *utterance.file_path.split("/")], (kind, utterance)) for kind, utterance in parts]
        parts = _depth_first(paths, rng if layout == "tar_cf" else None)
    elif layout == "grouped":
        groups = sorted({utterance.group for utterance in utterances})
        rng.shuffle(groups)
        parts = [(kind, utterance) for group in groups for kind in ("annotation", "audio") for utterance in utterances if utterance.group == group]
    elif layout == "scattered":
        rng.shuffle(parts)
    else:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    for kind, utterance in parts:
        yield annotation_member(utterance) if kind == "annotation" else audio_member(utterance, seed)


def _depth_first(items: list[tuple[list[str], object]], rng: random.Random | None) -> list:
    """Items keyed by their path's parts, in the order a depth-first walk of their folders gives: each folder's
    subtree in one piece, siblings (files and folders alike) in a random order, or (without `rng`) by name."""
    files = [(path[0], item) for path, item in items if len(path) == 1]
    folders: dict[str, list] = {}
    for path, item in items:
        if len(path) > 1:
            folders.setdefault(path[0], []).append((path[1:], item))
    entries = [(name, None, item) for name, item in files] + [(folder, folder, None) for folder in folders]
    if rng:
        rng.shuffle(entries)
    else:
        entries.sort(key=lambda entry: entry[0])
    ordered = []
    for _, folder, item in entries:
        ordered += [item] if folder is None else _depth_first(folders[folder], rng)
    return ordered


def write_archive(path: str | os.PathLike, members: Iterable[tuple[str, bytes]]) -> Path:
    """Write `members` (name, bytes) as an uncompressed tar, adding the folders they sit in."""
    path = Path(path)
    folders_written = set()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members:
            parts = name.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                if folder not in folders_written:
                    folders_written.add(folder)
                    archive.addfile(_member_info(folder, tarfile.DIRTYPE, 0))
            archive.addfile(_member_info(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))
    return path


def _member_info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, 1_700_000_000
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def make_corpus(group_counts: dict[str, int], test_emotions: dict[str, int], mean_seconds: float, seed: int = 0) -> list[Utterance]:
    """Utterances for each group, test groups labelled with exactly `test_emotions` (scaled to fit)."""
    rng = random.Random(seed)
    test_total = sum(count for group, count in group_counts.items() if group in TEST_GROUPS)
    test_labels = _labels_for(test_emotions, test_total, rng)
    utterances = []
    for group, count in sorted(group_counts.items()):
        for position in range(count):
            speaker, dialogue, index = 1 + position // 400, 1 + (position // 20) % 20, 1 + position % 20
            emotion = test_labels.pop() if group in TEST_GROUPS else rng.choice(EMOTIONS)
            seconds = max(0.05, rng.gauss(mean_seconds, mean_seconds / 3))
            utterances.append(Utterance(group, speaker, dialogue, index, rng.choice(PHRASES), emotion, seconds))
    return utterances


def _labels_for(emotion_counts: dict[str, int], total: int, rng: random.Random) -> list[str]:
    """`total` labels in the proportions of `emotion_counts`, every label at least once when there is room."""
    wanted = sum(emotion_counts.values())
    labels = [emotion for emotion, count in emotion_counts.items() for _ in range(max(1, round(count * total / wanted)))]
    labels = (labels + [max(emotion_counts, key=emotion_counts.get)] * total)[:total]
    rng.shuffle(labels)
    return labels


def real_shape_corpus(scale: float = 1.0, duration_scale: float | None = None, seed: int = 0,
                      test_manifest: list[str] | None = None) -> list[Utterance]:
    """The shape of the real archive: groups G00001-G00019, real test counts and labels, about 19,250 utterances.
    With `test_manifest` (the lines of an H2T manifest of the test split), the test groups are its rows, so that
    the archive's test split gives that very manifest."""
    other_groups = [f"G{number:05d}" for number in range(1, 20) if f"G{number:05d}" not in TEST_GROUPS]
    others_each = (REAL_TOTAL_UTTERANCES - sum(REAL_TEST_COUNTS.values())) // len(other_groups)
    counts = {group: others_each for group in other_groups} | REAL_TEST_COUNTS
    counts = {group: max(1, round(count * scale)) for group, count in counts.items()}
    mean_seconds = REAL_MEAN_SECONDS * (scale if duration_scale is None else duration_scale)
    if test_manifest is None:
        return make_corpus(counts, REAL_TEST_EMOTIONS, mean_seconds, seed)
    others = make_corpus({group: count for group, count in counts.items() if group not in TEST_GROUPS}, REAL_TEST_EMOTIONS, mean_seconds, seed)
    return others + manifest_utterances(test_manifest, mean_seconds, seed)


def manifest_utterances(manifest_lines: list[str], mean_seconds: float, seed: int = 0) -> list[Utterance]:
    """The utterances an H2T manifest names, with its transcripts and emotions; `sample_id`s such as
    G00003_11_02_002 give the group, speaker, dialogue and index."""
    rng = random.Random(seed)
    utterances = []
    for line in manifest_lines:
        record = json.loads(line)
        group, speaker, dialogue, index = record["sample_id"].split("_")
        seconds = max(0.05, rng.gauss(mean_seconds, mean_seconds / 3))
        utterances.append(Utterance(group, int(speaker), int(dialogue), int(index), record["src_ref"],
                                    record["benchmark_metadata"]["emotion"], seconds))
    return utterances


def small_corpus(seed: int = 0) -> list[Utterance]:
    """A few dozen short utterances: all seven labels in the test split, and two groups outside the test split."""
    counts = {"G00001": 4, "G00003": 9, "G00007": 3, "G00015": 8}
    return make_corpus(counts, {emotion: 1 for emotion in EMOTIONS}, mean_seconds=0.3, seed=seed)


def write_small_archive(path: str | os.PathLike, seed: int = 0) -> list[Utterance]:
    """The tests' and the demo's archive: `small_corpus` plus a JSON member that is not an annotation."""
    utterances = small_corpus(seed)
    members = [("Audio/meta/info.json", json.dumps({"name": "EmotionTalk", "version": 1}).encode())]
    write_archive(path, [*members, *corpus_members(utterances, seed)])
    return utterances
