"""export_jsonl.py end to end on generated archives: exact bytes out, idempotent, crash-safe, clear errors."""

import contextlib
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import soundfile

import export_jsonl
import synthetic_archive
from conftest import PROJECT_DIR, expected_manifest, tmpfs

EXPORTER = str(PROJECT_DIR / "export_jsonl.py")


def assert_exported(export_dir, utterances, seed=0):
    assert (export_dir / "zh-en.jsonl").read_bytes() == expected_manifest(utterances)
    test_utterances = [u for u in utterances if u.is_test]
    assert sorted(p.name for p in (export_dir / "audio" / "zh").iterdir()) == sorted(f"{u.sample_id}.wav" for u in test_utterances)
    for u in test_utterances:
        assert (export_dir / "audio" / "zh" / f"{u.sample_id}.wav").read_bytes() == synthetic_archive.wav_bytes(u, seed)


def run_exporter(*args, env_changes=None, **kwargs):
    env = {**os.environ, **(env_changes or {})}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run([sys.executable, EXPORTER, *args], env=env, capture_output=True, text=True, **kwargs)


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("export_jsonl.py: error: "), result.stderr
    for fragment in fragments:
        assert fragment in last_line


def test_export_writes_exact_manifest_and_wavs(tmp_path, small_archive, capsys):
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path / "h2t")]) == 0
    export_dir = tmp_path / "h2t" / "emotiontalk"
    assert_exported(export_dir, utterances)
    assert not (export_dir / "raw").exists()
    summary = capsys.readouterr().out
    assert "G00003           9" in summary and "G00015           8" in summary and "17 written this run" in summary
    assert f"total           17   {sum(u.seconds for u in utterances if u.is_test) / 3600:.2f} hours" in summary


def test_rerun_is_idempotent_and_skips_finished_work(tmp_path, small_archive, capsys):
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    export_dir = tmp_path / "emotiontalk"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (export_dir / "audio" / "zh").iterdir()}
    manifest_mtime = (export_dir / "zh-en.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert export_jsonl.main(args) == 0
    *_, audio_line, _, last_line = capsys.readouterr().out.splitlines()
    assert "0 written this run" in audio_line and last_line.startswith("nothing to do: the export was already complete")
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (export_dir / "audio" / "zh").iterdir()} == before
    assert (export_dir / "zh-en.jsonl").stat().st_mtime_ns == manifest_mtime
    (export_dir / "audio" / "zh" / next(iter(before))).unlink()
    assert export_jsonl.main(args) == 0
    report = capsys.readouterr().out
    assert "1 written this run" in report and "nothing to do" not in report
    assert_exported(export_dir, utterances)
    assert export_jsonl.main([*args, "--force"]) == 0
    assert "17 written this run" in capsys.readouterr().out
    assert_exported(export_dir, utterances)


