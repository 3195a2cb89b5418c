"""export_jsonl.py --test-members-only: only the ranges of Audio.tar that hold the test split, from the stand-in Hub
(over plain ranges, and with Xet announced), on archives laid out in several ways; the same export as a full
download gives, or the full download itself, said in one line."""

import json
import socket

import pytest

import synthetic_archive
from stand_in_hub import GOOD_TOKEN, StandInHub
from test_export import assert_exported, assert_one_line_error, expected_manifest
from test_hub import ACCESS_HINT, export_from_hub

FALLBACK = "export_jsonl.py: --test-members-only: "


@pytest.fixture(scope="session")
def layout_corpus():
    """Five groups, two of them the test split's (0.29 of the audio), 4.4 s an utterance as in the real archive:
    56 MB, so that what the probes read (a few hundred kB each, whatever the archive's size) is a small part."""
    return synthetic_archive.make_corpus({"G00001": 40, "G00003": 24, "G00007": 30, "G00009": 30, "G00015": 16},
                                         {"angry": 1, "happy": 1, "neutral": 2}, mean_seconds=4.4)


@pytest.fixture(scope="session")
def layout_archive(tmp_path_factory, layout_corpus):
    """The corpus's archive in a layout (written once a session), and the manifest a full export of it gives."""
    folder = tmp_path_factory.mktemp("layouts")
    manifest_path = folder / "zh-en.jsonl"
    manifest_path.write_bytes(expected_manifest(layout_corpus))
    archives = {}

    def archive(layout):
        if layout not in archives:
            archives[layout] = synthetic_archive.write_archive(folder / f"{layout}.tar", synthetic_archive.layout_members(layout_corpus, layout))
        return archives[layout], manifest_path

    return archive


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
    assert f"the {len(lines)} rows found in the fetched ranges give a manifest of sha256" in notice
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
        assert kept and sorted(path.name for path in ranges_dir.iterdir() if not path.name[0].isdigit()) == ["announced.json"]
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
