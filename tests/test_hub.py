"""The Hub path, against the stand-in Hub over real HTTP, with the pinned clients unpatched.

`HF_ENDPOINT` is read when `huggingface_hub` and `datasets` are imported, so each run is a subprocess."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import export_jsonl
import synthetic_archive
from conftest import BUILDER_SCRIPT, PROJECT_DIR
from stand_in_hub import COMMIT, GOOD_TOKEN, StandInHub
from test_export import EXPORTER, assert_exported, assert_one_line_error

# hf_xet retries a failed request 5 times, 3 s apart at first; the tests that cut Xet off need no such patience.
XET_QUICK_RETRIES = {"HF_XET_CLIENT_RETRY_MAX_ATTEMPTS": "1", "HF_XET_CLIENT_RETRY_BASE_DELAY": "10ms"}
hub_download = export_jsonl.project_module("hub_download")
ACCESS_HINT = "accept the conditions at https://huggingface.co/datasets/BAAI/Emotiontalk, then run `hf auth login` or set HF_TOKEN"

# Prints what the split holds, so that the parent can compare it with a local build. Its arguments: the script, the
# mode (build, stream or force: a build with download_mode="force_redownload"), and the builder's options as JSON.
LOAD_SCRIPT = """
import hashlib, json, sys, datasets
dataset = datasets.load_dataset(sys.argv[1], split="test", trust_remote_code=True, streaming=sys.argv[2] == "stream",
                                download_mode="force_redownload" if sys.argv[2] == "force" else None, **json.loads(sys.argv[3]))
dataset = dataset.cast_column("audio", datasets.Audio(decode=False))
rows = [(row["sample_id"], row["emotion"], hashlib.sha256(row["audio"]["bytes"]).hexdigest()) for row in dataset]
print(json.dumps(rows))
"""


@pytest.fixture
def redirecting_hub(hub):
    """The stand-in as the Hub answers for a file in storage: `resolve` redirects to a signed URL on another host."""
    hub.redirect = True
    return hub


def hub_env(tmp_path, endpoint, token=GOOD_TOKEN, **extra):
    """A fresh Hugging Face home per test, the stand-in as endpoint, and the token (if any) in HF_TOKEN."""
    env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf-home"), **XET_QUICK_RETRIES, **extra}
    env.pop("HF_DATASETS_CACHE")
    if token:
        env["HF_TOKEN"] = token
    return env


# Runs the exporter as `python export_jsonl.py` does, with some of a module's settings changed first.
WITH_SETTINGS = """
import json, runpy, sys
import export_jsonl
module = export_jsonl.project_module(sys.argv[1])
for name, value in json.loads(sys.argv[2]).items():
    setattr(module, name, tuple(value) if isinstance(value, list) else value)
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def export_from_hub(tmp_path, endpoint, *args, settings=None, **env_options):
    """The exporter run against `endpoint`; `settings`, (module name, {setting: value}), changes settings first."""
    command, env = [sys.executable, EXPORTER], hub_env(tmp_path, endpoint, **env_options)
    if settings is not None:
        module_name, values = settings
        command = [sys.executable, "-c", WITH_SETTINGS, module_name, json.dumps(values), EXPORTER]
        # The settings' module imports datasets, which reads these at once: set before, as main() sets them for a log.
        env.update({"PYTHONPATH": str(PROJECT_DIR), **dict.fromkeys(export_jsonl.PROGRESS_BAR_SWITCHES, "1")})
    return subprocess.run([*command, "--datadir", str(tmp_path / "h2t"), *args], env=env, capture_output=True, text=True)


def load_from_hub(tmp_path, endpoint, mode, options=None, script=BUILDER_SCRIPT, cwd=None, **env_options):
    """load_dataset of the loading script against `endpoint`, with the builder's `options`; in a fresh datasets
    cache of the test's own (inside HF_HOME)."""
    return subprocess.run([sys.executable, "-c", LOAD_SCRIPT, script, mode, json.dumps(options or {})], cwd=cwd,
                          env=hub_env(tmp_path, endpoint, **env_options), capture_output=True, text=True)