def start_export_and_wait(archive_path, datadir, until_wavs):
    """Start an export and return it once it has written `until_wavs` WAVs (0: once the output folder exists)."""
    process = subprocess.Popen([sys.executable, EXPORTER, "--archive", str(archive_path), "--datadir", str(datadir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    export_dir = datadir / "emotiontalk"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if export_dir.is_dir() and len(list((export_dir / "audio" / "zh").glob("*.wav"))) >= until_wavs:
            break
        time.sleep(0.002)
    return process


def wait_until_reading(process, path, timeout=60):
    """Return once `process` has `path` open (or has ended)."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{process.pid}/fd").iterdir()):
                return
        time.sleep(0.001)


def assert_only_complete_files(export_dir, utterances):
    """Every WAV there is its archive member to the byte; no manifest and no temporary file is left."""
    by_name = {f"{u.sample_id}.wav": u for u in utterances}
    for wav in (export_dir / "audio" / "zh").glob("*.wav"):
        assert wav.read_bytes() == synthetic_archive.wav_bytes(by_name[wav.name])
    assert not (export_dir / "zh-en.jsonl").exists()
    assert [path for path in export_dir.rglob("*") if path.name.endswith(".tmp")] == []


def test_killed_run_leaves_no_partial_output_and_rerun_completes(tmp_path, medium_archive):
    archive_path, corpus = medium_archive
    process = start_export_and_wait(archive_path, tmp_path / "h2t", until_wavs=20)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the export finished before it could be killed"
    by_name = {f"{u.sample_id}.wav": u for u in corpus}
    for wav in (tmp_path / "h2t" / "emotiontalk" / "audio" / "zh").glob("*.wav"):
        assert wav.read_bytes() == synthetic_archive.wav_bytes(by_name[wav.name])
    assert not (tmp_path / "h2t" / "emotiontalk" / "zh-en.jsonl").exists()
    assert run_exporter("--archive", str(archive_path), "--datadir", str(tmp_path / "h2t")).returncode == 0
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)
    assert not list((tmp_path / "h2t" / "emotiontalk" / "audio" / "zh").glob(".*"))


@pytest.mark.parametrize(
    "signal_number, status, until_wavs",
    [(signal.SIGINT, 130, 0), (signal.SIGINT, 130, 20), (signal.SIGTERM, 143, 20)],
    ids=["SIGINT-starting", "SIGINT-writing", "SIGTERM-writing"],
)
def test_interrupted_export_says_one_line_and_the_next_run_verifies(tmp_path, medium_archive, signal_number, status, until_wavs):
    archive_path, corpus = medium_archive
    process = start_export_and_wait(archive_path, tmp_path / "h2t", until_wavs)
    process.send_signal(signal_number)
    _, stderr = process.communicate()
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        "export_jsonl.py: interrupted; nothing was left half-written; run the same command again to finish"
    )
    assert_only_complete_files(tmp_path / "h2t" / "emotiontalk", corpus)
    assert run_exporter("--archive", str(archive_path), "--datadir", str(tmp_path / "h2t")).returncode == 0
    assert_exported(tmp_path / "h2t" / "emotiontalk", corpus)
    assert run_exporter("--archive", str(archive_path), "--datadir", str(tmp_path / "h2t"), "--verify").returncode == 0


def test_a_ctrl_c_while_writing_claims_no_download_kept(tmp_path, medium_archive):
    """Pieces an earlier --test-members-only fetched lie in raw/, but a plain export resumes nothing from them."""
    archive_path, _ = medium_archive
    ranges_dir = tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar.ranges"
    ranges_dir.mkdir(parents=True)
    (ranges_dir / "0000000000000-0000001000000").write_bytes(bytes(1_000_000))
    process = start_export_and_wait(archive_path, tmp_path / "h2t", until_wavs=20)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "export_jsonl.py: interrupted; nothing was left half-written; run the same command again to finish")


def test_a_signal_inside_soundfile_waits_until_it_returns(monkeypatch, capfd, test_utterances):
    """soundfile reads through C callbacks, which would report an exception raised in them as unraisable (a
    traceback on stderr) and swallow it."""
    monkeypatch.setattr(export_jsonl, "SIGNALS_RECEIVED", [])
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    previous_handler = signal.signal(signal.SIGINT, export_jsonl.raise_interrupted)

    class SignalOnRead(io.BytesIO):
        def readinto(self, buffer):
            os.kill(os.getpid(), signal.SIGINT)
            return super().readinto(buffer)

    try:
        with pytest.raises(export_jsonl.Interrupted):
            export_jsonl.read_wav(lambda file: soundfile.info(SignalOnRead(file.getvalue())), synthetic_archive.wav_bytes(test_utterances[0]))
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    assert unraisable == [] and "Traceback" not in capfd.readouterr().err


def test_interrupted_verify_says_one_line(tmp_path, medium_archive):
    archive_path, _ = medium_archive
    args = ["--archive", str(archive_path), "--datadir", str(tmp_path)]
    assert run_exporter(*args).returncode == 0
    export_files = {path: path.stat().st_mtime_ns for path in (tmp_path / "emotiontalk").rglob("*")}
    process = subprocess.Popen([sys.executable, EXPORTER, *args, "--verify"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until_reading(process, archive_path)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate()[1]
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert {path: path.stat().st_mtime_ns for path in (tmp_path / "emotiontalk").rglob("*")} == export_files
    assert stderr.strip().splitlines()[-1] == (
        "export_jsonl.py: interrupted; the export was not changed; run the same command again to finish")


def test_export_by_other_code_is_redone(tmp_path, small_archive):
    """An export recorded by another version of the exporter is not current, even when its files are intact."""
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    export_dir = tmp_path / "emotiontalk"
    older_manifest = expected_manifest(utterances).replace(b'"tgt_ref": null', b'"tgt_ref": ""')
    (export_dir / "zh-en.jsonl").write_bytes(older_manifest)
    state = json.loads((export_dir / ".export-state.json").read_text())
    state.update(code="fingerprint of an older exporter", manifest_sha256=hashlib.sha256(older_manifest).hexdigest())
    (export_dir / ".export-state.json").write_text(json.dumps(state))
    assert export_jsonl.main(args) == 0
    assert_exported(export_dir, utterances)


def test_export_of_a_smaller_split_removes_what_it_no_longer_names(tmp_path, small_archive, test_utterances):
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    audio_dir = tmp_path / "emotiontalk" / "audio" / "zh"
    (audio_dir / ".G00003_01_01_001.wav.999.tmp").write_bytes(b"left by a killed run")
    kept = [u for u in utterances if u not in test_utterances[:5]]
    (tmp_path / "smaller").mkdir()
    smaller = synthetic_archive.write_archive(tmp_path / "smaller" / "Audio.tar", synthetic_archive.corpus_members(kept))
    assert export_jsonl.main(["--archive", str(smaller), "--datadir", str(tmp_path)]) == 0
    assert_exported(tmp_path / "emotiontalk", kept)
    assert sorted(path.name for path in audio_dir.iterdir()) == sorted(f"{u.sample_id}.wav" for u in kept if u.is_test)


def test_demo_runs_from_a_copy_without_tests(tmp_path):
    for module in PROJECT_DIR.glob("*.py"):
        shutil.copy(module, tmp_path / module.name)
    result = subprocess.run([sys.executable, str(tmp_path / "export_jsonl.py"), "--demo", "--datadir", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert_exported(tmp_path / "out" / "emotiontalk", synthetic_archive.small_corpus())


def test_verify_catches_corrupt_missing_and_stray_wavs(tmp_path, small_archive, capsys):
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    assert export_jsonl.main([*args, "--verify"]) == 0
    assert "all correct" in capsys.readouterr().out
    audio_dir = tmp_path / "emotiontalk" / "audio" / "zh"
    corrupt, missing = sorted(audio_dir.iterdir())[:2]
    data = bytearray(corrupt.read_bytes())
    data[-1] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    missing.unlink()
    (audio_dir / "G00003_99_99_999.wav").write_bytes(synthetic_archive.wav_bytes(utterances[0]))
    assert export_jsonl.main([*args, "--verify"]) == 1
    report = capsys.readouterr().out
    assert f"{corrupt}: differs from its archive member" in report
    assert f"{missing}: missing" in report
    assert "G00003_99_99_999.wav: stray WAV" in report
    assert "3 problems" in report


def test_verify_catches_an_edited_manifest(tmp_path, small_archive, capsys):
    data_dir, _ = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    manifest = tmp_path / "emotiontalk" / "zh-en.jsonl"
    original = manifest.read_bytes()
    lines = original.splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:2]) + lines[2].replace(b'"tgt_ref": null', b'"tgt_ref": ""') + b"".join(lines[3:]))
    assert export_jsonl.main([*args, "--verify"]) == 1
    assert "zh-en.jsonl: line 3 differs from the manifest of the archive's test split" in capsys.readouterr().out
    manifest.write_bytes(original + lines[0])
    assert export_jsonl.main([*args, "--verify"]) == 1
    assert f"zh-en.jsonl: line {len(lines) + 1} differs" in capsys.readouterr().out
    manifest.write_bytes(original.rstrip(b"\n"))
    assert export_jsonl.main([*args, "--verify"]) == 1
    report = capsys.readouterr().out
    assert f"zh-en.jsonl: line {len(lines)} differs" in report
    # A plain run writes an edited manifest again: the repair needs no --force.
    command = repair_line(report)
    assert "--force" not in command and run_exporter(*command[2:]).returncode == 0
    assert manifest.read_bytes() == original


def test_an_empty_expected_manifest_is_a_usage_error(tmp_path):
    result = run_exporter("--test-members-only", "--expected-manifest", "", "--datadir", str(tmp_path))
    assert result.returncode == 2 and "--expected-manifest: give the path of an H2T manifest file" in result.stderr


def test_undecodable_audio_is_refused_on_export_and_caught_by_verify(tmp_path, small_archive, test_utterances, capsys):
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    broken = test_utterances[0]
    garbage = b"RIFF not really a wave" * 50
    members = [(name, garbage if name == f"Audio/wav/{broken.file_path}" else data)
               for name, data in synthetic_archive.corpus_members(utterances)]
    (tmp_path / "broken").mkdir()
    broken_archive = synthetic_archive.write_archive(tmp_path / "broken" / "Audio.tar", members)
    wav_path = tmp_path / "emotiontalk" / "audio" / "zh" / f"{broken.sample_id}.wav"
    wav_path.write_bytes(garbage)
    assert export_jsonl.main(["--archive", str(broken_archive), "--datadir", str(tmp_path), "--verify"]) == 1
    assert f"{wav_path}: does not decode" in capsys.readouterr().out
    result = run_exporter("--archive", str(broken_archive), "--datadir", str(tmp_path / "again"))
    assert_one_line_error(result, f"Audio/wav/{broken.file_path} is not a readable WAV")


def test_verify_without_an_export_or_archive_says_what_to_do(tmp_path, small_archive, capsys):
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 1
    assert "no manifest; run export_jsonl.py first" in capsys.readouterr().err
    assert export_jsonl.main(["--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    (tmp_path / "emotiontalk" / ".export-state.json").unlink()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 1
    assert "no archive to verify against, and none recorded by the export; pass --archive" in capsys.readouterr().err


def test_demo_exports_and_verifies(tmp_path, capsys):
    assert export_jsonl.main(["--demo", "--datadir", str(tmp_path)]) == 0
    assert_exported(tmp_path / "emotiontalk", synthetic_archive.small_corpus())
    assert (tmp_path / "emotiontalk" / "raw" / "Audio.tar").is_file()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 0


def test_help_documents_every_option_and_variable():
    result = run_exporter("--help")
    assert result.returncode == 0
    for word in ["--datadir", "--archive", "--revision", "--force", "--parquet", "--verify", "--demo", "--test-members-only",
                 "--expected-manifest", "H2T_DATADIR", "HF_TOKEN",
                 "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_XET", "examples:", "python export_jsonl.py --demo --datadir demo"]:
        assert word in result.stdout


def test_unset_datadir_says_how_to_set_it():
    assert_one_line_error(run_exporter(env_changes={"H2T_DATADIR": None}), "H2T_DATADIR is not set", "export H2T_DATADIR=")


def test_datadir_under_a_file_cannot_be_created(tmp_path, small_archive):
    (tmp_path / "file").write_text("")
    result = run_exporter("--archive", str(small_archive[0] / "Audio.tar"), env_changes={"H2T_DATADIR": str(tmp_path / "file")})
    assert_one_line_error(result, "cannot create the output folder", "Not a directory")


def test_bad_archive_gives_the_builders_message(tmp_path):
    (tmp_path / "Audio.tar").write_bytes(b"not a tar" * 200)
    result = run_exporter("--archive", str(tmp_path / "Audio.tar"), "--datadir", str(tmp_path / "out"))
    assert_one_line_error(result, "Audio.tar: not a readable tar archive")
    assert not (tmp_path / "out" / "emotiontalk" / "zh-en.jsonl").exists()


def test_datasets_4_is_refused(tmp_path, small_archive, fake_datasets_4):
    for source in (["--archive", str(small_archive[0] / "Audio.tar")], ["--demo"]):
        result = run_exporter(*source, "--datadir", str(tmp_path / "out"), env_changes={"PYTHONPATH": str(fake_datasets_4)})
        assert_one_line_error(result, "datasets 4.0.0 is installed", "pip install 'datasets>=3.6,<4'", "--parquet")
        assert not (tmp_path / "out").exists()


@pytest.fixture
def small_mount(tmp_path):
    """A 256 KiB tmpfs of our own: a disk that fills up, then a read-only one."""
    with tmpfs(tmp_path / "mnt", "size=256k", "mounting a tmpfs needs root; test_failing_write_leaves_nothing_partial covers a failing write") as mount_point:
        yield mount_point


def test_full_disk_fails_cleanly_with_nothing_partial(small_mount, small_archive):
    data_dir, utterances = small_archive
    result = run_exporter("--archive", str(data_dir / "Audio.tar"), "--datadir", str(small_mount))
    assert_one_line_error(result, "No space left on device", "nothing was left half-written")
    assert_only_complete_files(small_mount / "emotiontalk", utterances)


def test_failing_write_leaves_nothing_partial(tmp_path, medium_archive):
    """A file size limit makes every write past 300 kB fail (EFBIG), as a full disk would; no root needed."""
    archive_path, utterances = medium_archive
    limit = 300_000

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = run_exporter("--archive", str(archive_path), "--datadir", str(tmp_path), preexec_fn=limit_file_size)
    assert_one_line_error(result, f"{tmp_path / 'emotiontalk'}: File too large", "nothing was left half-written")
    assert len(result.stderr.splitlines()) == 1
    assert_only_complete_files(tmp_path / "emotiontalk", utterances)
    assert any(u.is_test and len(synthetic_archive.wav_bytes(u)) > limit for u in utterances)


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no one may write in: a read-only tmpfs for root (which ignores permissions), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    with tmpfs(folder, "size=256k,ro", "root may write anywhere, and this machine does not let it mount a read-only tmpfs"):
        yield folder


def test_read_only_folder_is_refused(read_only_folder, small_archive):
    result = run_exporter("--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(read_only_folder))
    assert_one_line_error(result, str(read_only_folder / "emotiontalk"), "cannot create the output folder")


def test_a_damaged_header_mid_archive_fails_the_export_with_no_manifest(tmp_path, small_archive):
    data_dir, _ = small_archive
    with tarfile.open(data_dir / "Audio.tar") as archive:
        members = archive.getmembers()
    data = bytearray((data_dir / "Audio.tar").read_bytes())
    data[members[len(members) // 2].offset + 148] ^= 0x01  # a digit of the header's checksum field
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "Audio.tar").write_bytes(bytes(data))
    result = run_exporter("--archive", str(tmp_path / "damaged" / "Audio.tar"), "--datadir", str(tmp_path / "out"))
    assert_one_line_error(result, "truncated or corrupt")
    assert not (tmp_path / "out" / "emotiontalk" / "zh-en.jsonl").exists()


@pytest.mark.parametrize("edit", ["same_size", "shorter"])
def test_a_manifest_edited_in_place_is_restored_by_the_next_run(tmp_path, small_archive, edit):
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    manifest = tmp_path / "emotiontalk" / "zh-en.jsonl"
    edited = manifest.read_bytes().replace(b'"short"', b'"shirt"' if edit == "same_size" else b'"s"', 1)
    manifest.write_bytes(edited)
    assert export_jsonl.main(args) == 0
    assert_exported(tmp_path / "emotiontalk", utterances)


def test_wavs_of_the_same_size_are_rewritten_when_the_archive_changes(tmp_path, small_archive):
    """A new upload whose test audio has the same lengths: the sizes match, the bytes do not."""
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    (tmp_path / "new").mkdir()
    new_archive = synthetic_archive.write_archive(tmp_path / "new" / "Audio.tar", synthetic_archive.corpus_members(utterances, seed=1))
    assert all(len(synthetic_archive.wav_bytes(u, 1)) == len(synthetic_archive.wav_bytes(u)) for u in utterances)
    assert export_jsonl.main(["--archive", str(new_archive), "--datadir", str(tmp_path)]) == 0
    assert_exported(tmp_path / "emotiontalk", utterances, seed=1)


def test_a_failing_run_prints_its_one_line_and_no_progress_bar(tmp_path):
    (tmp_path / "Audio.tar").write_bytes(b"")
    result = run_exporter("--archive", str(tmp_path / "Audio.tar"), "--datadir", str(tmp_path / "out"))
    assert_one_line_error(result, "Audio.tar")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_failed_and_read_only_runs_leave_no_folders(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "Audio.tar").write_bytes(b"not a tar" * 200)
    assert_one_line_error(run_exporter("--archive", str(tmp_path / "bad" / "Audio.tar"), "--datadir", str(tmp_path / "out")))
    assert_one_line_error(run_exporter("--datadir", str(tmp_path / "out"), env_changes={"HF_HUB_OFFLINE": "1"}), "HF_HUB_OFFLINE is set")
    assert export_jsonl.main(["--datadir", str(tmp_path / "out"), "--verify"]) == 1
    assert not (tmp_path / "out").exists()


def test_the_archive_may_be_given_as_its_folder(tmp_path, small_archive):
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir), "--datadir", str(tmp_path)]) == 0
    assert_exported(tmp_path / "emotiontalk", utterances)


def test_ctrl_c_after_the_summary_gives_no_traceback(tmp_path, small_archive):
    """Once the summary is out, a Ctrl-C either counts the export as finished (exit 0) or prints the one line."""
    process = subprocess.Popen([sys.executable, EXPORTER, "--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        if line.startswith("  archive "):
            break
    while process.poll() is None:
        process.send_signal(signal.SIGINT)
        time.sleep(0.001)
    stderr = process.stderr.read()
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert process.returncode == 0 or (process.returncode == 130 and stderr.strip().endswith("run the same command again to finish"))


def test_verify_uses_the_archive_the_export_recorded(tmp_path, small_archive, capsys):
    """The README's order: an export from an archive elsewhere, then --verify with the datadir alone."""
    data_dir, _ = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 0
    assert f"against {data_dir / 'Audio.tar'}: all correct" in capsys.readouterr().out


@pytest.mark.parametrize("parquet", [False, True])
def test_verify_ends_with_the_command_that_repairs_what_it_found(tmp_path, small_archive, parquet, capsys):
    """A WAV damaged in place keeps its size, which is all a plain re-run looks at."""
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)] + (["--parquet"] if parquet else [])
    assert export_jsonl.main(args) == 0
    wav = sorted((tmp_path / "emotiontalk" / "audio" / "zh").iterdir())[0]
    damaged = bytearray(wav.read_bytes())
    damaged[-1] ^= 0xFF
    wav.write_bytes(bytes(damaged))
    assert export_jsonl.main(args) == 0
    capsys.readouterr()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 1
    command = repair_line(capsys.readouterr().out)
    assert command[-1] == "--force" and ("--parquet" in command) == parquet
    assert run_exporter(*command[2:], cwd=PROJECT_DIR).returncode == 0
    assert_exported(tmp_path / "emotiontalk", utterances)
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 0


@pytest.mark.parametrize("where", ["--datadir", "H2T_DATADIR"])
def test_an_empty_datadir_is_refused(tmp_path, small_archive, where):
    options = ["--datadir", ""] if where == "--datadir" else []
    (tmp_path / "cwd").mkdir()
    result = run_exporter("--archive", str(small_archive[0] / "Audio.tar"), *options,
                          env_changes={"H2T_DATADIR": "" if where == "H2T_DATADIR" else None}, cwd=tmp_path / "cwd")
    assert_one_line_error(result, f"{where} is empty")
    assert result.returncode == 1 and list((tmp_path / "cwd").iterdir()) == []


@pytest.mark.parametrize("options, complaint", [
    (["--demo", "--archive", "x"], "cannot go together"), (["--revision", "v1", "--archive", "x"], "cannot go together"),
    (["--verify", "--force"], "cannot go together"), (["--verify", "--parquet"], "cannot go together"),
    (["--test-members-only", "--archive", "x"], "cannot go together"),
    (["--verify", "--test-members-only", "--expected-manifest", "x"], "cannot go together"),
    (["--expected-manifest", "x"], "--expected-manifest goes with --test-members-only"),
    (["--verify", "--expected-manifest", "x"], "--expected-manifest goes with --test-members-only"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_options_that_cannot_go_together_are_a_usage_error(tmp_path, options, complaint):
    result = run_exporter("--datadir", str(tmp_path), *options)
    assert result.returncode == 2 and complaint in result.stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []


def repair_line(report: str) -> list[str]:
    """The command of the report's last line, `to repair: python /path/to/export_jsonl.py ...`, as its words."""
    repair = report.strip().splitlines()[-1]
    assert repair.startswith(f"to repair: python {EXPORTER} "), report
    return repair.removeprefix("to repair: ").split()


@pytest.mark.parametrize("damage", ["missing", "same_size"])
def test_the_repair_command_of_a_demo_export_repairs_it_with_no_network(tmp_path, capsys, damage):
    """The repair command makes the export as the demo made it, and a missing WAV needs no --force: a plain run
    writes what is missing (the Hub endpoint of the tests is a closed port)."""
    assert export_jsonl.main(["--demo", "--datadir", str(tmp_path)]) == 0
    wav = sorted((tmp_path / "emotiontalk" / "audio" / "zh").iterdir())[0]
    if damage == "missing":
        wav.unlink()
    else:
        wav.write_bytes(wav.read_bytes()[:-1] + bytes([wav.read_bytes()[-1] ^ 0xFF]))
    capsys.readouterr()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 1
    command = repair_line(capsys.readouterr().out)
    assert "--demo" in command and ("--force" in command) == (damage == "same_size")
    repaired = run_exporter(*command[2:], cwd=PROJECT_DIR)
    assert repaired.returncode == 0, repaired.stderr
    assert_exported(tmp_path / "emotiontalk", synthetic_archive.small_corpus())
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 0


def test_a_missing_archive_file_is_named(tmp_path):
    result = run_exporter("--archive", str(tmp_path / "missing.tar"), "--datadir", str(tmp_path / "out"))
    assert_one_line_error(result, f"{tmp_path / 'missing.tar'}: no such file")


def test_an_archive_of_another_name_is_exported(tmp_path, small_archive):
    data_dir, utterances = small_archive
    renamed = tmp_path / "emotiontalk-audio.tar"
    (data_dir / "Audio.tar").rename(renamed)
    assert export_jsonl.main(["--archive", str(renamed), "--datadir", str(tmp_path)]) == 0
    assert_exported(tmp_path / "emotiontalk", utterances)


def test_output_goes_to_a_log_without_progress_bars(tmp_path, medium_archive):
    """Progress bars belong on a terminal: with stdout and stderr in files, a good run writes its summary, a
    failing run its one line, and nothing else."""
    archive_path, _ = medium_archive
    result = run_exporter("--archive", str(archive_path), "--datadir", str(tmp_path / "good"))
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("EmotionTalk test split -> ")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "Audio.tar").write_bytes(archive_path.read_bytes()[: archive_path.stat().st_size // 2])
    result = run_exporter("--archive", str(tmp_path / "cut" / "Audio.tar"), "--datadir", str(tmp_path / "bad"))
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert_one_line_error(result, "truncated")


# Runs a command on a terminal of its own (a pseudo-terminal, 160 columns wide) and prints all it wrote there.
ON_A_TERMINAL = """
import fcntl, os, pty, struct, sys, termios
output = b""
pid, terminal = pty.fork()
if pid == 0:
    fcntl.ioctl(sys.stdout.fileno(), termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
while True:
    try:
        data = os.read(terminal, 1 << 16)
    except OSError:
        break
    if not data:
        break
    output += data
sys.stdout.buffer.write(output)
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""


def terminal_lines(*args):
    """What the exporter wrote on a terminal, as the lines that stay on the screen once carriage returns have
    redrawn them."""
    result = subprocess.run([sys.executable, "-c", ON_A_TERMINAL, sys.executable, EXPORTER, *args], capture_output=True)
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", result.stdout.decode().replace("\r\n", "\n"))  # ANSI escapes: cursor moves
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return result.returncode, [line for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def test_on_a_terminal_bars_show_progress_and_leave_no_blank_lines(tmp_path, medium_archive):
    archive_path, utterances = medium_archive
    status, lines = terminal_lines("--archive", str(archive_path), "--datadir", str(tmp_path / "good"))
    assert status == 0 and "" not in lines, lines
    rows = sum(u.is_test for u in utterances)
    assert any(line.startswith("Writing WAVs: 100%") and f"{rows}/{rows}" in line for line in lines), lines
    assert lines[-1].startswith("  archive ")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "Audio.tar").write_bytes(archive_path.read_bytes()[: archive_path.stat().st_size // 2])
    status, lines = terminal_lines("--archive", str(tmp_path / "cut" / "Audio.tar"), "--datadir", str(tmp_path / "bad"))
    assert status == 1 and len(lines) == 1 and lines[0].startswith("export_jsonl.py: error: "), lines


def test_the_exporter_writes_nothing_outside_its_folders(tmp_path, small_archive):
    """No module copy of the loading script, no lock file in a cache: an export and a check touch the datadir."""
    data_dir, _ = small_archive
    home = {"HOME": str(tmp_path / "home"), "HF_HOME": None, "HF_DATASETS_CACHE": None, "XDG_CACHE_HOME": None}
    (tmp_path / "home").mkdir()
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path / "out")]
    assert run_exporter(*args, "--parquet", env_changes=home, cwd=tmp_path / "home").returncode == 0
    assert run_exporter("--datadir", str(tmp_path / "out"), "--verify", env_changes=home, cwd=tmp_path / "home").returncode == 0
    assert list((tmp_path / "home").rglob("*")) == []


def test_ctrl_c_during_a_first_export_takes_back_the_folders_it_made(tmp_path, medium_archive):
    archive_path, _ = medium_archive
    process = start_export_and_wait(archive_path, tmp_path / "new" / "h2t", until_wavs=0)
    process.send_signal(signal.SIGINT)
    process.communicate()
    assert process.returncode == 130
    assert list(tmp_path.iterdir()) == []


def test_a_failed_run_leaves_the_users_own_empty_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "Audio.tar").write_bytes(b"not a tar" * 200)
    assert_one_line_error(run_exporter("--archive", str(tmp_path / "Audio.tar"), "--datadir", str(tmp_path / "mine")))
    assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []


def test_datasets_4_refuses_verify_too(tmp_path, small_archive, fake_datasets_4):
    assert export_jsonl.main(["--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    result = run_exporter("--datadir", str(tmp_path), "--verify", env_changes={"PYTHONPATH": str(fake_datasets_4)})
    assert_one_line_error(result, "datasets 4.0.0 is installed", "pip install 'datasets>=3.6,<4'")
