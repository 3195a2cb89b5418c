"""Shared fixtures. Every Hugging Face cache lives in a fresh folder for the test session, set before
`datasets` is imported, so that no test reads or writes the user's caches or reaches the network. No variable
of the user's shell changes a test's outcome: every HF_*, HUGGINGFACE_* and H2T_* variable is dropped first
(HF_HUB_OFFLINE and HF_TOKEN on a cluster node, say); .ci/run runs the suite once with some of them set."""

import contextlib
import json
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# One line, not the traceback of a failed conftest, for a run outside the project's environment.
_MISSING = [name for name in ("datasets", "huggingface_hub", "soundfile", "numpy") if importlib.util.find_spec(name) is None]
if _MISSING:
    sys.exit(f"tests/conftest.py: {', '.join(_MISSING)} not installed; run the tests in the project's virtual "
             f"environment: . .venv/bin/activate")
for _name in [name for name in os.environ if name.startswith(("HF_", "HUGGINGFACE_", "H2T_"))]:
    del os.environ[_name]
_SESSION_HOME = tempfile.mkdtemp(prefix="emotiontalk-tests-")
os.environ["HF_HOME"] = _SESSION_HOME
os.environ["HF_DATASETS_CACHE"] = os.path.join(_SESSION_HOME, "datasets")
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"  # a closed port: nothing may talk to a real Hub
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT_DIR), str(PROJECT_DIR / "tests")]

import pytest  # noqa: E402

import synthetic_archive  # noqa: E402
from stand_in_hub import StandInHub  # noqa: E402

BUILDER_SCRIPT = str(PROJECT_DIR / "emotiontalk_test.py")


@contextlib.contextmanager
def tmpfs(mount_point: Path, options: str, why_skipped: str):
    """A tmpfs of the test's own at `mount_point`, or the test is skipped (mounting needs root)."""
    mount_point.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True).returncode:
        pytest.skip(why_skipped)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.fixture
def other_filesystem(tmp_path):
    """A folder on another filesystem than `tmp_path`, where a hard link from `tmp_path` fails with EXDEV, as it does
    from a cache under the home folder to H2T_DATADIR on a data disk: in /dev/shm, a tmpfs that any user may write,
    else a tmpfs of the test's own (mounting needs root), else the test is skipped."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = Path(tempfile.mkdtemp(prefix="emotiontalk-tests-", dir=shm))
        yield folder
        shutil.rmtree(folder)
        return
    with tmpfs(tmp_path / "other-filesystem", "size=256m", "no /dev/shm, and mounting a tmpfs needs root") as mount_point:
        yield mount_point


@pytest.fixture
def fake_datasets_4(tmp_path):
    """A folder for PYTHONPATH in which datasets 4.0.0 seems installed."""
    site = tmp_path / "site"
    (site / "datasets-4.0.0.dist-info").mkdir(parents=True)
    (site / "datasets-4.0.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: datasets\nVersion: 4.0.0\n")
    return site


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture
def small_archive(tmp_path):
    """A folder holding the standard small `Audio.tar`; returns (folder, utterances)."""
    data_dir = tmp_path / "raw"
    data_dir.mkdir()
    utterances = synthetic_archive.write_small_archive(data_dir / "Audio.tar")
    return data_dir, utterances


@pytest.fixture
def hub(small_archive):
    """The stand-in Hub serving `small_archive`, its utterances as `hub.utterances`."""
    data_dir, utterances = small_archive
    with StandInHub(data_dir / "Audio.tar") as stand_in:
        stand_in.utterances = utterances
        yield stand_in


@pytest.fixture
def test_utterances(small_archive):
    """The test-split utterances of `small_archive`, ordered by sample_id."""
    return sorted((u for u in small_archive[1] if u.is_test), key=lambda u: u.sample_id)


@pytest.fixture
def datasets_cache(tmp_path):
    """A datasets cache of the test's own, so that every load in it builds afresh."""
    return str(tmp_path / "datasets-cache")


@pytest.fixture(scope="session")
def medium_archive(tmp_path_factory):
    """300 test utterances of about 2 s (53 MB): an export of it takes long enough to be interrupted midway.
    Returns (archive path, utterances); tests must not change it."""
    utterances = synthetic_archive.make_corpus({"G00003": 150, "G00015": 150}, {"neutral": 1, "sad": 1}, mean_seconds=2.0)
    data_dir = tmp_path_factory.mktemp("medium") / "raw"
    data_dir.mkdir()
    return synthetic_archive.write_archive(data_dir / "Audio.tar", synthetic_archive.corpus_members(utterances)), utterances


@pytest.fixture(scope="session")
def large_archive(tmp_path_factory):
    """An archive of 31 MB: huggingface_hub writes what it received in 10 MiB chunks, so it must span a few, and
    the stand-in's Xet storage serves it as dozens of xorbs. Returns (archive path, utterances); tests must not
    change it."""
    corpus = synthetic_archive.make_corpus({"G00001": 10, "G00003": 20, "G00015": 10}, {"happy": 1, "sad": 1}, mean_seconds=9.0)
    archive_path = tmp_path_factory.mktemp("large") / "Audio.tar"
    return synthetic_archive.write_archive(archive_path, synthetic_archive.corpus_members(corpus)), corpus


def expected_manifest(utterances) -> bytes:
    """The published H2T format, written here independently of the exporter."""
    lines = []
    for u in sorted((u for u in utterances if u.is_test), key=lambda u: u.sample_id):
        record = {
            "dataset_id": "emotiontalk",
            "sample_id": u.sample_id,
            "src_audio": f"emotiontalk/audio/zh/{u.sample_id}.wav",
            "src_ref": u.content,
            "tgt_ref": None,
            "src_lang": "zh",
            "tgt_lang": "en",
            "benchmark_metadata": {"context": "short", "emotion": u.emotion, "dataset_type": "emotion"},
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines).encode("utf-8")


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