def expected_rows(utterances):
    return [[u.sample_id, synthetic_archive.EMOTIONS.index(u.emotion), hashlib.sha256(synthetic_archive.wav_bytes(u)).hexdigest()]
            for u in sorted(utterances, key=lambda u: u.sample_id) if u.is_test]


def test_export_downloads_checks_and_then_works_offline(tmp_path, hub):
    result = export_from_hub(tmp_path, hub.url)
    assert result.returncode == 0, result.stderr
    export_dir = tmp_path / "h2t" / "emotiontalk"
    assert (export_dir / "raw" / "Audio.tar").read_bytes() == hub.content
    assert_exported(export_dir, hub.utterances)
    assert all(headers.get("authorization") == f"Bearer {GOOD_TOKEN}" for _, _, headers in hub.requests)
    (export_dir / ".export-state.json").unlink()
    (export_dir / "zh-en.jsonl").unlink()
    hub.requests.clear()
    offline = export_from_hub(tmp_path, hub.url, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stderr
    assert hub.requests == []
    assert_exported(export_dir, hub.utterances)


@pytest.mark.parametrize("mode", ["build", "stream"])
def test_load_dataset_from_the_hub(tmp_path, hub, mode):
    result = load_from_hub(tmp_path, hub.url, mode)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == expected_rows(hub.utterances)
    blob = tmp_path / "hf-home" / "hub" / "datasets--BAAI--Emotiontalk" / "blobs" / hub.sha256
    assert blob.is_file() == (mode == "build")
    if mode == "stream":
        assert any(headers.get("range") for _, path, headers in hub.requests if "/resolve/" in path)


@pytest.mark.parametrize("offline", [False, True])
def test_export_links_the_archive_that_load_dataset_cached(tmp_path, hub, offline):
    assert load_from_hub(tmp_path, hub.url, "build").returncode == 0
    blob = tmp_path / "hf-home" / "hub" / "datasets--BAAI--Emotiontalk" / "blobs" / hub.sha256
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url, **({"HF_HUB_OFFLINE": "1"} if offline else {}))
    assert result.returncode == 0, result.stderr
    assert hub.ranges_requested() == []
    assert len(hub.requests) == (0 if offline else 1)
    archive_path = tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar"
    assert archive_path.stat().st_ino == blob.stat().st_ino and blob.stat().st_nlink == 2
    assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)


