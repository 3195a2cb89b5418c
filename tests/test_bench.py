"""The benchmark is not part of the suite, but must not rot: run both scripts at a tiny scale."""

import subprocess
import sys
import tarfile

import synthetic_archive
from conftest import PROJECT_DIR


def make_archive(archive_path, *options):
    made = subprocess.run([sys.executable, str(PROJECT_DIR / "bench" / "make_archive.py"), str(archive_path), *options],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return archive_path.read_bytes()


def test_make_archive_is_deterministic_for_a_seed(tmp_path):
    first = make_archive(tmp_path / "a" / "Audio.tar", "--scale", "0.002")
    assert make_archive(tmp_path / "b" / "Audio.tar", "--scale", "0.002") == first
    assert make_archive(tmp_path / "c" / "Audio.tar", "--scale", "0.002", "--seed", "1") != first


def test_make_archive_and_run_at_a_tiny_scale(tmp_path):
    archive_path = tmp_path / "Audio.tar"
    make_archive(archive_path, "--scale", "0.005")
    with tarfile.open(archive_path) as archive:
        names = archive.getnames()
    groups = {name.split("/")[2] for name in names if name.startswith("Audio/wav/") and name.endswith(".wav")}
    assert groups == {f"G{number:05d}" for number in range(1, 20)}
    result = subprocess.run([sys.executable, str(PROJECT_DIR / "bench" / "run.py"), str(archive_path), "--workdir", str(tmp_path / "work")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("| (")]
    assert [line.split(" | ")[0] for line in table] == ["| (a) floor: tarfile copy", "| (b) export, cold", "| (c) export, warm re-run",
                                                          "| (d) export --parquet, cold", "| (e) load_dataset, build",
                                                          "| (f) load_dataset, cached reload", "| (g) load_dataset, streaming pass"]
    assert table[0].split(" | ")[2] == "1.00"


def from_hub(tmp_path, *args):
    return subprocess.run([sys.executable, str(PROJECT_DIR / "bench" / "from_hub.py"), *args, "--repeats", "1", "--rate", "50",
                           "--workdir", str(tmp_path / "work")], capture_output=True, text=True)


def test_from_hub_on_its_own_synthetic_archive_at_a_tiny_scale(tmp_path):
    """The README's way to try the Hub path without Hub access, scaled down: it leaves nothing behind."""
    result = from_hub(tmp_path, "--synthetic-scale", "0.002")
    assert result.returncode == 0, result.stdout + result.stderr
    table = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ranges") or line.startswith("| xet")]
    assert [row[:2] for row in table] == [[f"| {transport}", run] for transport in ("ranges", "xet") for run in
                                          ("(a) hf_hub_download alone", "(b) (a), then the tarfile copy", "(c) export_jsonl.py",
                                           "(d) export_jsonl.py --test-members-only", "(e) load_dataset, build", "(f) load_dataset, streaming pass")]
    # The first row's seconds, for the stream alone; a peak RSS for every run.
    assert [row[5] != "–" for row in table] == [row[1].startswith("(f)") for row in table] and all(float(row[5]) < float(row[2]) for row in table if row[1].startswith("(f)"))
    assert all(float(row[9]) > 0 for row in table)
    assert "Xet's parallel connections against one ranged stream" in result.stdout
    assert list((tmp_path / "work").iterdir()) == []


def test_from_hub_says_why_it_fell_back_and_leaves_nothing_behind(tmp_path):
    """The demo's archive is mostly test members: (d) downloads it whole, which the benchmark cannot compare."""
    synthetic_archive.write_small_archive(tmp_path / "Audio.tar")
    result = from_hub(tmp_path, str(tmp_path / "Audio.tar"), "--transports", "ranges")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("bench/from_hub.py: (d) fell back to the whole archive (export_jsonl.py: "
                                                             "--test-members-only: the test members are spread over")
    assert list((tmp_path / "work").iterdir()) == []
