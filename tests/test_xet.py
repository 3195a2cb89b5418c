"""The Xet path, against the stand-in Hub's Xet storage, with the real, unpatched `hf_xet` and huggingface_hub."""

import json

import pytest

from stand_in_hub import StandInHub
from test_export import assert_exported, assert_one_line_error
from test_hub import REFUSALS, expected_rows, export_from_hub, load_from_hub

CHUNKS_PER_XORB = 16  # xorbs of 1 MiB: the 31 MB archive spans 30 of them


@pytest.fixture
def xet_hub(large_archive):
    archive_path, corpus = large_archive
    with StandInHub(archive_path, xet=True, chunks_per_xorb=CHUNKS_PER_XORB) as hub:
        hub.utterances = corpus
        yield hub


def export_dir(tmp_path):
    return tmp_path / "h2t" / "emotiontalk"


def xorbs_fetched(hub):
    return [path for path in hub.xet_requests() if path.startswith("/xorbs/")]


def test_export_downloads_over_xet(tmp_path, xet_hub):
    result = export_from_hub(tmp_path, xet_hub.url)
    assert result.returncode == 0, result.stderr
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
    assert_exported(export_dir(tmp_path), xet_hub.utterances)
    assert xet_hub.ranges_requested() == []
    assert sorted(set(xorbs_fetched(xet_hub))) == sorted(f"/xorbs/default/{xorb}" for xorb in xet_hub.xorb_hashes)
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]


def test_load_dataset_downloads_over_xet(tmp_path, xet_hub):
    result = load_from_hub(tmp_path, xet_hub.url, "build")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(xet_hub.utterances)
    assert xet_hub.ranges_requested() == [] and xorbs_fetched(xet_hub)


def test_load_dataset_says_a_failed_xet_download_in_one_line(tmp_path, xet_hub):
    xet_hub.xet_mode, xet_hub.xet_drop_after = "outage", 3_000_000
    result = load_from_hub(tmp_path, xet_hub.url, "build")
    assert result.returncode != 0
    assert "ArchiveError: the Xet download of BAAI/Emotiontalk/Audio.tar failed (" in result.stderr
    assert "or set HF_HUB_DISABLE_XET=1 to download over plain HTTP" in result.stderr


@pytest.mark.parametrize("how", ["HF_HUB_DISABLE_XET", "not announced"])
def test_without_xet_the_download_goes_over_ranges(tmp_path, large_archive, how):
    archive_path, corpus = large_archive
    with StandInHub(archive_path, xet=how != "not announced", chunks_per_xorb=CHUNKS_PER_XORB) as hub:
        result = export_from_hub(tmp_path, hub.url, **({"HF_HUB_DISABLE_XET": "1"} if how == "HF_HUB_DISABLE_XET" else {}))
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == [""] and xorbs_fetched(hub) == []
        assert_exported(export_dir(tmp_path), corpus)


def test_a_xet_download_cut_off_continues_over_ranges_in_the_same_run(tmp_path, xet_hub):
    xet_hub.xet_mode, xet_hub.xet_drop_after = "outage", 12_000_000
    result = export_from_hub(tmp_path, xet_hub.url)
    assert result.returncode == 0, result.stderr
    assert "The Xet download of Audio.tar failed" in result.stderr and "continuing over HTTP ranges" in result.stderr
    [resumed] = xet_hub.ranges_requested()
    kept = int(resumed.removeprefix("bytes=").removesuffix("-"))
    assert 0 < kept <= xet_hub.xet_drop_after  # what Xet wrote is kept, and no byte comes twice over ranges
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def test_a_xet_download_cut_off_with_the_hub_finishes_over_ranges_next_run(tmp_path, xet_hub):
    # Xet stops after 3 MB; the ranged download then gets 15 MB more, of which huggingface_hub writes 10 MiB.
    xet_hub.xet_mode, xet_hub.xet_drop_after = "outage", 3_000_000
    xet_hub.mode, xet_hub.drop_after = "outage", 15_000_000
    assert_one_line_error(export_from_hub(tmp_path, xet_hub.url), "was interrupted", "run the same command again to resume")
    [partial] = (export_dir(tmp_path) / "raw").glob(".Audio.tar.incomplete")
    kept = partial.stat().st_size
    assert kept >= 10 * 2**20
    xet_hub.xet_mode = xet_hub.mode = "normal"
    xet_hub.requests.clear()
    second = export_from_hub(tmp_path, xet_hub.url)
    assert second.returncode == 0, second.stderr
    assert xorbs_fetched(xet_hub) == []  # Xet would start over: the kept bytes go on over ranges
    assert xet_hub.ranges_requested() == [f"bytes={kept}-"]
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


@pytest.mark.parametrize("status, token, fragments", REFUSALS)
def test_a_refusing_token_route_gives_the_gated_line(tmp_path, xet_hub, status, token, fragments):
    xet_hub.xet_mode = f"token_{status}"
    assert_one_line_error(export_from_hub(tmp_path, xet_hub.url, token=token), *fragments)
    assert xet_hub.ranges_requested() == [] and xorbs_fetched(xet_hub) == []


def test_damaged_xorb_data_is_refused_and_nothing_is_kept(tmp_path, xet_hub):
    xet_hub.xet_mode = "damaged"
    result = export_from_hub(tmp_path, xet_hub.url)
    assert_one_line_error(result, "downloaded Audio.tar has sha256", f"the Hub announces {xet_hub.sha256}; it was deleted")
    assert list(export_dir(tmp_path).rglob("*Audio.tar*")) == [] and not (export_dir(tmp_path) / "raw").exists()
    assert not (export_dir(tmp_path) / "zh-en.jsonl").exists() and not (export_dir(tmp_path) / ".export-state.json").exists()
    xet_hub.xet_mode = "normal"
    again = export_from_hub(tmp_path, xet_hub.url)
    assert again.returncode == 0, again.stderr
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def test_a_xet_download_left_unchecked_is_checked_by_the_next_run(tmp_path, xet_hub):
    """A run stopped while it hashed its Xet download leaves it in raw/.unverified/; the next run checks it and
    downloads nothing."""
    unverified = export_dir(tmp_path) / "raw" / ".unverified" / "Audio.tar"
    unverified.parent.mkdir(parents=True)
    unverified.write_bytes(xet_hub.content)
    result = export_from_hub(tmp_path, xet_hub.url)
    assert result.returncode == 0, result.stderr
    assert xet_hub.ranges_requested() == [] and xorbs_fetched(xet_hub) == []
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert_exported(export_dir(tmp_path), xet_hub.utterances)
