"""What the exporter finds in the export folder is the user's: an archive, WAVs or a manifest it did not write in
this run are checked and reported, never deleted or replaced without --force; --verify checks its own reference
first; its repair command works from where it is printed; an export records its Hub revision."""

import hashlib
import os
import socket
import subprocess
import sys

import pytest

import export_jsonl
import synthetic_archive
from stand_in_hub import COMMIT
from test_export import EXPORTER, assert_exported, assert_one_line_error, repair_line, run_exporter
from test_hub import export_from_hub, hub_env, load_from_hub


def snapshot(folder):
    """Every file under `folder` with its bytes' sha256 and its modification time."""
    return {path: (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def flip_a_byte_of_a_test_member(archive_path, utterances):
    """One byte flipped inside the first test WAV's data, the archive's size and modification time kept."""
    member_bytes = synthetic_archive.wav_bytes(next(u for u in sorted(utterances, key=lambda u: u.sample_id) if u.is_test))
    content = bytearray(archive_path.read_bytes())
    offset = content.index(member_bytes) + len(member_bytes) // 2
    content[offset] ^= 0x01
    status = archive_path.stat()
    archive_path.write_bytes(bytes(content))
    os.utime(archive_path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize("found", ["real_export", "hand_placed_archive", "manifest_only"])
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_a_demo_is_refused_where_the_folder_holds_what_is_not_a_demos(tmp_path, small_archive, found, force):
    export_dir = tmp_path / "h2t" / "emotiontalk"
    if found == "real_export":
        assert export_jsonl.main(["--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(tmp_path / "h2t")]) == 0
    else:
        (export_dir / "raw").mkdir(parents=True)
        placed = export_dir / ("raw/Audio.tar" if found == "hand_placed_archive" else "zh-en.jsonl")
        placed.write_bytes((small_archive[0] / "Audio.tar").read_bytes()[:50_000])
    before = snapshot(export_dir)
    result = run_exporter("--demo", *["--force"] * force, env_changes={"H2T_DATADIR": str(tmp_path / "h2t")})
    assert_one_line_error(result, f"{export_dir} holds an export that is not the demo's", "--datadir demo")
    assert snapshot(export_dir) == before


def test_a_demo_cut_off_before_it_recorded_its_export_is_finished(tmp_path):
    export_dir = tmp_path / "emotiontalk"
    (export_dir / "raw").mkdir(parents=True)
    utterances = synthetic_archive.write_small_archive(export_dir / "raw" / "Audio.tar")
    result = run_exporter("--demo", "--datadir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert_exported(export_dir, utterances)
    assert sorted(path.name for path in (export_dir / "raw").iterdir()) == ["Audio.tar"]


@pytest.mark.parametrize("placed", ["longer", "same_size", "symlink_to_the_users_copy"])
def test_an_archive_found_in_raw_that_is_not_the_hubs_is_named_and_kept(tmp_path, hub, placed):
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    raw_dir.mkdir(parents=True)
    damaged = bytearray(hub.content)
    damaged[len(damaged) // 2] ^= 0x01
    found = bytes(damaged) if placed != "longer" else hub.content + b"\0" * 1024
    archive_path = raw_dir / "Audio.tar"
    if placed == "symlink_to_the_users_copy":
        (tmp_path / "mine.tar").write_bytes(found)
        archive_path.symlink_to(tmp_path / "mine.tar")
    else:
        archive_path.write_bytes(found)
    result = export_from_hub(tmp_path, hub.url)
    assert_one_line_error(result, f"{archive_path} has {len(found)} bytes and sha256 {hashlib.sha256(found).hexdigest()}",
                          f"the Hub announces {len(hub.content)} bytes and sha256 {hub.sha256}", "It was left as it is",
                          "move it away", f"--archive {archive_path}", "--force")
    assert "downloaded" not in result.stderr and hub.ranges_requested() == []
    assert archive_path.read_bytes() == found and sorted(path.name for path in raw_dir.iterdir()) == ["Audio.tar"]
    forced = export_from_hub(tmp_path, hub.url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not archive_path.is_symlink() and archive_path.read_bytes() == hub.content
    if placed == "symlink_to_the_users_copy":
        assert (tmp_path / "mine.tar").read_bytes() == found
    assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)


@pytest.mark.parametrize("prefix", [True, False], ids=["cut_short", "other_bytes"])
def test_an_archive_found_in_raw_shorter_than_the_hubs_is_resumed_from_if_it_is_its_start(tmp_path, hub, prefix):
    raw_dir = tmp_path / "h2t" / "emotiontalk" / "raw"
    raw_dir.mkdir(parents=True)
    found = hub.content[:len(hub.content) // 2] if prefix else b"\x5a" * (len(hub.content) // 2)
    (raw_dir / "Audio.tar").write_bytes(found)
    result = export_from_hub(tmp_path, hub.url, HF_HUB_DISABLE_XET="1")
    assert hub.ranges_requested() == [f"bytes={len(found)}-"]
    if prefix:
        assert result.returncode == 0, result.stderr
        assert (raw_dir / "Audio.tar").read_bytes() == hub.content
        assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)
        return
    assert_one_line_error(result, f"{raw_dir / 'Audio.tar'} has {len(found)} bytes", "is not the start of it either",
                          "It was left as it is")
    assert (raw_dir / "Audio.tar").read_bytes() == found and sorted(path.name for path in raw_dir.iterdir()) == ["Audio.tar"]


def test_verify_names_a_damaged_archive_and_its_repair_never_exports_from_it(tmp_path, hub):
    """A flipped byte inside a test member of raw/Audio.tar, its size and mtime kept: --verify blames the archive,
    the repair offline refuses it in one line, and online replaces it."""
    export_dir = tmp_path / "h2t" / "emotiontalk"
    assert export_from_hub(tmp_path, hub.url).returncode == 0
    archive_path = export_dir / "raw" / "Audio.tar"
    flip_a_byte_of_a_test_member(archive_path, hub.utterances)
    wavs = snapshot(export_dir / "audio")
    report = export_from_hub(tmp_path, hub.url, "--verify")
    assert report.returncode == 1
    damaged_sha256 = hashlib.sha256(archive_path.read_bytes()).hexdigest()
    assert report.stdout.splitlines()[0] == (
        f"{archive_path}: has sha256 {damaged_sha256}, the export recorded for the archive it was made from {hub.sha256}")
    assert "differs from its archive member" not in report.stdout
    command = repair_line(report.stdout)
    assert command == ["python", EXPORTER, "--datadir", str(tmp_path / "h2t"), "--force"]
    offline = subprocess.run([sys.executable, *command[1:]], env=hub_env(tmp_path, hub.url, HF_HUB_OFFLINE="1"),
                             capture_output=True, text=True)
    assert_one_line_error(offline, f"{archive_path} has sha256 {damaged_sha256}, the export recorded {hub.sha256}",
                          "it was left as it is")
    assert snapshot(export_dir / "audio") == wavs
    online = subprocess.run([sys.executable, *command[1:]], env=hub_env(tmp_path, hub.url), capture_output=True, text=True)
    assert online.returncode == 0, online.stderr
    assert archive_path.read_bytes() == hub.content
    assert export_from_hub(tmp_path, hub.url, "--verify").returncode == 0


def test_verify_names_a_changed_archive_given_by_path(tmp_path, small_archive, capsys):
    """An archive of the user's, changed since the export in a test member: no sha256 of the whole was recorded, the
    test members' were."""
    data_dir, utterances = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    flip_a_byte_of_a_test_member(data_dir / "Audio.tar", utterances)
    capsys.readouterr()
    assert export_jsonl.main(["--datadir", str(tmp_path), "--verify"]) == 1
    report = capsys.readouterr().out
    first_test = min(u.sample_id for u in utterances if u.is_test)
    assert report.splitlines()[0].startswith(f"{data_dir / 'Audio.tar'}: member ")
    assert f"the one recorded for {first_test}.wav" in report.splitlines()[0]
    assert report.strip().splitlines()[-1].startswith(f"to repair: replace {data_dir / 'Audio.tar'} with a good copy of Audio.tar, then run python ")


def test_verify_says_where_the_recorded_archive_was(tmp_path, small_archive):
    data_dir, _ = small_archive
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    (data_dir / "Audio.tar").rename(tmp_path / "moved.tar")
    assert_one_line_error(run_exporter("--datadir", str(tmp_path), "--verify"),
                          f"{data_dir / 'Audio.tar'}: the archive the export was made from is gone", "--archive")


def test_the_repair_command_works_from_the_folder_it_was_printed_in(tmp_path, small_archive):
    """As from an H2T checkout: the exporter by its path, the datadir relative."""
    data_dir, utterances = small_archive
    (tmp_path / "h2t-checkout").mkdir()
    checkout = tmp_path / "h2t-checkout"
    assert run_exporter("--archive", str(data_dir / "Audio.tar"), "--datadir", "../data", cwd=checkout).returncode == 0
    next((tmp_path / "data" / "emotiontalk" / "audio" / "zh").iterdir()).unlink()
    report = run_exporter("--datadir", "../data", "--verify", cwd=checkout)
    command = repair_line(report.stdout)
    repaired = subprocess.run([sys.executable, *command[1:]], cwd=checkout, capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stderr
    assert_exported(tmp_path / "data" / "emotiontalk", utterances)


def test_an_export_of_another_revision_is_not_made_over_without_force(tmp_path, hub):
    export_dir = tmp_path / "h2t" / "emotiontalk"
    assert export_from_hub(tmp_path, hub.url).returncode == 0
    before = snapshot(export_dir)
    hub.requests.clear()
    result = export_from_hub(tmp_path, hub.url, "--revision", COMMIT)
    assert_one_line_error(result, f"{export_dir} holds the export of revision 'main' of Audio.tar, not '{COMMIT}'", "--force")
    assert hub.requests == [] and snapshot(export_dir) == before
    forced = export_from_hub(tmp_path, hub.url, "--revision", COMMIT, "--force")
    assert forced.returncode == 0, forced.stderr
    assert all(f"/resolve/{COMMIT}/" in path for _, path, _ in hub.requests if "/resolve/" in path)
    again = export_from_hub(tmp_path, hub.url, "--revision", COMMIT)
    assert again.returncode == 0 and "0 written this run" in again.stdout
    wav = next((export_dir / "audio" / "zh").iterdir())
    wav.write_bytes(wav.read_bytes()[:-1] + bytes([wav.read_bytes()[-1] ^ 0xFF]))
    command = repair_line(export_from_hub(tmp_path, hub.url, "--verify").stdout)
    assert command[command.index("--revision") + 1] == COMMIT
    hub.requests.clear()
    repaired = subprocess.run([sys.executable, *command[1:]], env=hub_env(tmp_path, hub.url), capture_output=True, text=True)
    assert repaired.returncode == 0, repaired.stderr
    assert hub.requests and all(f"/resolve/{COMMIT}/" in path for _, path, _ in hub.requests if "/resolve/" in path)
    assert_exported(export_dir, hub.utterances)


def closed_port_endpoint():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{unused.getsockname()[1]}"


def test_with_the_hub_out_of_reach_the_cached_archive_is_exported_and_said_so(tmp_path, hub):
    assert load_from_hub(tmp_path, hub.url, "build", {"test_members_only": False}).returncode == 0
    result = export_from_hub(tmp_path, closed_port_endpoint())
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "was not reached" in line]
    assert "Hugging Face cache's copy" in line and "a newer upload of BAAI/Emotiontalk/Audio.tar could not be checked for" in line
    assert_exported(tmp_path / "h2t" / "emotiontalk", hub.utterances)


def test_a_folder_beside_an_archive_given_by_path_is_left_alone(tmp_path, small_archive):
    """An export from --archive removes the ranges an earlier --test-members-only fetched into its own raw/, and
    nothing beside the user's archive, whatever its name."""
    data_dir, utterances = small_archive
    (data_dir / "Audio.tar.ranges").mkdir()
    (data_dir / "Audio.tar.ranges" / "notes.txt").write_text("the user's")
    own_ranges = tmp_path / "h2t" / "emotiontalk" / "raw" / "Audio.tar.ranges"
    own_ranges.mkdir(parents=True)
    (own_ranges / "0000000000000-0000000000512").write_bytes(bytes(512))
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path / "h2t")]) == 0
    assert (data_dir / "Audio.tar.ranges" / "notes.txt").read_text() == "the user's"
    assert not own_ranges.exists()
    assert_exported(tmp_path / "h2t" / "emotiontalk", utterances)


def test_a_wav_of_the_users_beside_the_export_is_kept_unless_forced(tmp_path, small_archive):
    data_dir, utterances = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    audio_dir = tmp_path / "emotiontalk" / "audio" / "zh"
    audio_dir.mkdir(parents=True)
    (audio_dir / "mine.wav").write_bytes(b"RIFF of the user's")
    result = run_exporter(*args)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (f"export_jsonl.py: 1 WAV not in the manifest, which no export wrote ({audio_dir / 'mine.wav'}), "
                                     f"left as they are; H2T reads only what the manifest names, and --force removes them")
    assert (audio_dir / "mine.wav").read_bytes() == b"RIFF of the user's"
    assert run_exporter(*args, "--force").returncode == 0
    assert not (audio_dir / "mine.wav").exists()
    assert_exported(tmp_path / "emotiontalk", utterances)
