"""export_jsonl.py --test-members-only: only the ranges of Audio.tar that hold the test split, from the stand-in Hub
(over plain ranges, and with Xet announced), on archives laid out in several ways; the same export as a full
download gives, or the full download itself, said in one line."""

import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time

import pytest

import export_jsonl
import synthetic_archive
from conftest import PROJECT_DIR
from h2t_manifest import H2T_MANIFEST_SHA256
from stand_in_hub import COMMIT, GOOD_TOKEN, StandInHub
from test_export import EXPORTER, assert_exported, assert_one_line_error, expected_manifest, repair_line
from test_hub import ACCESS_HINT, export_from_hub, hub_env

ranged_tar = export_jsonl.project_module("ranged_tar")
FALLBACK = "export_jsonl.py: --test-members-only: "


def export_dir(tmp_path):
    return tmp_path / "h2t" / "emotiontalk"


def export_members(tmp_path, hub, manifest_path, *args, **env_options):
    return export_from_hub(tmp_path, hub.url, "--test-members-only", "--expected-manifest", str(manifest_path), *args, **env_options)


def fell_back(result) -> bool:
    return any(line.startswith(FALLBACK) and line.endswith("downloading the whole archive instead") for line in result.stderr.splitlines())


@pytest.mark.parametrize("xet", [False, True], ids=["ranges", "xet"])
@pytest.mark.parametrize("layout", ["tar_cf", "grouped", "paired", "scattered"])
def test_the_export_is_that_of_the_whole_archive(tmp_path, layout_archive, layout_corpus, layout, xet):
    """Folders in one piece (tar_cf, grouped, paired) are found and fetched alone; members scattered at random
    cannot be proven found in few ranges, and the whole archive is downloaded instead, with one line that says so.
    The export is byte for byte the full download's either way."""
    archive_path, manifest_path = layout_archive(layout)
    with StandInHub(archive_path, xet=xet) as hub:
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0, result.stderr
        assert_exported(export_dir(tmp_path), layout_corpus)
        raw = sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir())
        if fell_back(result):  # most likely for scattered members; never for folders in one piece
            assert layout == "scattered" and raw == ["Audio.tar"], result.stderr
            return
        assert result.stderr == "" and raw == ["Audio.tar.ranges"]
        test_share = sum(len(synthetic_archive.wav_bytes(u)) for u in layout_corpus if u.is_test) / hub.size
        assert hub.bytes_sent < (test_share + 0.3) * hub.size  # the test audio, its headers and annotations, the probes
        assert all(headers.get("range") for method, path, headers in hub.requests if method == "GET" and "/resolve/" in path)
        assert not any(path.startswith("/xorbs/") for _, path, _ in hub.requests)


def test_a_split_other_than_the_expected_one_falls_back_to_the_whole_archive(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    lines = manifest_path.read_bytes().splitlines(keepends=True)
    (tmp_path / "fewer.jsonl").write_bytes(b"".join(lines[:-1]))  # the archive has a row more than expected
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, tmp_path / "fewer.jsonl")
    assert result.returncode == 0, result.stderr
    [notice] = [line for line in result.stderr.splitlines() if line.startswith(FALLBACK)]
    assert f"the {len(lines)} annotations found in the fetched ranges give a manifest of sha256" in notice
    assert_exported(export_dir(tmp_path), layout_corpus)
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]