def test_a_damaged_cached_archive_is_named_and_left_as_it_is(tmp_path, hub):
    """Offline, a cached copy that does not hash to the ETag the cache filed it under is refused in one line; the
    user's cache is not touched."""
    assert load_from_hub(tmp_path, hub.url, "build").returncode == 0
    blob = tmp_path / "hf-home" / "hub" / "datasets--BAAI--Emotiontalk" / "blobs" / hub.sha256
    damaged = bytearray(blob.read_bytes())
    damaged[-1] ^= 0xFF
    blob.write_bytes(damaged)
    result = export_from_hub(tmp_path, hub.url, HF_HUB_OFFLINE="1")
    assert_one_line_error(result, "in the Hugging Face cache has sha256", f"the Hugging Face cache filed it as {hub.sha256}",
                          "it was left as it is")
    assert blob.read_bytes() == damaged and not (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").exists()


def test_gated_without_token(tmp_path, hub):
    hub.mode = "gated"
    assert_one_line_error(export_from_hub(tmp_path, hub.url, token=None), "is gated and no Hub token was found", ACCESS_HINT)
    for mode in ("build", "stream"):
        result = load_from_hub(tmp_path, hub.url, mode, token=None)
        assert result.returncode != 0
        assert f"ArchiveError: BAAI/Emotiontalk is gated and no Hub token was found: {ACCESS_HINT}" in result.stderr


def test_gated_with_the_granted_token_downloads(tmp_path, hub):
    hub.mode = "gated"
    assert export_from_hub(tmp_path, hub.url).returncode == 0


@pytest.mark.parametrize("mode, status", [("gated", "HTTP 401"), ("forbidden", "HTTP 403")])
def test_token_without_access(tmp_path, hub, mode, status):
    hub.mode = mode
    result = export_from_hub(tmp_path, hub.url, token="hf_not_granted")
    assert_one_line_error(result, "your Hub token has no access to the gated BAAI/Emotiontalk", status, ACCESS_HINT)


# A refusal (HTTP status) with or without a token, and the line it must give.
REFUSALS = [
    (401, GOOD_TOKEN, ["your Hub token has no access to the gated BAAI/Emotiontalk (HTTP 401)", ACCESS_HINT]),
    (403, GOOD_TOKEN, ["your Hub token has no access to the gated BAAI/Emotiontalk (HTTP 403)", ACCESS_HINT]),
    (401, None, ["BAAI/Emotiontalk is gated and no Hub token was found", ACCESS_HINT]),
]


@pytest.mark.parametrize("status, token, fragments", REFUSALS)
def test_a_bare_401_or_403_gives_the_token_line(tmp_path, hub, status, token, fragments):
    """A proxy, or a mirror behind HF_ENDPOINT, refuses without the Hub's X-Error-Code."""
    hub.mode = f"bare_{status}"
    assert_one_line_error(export_from_hub(tmp_path, hub.url, token=token), *fragments)


def cached_blob(hf_home, hub):
    return hf_home / "hub" / "datasets--BAAI--Emotiontalk" / "blobs" / hub.sha256


def test_a_cache_on_another_filesystem_is_copied_whole(tmp_path, large_archive, other_filesystem):
    """The Hugging Face cache on one filesystem, the export on another: the archive, larger than a copy block,
    is copied whole, and the cached copy is left as it was."""
    archive_path, corpus = large_archive
    assert archive_path.stat().st_size > hub_download.BLOCK_BYTES
    with StandInHub(archive_path) as hub:
        assert load_from_hub(tmp_path, hub.url, "build", HF_HOME=str(other_filesystem)).returncode == 0
        blob = cached_blob(other_filesystem, hub)
        hub.requests.clear()
        result = export_from_hub(tmp_path, hub.url, HF_HOME=str(other_filesystem))
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == []
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    assert (raw_dir / "Audio.tar").read_bytes() == archive_path.read_bytes() == blob.read_bytes()
    assert blob.stat().st_nlink == 1 and (raw_dir / "Audio.tar").stat().st_dev != blob.stat().st_dev
    assert sorted(path.name for path in raw_dir.iterdir()) == ["Audio.tar"]
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


def test_a_link_left_by_a_killed_run_does_not_stop_the_next_from_linking(tmp_path, hub):
    assert load_from_hub(tmp_path, hub.url, "build").returncode == 0
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    raw_dir.mkdir(parents=True)
    (raw_dir / ".Audio.tar.link.tmp").write_bytes(b"left by a run killed while it linked the archive")
    result = export_from_hub(tmp_path, hub.url)
    assert result.returncode == 0, result.stderr
    blob = cached_blob(tmp_path / "hf-home", hub)
    assert (raw_dir / "Audio.tar").stat().st_ino == blob.stat().st_ino
    assert sorted(path.name for path in raw_dir.iterdir()) == ["Audio.tar"]


def test_an_older_upload_in_the_cache_is_neither_exported_nor_deleted(tmp_path, small_archive):
    """The cache holds what an earlier load_dataset downloaded; the Hub now announces another upload."""
    data_dir, _ = small_archive
    with StandInHub(data_dir / "Audio.tar") as older_hub:
        assert load_from_hub(tmp_path, older_hub.url, "build").returncode == 0
    older_blob = cached_blob(tmp_path / "hf-home", older_hub)
    older_bytes = older_blob.read_bytes()
    (tmp_path / "newer").mkdir()
    newer = synthetic_archive.write_small_archive(tmp_path / "newer" / "Audio.tar", seed=1)
    with StandInHub(tmp_path / "newer" / "Audio.tar") as hub:
        result = export_from_hub(tmp_path, hub.url)
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == [""]
    archive_path = tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar"
    assert archive_path.read_bytes() == (tmp_path / "newer" / "Audio.tar").read_bytes()
    assert older_blob.read_bytes() == older_bytes and archive_path.stat().st_ino != older_blob.stat().st_ino
    assert_exported(tmp_path / "h2t" / "emotiontalk", newer, seed=1)


@pytest.mark.parametrize("how", ["copied_in", "copied_in_damaged", "replaced_damaged", "touched"])
def test_an_archive_in_raw_that_the_export_does_not_vouch_for_is_checked_against_the_hub(tmp_path, hub, how):
    export_dir = tmp_path / "h2t" / "emotiontalk"
    archive_path = export_dir / "raw" / "Audio.tar"
    damaged = bytearray(hub.content)
    damaged[len(damaged) // 2] ^= 0x01  # inside a WAV: the export alone would not notice
    if how.startswith("copied_in"):
        archive_path.parent.mkdir(parents=True)
        archive_path.write_bytes(damaged if how == "copied_in_damaged" else hub.content)
    else:
        assert export_from_hub(tmp_path, hub.url).returncode == 0
        if how == "touched":
            os.utime(archive_path, ns=(archive_path.stat().st_atime_ns, archive_path.stat().st_mtime_ns + 10**9))
        else:
            archive_path.write_bytes(damaged)
    manifest_before = (export_dir / "zh-en.jsonl").read_bytes() if how == "replaced_damaged" else None
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url)
    assert [method for method, path, _ in hub.requests if "/resolve/" in path] == ["HEAD"]
    if "damaged" in how:
        assert_one_line_error(result, f"{archive_path} has {len(damaged)} bytes and sha256", f"sha256 {hub.sha256}",
                              "It was left as it is")
        assert archive_path.read_bytes() == damaged
        if manifest_before is None:
            assert not (export_dir / "zh-en.jsonl").exists()
        else:
            assert (export_dir / "zh-en.jsonl").read_bytes() == manifest_before
        return
    assert result.returncode == 0, result.stderr
    assert_exported(export_dir, hub.utterances)


def test_a_deleted_archive_is_downloaded_again(tmp_path, hub):
    assert export_from_hub(tmp_path, hub.url).returncode == 0
    archive_path = tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar"
    archive_path.unlink()
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url)
    assert result.returncode == 0, result.stderr
    assert hub.ranges_requested() == [""] and archive_path.read_bytes() == hub.content
    assert "0 written this run" in result.stdout


