"""export_jsonl.py --parquet: a script-free copy of the split that datasets 3.6, 4 and 5 load by folder."""

import hashlib
import json
import os
import subprocess

import datasets
import pyarrow.parquet
import pytest

import export_jsonl
import parquet_copy
import synthetic_archive
from conftest import BUILDER_SCRIPT
from test_export import assert_exported

# Run by the newest datasets (5.x, without torch): what the folder holds, in a form the parent can compare.
NEWEST_DATASETS_SCRIPT = """
import hashlib, json, sys, datasets
dataset = datasets.load_dataset(sys.argv[1], split="test").cast_column("audio", datasets.Audio(decode=False))
features = {name: type(feature).__name__ for name, feature in dataset.features.items()}
rows = [{**row, "audio": [row["audio"]["path"], hashlib.sha256(row["audio"]["bytes"]).hexdigest()]} for row in dataset]
print(json.dumps({"version": datasets.__version__, "features": features,
                  "emotions": dataset.features["emotion"].names, "rows": rows}))
"""


def export_parquet(archive_path, datadir, *extra):
    assert export_jsonl.main(["--archive", str(archive_path), "--datadir", str(datadir), "--parquet", *extra]) == 0
    return datadir / "emotiontalk" / "parquet"


def rows_without_decoding(dataset):
    return list(dataset.cast_column("audio", datasets.Audio(decode=False)))


@pytest.fixture
def script_split(small_archive, datasets_cache):
    """The split as the loading script gives it."""
    return datasets.load_dataset(BUILDER_SCRIPT, data_dir=str(small_archive[0]), split="test", cache_dir=datasets_cache,
                                 trust_remote_code=True)


def test_parquet_copy_loads_as_the_script_split(tmp_path, small_archive, script_split, datasets_cache):
    data_dir, utterances = small_archive
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    assert sorted(path.name for path in parquet_dir.iterdir()) == ["README.md", "test-00000-of-00001.parquet"]
    copy = datasets.load_dataset(str(parquet_dir), split="test", cache_dir=datasets_cache)
    assert copy.features == script_split.features
    assert rows_without_decoding(copy) == rows_without_decoding(script_split)
    assert copy[0]["audio"]["sampling_rate"] == 44100
    wav_dir = tmp_path / "emotiontalk" / "audio" / "zh"
    assert [row["audio"]["bytes"] for row in rows_without_decoding(copy)] == [
        (wav_dir / f"{sample_id}.wav").read_bytes() for sample_id in copy["sample_id"]
    ]
    assert_exported(tmp_path / "emotiontalk", utterances)
    card = (parquet_dir / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0\nlanguage:\n- zh\n")
    for needed in ("pretty_name:", "task_categories:", "@article{sun2025emotiontalk", "load_dataset(", "access conditions",
                   "the 17 utterances of speaker groups G00003 (9) and G00015 (8)"):
        assert needed in card
    assert "This script" not in card and "1929" not in card


def test_shards_stay_under_the_size_limit_and_a_new_export_replaces_them(tmp_path, small_archive, monkeypatch, capsys):
    data_dir, _ = small_archive
    monkeypatch.setattr(parquet_copy, "MAX_PARQUET_SHARD_BYTES", 150_000)
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    shards = sorted(parquet_dir.glob("*.parquet"))
    count = len(shards)
    assert count > 2 and [shard.name for shard in shards] == [f"test-{index:05d}-of-{count:05d}.parquet" for index in range(count)]
    assert all(shard.stat().st_size <= 150_000 for shard in shards)
    sample_ids = [row["sample_id"] for shard in shards for row in pyarrow.parquet.read_table(shard).to_pylist()]
    assert sample_ids == sorted(sample_ids) and len(sample_ids) == 17
    summary = capsys.readouterr().out
    assert f"({count} shards, {sum(shard.stat().st_size for shard in shards) / 1e6:.1f} MB)" in summary
    assert all(shard.name in summary for shard in shards)
    monkeypatch.setattr(parquet_copy, "MAX_PARQUET_SHARD_BYTES", 10_000_000)
    export_parquet(data_dir / "Audio.tar", tmp_path, "--force")
    assert sorted(path.name for path in parquet_dir.iterdir()) == ["README.md", "test-00000-of-00001.parquet"]


def test_rerun_rewrites_nothing_and_an_export_without_parquet_leaves_it(tmp_path, small_archive, capsys):
    data_dir, _ = small_archive
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    assert export_jsonl.main(args) == 0
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    before = {path.name: path.stat().st_mtime_ns for path in parquet_dir.iterdir()}
    export_parquet(data_dir / "Audio.tar", tmp_path)
    assert "0 written this run" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in parquet_dir.iterdir()} == before
    (tmp_path / "emotiontalk" / "zh-en.jsonl").unlink()
    assert export_jsonl.main(args) == 0
    assert {path.name: path.stat().st_mtime_ns for path in parquet_dir.iterdir()} == before
    export_parquet(data_dir / "Audio.tar", tmp_path, "--force")
    after = {path.name: path.stat().st_mtime_ns for path in parquet_dir.iterdir()}
    assert after.keys() == before.keys() and all(after[name] != before[name] for name in before)


def test_without_parquet_no_folder_is_made(tmp_path, small_archive):
    assert export_jsonl.main(["--archive", str(small_archive[0] / "Audio.tar"), "--datadir", str(tmp_path)]) == 0
    assert not (tmp_path / "emotiontalk" / "parquet").exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped_byte", "rows_missing", "last_rows_missing", "rows_added"])