def test_a_test_wav_away_from_its_folder_is_missed_and_the_whole_archive_downloaded(tmp_path, layout_archive, layout_corpus):
    """One WAV of G00003 stored amid G00001's audio: the probes cannot see it, its annotation then has no audio in
    the fetched ranges, and that is never exported as a smaller split."""
    _, manifest_path = layout_archive("tar_cf")
    members = list(synthetic_archive.layout_members(layout_corpus, "tar_cf"))
    stray = next(index for index, (name, _) in enumerate(members) if name.startswith("Audio/wav/G00003/"))
    moved = members.pop(stray)
    g00001 = [index for index, (name, _) in enumerate(members) if name.startswith("Audio/wav/G00001/")]
    members.insert(g00001[len(g00001) // 2], moved)
    archive_path = synthetic_archive.write_archive(tmp_path / "Audio.tar", members)
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, manifest_path)
    assert result.returncode == 0, result.stderr
    assert fell_back(result) and "is not in the fetched ranges (1 such samples)" in result.stderr, result.stderr
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_a_cut_off_fetch_is_resumed_with_what_it_lacks(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "outage", hub.size // 5
        assert_one_line_error(export_members(tmp_path, hub, manifest_path), "was interrupted", "run the same command again to resume")
        kept = {path.name: (path.stat().st_ino, path.read_bytes()) for path in ranges_dir.iterdir() if path.name[0].isdigit()}
        assert kept and sorted(path.name for path in ranges_dir.iterdir() if not path.name[0].isdigit()) == ["announced.json", "plan.json"]
        # The first failure stops the fetch: the pieces still queued are not asked for, only those under way.
        planned = {f"bytes={start}-{end - 1}" for start, end in ranged_tar.in_pieces(ranged_tar.FetchedRanges(ranges_dir).plan().ranges, hub.size)}
        asked = planned & set(hub.ranges_requested())
        assert len(planned) > len(kept) + 2 * ranged_tar.CONNECTIONS and len(asked) <= len(kept) + ranged_tar.CONNECTIONS
        for name, (_, data) in kept.items():  # only whole ranges are kept, under their final names
            start, end = map(int, name.split("-"))
            assert data == hub.read(start, end)
        damaged_name = sorted(kept)[-1]
        (ranges_dir / damaged_name).write_bytes(kept.pop(damaged_name)[1][:-1])  # a piece cut short is not trusted
        (ranges_dir / ".0000000000000-0000000000512.tmp").write_bytes(b"left by a killed run")
        hub.mode = "normal"
        hub.requests.clear()
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0, result.stderr
        requested = hub.ranges_requested()
        # No probe again: the pieces the plan lacked, and the Hub's metadata.
        assert set(requested) <= set(pieces(ranges_dir).values()) and len(hub.requests) == len(requested) + 1
    assert not any(f"bytes={int(name.split('-')[0])}-{int(name.split('-')[1]) - 1}" in requested for name in kept)
    assert f"bytes={int(damaged_name.split('-')[0])}-{int(damaged_name.split('-')[1]) - 1}" in requested
    assert all((ranges_dir / name).stat().st_ino == inode for name, (inode, _) in kept.items())
    assert not list(ranges_dir.glob(".*"))
    assert_exported(export_dir(tmp_path), layout_corpus)


@pytest.mark.parametrize("mode, token, fragments", [
    ("gated", None, ["BAAI/Emotiontalk is gated and no Hub token was found", ACCESS_HINT]),
    ("forbidden", GOOD_TOKEN, ["your Hub token has no access to the gated BAAI/Emotiontalk (HTTP 403)", ACCESS_HINT]),
])
def test_the_hubs_refusals_give_the_same_lines(tmp_path, layout_archive, mode, token, fragments):
    archive_path, manifest_path = layout_archive("tar_cf")
    with StandInHub(archive_path) as hub:
        hub.mode = mode
        assert_one_line_error(export_members(tmp_path, hub, manifest_path, token=token), *fragments)
        assert hub.ranges_requested() == []


def test_an_unreachable_hub_gives_the_same_line(tmp_path, layout_archive):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = export_from_hub(tmp_path, closed_endpoint, "--test-members-only", "--expected-manifest", str(layout_archive("tar_cf")[1]))
    assert_one_line_error(result, "cannot reach the Hub", "pass --archive /path/to/Audio.tar")


def test_a_server_that_ignores_ranges_gets_the_whole_archive_downloaded(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    with StandInHub(archive_path) as hub:
        hub.mode = "whole_file"
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0, result.stderr
        assert fell_back(result) and "more" in result.stderr
        assert hub.bytes_sent < 2.5 * hub.size  # the first probe is stopped, not read to the end
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_with_parquet_force_verify_and_a_later_full_download(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    parquet_dir = export_dir(tmp_path) / "parquet"
    with StandInHub(archive_path) as hub:
        assert export_from_hub(tmp_path / "full", hub.url, "--parquet").returncode == 0
        full_shards = {path.name: path.read_bytes() for path in (tmp_path / "full" / "h2t" / "emotiontalk" / "parquet").glob("*.parquet")}
        result = export_members(tmp_path, hub, manifest_path, "--parquet")
        assert result.returncode == 0, result.stderr
        assert {path.name: path.read_bytes() for path in parquet_dir.glob("*.parquet")} == full_shards
        hub.requests.clear()
        again = export_members(tmp_path, hub, manifest_path, "--parquet")
        assert again.returncode == 0 and "0 written this run" in again.stdout and hub.requests == []

        verified = export_from_hub(tmp_path, hub.url, "--verify")
        assert verified.returncode == 0 and "all correct" in verified.stdout, verified.stdout + verified.stderr
        assert "not checked: the fetched ranges against the sha256 of the whole Audio.tar" in verified.stdout
        wav = sorted((export_dir(tmp_path) / "audio" / "zh").iterdir())[0]
        wav.write_bytes(wav.read_bytes()[:-1] + bytes([wav.read_bytes()[-1] ^ 1]))
        verified = export_from_hub(tmp_path, hub.url, "--verify")
        assert verified.returncode == 1 and f"{wav}: differs from its archive member" in verified.stdout
        repair = verified.stdout.strip().splitlines()[-1]
        assert repair.endswith(f"--test-members-only --expected-manifest {manifest_path} --parquet --force"), repair
        forced = export_from_hub(tmp_path, hub.url, *repair.split()[4:])
        assert forced.returncode == 0, forced.stderr
        assert f"{len([u for u in layout_corpus if u.is_test])} written this run" in forced.stdout
        assert_exported(export_dir(tmp_path), layout_corpus)

        hub.requests.clear()
        full = export_from_hub(tmp_path, hub.url, "--parquet")
        assert full.returncode == 0 and "0 written this run" in full.stdout, full.stderr
        assert hub.ranges_requested() == [""]
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert {path.name: path.read_bytes() for path in parquet_dir.glob("*.parquet")} == full_shards
    state = json.loads((export_dir(tmp_path) / ".export-state.json").read_text())
    assert state["archive"][0] == str(export_dir(tmp_path) / "raw" / "Audio.tar")


def pieces(ranges_dir):
    """The fetched pieces by name (<start>-<end>), and the HTTP Range each was fetched with."""
    return {path.name: "bytes={}-{}".format(int(path.name.split("-")[0]), int(path.name.split("-")[1]) - 1)
            for path in ranges_dir.iterdir() if path.name[0].isdigit()}


def make_stale(tmp_path):
    """The recorded export is no longer current, so that the next run goes through the fetch again."""
    (export_dir(tmp_path) / ".export-state.json").unlink()


def foreign_audio_bytes(archive_path, ranges_dir):
    """How many bytes of the WAVs of groups outside the test split the fetched pieces hold."""
    spans = [tuple(map(int, name.split("-"))) for name in pieces(ranges_dir)]
    with tarfile.open(archive_path) as archive:
        wavs = [(member.offset_data, member.offset_data + member.size) for member in archive
                if member.name.endswith(".wav") and member.name.split("/")[2] not in synthetic_archive.TEST_GROUPS]
    return sum(max(0, min(end, stop) - max(start, begin)) for begin, stop in spans for start, end in wavs)


def test_a_new_upload_reads_none_of_the_pieces_of_the_last(tmp_path, layout_archive, layout_corpus):
    """A run cut off while fetching one upload, then another upload of the same size: no piece of the first is
    read with the second's (which would not prove whole, and fall back)."""
    archive_path, manifest_path = layout_archive("tar_cf")
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "outage", hub.size // 4
        assert export_members(tmp_path, hub, manifest_path).returncode == 1
    assert pieces(export_dir(tmp_path) / "raw" / "Audio.tar.ranges")
    newer_path = synthetic_archive.write_archive(tmp_path / "newer.tar", synthetic_archive.layout_members(layout_corpus, "tar_cf", seed=1))
    with StandInHub(newer_path) as newer_hub:
        assert newer_hub.size == archive_path.stat().st_size and newer_hub.sha256 != hashlib.sha256(archive_path.read_bytes()).hexdigest()
        result = export_members(tmp_path, newer_hub, manifest_path)
    assert result.returncode == 0 and not fell_back(result), result.stderr
    assert_exported(export_dir(tmp_path), layout_corpus, seed=1)


def test_a_revision_fetches_that_revisions_bytes(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, manifest_path, "--revision", COMMIT)
        assert result.returncode == 0 and not fell_back(result), result.stderr
        resolved = [path for method, path, _ in hub.requests if "/resolve/" in path]
    assert resolved and all(f"/resolve/{COMMIT}/Audio.tar" in path for path in resolved)
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_force_fetches_every_piece_anew_a_damaged_one_included(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
    with StandInHub(archive_path) as hub:
        assert export_members(tmp_path, hub, manifest_path).returncode == 0
        fetched = pieces(ranges_dir)
        damaged = ranges_dir / sorted(fetched)[len(fetched) // 2]
        data = bytearray(damaged.read_bytes())
        data[len(data) // 2] ^= 0x01
        damaged.write_bytes(bytes(data))
        hub.requests.clear()
        assert export_members(tmp_path, hub, manifest_path, "--force").returncode == 0
        assert set(fetched.values()) <= set(hub.ranges_requested())
        start, end = map(int, damaged.name.split("-"))
        assert damaged.read_bytes() == hub.read(start, end)
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_an_archive_already_in_raw_is_exported_from_with_nothing_fetched(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path) as hub:
        assert export_from_hub(tmp_path, hub.url).returncode == 0
        make_stale(tmp_path)
        hub.requests.clear()
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == [] and [method for method, _, _ in hub.requests] == ["HEAD"]
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert_exported(export_dir(tmp_path), layout_corpus)


def export_corpus(tmp_path, corpus, members, *args, **options):
    """`members` as the Hub's Audio.tar, exported with --test-members-only against the corpus's manifest."""
    archive_path = synthetic_archive.write_archive(tmp_path / "Audio.tar", members)
    (tmp_path / "zh-en.jsonl").write_bytes(expected_manifest(corpus))
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, tmp_path / "zh-en.jsonl", *args, **options)
    assert result.returncode == 0 and not fell_back(result), result.stderr
    assert_exported(export_dir(tmp_path), corpus)
    return archive_path


def test_a_small_gap_between_runs_is_fetched_at_full_size_settings(tmp_path):
    """At the real archive's size a gap of up to SMALL_GAP's 1 MiB between two runs is fetched whole; the tests'
    archives scale it down below a WAV, so here it is set as the real archive has it. Short test WAVs after long
    ones of another group: the last gap bisection leaves at each border holds test WAVs."""
    corpus = synthetic_archive.make_corpus({"G00001": 30, "G00007": 30}, {"neutral": 1}, mean_seconds=6.0)
    corpus += synthetic_archive.make_corpus({"G00003": 80, "G00015": 80}, {"neutral": 1, "sad": 1}, mean_seconds=0.3)
    in_group_order = sorted(corpus, key=lambda utterance: utterance.group)
    members = [synthetic_archive.audio_member(u) for u in in_group_order] + [synthetic_archive.annotation_member(u) for u in in_group_order]
    export_corpus(tmp_path, corpus, members, settings=("ranged_tar", {"SMALL_GAP": [1 << 20, 1]}))


def test_a_resume_fetches_every_hole_and_nothing_else_without_probing_again(tmp_path, layout_archive, layout_corpus):
    """Pieces kept as if they had finished out of order (every other one lost): the next run fetches exactly the
    missing ones, by the plan the first run kept, with the Hub's metadata the only other request."""
    archive_path, manifest_path = layout_archive("grouped")
    ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
    with StandInHub(archive_path) as hub:
        assert export_members(tmp_path, hub, manifest_path).returncode == 0
        fetched = pieces(ranges_dir)
        lost = sorted(fetched)[::2]
        assert len(lost) >= 3
        for name in lost:
            (ranges_dir / name).unlink()
        make_stale(tmp_path)
        hub.requests.clear()
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0 and not fell_back(result), result.stderr
        assert sorted(hub.ranges_requested()) == sorted(fetched[name] for name in lost)
        assert len(hub.requests) == len(lost) + 1
    assert pieces(ranges_dir) == fetched
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_a_piece_of_an_earlier_plan_is_removed_not_read(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
    with StandInHub(archive_path) as hub:
        assert export_members(tmp_path, hub, manifest_path).returncode == 0
        spans = sorted(tuple(map(int, name.split("-"))) for name in pieces(ranges_dir))
        # Amid the widest stretch not fetched, in the middle of some member: no header begins there.
        gap_start, gap_end = max(zip([end for _, end in spans], [start for start, _ in spans[1:]]), key=lambda gap: gap[1] - gap[0])
        start = (gap_start + gap_end) // 2 // 512 * 512 + 512 * 3
        earlier = ranges_dir / f"{start:013d}-{start + 4096:013d}"
        earlier.write_bytes(hub.read(start, start + 4096))
        make_stale(tmp_path)
        result = export_members(tmp_path, hub, manifest_path)
    assert result.returncode == 0 and not fell_back(result), result.stderr
    assert not earlier.exists()
    assert_exported(export_dir(tmp_path), layout_corpus)


@pytest.mark.parametrize("settings, reason", [
    ({"MAX_PROBES": 2}, "the archive's members are not laid out in few runs ("),
    ({"MAX_SHARE": 0.05}, "the test members are spread over"),
], ids=["probes", "share"])
def test_past_a_budget_the_whole_archive_is_downloaded_and_checked(tmp_path, layout_archive, layout_corpus, settings, reason):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, manifest_path, settings=("ranged_tar", settings))
        assert result.returncode == 0, result.stderr
        [notice] = [line for line in result.stderr.splitlines() if line.startswith(FALLBACK)]
        assert fell_back(result) and notice.startswith(FALLBACK + reason), result.stderr
        assert "" in hub.ranges_requested()  # the whole archive, in one GET
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_a_groups_annotations_and_audio_are_two_runs(tmp_path):
    """Each group's annotations just before its audio, and one group with more annotations than a probe reads: a
    gap from its annotations to its audio is a border between two runs, bisected like any other."""
    corpus = synthetic_archive.make_corpus({"G00001": 400}, {"neutral": 1}, mean_seconds=0.5)
    corpus += synthetic_archive.make_corpus({"G00003": 24, "G00007": 30, "G00015": 16}, {"neutral": 1}, mean_seconds=4.4)
    archive_path = export_corpus(tmp_path, corpus, synthetic_archive.layout_members(corpus, "grouped"))
    assert foreign_audio_bytes(archive_path, export_dir(tmp_path) / "raw" / "Audio.tar.ranges") < 0.02 * archive_path.stat().st_size


def rewritten_with(archive_path, target, unsafe):
    """The archive with its fifth WAV of G00003, amid that group's run, made unsafe: a link, or a name that leaves
    the archive."""
    with tarfile.open(archive_path) as source, tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        seen = 0
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            seen += member.name.startswith("Audio/wav/G00003/") and member.isfile()
            if seen == 5 and member.name.startswith("Audio/wav/G00003/") and member.isfile():
                if unsafe == "link":
                    member.type, member.linkname, member.size, data = tarfile.SYMTYPE, "/etc/passwd", 0, None
                else:
                    member.name = "/" + member.name if unsafe == "absolute" else member.name.replace("/G00003/", "/G00003/../G00003/", 1)
            archive.addfile(member, data)
    return target


@pytest.mark.parametrize("unsafe, problem", [("link", "is a link"), ("absolute", "has a path outside the archive"),
                                              ("dotdot", "has a path outside the archive")])
def test_an_unsafe_member_in_the_ranges_is_refused_at_once(tmp_path, layout_archive, unsafe, problem):
    """As the builder refuses it: one line, and no download of the whole archive to find the same."""
    archive_path, manifest_path = layout_archive("tar_cf")
    unsafe_path = rewritten_with(archive_path, tmp_path / "unsafe.tar", unsafe)
    with StandInHub(unsafe_path) as hub:
        result = export_members(tmp_path, hub, manifest_path)
        assert_one_line_error(result, problem, "refusing the archive")
        assert not fell_back(result) and hub.bytes_sent < 0.6 * hub.size


def test_an_archive_of_dot_slash_names_is_fetched_in_part(tmp_path, layout_corpus):
    """`tar cf Audio.tar ./Audio` names every member ./Audio/..."""
    members = (("./" + name, data) for name, data in synthetic_archive.layout_members(layout_corpus, "tar_cf"))
    export_corpus(tmp_path, layout_corpus, members)


def test_a_block_with_the_magic_but_not_the_checksum_is_no_header(tmp_path):
    info = tarfile.TarInfo("Audio/wav/G00003/G00003_1/G00003_1_01/G00003_1_01_001.wav")
    header = info.tobuf(tarfile.USTAR_FORMAT)
    assert ranged_tar.is_header(header)
    forged = bytearray(header)
    forged[0] ^= 0x01  # the name changed, the checksum not
    assert forged[257:262] == b"ustar" and not ranged_tar.is_header(bytes(forged))
    assert not ranged_tar.is_header(bytes(257) + b"ustar" + bytes(250))


@pytest.mark.parametrize("what", ["missing", "a_folder"])
def test_an_expected_manifest_that_cannot_be_read_is_refused_before_any_request(tmp_path, layout_archive, what):
    archive_path, _ = layout_archive("tar_cf")
    manifest_path = tmp_path / "manifest.jsonl"
    if what == "a_folder":
        manifest_path.mkdir()
    with StandInHub(archive_path) as hub:
        assert_one_line_error(export_members(tmp_path, hub, manifest_path), str(manifest_path), "--expected-manifest takes an H2T manifest file")
        assert hub.requests == []


REFERENCE_MANIFEST = PROJECT_DIR.parent / "shared" / "reference" / "emotiontalk-zh-en.jsonl"


@pytest.fixture(scope="session")
def reference_lines():
    """The lines of the manifest that the published pipeline made from the real archive, which H2T commits: beside
    the checkout where CI runs, read at test time, never copied into the project."""
    if not REFERENCE_MANIFEST.is_file():
        pytest.skip(f"{REFERENCE_MANIFEST} is not beside this checkout")
    return REFERENCE_MANIFEST.read_text(encoding="utf-8").splitlines(keepends=True)


def test_the_built_in_proof_is_the_sha256_of_h2ts_manifest(reference_lines):
    assert H2T_MANIFEST_SHA256 == hashlib.sha256("".join(reference_lines).encode("utf-8")).hexdigest()


def test_without_an_expected_manifest_the_split_is_proven_against_h2ts(tmp_path, reference_lines):
    """An archive whose test split is H2T's 1929 rows (short WAVs), beside longer audio of other groups."""
    corpus = synthetic_archive.manifest_utterances(reference_lines, mean_seconds=0.05)
    corpus += synthetic_archive.make_corpus({"G00001": 30, "G00007": 30}, {"neutral": 1}, mean_seconds=6.0)
    archive_path = synthetic_archive.write_archive(tmp_path / "Audio.tar", synthetic_archive.layout_members(corpus, "tar_cf"))
    assert expected_manifest(corpus) == "".join(reference_lines).encode("utf-8")
    with StandInHub(archive_path) as hub:
        result = export_from_hub(tmp_path, hub.url, "--test-members-only")
        assert result.returncode == 0 and not fell_back(result), result.stderr
    assert (export_dir(tmp_path) / "zh-en.jsonl").read_bytes() == "".join(reference_lines).encode("utf-8")


@pytest.mark.parametrize("expiring", [False, True], ids=["signed", "expiring"])
def test_ranges_are_read_from_the_signed_storage_url_that_resolve_redirects_to(tmp_path, layout_archive, layout_corpus, expiring):
    """As the Hub does: `resolve` answers 302 to storage on another host, signed for a while, which refuses a token.
    One `resolve` request serves all ranges (and another each time the signature expires), not one a range."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True, delay=0.01) as hub:
        hub.signed_url_requests = 40 if expiring else None
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0 and not fell_back(result), result.stderr
        storage_requests = [headers for _, path, headers in hub.requests if path.startswith("/storage/")]
    assert len(storage_requests) > 80 and not any("authorization" in headers for headers in storage_requests)
    # Every URL serves 40 requests; those that come after, from threads still on an expired one, are refused too.
    assert 2 <= hub.resolve_requests <= 1 + len(storage_requests) // 40 if expiring else hub.resolve_requests == 1
    assert_exported(export_dir(tmp_path), layout_corpus)


@pytest.mark.parametrize("retry_after, where, as_date", [
    (2, "resolve", False), (2, "resolve", True), (2, "range reads", False), (3600, "resolve", False), (3600, "resolve", True)])
def test_a_rate_limited_hub_is_waited_for_as_it_asks_or_said_in_one_line(tmp_path, layout_archive, layout_corpus, retry_after, where, as_date):
    """The stand-in refuses for as long as it said, so that a client that did not wait is refused again. A mirror
    that serves the bytes itself (no redirect) may refuse a range read, which huggingface_hub 1.x and later wait out
    themselves (as long as asked: no long wait is tried on them here); a proxy may say when as an HTTP date."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=where == "resolve") as hub:
        hub.refuse(retry_after, ranges_only=where == "range reads", as_date=as_date)
        result = export_members(tmp_path, hub, manifest_path)
    if retry_after < 60:
        assert result.returncode == 0 and not fell_back(result), result.stderr
        assert re.search(r"the Hub's rate limit is reached; waiting [123] s, as it asks, before asking again|"
                         r"Rate limited. Waiting [234].0s before retry", result.stderr), result.stderr
        assert "Traceback" not in result.stderr
        assert_exported(export_dir(tmp_path), layout_corpus)
    else:
        assert_one_line_error(result, "the Hub refuses more requests for now (its rate limit; it asks to wait ")
        assert re.search(r"it asks to wait 3(599|600|601) s\): run the same command again then$", result.stderr.strip())


def test_a_ctrl_c_while_probing_keeps_what_the_probes_found(tmp_path, layout_archive, layout_corpus):
    """The next run goes on probing from there: fewer probes than a run from nothing."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        assert export_members(tmp_path / "from-nothing", hub, manifest_path).returncode == 0
        fresh_probes = len(hub.ranges_requested()) - len(pieces(tmp_path / "from-nothing" / "h2t" / "emotiontalk" / "raw" / "Audio.tar.ranges"))
        hub.requests.clear()
        hub.delay = 0.2
        process = subprocess.Popen([sys.executable, EXPORTER, "--datadir", str(tmp_path / "h2t"), "--test-members-only",
                                    "--expected-manifest", str(manifest_path)], env=hub_env(tmp_path, hub.url),
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(hub.ranges_requested()) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
        ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
        assert process.returncode == 130 and (ranges_dir / "probed.json").is_file(), stderr
        assert not (ranges_dir / "plan.json").exists() and not pieces(ranges_dir)
        # Nothing downloaded to resume from yet: the line says no "(0.0 MB) is kept".
        assert stderr.strip().splitlines()[-1] == (
            "export_jsonl.py: interrupted; nothing was left half-written; run the same command again to finish")
        hub.delay, hub.requests[:] = 0, []
        result = export_members(tmp_path, hub, manifest_path)
        assert result.returncode == 0 and not fell_back(result), result.stderr
        probes = len(hub.ranges_requested()) - len(pieces(ranges_dir))
    # The probes are the same from the same start: each round that ended before the Ctrl-C is not made again.
    assert probes < fresh_probes and not (ranges_dir / "probed.json").exists()
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_a_relative_expected_manifest_is_recorded_so_that_the_repair_works_from_anywhere(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    (tmp_path / "here").mkdir()
    shutil.copy(manifest_path, tmp_path / "here" / "expected.jsonl")
    with StandInHub(archive_path) as hub:
        env = hub_env(tmp_path, hub.url)
        first = subprocess.run([sys.executable, EXPORTER, "--datadir", str(tmp_path / "h2t"), "--test-members-only",
                                "--expected-manifest", "expected.jsonl"], cwd=tmp_path / "here", env=env, capture_output=True, text=True)
        assert first.returncode == 0 and not fell_back(first), first.stderr
        next((export_dir(tmp_path) / "audio" / "zh").iterdir()).unlink()
        (tmp_path / "elsewhere").mkdir()
        report = subprocess.run([sys.executable, EXPORTER, "--datadir", str(tmp_path / "h2t"), "--verify"], cwd=tmp_path / "elsewhere",
                                env=env, capture_output=True, text=True)
        command = repair_line(report.stdout)
        assert command[command.index("--expected-manifest") + 1] == str(tmp_path / "here" / "expected.jsonl")
        repaired = subprocess.run([sys.executable, *command[1:]], cwd=tmp_path / "elsewhere", env=env, capture_output=True, text=True)
        assert repaired.returncode == 0 and not fell_back(repaired), repaired.stderr
    assert_exported(export_dir(tmp_path), layout_corpus)


def members_at(archive_path):
    """Each member's name and the byte range of its data."""
    with tarfile.open(archive_path) as archive:
        return [(member.name, member.offset_data, member.offset_data + member.size) for member in archive if member.isfile()]


def test_an_archive_that_interleaves_annotations_with_audio_fetches_no_other_groups_annotations(tmp_path, layout_archive, layout_corpus):
    """In the paired layout each annotation lies beside its WAV: the test groups' runs hold their annotations, and
    the other groups' annotations lie among audio that is not wanted."""
    archive_path, manifest_path = layout_archive("paired")
    with StandInHub(archive_path) as hub:
        result = export_members(tmp_path, hub, manifest_path)
    assert result.returncode == 0 and not fell_back(result), result.stderr
    held = [(start, end) for start, end in pieces_held(export_dir(tmp_path) / "raw" / "Audio.tar.ranges")]
    others = [(start, end) for name, start, end in members_at(archive_path)
              if name.startswith("Audio/json/") and name.split("/")[2] not in ("G00003", "G00015")]
    assert others and not [member for member in others if any(start < member[1] and member[0] < end for start, end in held)]
    assert_exported(export_dir(tmp_path), layout_corpus)


def pieces_held(ranges_dir):
    return sorted(tuple(int(bound) for bound in path.name.split("-")) for path in ranges_dir.iterdir() if path.name[0].isdigit())


def test_annotations_that_name_their_wav_by_file_name_are_mapped_as_by_file_path(tmp_path):
    """The same probes: an annotation's group is told by either key. A group with more annotations than a probe
    reads shows it: a run of annotations of no known group would be probed through."""
    corpus = synthetic_archive.make_corpus({"G00001": 400}, {"neutral": 1}, mean_seconds=0.5)
    corpus += synthetic_archive.make_corpus({"G00003": 24, "G00007": 30, "G00015": 16}, {"neutral": 1}, mean_seconds=4.4)

    def by_file_name(member):
        name, data = member
        if not name.endswith(".json"):
            return member
        record = json.loads(data)
        record["file_name"] = record.pop("file_path")
        return name, json.dumps(record, ensure_ascii=False, indent=1).encode("utf-8")

    (tmp_path / "zh-en.jsonl").write_bytes(expected_manifest(corpus))
    requests = {}
    for key in ("file_path", "file_name"):
        members = synthetic_archive.layout_members(corpus, "grouped")
        (tmp_path / key).mkdir()
        archive_path = synthetic_archive.write_archive(tmp_path / key / "Audio.tar", members if key == "file_path" else map(by_file_name, members))
        with StandInHub(archive_path) as hub:
            result = export_members(tmp_path / key, hub, tmp_path / "zh-en.jsonl")
            requests[key] = len(hub.requests)
        assert result.returncode == 0 and not fell_back(result), result.stderr
        assert_exported(export_dir(tmp_path / key), corpus)
    assert requests["file_name"] == requests["file_path"]


def test_the_probe_budget_counts_the_probes_of_every_run_of_the_upload(tmp_path, layout_archive, layout_corpus):
    """A run stopped while probing leaves what it found and how many probes it made: the next run of the same
    upload does not start its budget afresh."""
    archive_path, manifest_path = layout_archive("grouped")
    ranges_dir = export_dir(tmp_path) / "raw" / "Audio.tar.ranges"
    ranges_dir.mkdir(parents=True)
    with StandInHub(archive_path) as hub:
        (ranges_dir / "announced.json").write_text(json.dumps({"sha256": hub.sha256, "size": hub.size}))
        (ranges_dir / "probed.json").write_text(json.dumps({"probes": ranged_tar.MAX_PROBES}))
        result = export_members(tmp_path, hub, manifest_path)
    assert result.returncode == 0 and fell_back(result), result.stderr
    assert f"the archive's members are not laid out in few runs ({ranged_tar.MAX_PROBES + 1}" in result.stderr or "probes did not settle them" in result.stderr
    assert_exported(export_dir(tmp_path), layout_corpus)


def test_a_hub_that_refuses_past_the_waits_it_asked_for_is_said_in_one_line(tmp_path, layout_archive):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        hub.refuse(60, told=1)
        result = export_members(tmp_path, hub, manifest_path)
        asked = [request for request in hub.requests if "/resolve/" in request[1]]
    assert_one_line_error(result, "the Hub refuses more requests for now (its rate limit; it asks to wait 1 s): run the same command again then")
    assert len(asked) == 3 and result.stderr.count("the Hub's rate limit is reached; waiting 1 s") == 2
