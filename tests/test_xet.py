"""The Xet path, against the stand-in Hub's Xet storage, with the real, unpatched `hf_xet` and huggingface_hub."""

import hashlib
import json
import subprocess
import sys
import tarfile
import time

import pytest

import export_jsonl
from conftest import PROJECT_DIR
from stand_in_hub import StandInHub
from test_export import EXPORTER, assert_exported, assert_one_line_error
from test_hub import REFUSALS, ctrl_c_once, expected_rows, export_from_hub, hub_env, load_from_hub, reads_beyond_the_export

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
    result = load_from_hub(tmp_path, xet_hub.url, "build", {"test_members_only": False})
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
    """hf_xet fetches xorbs in parallel and writes them in order: it may have written anything from none of the
    bytes it received (the outage used up before its first block was complete) to all of them. Whatever it wrote
    is kept, and the ranged download asks for the rest, once."""
    xet_hub.xet_mode, xet_hub.xet_drop_after = "outage", 12_000_000
    result = export_from_hub(tmp_path, xet_hub.url)
    assert result.returncode == 0, result.stderr
    [notice] = [line for line in result.stderr.splitlines() if "The Xet download of Audio.tar failed" in line]
    kept = int(notice.rsplit("continuing over HTTP ranges from byte ", 1)[1])
    assert 0 <= kept <= xet_hub.xet_drop_after
    assert xet_hub.ranges_requested() == [f"bytes={kept}-" if kept else ""]
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def test_a_xet_download_cut_off_with_the_hub_finishes_over_ranges_next_run(tmp_path, xet_hub):
    # Xet stops after 3 MB; the ranged download then gets 15 MB more, of which huggingface_hub writes 10 MiB.
    xet_hub.xet_mode, xet_hub.xet_drop_after = "outage", 3_000_000
    xet_hub.mode, xet_hub.drop_after = "outage", 15_000_000
    assert_one_line_error(export_from_hub(tmp_path, xet_hub.url), "was interrupted", "run the same command again to resume")
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == [".Audio.tar.incomplete"]
    kept = (export_dir(tmp_path) / "raw" / ".Audio.tar.incomplete").stat().st_size
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


