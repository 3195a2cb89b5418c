"""load_dataset from the Hub fetches only the ranges of Audio.tar that hold the test split (into the `datasets`
download cache), proves them whole, and builds the same rows as from the whole archive; where it cannot prove them,
it says why in one warning and downloads the whole archive. Against the stand-in Hub, redirecting to signed storage
as the Hub does."""

import hashlib
import json
import re
import shutil

import pytest

import export_jsonl
import synthetic_archive
from conftest import BUILDER_SCRIPT, PROJECT_DIR
from stand_in_hub import COMMIT, GOOD_TOKEN, StandInHub
from test_hub import expected_rows, load_from_hub
from test_users_files import closed_port_endpoint

ranged_tar = export_jsonl.project_module("ranged_tar")
FALLBACK = "the test members alone are not proven the whole split ("


def members_options(manifest_path):
    """The proof for a synthetic archive: the sha256 of the manifest a full export of it gives (H2T's is the default)."""
    return {"expected_manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest()}


def ranges_dirs(tmp_path, cache=("hf-home", "datasets")):
    """The folders of fetched ranges in the datasets cache, one an upload (beside `refs`, which names them)."""
    root = tmp_path.joinpath(*cache, "downloads", "BAAI--Emotiontalk--Audio.tar.ranges")
    return [path for path in root.glob("*") if path.name != "refs"]


def archive_downloaded(tmp_path):
    return any((tmp_path / "hf-home" / "hub").rglob("Audio.tar"))


@pytest.mark.parametrize("mode", ["build", "stream"])
@pytest.mark.parametrize("layout", ["tar_cf", "tar_sorted", "grouped", "paired", "scattered"])
def test_a_build_or_a_stream_fetches_only_the_test_members(tmp_path, layout_archive, layout_corpus, layout, mode):
    """The same rows in the same order as from the whole archive, whether the WAVs lie in name order (tar_sorted) or
    not (tar_cf); a stream keeps its ranges in memory, and writes nothing to disk (the cache holds the script's
    module copy alone). Members scattered at random cannot be proven found in few ranges: the whole archive is read
    instead, and the rows are the same."""
    archive_path, manifest_path = layout_archive(layout)
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, mode, members_options(manifest_path))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == expected_rows(layout_corpus)
        if FALLBACK in result.stderr:
            assert layout == "scattered", result.stderr
            return
        test_share = sum(len(synthetic_archive.wav_bytes(u)) for u in layout_corpus if u.is_test) / hub.size
        assert hub.bytes_sent < (test_share + 0.3) * hub.size and hub.resolve_requests == 1
    assert not archive_downloaded(tmp_path)
    if mode == "stream":
        assert not ranges_dirs(tmp_path) and max(path.stat().st_size for path in (tmp_path / "hf-home").rglob("*")) < 1 << 20
        return
    [ranges_dir] = ranges_dirs(tmp_path)
    assert ranges_dir.name == hashlib.sha256(archive_path.read_bytes()).hexdigest()


@pytest.mark.parametrize("mode, instead", [("build", "downloading"), ("stream", "streaming")])
def test_an_unproven_split_is_said_in_one_warning_and_the_whole_archive_read(tmp_path, layout_archive, layout_corpus, mode, instead):
    """A synthetic archive against the default proof, H2T's manifest of the real archive."""
    archive_path, _ = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, mode)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    [warning] = [line for line in result.stderr.splitlines() if FALLBACK in line]
    assert warning.endswith(f"; {instead} the whole archive instead") and "give a manifest of sha256" in warning
    assert archive_downloaded(tmp_path) == (mode == "build")


@pytest.mark.parametrize("mode", ["build", "stream"])
def test_a_test_wav_missing_from_the_ranges_is_found_at_the_end(tmp_path, layout_archive, layout_corpus, mode):
    """The last test WAV by sample_id lies among G00001's WAVs: the ranges hold every annotation, which give the
    expected manifest, but not that WAV, which shows only once the rows before it came. A build starts again from the
    whole archive, with one warning, and writes its rows alone; a stream fails in one line."""
    members = list(synthetic_archive.layout_members(layout_corpus, "tar_sorted"))
    last = max((u for u in layout_corpus if u.is_test), key=lambda u: u.sample_id)
    [moved] = [index for index, (name, _) in enumerate(members) if name == f"Audio/wav/{last.file_path}"]
    moved = members.pop(moved)
    g00001 = [index for index, (name, _) in enumerate(members) if name.startswith("Audio/wav/G00001/")]
    members.insert(g00001[len(g00001) // 2], moved)
    archive_path = synthetic_archive.write_archive(tmp_path / "Audio.tar", members)
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, mode, members_options(layout_archive("tar_sorted")[1]))
    missing = f"the WAV of test sample {last.sample_id} is not in the fetched ranges (1 such samples)"
    if mode == "stream":
        last_line = result.stderr.strip().splitlines()[-1]
        assert result.returncode != 0 and f"ArchiveError: BAAI/Emotiontalk/Audio.tar: {missing}, found after the rows before it were streamed; load without streaming=True" in last_line, result.stderr
        return
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if FALLBACK in line]
    assert missing in warning and warning.endswith("; downloading the whole archive instead")
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    assert len(list((tmp_path / "hf-home" / "datasets").rglob("*.arrow"))) == 1 and archive_downloaded(tmp_path)