def test_verify_names_a_damaged_shard(tmp_path, small_archive, monkeypatch, capsys, damage):
    data_dir, _ = small_archive
    monkeypatch.setattr(parquet_copy, "MAX_PARQUET_SHARD_BYTES", 150_000)
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path), "--verify"]
    assert export_jsonl.main(args) == 0
    assert "all correct" in capsys.readouterr().out
    shard = sorted(parquet_dir.glob("*.parquet"))[-1 if damage in ("rows_added", "last_rows_missing") else 1]
    data = bytearray(shard.read_bytes())
    if damage == "rows_added":  # the shards' names and every row of the split are right: one row is too many
        table = pyarrow.parquet.read_table(shard)
        pyarrow.parquet.write_table(pyarrow.concat_tables([table, table.slice(len(table) - 1)]), shard)
        data = bytearray(shard.read_bytes())
    elif damage == "last_rows_missing":  # the shards are whole and right, as far as they go
        table = pyarrow.parquet.read_table(shard)
        pyarrow.parquet.write_table(table.slice(0, len(table) - 2), shard)
        data = bytearray(shard.read_bytes())
    elif damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped_byte":
        audio_start = data.find(b"RIFF")
        data[audio_start + 1000] ^= 0xFF
    else:
        table = pyarrow.parquet.read_table(shard)
        pyarrow.parquet.write_table(table.slice(1), shard)
        data = bytearray(shard.read_bytes())
    shard.write_bytes(bytes(data))
    assert export_jsonl.main(args) == 1
    report = capsys.readouterr().out
    assert f"{parquet_dir if damage in ('rows_added', 'last_rows_missing') else shard}: " in report and "1 problem\n" in report


def test_newest_datasets_loads_the_copy_without_a_script(tmp_path, small_archive, script_split):
    """CI sets EMOTIONTALK_NEWEST_DATASETS_PYTHON to a venv with the newest datasets (5.x) and no torch."""
    python = os.environ.get("EMOTIONTALK_NEWEST_DATASETS_PYTHON")
    if not python:
        pytest.skip("EMOTIONTALK_NEWEST_DATASETS_PYTHON is not set (.ci/run sets it)")
    parquet_dir = export_parquet(small_archive[0] / "Audio.tar", tmp_path)
    result = subprocess.run([python, "-c", NEWEST_DATASETS_SCRIPT, str(parquet_dir)], capture_output=True, text=True,
                            env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "newest-cache")})
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert int(loaded["version"].split(".")[0]) >= 4
    assert "torch" not in subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True).stdout
    assert loaded["features"] == {name: type(feature).__name__ for name, feature in script_split.features.items()}
    assert loaded["emotions"] == script_split.features["emotion"].names
    expected = [{**row, "audio": [row["audio"]["path"], hashlib.sha256(row["audio"]["bytes"]).hexdigest()]}
                for row in rows_without_decoding(script_split)]
    assert loaded["rows"] == expected
    assert [row["audio"][1] for row in loaded["rows"]] == [
        hashlib.sha256(synthetic_archive.wav_bytes(u)).hexdigest()
        for u in sorted(small_archive[1], key=lambda u: u.sample_id) if u.is_test
    ]


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_damaged_or_missing_shard_is_rewritten_by_the_next_run(tmp_path, small_archive, monkeypatch, capsys, damage):
    data_dir, _ = small_archive
    monkeypatch.setattr(parquet_copy, "MAX_PARQUET_SHARD_BYTES", 150_000)
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    shard = sorted(parquet_dir.glob("*.parquet"))[1]
    original = shard.read_bytes()
    if damage == "truncated":
        shard.write_bytes(original[: len(original) // 2])
    else:
        shard.unlink()
    capsys.readouterr()
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]) == 0  # without --parquet
    assert f"parquet     {parquet_dir}  (not as the export recorded it: --parquet writes it again)" in capsys.readouterr().out
    export_parquet(data_dir / "Audio.tar", tmp_path)
    assert shard.read_bytes() == original
    assert export_jsonl.main(["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path), "--verify"]) == 0


def test_an_extra_shard_is_reported_by_verify_and_removed_by_the_next_run(tmp_path, small_archive, capsys):
    """load_dataset(parquet/) reads every shard there: a copy of one would give its rows twice."""
    data_dir, _ = small_archive
    parquet_dir = export_parquet(data_dir / "Audio.tar", tmp_path)
    [shard] = parquet_dir.glob("*.parquet")
    copy = parquet_dir / "copy of test-00000-of-00001.parquet"
    copy.write_bytes(shard.read_bytes())
    args = ["--archive", str(data_dir / "Audio.tar"), "--datadir", str(tmp_path)]
    capsys.readouterr()
    assert export_jsonl.main([*args, "--verify"]) == 1
    assert "not the shards of one export" in capsys.readouterr().out
    export_parquet(data_dir / "Audio.tar", tmp_path)
    assert not copy.exists()
    assert export_jsonl.main([*args, "--verify"]) == 0
    assert "verified 17 rows and 1 Parquet shard in" in capsys.readouterr().out


def test_the_demos_card_says_it_is_synthetic(tmp_path):
    assert export_jsonl.main(["--demo", "--datadir", str(tmp_path), "--parquet"]) == 0
    card = (tmp_path / "emotiontalk" / "parquet" / "README.md").read_text(encoding="utf-8")
    assert "synthetic data, not EmotionTalk" in card and "pretty_name: EmotionTalk test split, synthetic demo" in card
    assert "license:" not in card and "@article" not in card and "19,250" not in card