def middle_header_offset(archive_path):
    with tarfile.open(archive_path) as archive:
        members = archive.getmembers()
    return members[len(members) // 2].offset


@pytest.mark.parametrize("damage", ["in_audio", "in_a_header"])
def test_damaged_xorb_data_is_refused_and_nothing_is_kept(tmp_path, xet_hub, damage):
    """A flipped byte in audio data exports cleanly; one in a tar header fails the build first. Either way the run
    ends with the sha256 line (and its hint against a chunk cache), and keeps nothing of the download."""
    xet_hub.xet_mode = "damaged"
    if damage == "in_a_header":
        xet_hub.xet_damage_offset = middle_header_offset(xet_hub.archive_path)
    result = export_from_hub(tmp_path, xet_hub.url)
    assert_one_line_error(result, "downloaded Audio.tar has sha256", f"the Hub announces {xet_hub.sha256}; it was deleted",
                          "set HF_HUB_DISABLE_XET=1 to download it over plain HTTP")
    assert list(export_dir(tmp_path).rglob("*Audio.tar*")) == [] and not (export_dir(tmp_path) / "raw").exists()
    assert not (export_dir(tmp_path) / "zh-en.jsonl").exists() and not (export_dir(tmp_path) / ".export-state.json").exists()
    xet_hub.xet_mode = "normal"
    again = export_from_hub(tmp_path, xet_hub.url)
    assert again.returncode == 0, again.stderr
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def test_a_damaged_download_leaves_the_previous_parquet_copy_as_it_was(tmp_path, xet_hub):
    assert export_from_hub(tmp_path, xet_hub.url, "--parquet").returncode == 0
    parquet_dir = export_dir(tmp_path) / "parquet"
    before = {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in parquet_dir.iterdir()}
    (export_dir(tmp_path) / "raw" / "Audio.tar").unlink()
    xet_hub.xet_mode = "damaged"
    assert_one_line_error(export_from_hub(tmp_path, xet_hub.url, "--parquet"), "downloaded Audio.tar has sha256")
    assert {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in parquet_dir.iterdir()} == before


# Runs the exporter held where it confirms the hash of its Xet download (argv[1] is touched then): the download
# is whole in raw/.unverified/, and the export has read it.
HELD_AT_THE_CHECK = """
import pathlib, runpy, sys, time
import export_jsonl
hub_download = export_jsonl.project_module("hub_download")
held_path, sys.argv = pathlib.Path(sys.argv[1]), sys.argv[2:]

def held(self):
    held_path.touch()
    time.sleep(600)

hub_download.PendingCheck.confirm = held
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start_export_held_at_the_check(tmp_path, endpoint):
    env = {**hub_env(tmp_path, endpoint), "PYTHONPATH": str(PROJECT_DIR), **dict.fromkeys(export_jsonl.PROGRESS_BAR_SWITCHES, "1")}
    return subprocess.Popen([sys.executable, "-c", HELD_AT_THE_CHECK, str(tmp_path / "held"), EXPORTER, "--datadir", str(tmp_path / "h2t")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("offline", [False, True])
@pytest.mark.parametrize("damaged", [False, True])
def test_a_xet_download_left_unchecked_by_a_killed_run_is_checked_by_the_next(tmp_path, xet_hub, offline, damaged):
    """A run killed while it exported from its Xet download, before the hash was checked, leaves the download in
    raw/.unverified/; the next run, offline too, checks it against what the Hub announced before it exports from
    it, and downloads nothing."""
    xet_hub.xet_mode = "damaged" if damaged else "normal"
    unverified = export_dir(tmp_path) / "raw" / ".unverified" / "Audio.tar"
    process = start_export_held_at_the_check(tmp_path, xet_hub.url)
    deadline = time.monotonic() + 120
    while not (tmp_path / "held").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    stderr = process.communicate()[1]
    assert (tmp_path / "held").exists(), stderr
    assert unverified.exists() and not (export_dir(tmp_path) / "zh-en.jsonl").exists()
    xet_hub.xet_mode = "normal"
    xet_hub.requests.clear()
    result = export_from_hub(tmp_path, xet_hub.url, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    assert xet_hub.ranges_requested() == [] and xorbs_fetched(xet_hub) == []
    if damaged:
        assert_one_line_error(result, "downloaded Audio.tar has sha256", f"the Hub announced {xet_hub.sha256}; it was deleted")
        assert not (export_dir(tmp_path) / "zh-en.jsonl").exists()
        assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == []
        return
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def test_a_xet_download_is_hashed_once(tmp_path, xet_hub):
    """hf_xet checks no hash, so the file it writes is read once to hash it; not twice."""
    assert 0.5 < reads_beyond_the_export(tmp_path, xet_hub) < 1.5
    assert xet_hub.ranges_requested() == [] and xorbs_fetched(xet_hub)


# Runs the exporter with an hf_xet that writes a file as hf_xet 1.1 does: into a file of its full size, blocks in
# the order they arrive (here from the last), with holes until the last one; argv[1] says whether it fails midway.
OUT_OF_ORDER_XET = """
import os, runpy, sys, time
import huggingface_hub.file_download

real_xet_get = huggingface_hub.file_download.xet_get
fails_midway, sys.argv = sys.argv[1] == "fails", sys.argv[2:]

def out_of_order_xet_get(*, incomplete_path, **options):
    whole = incomplete_path.with_name("whole.tar")
    real_xet_get(incomplete_path=whole, **options)
    data = whole.read_bytes()
    whole.unlink()
    blocks = list(range(0, len(data), 1 << 20))[::-1]
    with open(incomplete_path, "r+b") as file:
        for offset in blocks[: len(blocks) // 2] if fails_midway else blocks:
            file.seek(offset)
            file.write(data[offset : offset + (1 << 20)])
            file.flush()
            time.sleep(0.005)
    if fails_midway:
        raise RuntimeError("cut off midway")

huggingface_hub.file_download.xet_get = out_of_order_xet_get
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.parametrize("outcome", ["good", "damaged", "fails"])
def test_an_hf_xet_that_writes_out_of_order(tmp_path, xet_hub, outcome):
    """A good download is accepted, a damaged one refused; of a failed one, the file with holes keeps nothing."""
    xet_hub.xet_mode = "damaged" if outcome == "damaged" else "normal"
    result = subprocess.run([sys.executable, "-c", OUT_OF_ORDER_XET, outcome, EXPORTER, "--datadir", str(tmp_path / "h2t")],
                            env=hub_env(tmp_path, xet_hub.url), capture_output=True, text=True)
    if outcome == "damaged":
        assert_one_line_error(result, "downloaded Audio.tar has sha256", "it was deleted")
        assert list(export_dir(tmp_path).rglob("*Audio.tar*")) == []
        return
    assert result.returncode == 0, result.stderr
    assert xet_hub.ranges_requested() == ([""] if outcome == "fails" else [])
    assert sorted(path.name for path in (export_dir(tmp_path) / "raw").iterdir()) == ["Audio.tar"]
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


def cached_archive(tmp_path):
    """The snapshot entry of Audio.tar in the test's Hugging Face cache, and the file that holds its bytes (with
    huggingface_hub 2.x, in the store shared across repositories, named by the Xet hash; with 0.36, its blob)."""
    [snapshot_entry] = (tmp_path / "hf-home" / "hub" / "datasets--BAAI--Emotiontalk" / "snapshots").glob("*/Audio.tar")
    return snapshot_entry, snapshot_entry.resolve()


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_an_archive_that_load_dataset_fetched_over_xet_is_linked_not_fetched_again(tmp_path, xet_hub, offline):
    assert load_from_hub(tmp_path, xet_hub.url, "build").returncode == 0
    _, held_in = cached_archive(tmp_path)
    hub_listing = sorted(str(path) for path in (tmp_path / "hf-home" / "hub").rglob("*"))
    xet_hub.requests.clear()
    result = export_from_hub(tmp_path, xet_hub.url, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    assert result.returncode == 0, result.stderr
    assert xet_hub.ranges_requested() == [] and xet_hub.xet_requests() == [] and len(xet_hub.requests) == (0 if offline else 1)
    assert (export_dir(tmp_path) / "raw" / "Audio.tar").stat().st_ino == held_in.stat().st_ino
    assert held_in.read_bytes() == xet_hub.content
    assert sorted(str(path) for path in (tmp_path / "hf-home" / "hub").rglob("*")) == hub_listing
    assert_exported(export_dir(tmp_path), xet_hub.utterances)


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_a_damaged_archive_that_load_dataset_fetched_over_xet_is_named_and_left_alone(tmp_path, xet_hub, offline):
    assert load_from_hub(tmp_path, xet_hub.url, "build").returncode == 0
    snapshot_entry, held_in = cached_archive(tmp_path)
    damaged = bytearray(held_in.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    held_in.write_bytes(damaged)
    hub_listing = sorted(str(path) for path in (tmp_path / "hf-home" / "hub").rglob("*"))
    result = export_from_hub(tmp_path, xet_hub.url, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    notice = f"{snapshot_entry} in the Hugging Face cache has sha256 {hashlib.sha256(damaged).hexdigest()}"
    if offline:
        assert_one_line_error(result, notice, "it was left as it is", "pass --archive /path/to/Audio.tar")
    else:  # named, then downloaded anew into raw/
        assert result.returncode == 0, result.stderr
        assert f"{notice}, the Hub announces {xet_hub.sha256}; it was left as it is; downloading Audio.tar anew" in result.stderr
        assert (export_dir(tmp_path) / "raw" / "Audio.tar").read_bytes() == xet_hub.content
        assert_exported(export_dir(tmp_path), xet_hub.utterances)
    assert held_in.read_bytes() == damaged and snapshot_entry.resolve() == held_in
    assert sorted(str(path) for path in (tmp_path / "hf-home" / "hub").rglob("*")) == hub_listing


def test_ctrl_c_during_a_xet_download_keeps_what_it_wrote_and_the_next_run_resumes_over_ranges(tmp_path, large_archive):
    archive_path, corpus = large_archive
    partial = export_dir(tmp_path) / "raw" / ".Audio.tar.incomplete"
    with StandInHub(archive_path, xet=True, chunks_per_xorb=CHUNKS_PER_XORB) as hub:
        # hf_xet writes the xorbs in the file's order: held, the last one keeps the download from ending, however
        # quick the rest is (at 1 MB/s a connection, the parallel xorbs could all end within one poll).
        hub.hold(xorbs={len(hub.xorb_hashes) - 1})
        status, stderr = ctrl_c_once(tmp_path, hub, lambda: partial.is_file() and partial.stat().st_size > 4_000_000)
        assert status == 130, stderr
        kept = partial.stat().st_size
        assert kept > 4_000_000 and partial.read_bytes() == hub.content[:kept]
        assert stderr.strip().splitlines()[-1] == (
            f"export_jsonl.py: interrupted; nothing was left half-written; what was downloaded so far ({kept / 1e6:.1f} MB) "
            f"is kept in {partial.parent} for the next run to resume from; run the same command again to finish")
        hub.released.set()
        hub.requests.clear()
        result = export_from_hub(tmp_path, hub.url)
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == [f"bytes={kept}-"] and xorbs_fetched(hub) == []
    assert_exported(export_dir(tmp_path), corpus)