def test_a_connection_reset_mid_download_says_run_again_to_resume(tmp_path, large_archive):
    archive_path, corpus = large_archive
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "reset", 15_000_000
        assert_one_line_error(export_from_hub(tmp_path, hub.url), "was interrupted", "run the same command again to resume")
        hub.mode = "normal"
        result = export_from_hub(tmp_path, hub.url)
        assert result.returncode == 0, result.stderr
        assert_resumed_never_restarted(hub)
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


# Runs the exporter and, as the process exits, writes what it read from files (`rchar` of /proc/self/io counts
# every read() and pread(), not a socket's recv()).
READS_REPORTING_EXPORTER = """
import atexit, runpy, sys
report, sys.argv = sys.argv[1], sys.argv[2:]
atexit.register(lambda: open(report, "w").write(open("/proc/self/io").read()))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def bytes_read(tmp_path, endpoint, name, *args, **env_options) -> int:
    """What an export read from files, in bytes."""
    report = tmp_path / f"{name}.io"
    result = subprocess.run([sys.executable, "-c", READS_REPORTING_EXPORTER, str(report), EXPORTER,
                             "--datadir", str(tmp_path / name), *args],
                            env=hub_env(tmp_path, endpoint, **env_options), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return int(dict(line.split(": ") for line in report.read_text().splitlines())["rchar"])


def reads_beyond_the_export(tmp_path, hub, **env_options) -> float:
    """What an export from the Hub read from files beyond what the same export of the archive on disk reads, as a
    multiple of the archive's size: the hashing of a download that is read back instead of hashed as it arrives."""
    downloaded = bytes_read(tmp_path, hub.url, "h2t", **env_options)
    on_disk = bytes_read(tmp_path, hub.url, "from-disk", "--archive", str(hub.archive_path), **env_options)
    return (downloaded - on_disk) / hub.size