@pytest.mark.parametrize("mode", ["build", "stream"])
def test_a_test_annotation_among_the_wavs_is_found_after_the_rows(tmp_path, layout_archive, layout_corpus, mode):
    """A second annotation of the last test sample lies among G00015's WAVs, after the annotations proved the split:
    the archive is inconsistent. A build turns to the whole archive, which says so as any build from it does; a
    stream says so in one line."""
    members = list(synthetic_archive.layout_members(layout_corpus, "tar_sorted"))
    last = max((u for u in layout_corpus if u.is_test), key=lambda u: u.sample_id)
    name, data = synthetic_archive.annotation_member(last)
    g00015 = [index for index, (member_name, _) in enumerate(members) if member_name.startswith("Audio/wav/G00015/")]
    members.insert(g00015[len(g00015) // 2], (f"Audio/wav/G00015/{name.rsplit('/', 1)[-1]}", data))
    archive_path = synthetic_archive.write_archive(tmp_path / "Audio.tar", members)
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, mode, members_options(layout_archive("tar_sorted")[1]))
    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0, result.stderr
    if mode == "stream":
        assert f"ArchiveError: BAAI/Emotiontalk/Audio.tar: test annotation Audio/wav/G00015/{last.sample_id}.json lies among the WAVs" in last_line
    else:
        assert FALLBACK in result.stderr and f"both annotate sample {last.sample_id}; the archive is inconsistent" in result.stderr


def test_a_stream_that_loses_the_hub_says_so_in_one_line(tmp_path, layout_archive):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        hub.mode, hub.drop_after = "outage", hub.size // 10
        result = load_from_hub(tmp_path, hub.url, "stream", members_options(manifest_path))
    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0 and "ArchiveError: the download of BAAI/Emotiontalk/Audio.tar was interrupted (" in last_line
    assert last_line.endswith("); run the same command again"), last_line  # nothing is kept to resume from


@pytest.mark.parametrize("mode", ["build", "stream"])
def test_test_members_only_false_reads_the_whole_archive(tmp_path, layout_archive, layout_corpus, mode):
    """A build downloads it whole, a stream reads it through datasets' HfFileSystem as it always did."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path) as hub:
        result = load_from_hub(tmp_path, hub.url, mode, {**members_options(manifest_path), "test_members_only": False})
        assert result.returncode == 0, result.stderr
        requested = hub.ranges_requested()
    assert json.loads(result.stdout) == expected_rows(layout_corpus) and not ranges_dirs(tmp_path)
    if mode == "build":
        assert requested == [""] and archive_downloaded(tmp_path)
    else:  # every block of 5 MiB read, one request each, from the first byte on
        assert requested[0].startswith("bytes=0-") and len(requested) >= archive_path.stat().st_size // (5 << 20)


def test_a_build_cut_off_is_resumed_with_the_missing_pieces_only_then_loads_offline(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    options = members_options(manifest_path)
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "outage", hub.size // 5
        cut_off = load_from_hub(tmp_path, hub.url, "build", options)
        assert cut_off.returncode != 0 and "was interrupted" in cut_off.stderr
        [ranges_dir] = ranges_dirs(tmp_path)
        kept = {path.name for path in ranges_dir.iterdir() if path.name[0].isdigit()}
        assert kept
        hub.mode = "normal"
        hub.requests.clear()
        resumed = load_from_hub(tmp_path, hub.url, "build", options)
        assert resumed.returncode == 0, resumed.stderr
        requested = hub.ranges_requested()
    assert not any(f"bytes={int(name.split('-')[0])}-{int(name.split('-')[1]) - 1}" in requested for name in kept)
    assert json.loads(resumed.stdout) == expected_rows(layout_corpus)
    offline = load_from_hub(tmp_path, "http://127.0.0.1:9", "build", options, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout) == expected_rows(layout_corpus)


def test_a_rate_limited_build_waits_as_the_hub_asks(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        hub.refuse(1)
        result = load_from_hub(tmp_path, hub.url, "build", members_options(manifest_path))
    assert result.returncode == 0, result.stderr
    assert re.search(r"the Hub's rate limit is reached; waiting [12] s", result.stderr), result.stderr  # to the second's end
    assert json.loads(result.stdout) == expected_rows(layout_corpus)


@pytest.mark.parametrize("how", ["absolute path, another folder", "relative path"])
def test_the_script_loads_by_any_path_from_any_folder(tmp_path, layout_archive, layout_corpus, how):
    """datasets copies the modules the script imports relatively into its module cache, whatever the path."""
    archive_path, manifest_path = layout_archive("grouped")
    (tmp_path / "elsewhere").mkdir()
    where = {"script": BUILDER_SCRIPT, "cwd": tmp_path / "elsewhere"} if how.startswith("absolute") else {
        "script": "./emotiontalk_test.py", "cwd": PROJECT_DIR}
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, "build", members_options(manifest_path), **where)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus) and FALLBACK not in result.stderr
    shutil.rmtree(tmp_path / "elsewhere")


def drop_the_arrow_cache(datasets_cache):
    """Every prepared split in `datasets_cache`, so that the next load builds anew from what the downloads hold."""
    for info in list(datasets_cache.rglob("dataset_info.json")):
        shutil.rmtree(info.parent)


@pytest.mark.parametrize("how", ["offline", "out_of_reach"])
def test_without_the_hub_a_build_uses_the_ranges_an_earlier_build_proved(tmp_path, layout_archive, layout_corpus, how):
    archive_path, manifest_path = layout_archive("tar_cf")
    options = members_options(manifest_path)
    with StandInHub(archive_path) as hub:
        assert load_from_hub(tmp_path, hub.url, "build", options).returncode == 0
    drop_the_arrow_cache(tmp_path / "hf-home" / "datasets")
    result = load_from_hub(tmp_path, closed_port_endpoint(), "build", options, **({"HF_HUB_OFFLINE": "1"} if how == "offline" else {}))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus) and not archive_downloaded(tmp_path)
    reached_line = [line for line in result.stderr.splitlines() if "was not reached" in line]
    assert len(reached_line) == (how == "out_of_reach")
    assert all("the test ranges of Audio.tar that an earlier build of revision 'main' fetched and proved" in line for line in reached_line)
    other_revision = load_from_hub(tmp_path, "http://127.0.0.1:9", "build", {**options, "archive_revision": "v2"}, HF_HUB_OFFLINE="1")
    assert other_revision.returncode != 0 and "HF_HUB_OFFLINE is set and BAAI/Emotiontalk/Audio.tar is not downloaded yet" in other_revision.stderr
    if how == "offline":  # a piece of them damaged, then one lost: each said, and the whole archive looked for
        [ranges_dir] = ranges_dirs(tmp_path)  # instead (not in the cache here); the folder is left as it is
        first_piece = min(path for path in ranges_dir.iterdir() if path.name[0].isdigit())
        intact = first_piece.read_bytes()
        first_piece.write_bytes(b"x" * 512 + intact[512:])
        for damage, said in [("damaged", "do not read as whole members (invalid header)"), ("lost", "of the archive are not in")]:
            if damage == "lost":
                first_piece.write_bytes(intact)
                max(path for path in ranges_dir.iterdir() if path.name[0].isdigit()).unlink()
            drop_the_arrow_cache(tmp_path / "hf-home" / "datasets")
            result = load_from_hub(tmp_path, "http://127.0.0.1:9", "build", options, HF_HUB_OFFLINE="1")
            assert result.returncode != 0 and "HF_HUB_OFFLINE is set and BAAI/Emotiontalk/Audio.tar is not downloaded yet" in result.stderr
            [warning] = [line for line in result.stderr.splitlines() if FALLBACK in line]
            assert said in warning and str(ranges_dir) in warning and ranges_dirs(tmp_path) == [ranges_dir], warning
        assert first_piece.read_bytes() == intact


@pytest.mark.parametrize("how", ["offline", "out_of_reach"])
def test_without_the_hub_a_build_uses_the_whole_archive_in_the_cache_and_asks_nothing(tmp_path, layout_archive, layout_corpus, how):
    archive_path, _ = layout_archive("grouped")
    with StandInHub(archive_path) as hub:
        assert load_from_hub(tmp_path, hub.url, "build", {"test_members_only": False}).returncode == 0
        drop_the_arrow_cache(tmp_path / "hf-home" / "datasets")
        hub.requests.clear()
        endpoint = hub.url if how == "offline" else closed_port_endpoint()
        result = load_from_hub(tmp_path, endpoint, "build", **({"HF_HUB_OFFLINE": "1"} if how == "offline" else {}))
        assert hub.requests == []
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    assert ("the Hugging Face cache's copy of Audio.tar" in result.stderr) == (how == "out_of_reach")


@pytest.mark.parametrize("cached", ["whole_archive", "ranges"])
def test_offline_force_redownload_says_the_two_disagree(tmp_path, layout_archive, cached):
    archive_path, manifest_path = layout_archive("tar_cf")
    options = {"test_members_only": False} if cached == "whole_archive" else members_options(manifest_path)
    with StandInHub(archive_path) as hub:
        assert load_from_hub(tmp_path, hub.url, "build", options).returncode == 0
    result = load_from_hub(tmp_path, "http://127.0.0.1:9", "force", options, HF_HUB_OFFLINE="1")
    assert result.returncode != 0
    assert 'HF_HUB_OFFLINE is set, and download_mode="force_redownload" asks to download BAAI/Emotiontalk/Audio.tar anew' in result.stderr


def test_the_ranges_go_under_the_cache_dir_given(tmp_path, layout_archive, layout_corpus):
    archive_path, manifest_path = layout_archive("tar_cf")
    with StandInHub(archive_path) as hub:
        result = load_from_hub(tmp_path, hub.url, "build", {**members_options(manifest_path), "cache_dir": str(tmp_path / "mine")})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    assert [path.name for path in ranges_dirs(tmp_path, cache=("mine",))] == [hub.sha256] and ranges_dirs(tmp_path) == []


def test_ranges_of_no_further_use_are_removed(tmp_path, layout_archive, layout_corpus):
    """A new upload's proven ranges replace the last one's; an unproven fetch leaves none behind."""
    manifest_path = layout_archive("tar_cf")[1]
    sha256s = []
    for layout in ("tar_cf", "grouped"):
        with StandInHub(layout_archive(layout)[0]) as hub:
            result = load_from_hub(tmp_path, hub.url, "force", members_options(manifest_path))
            assert result.returncode == 0 and FALLBACK not in result.stderr, result.stderr
            sha256s.append(hub.sha256)
        assert [path.name for path in ranges_dirs(tmp_path)] == [hub.sha256]
    with StandInHub(layout_archive("paired")[0]) as hub:
        result = load_from_hub(tmp_path, hub.url, "force", {"archive_revision": COMMIT})
    assert result.returncode == 0 and FALLBACK in result.stderr
    assert [path.name for path in ranges_dirs(tmp_path)] == [sha256s[-1]]


def test_a_stream_reaches_the_gated_archive_with_the_token_given(tmp_path, layout_archive, layout_corpus):
    """No HF_TOKEN and no saved login: `token=` alone opens the gate, for the members-only stream and its fallback."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        hub.mode = "gated"
        for options in (members_options(manifest_path), {}):
            result = load_from_hub(tmp_path, hub.url, "stream", {**options, "token": GOOD_TOKEN}, token=None)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == expected_rows(layout_corpus)
            assert (FALLBACK in result.stderr) == (not options)


def test_an_unproven_stream_of_a_revision_falls_back_to_that_revisions_archive(tmp_path, layout_archive, layout_corpus):
    archive_path, _ = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, "stream", {"archive_revision": COMMIT})
        assert result.returncode == 0 and FALLBACK in result.stderr, result.stderr
        resolved = [path for _, path, _ in hub.requests if "/resolve/" in path or "/tree/" in path or "/revision/" in path]
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    assert resolved and all(COMMIT in path for path in resolved), resolved


def test_a_streams_ranges_are_fetched_in_pieces(tmp_path, layout_archive, layout_corpus):
    """As a build's: every connection is used, and a cut connection loses one piece."""
    archive_path, manifest_path = layout_archive("grouped")
    with StandInHub(archive_path, redirect=True) as hub:
        result = load_from_hub(tmp_path, hub.url, "stream", members_options(manifest_path))
        lengths = [int(end) - int(start) + 1 for start, end in (header.removeprefix("bytes=").split("-") for header in hub.ranges_requested())]
    assert result.returncode == 0 and FALLBACK not in result.stderr, result.stderr
    assert json.loads(result.stdout) == expected_rows(layout_corpus)
    piece_bytes = ranged_tar.scaled(ranged_tar.PIECE_BYTES, archive_path.stat().st_size)
    # Besides the probes' reads of SCAN_BYTES, pieces: none longer than PIECE_BYTES (scaled), enough for every connection.
    assert max(lengths) <= max(piece_bytes, ranged_tar.SCAN_BYTES) and sum(length == piece_bytes for length in lengths) > ranged_tar.CONNECTIONS