def test_a_ranged_download_is_hashed_as_it_arrives(tmp_path, large_archive):
    with StandInHub(large_archive[0]) as hub:
        assert reads_beyond_the_export(tmp_path, hub) < 0.5
        assert hub.ranges_requested() == [""]


def test_a_resume_answered_with_the_whole_file_ends_correct_and_hashed_once(tmp_path, large_archive):
    archive_path, corpus = large_archive
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "outage", 15_000_000
        assert_one_line_error(export_from_hub(tmp_path, hub.url), "was interrupted")
        [partial] = (tmp_path / "h2t" / "emotiontalk" / "raw").glob(".Audio.tar.incomplete")
        kept = partial.stat().st_size
        hub.mode = "whole_file"
        hub.requests.clear()
        assert reads_beyond_the_export(tmp_path, hub) < (kept + 0.5 * hub.size) / hub.size
        assert hub.ranges_requested()[0] == f"bytes={kept}-"
    assert (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").read_bytes() == archive_path.read_bytes()
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


def test_revision_not_found(tmp_path, hub):
    assert_one_line_error(export_from_hub(tmp_path, hub.url, "--revision", "v9"), "revision 'v9' of BAAI/Emotiontalk not found",
                          "check the revision you asked for")


@pytest.mark.parametrize("revision", [None, COMMIT])
def test_file_not_found(tmp_path, hub, revision):
    """Only a revision the user gave is theirs to check."""
    hub.mode = "not_found"
    result = export_from_hub(tmp_path, hub.url, *(["--revision", revision] if revision else []))
    assert_one_line_error(result, f"Audio.tar not found in BAAI/Emotiontalk at revision {revision or 'main'!r}")
    advice = "check the revision you asked for"
    assert (advice in result.stderr) == (revision is not None)
    assert ("see https://huggingface.co/datasets/BAAI/Emotiontalk, and check HF_ENDPOINT" in result.stderr) == (revision is None)


def test_streaming_offline_says_it_needs_the_hub(tmp_path, hub):
    result = load_from_hub(tmp_path, hub.url, "stream", HF_HUB_OFFLINE="1")
    assert result.returncode != 0 and hub.requests == []
    assert ("ArchiveError: streaming reads BAAI/Emotiontalk/Audio.tar from the Hub, and HF_HUB_OFFLINE is set; load without "
            "streaming=True (which works offline once the archive is downloaded), or pass a local copy as data_dir=") in result.stderr


def ctrl_c_once(tmp_path, hub, ready, **env_options):
    """The exporter against `hub`, sent SIGINT once `ready()` holds (or after a minute); its exit status and stderr."""
    process = subprocess.Popen([sys.executable, EXPORTER, "--datadir", str(tmp_path / "h2t")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env=hub_env(tmp_path, hub.url, **env_options))
    deadline = time.monotonic() + 60
    while not ready() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=60)[1]
    return process.returncode, stderr


def test_ctrl_c_during_a_download_says_what_is_kept_and_the_next_run_resumes(tmp_path, large_archive):
    archive_path, corpus = large_archive
    partial = tmp_path / "h2t" / "emotiontalk" / "raw" / ".Audio.tar.incomplete"
    with StandInHub(archive_path) as hub:
        # 9 MiB sent, less than huggingface_hub's chunk of 10 MiB: what was received must be kept all the same
        # (all but what socket buffers still hold, a few MB at most).
        hub.hold(after=9 << 20)
        status, stderr = ctrl_c_once(tmp_path, hub, lambda: hub.bytes_sent >= 9 << 20, HF_HUB_DISABLE_XET="1")
        assert status == 130, stderr
        kept = partial.stat().st_size
        assert kept > 1_000_000
        assert stderr.strip().splitlines()[-1] == (
            f"export_jsonl.py: interrupted; nothing was left half-written; what was downloaded so far ({kept / 1e6:.1f} MB) is kept "
            f"in {partial.parent} for the next run to resume from; run the same command again to finish")
        hub.released.set()
        hub.requests.clear()
        result = export_from_hub(tmp_path, hub.url, HF_HUB_DISABLE_XET="1")
        assert result.returncode == 0, result.stderr
        assert hub.ranges_requested() == [f"bytes={kept}-"]
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


def test_unreachable_hub_suggests_a_local_archive(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
    result = export_from_hub(tmp_path, closed_endpoint)
    assert_one_line_error(result, "cannot reach the Hub", "pass --archive /path/to/Audio.tar", "HF_HUB_OFFLINE=1")
    assert "data_dir" not in result.stderr


def test_datasets_4_is_refused_before_any_download(tmp_path, hub, fake_datasets_4):
    result = export_from_hub(tmp_path, hub.url, PYTHONPATH=str(fake_datasets_4))
    assert_one_line_error(result, "datasets 4.0.0 is installed")
    assert hub.requests == [] and not (tmp_path / "h2t").exists()


def test_offline_without_a_download_says_so(tmp_path, hub):
    assert_one_line_error(export_from_hub(tmp_path, hub.url, HF_HUB_OFFLINE="1"), "HF_HUB_OFFLINE is set", "not downloaded yet")
    assert hub.requests == []


def assert_resumed_never_restarted(hub):
    """Every GET of the archive after the first asks for the rest, from no earlier than the one before it."""
    first, *resumed = hub.ranges_requested()
    starts = [int(header.removeprefix("bytes=").removesuffix("-")) for header in resumed]
    assert first == "" and resumed and all(header == f"bytes={start}-" for header, start in zip(resumed, starts))
    assert 0 < starts[0] and starts == sorted(starts)


def test_cut_connections_resume_until_the_download_is_complete(tmp_path, large_archive):
    """huggingface_hub 0.x stops at a cut and the next run resumes; 1.x and later resume within the same run."""
    archive_path, corpus = large_archive
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "drop", 25_000_000
        for _ in range(3):
            result = export_from_hub(tmp_path, hub.url)
            if result.returncode == 0:
                break
            assert_one_line_error(result, "was interrupted", "run the same command again to resume")
        assert result.returncode == 0, result.stderr
        assert_resumed_never_restarted(hub)
        assert (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").read_bytes() == hub.content
        assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


def test_lasting_outage_says_interrupted_and_the_next_run_resumes(tmp_path, large_archive):
    archive_path, corpus = large_archive
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "outage", 25_000_000
        first = export_from_hub(tmp_path, hub.url)
        assert_one_line_error(first, "was interrupted", "run the same command again to resume")
        raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
        assert not (raw_dir / "Audio.tar").exists()
        [partial] = raw_dir.rglob("*.incomplete")
        kept = partial.stat().st_size
        assert 0 < kept <= hub.drop_after < len(hub.content)
        hub.mode = "normal"
        second = export_from_hub(tmp_path, hub.url)
        assert second.returncode == 0, second.stderr
        assert hub.ranges_requested()[-1] == f"bytes={kept}-"
        assert_resumed_never_restarted(hub)
        assert (raw_dir / "Audio.tar").read_bytes() == hub.content
        assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


@pytest.mark.parametrize("left_behind", ["complete", "too_long"])
def test_a_partial_download_of_full_length_or_more_is_settled(tmp_path, hub, left_behind):
    """A run killed while checking a complete download leaves it whole; one from another upload may be longer."""
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    raw_dir.mkdir(parents=True)
    (raw_dir / ".Audio.tar.incomplete").write_bytes(hub.content if left_behind == "complete" else hub.content + b"\0" * 1024)
    result = export_from_hub(tmp_path, hub.url)
    assert result.returncode == 0, result.stderr
    assert hub.ranges_requested() == ([] if left_behind == "complete" else [""])
    assert (raw_dir / "Audio.tar").read_bytes() == hub.content and not (raw_dir / ".Audio.tar.incomplete").exists()


def test_unforeseen_hub_failure_is_one_line_and_keeps_its_cause(tmp_path, hub):
    hub.mode = "server_error"
    # huggingface_hub spreads the answer over lines ("Bad request:", then what the server said, here nothing).
    result = export_from_hub(tmp_path, hub.url)
    assert_one_line_error(result, "the Hub failed to serve BAAI/Emotiontalk/Audio.tar (HTTP 400): Bad request")
    assert not result.stderr.strip().endswith(":")
    result = load_from_hub(tmp_path, hub.url, "build")
    assert "ArchiveError: the Hub failed to serve" in result.stderr
    assert "The above exception was the direct cause of the following exception" in result.stderr


def test_checksum_mismatch_deletes_the_download(tmp_path, hub):
    hub.mode = "bad_checksum"
    assert_one_line_error(export_from_hub(tmp_path, hub.url), f"the Hub announces {hub.sha256}; it was deleted")
    assert not (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").exists()
    assert not (tmp_path / "h2t" / "emotiontalk" / "zh-en.jsonl").exists()
    hub.mode = "normal"
    assert export_from_hub(tmp_path, hub.url).returncode == 0


def test_checksum_mismatch_in_the_cache_is_named_and_a_forced_redownload_mends_it(tmp_path, hub):
    hub.mode = "bad_checksum"
    result = load_from_hub(tmp_path, hub.url, "build")
    assert result.returncode != 0 and "in the Hugging Face cache has sha256" in result.stderr
    assert 'it was left as it is: load again with download_mode="force_redownload"' in result.stderr
    [cached] = (tmp_path / "hf-home" / "hub").rglob("Audio.tar")
    served = cached.read_bytes()
    assert served != hub.archive_path.read_bytes()  # the damaged bytes served, kept: the cache is the user's
    hub.mode = "normal"
    forced = load_from_hub(tmp_path, hub.url, "force")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout) == expected_rows(hub.utterances) and cached.read_bytes() == hub.archive_path.read_bytes()


def test_every_client_follows_the_redirect_to_storage_without_its_token(tmp_path, redirecting_hub):
    """hf_hub_download (load_dataset's build), datasets' streaming, and the exporter's own download, each through
    the signed storage URL, which refuses a request that carries the token."""
    export = export_from_hub(tmp_path / "export", redirecting_hub.url)
    assert export.returncode == 0, export.stderr
    assert_exported(tmp_path / "export" / "h2t" / "emotiontalk", redirecting_hub.utterances)
    for mode in ("build", "stream"):
        loaded = load_from_hub(tmp_path / mode, redirecting_hub.url, mode)
        assert loaded.returncode == 0, loaded.stderr
        assert json.loads(loaded.stdout) == expected_rows(redirecting_hub.utterances)
    storage_requests = [headers for _, path, headers in redirecting_hub.requests if path.startswith("/storage/")]
    assert storage_requests and not any("authorization" in headers for headers in storage_requests)


def test_a_link_cut_every_5_mb_finishes_in_runs_that_each_keep_what_they_received(tmp_path, large_archive):
    """Every connection is cut after 5 MB, less than huggingface_hub's chunk of 10 MiB: each run keeps what it
    received, so that runs of the same command finish; one that fails says so in one line, with no retry warnings."""
    archive_path, corpus = large_archive
    partial = tmp_path / "h2t" / "emotiontalk" / "raw" / ".Audio.tar.incomplete"
    with StandInHub(archive_path) as hub:
        hub.mode, hub.drop_after = "drop", 5_000_000
        for _ in range(8):
            kept_before = partial.stat().st_size if partial.exists() else 0
            result = export_from_hub(tmp_path, hub.url, HF_HUB_DISABLE_XET="1")
            if result.returncode == 0:
                break
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert_one_line_error(result, "was interrupted", "run the same command again to resume")
            assert partial.stat().st_size >= kept_before + 4_000_000
        assert result.returncode == 0, result.stderr
        assert "Trying to resume" not in result.stderr
    assert (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").read_bytes() == archive_path.read_bytes()
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)


def test_offline_another_revision_is_exported_from_its_own_cached_copy_or_said_not_cached(tmp_path, hub):
    """The cache holds main's Audio.tar (the stand-in's commit); offline, `--revision v2` is not main's under v2's name."""
    assert load_from_hub(tmp_path, hub.url, "build", {"test_members_only": False}).returncode == 0
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url, "--revision", "v2", HF_HUB_OFFLINE="1")
    assert_one_line_error(result, "HF_HUB_OFFLINE is set and BAAI/Emotiontalk/Audio.tar is not downloaded yet")
    by_commit = export_from_hub(tmp_path, hub.url, "--revision", COMMIT, HF_HUB_OFFLINE="1")
    assert by_commit.returncode == 0, by_commit.stderr
    assert hub.requests == []
    assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)


def test_a_cache_kept_without_symlinks_is_found_and_linked(tmp_path, hub):
    """As huggingface_hub keeps it where symlinks cannot be made (Windows without developer mode): the snapshot entry
    is the file itself. Online it is hashed against the Hub's sha256 and linked; offline nothing vouches for it."""
    assert load_from_hub(tmp_path, hub.url, "build", {"test_members_only": False}).returncode == 0
    [entry] = (tmp_path / "hf-home" / "hub" / "datasets--BAAI--Emotiontalk" / "snapshots").glob("*/Audio.tar")
    content = entry.read_bytes()
    entry.unlink()
    entry.write_bytes(content)
    offline = export_from_hub(tmp_path, hub.url, HF_HUB_OFFLINE="1")
    assert_one_line_error(offline, f"{entry} in the Hugging Face cache cannot be checked offline", "unset HF_HUB_OFFLINE")
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url)
    assert result.returncode == 0, result.stderr
    assert hub.ranges_requested() == [] and "Invalid argument" not in result.stderr
    assert (tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar").stat().st_ino == entry.stat().st_ino
    assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)


def test_the_ctrl_c_line_counts_only_the_download_it_resumes(tmp_path, large_archive):
    """Pieces of an earlier --test-members-only export beside a plain download are not what it resumes from."""
    archive_path, _ = large_archive
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    (raw_dir / "Audio.tar.ranges").mkdir(parents=True)
    (raw_dir / "Audio.tar.ranges" / "0000000000000-0000003000000").write_bytes(bytes(3_000_000))
    partial = raw_dir / ".Audio.tar.incomplete"
    with StandInHub(archive_path) as hub:
        hub.hold(after=4 << 20)
        status, stderr = ctrl_c_once(tmp_path, hub, lambda: partial.is_file() and partial.stat().st_size > 2_000_000,
                                     HF_HUB_DISABLE_XET="1")
    assert status == 130, stderr
    assert f"what was downloaded so far ({partial.stat().st_size / 1e6:.1f} MB) is kept" in stderr.strip().splitlines()[-1]
