"""The Parquet copy of the split that `export_jsonl.py --parquet` writes, and its check: shards, card, rows.

    parquet/test-00000-of-0000N.parquet   the split's rows, ordered by sample_id, at most 500 MB a shard
    parquet/README.md                     the dataset card

Each shard's schema carries the split's features as `datasets` writes them (Audio, the emotion ClassLabel), so that
`load_dataset(<folder>)` of any `datasets` release, 4 and 5 included, restores them without a loading script.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

MAX_PARQUET_SHARD_BYTES = 500_000_000  # datasets' own MAX_SHARD_SIZE, and what the Hub's Parquet conversion uses
# pyarrow's writer holds about three times a row group's bytes while it writes it: 100 rows of audio (datasets'
# choice) would take the export from 110 MB to over 500 MB at full size (bench/README.md); 16 MB keep it flat.
PARQUET_ROW_GROUP_BYTES = 16_000_000
CARD_NAME = "README.md"


class ParquetShards:
    """The split as Parquet files of at most MAX_PARQUET_SHARD_BYTES, in row groups of about PARQUET_ROW_GROUP_BYTES,
    written as the rows arrive into an existing folder. Until the last row tells how many shards there are, they
    have temporary names, which are removed if the export fails."""

    def __init__(self, parquet_dir: Path, features):
        self.parquet_dir = parquet_dir
        self.schema = features.arrow_schema
        self.temporary_paths: list[Path] = []
        self.writer = None
        self.shard_bytes = 0
        self.row_group: list[dict] = []
        self.row_group_bytes = 0

    def __enter__(self) -> "ParquetShards":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.close()
        for path in self.temporary_paths:
            path.unlink(missing_ok=True)

    def add(self, row: dict) -> None:
        import pyarrow.parquet

        # Audio dominates; the text columns are counted too. 1% is left for Parquet's own pages and footer.
        row_bytes = len(row["audio"]["bytes"]) + sum(len(value.encode()) for value in row.values() if isinstance(value, str))
        if self.writer is not None and self.shard_bytes + row_bytes > 0.99 * MAX_PARQUET_SHARD_BYTES:
            self.close_shard()
        if self.writer is None:
            self.temporary_paths.append(self.parquet_dir / f".shard-{len(self.temporary_paths)}.{os.getpid()}.tmp")
            # No dictionaries: pyarrow would try one on the audio bytes first, in memory, before it gives up.
            self.writer = pyarrow.parquet.ParquetWriter(self.temporary_paths[-1], self.schema, use_dictionary=False)
            self.shard_bytes = 0
        self.row_group.append(row)
        self.shard_bytes += row_bytes
        self.row_group_bytes += row_bytes
        if self.row_group_bytes >= PARQUET_ROW_GROUP_BYTES:
            self.write_row_group()

    def write_row_group(self) -> None:
        import pyarrow

        if self.row_group:
            self.writer.write_table(pyarrow.Table.from_pylist(self.row_group, schema=self.schema))
            self.row_group, self.row_group_bytes = [], 0

    def close_shard(self) -> None:
        self.write_row_group()
        self.writer.close()
        self.writer = None

    def finish(self, card: str) -> dict[str, int]:
        """Name the shards test-0000i-of-0000N, write the card, remove shards of an earlier export; the sizes by name."""
        if self.writer is not None:
            self.close_shard()
        names = shard_names(len(self.temporary_paths))
        for temporary, name in zip(self.temporary_paths, names):
            os.replace(temporary, self.parquet_dir / name)
        card_temporary = self.parquet_dir / f".{CARD_NAME}.{os.getpid()}.tmp"
        self.temporary_paths.append(card_temporary)
        card_temporary.write_text(card, encoding="utf-8")
        os.replace(card_temporary, self.parquet_dir / CARD_NAME)
        for stale in self.parquet_dir.glob("*.parquet"):
            if stale.name not in names:
                stale.unlink()
        return {name: (self.parquet_dir / name).stat().st_size for name in names}


def shard_names(count: int) -> list[str]:
    """The names of an export's shards, as the Hub names the split's files: test-00000-of-00002.parquet, ..."""
    return [f"test-{index:05d}-of-{count:05d}.parquet" for index in range(count)]


def dataset_card(info, group_rows: dict[str, int], language: str, demo: bool = False) -> str:
    """The Hugging Face dataset card of the Parquet copy: what EmotionTalk is (the first paragraph of the loading
    script's description), its licence and citation, and what this copy holds, counted. The copy of the demo's
    synthetic archive says that it is one, and claims neither EmotionTalk's data nor its licence."""
    groups = " and ".join(f"{group} ({rows})" for group, rows in sorted(group_rows.items()))
    rows = sum(group_rows.values())
    if demo:
        title = "EmotionTalk test split, synthetic demo (Parquet)"
        licence_field = ""
        what = f"""This folder holds **synthetic data, not EmotionTalk**: the {rows} utterances of speaker groups {groups} of the
small archive that `export_jsonl.py --demo` writes (`synthetic_archive.py`: tones and noise for audio, made-up
transcripts and labels) in the layout of EmotionTalk's `Audio.tar`, for trying the exporter and its Parquet copy
without access to the gated dataset [BAAI/Emotiontalk]({info.homepage})."""
        licence = ""
    else:
        title = "EmotionTalk test split (Parquet)"
        licence_field = f"license: {info.license}\n"
        what = f"""{info.description.split(chr(10) * 2)[0]}

This folder holds its test split, the {rows} utterances of speaker groups {groups}, as Parquet
files, written by `export_jsonl.py --parquet` from `Audio.tar` of the gated Hub dataset
[BAAI/Emotiontalk]({info.homepage})."""
        licence = f"""
## Licence and access

EmotionTalk is released by its authors under the licence `{info.license}`. This copy is the same data: the
licence and the access conditions of {info.homepage} apply to it unchanged. Share it only with
people who have accepted those conditions, for instance in a private or gated Hub repository.

## Citation

```bibtex
{info.citation.strip()}
```
"""
    return f"""---
{licence_field}language:
- {language}
pretty_name: {title}
task_categories:
- automatic-speech-recognition
- audio-classification
- translation
configs:
- config_name: default
  data_files:
  - split: test
    path: test-*.parquet
---

# {title}

{what} Each file carries the dataset's features in its schema, so any release of `datasets` (3.6, 4 and 5
alike) loads it without a loading script:

```python
from datasets import Audio, load_dataset

ds = load_dataset("path/to/this/folder", split="test")
ds = ds.cast_column("audio", Audio(decode=False))  # the WAV bytes; decoding to arrays needs torchcodec in datasets 4 and 5
```

Features: `sample_id`, `file_path`, `audio` (the archive's WAV member, byte for byte, 44.1 kHz), `raw_transcription`,
`emotion` (ClassLabel: {", ".join(info.features["emotion"].names)}), `speaker_id`, `annotation` (the original
JSON annotation). Rows are ordered by `sample_id`.
{licence}"""


class ShardCheck:
    """Compares the rows of the shards in a folder, in order, with the split's rows as they are given: every shard
    readable and with the split's features, the same rows and no more, and shards named as one export names them."""

    def __init__(self, parquet_dir: Path, features):
        self.parquet_dir = parquet_dir
        self.shard_rows: Iterator[tuple[Path, dict | str]] | None = shard_rows(parquet_dir, features)
        self.problems: list[str] = []

    def compare(self, row: dict) -> None:
        if self.shard_rows is None:
            return
        shard, shard_row = next(self.shard_rows, (self.parquet_dir, "has fewer rows than the archive's split"))
        if shard_row != row:
            self.problems.append(f"{shard}: " + (shard_row if isinstance(shard_row, str) else f"row {row['sample_id']} differs from the archive's split"))
            self.shard_rows = None  # after one difference the rows no longer line up: one problem is enough

    def finish(self) -> list[str]:
        """The problems found, once every row of the split was compared."""
        if self.shard_rows is not None and next(self.shard_rows, None) is not None:
            self.problems.append(f"{self.parquet_dir}: more rows than the archive's split")
        names = self.names()
        if names != shard_names(len(names)):
            self.problems.append(f"{self.parquet_dir}: holds {', '.join(names)}, not the shards of one export "
                                 f"(test-<i>-of-<n>); load_dataset would read them all")
        return self.problems

    def names(self) -> list[str]:
        return sorted(path.name for path in self.parquet_dir.glob("*.parquet"))


def shard_rows(parquet_dir: Path, features) -> Iterator[tuple[Path, dict | str]]:
    """Each row of the Parquet shards in order, with its shard; for a shard that cannot be read, or whose features
    are not the split's, what is wrong with it instead of its (remaining) rows."""
    import datasets
    import pyarrow
    import pyarrow.parquet

    for shard in sorted(parquet_dir.glob("*.parquet")):
        try:
            shard_file = pyarrow.parquet.ParquetFile(shard)
            if datasets.Features.from_arrow_schema(shard_file.schema_arrow) != features:
                yield shard, "its features are not the split's"
                continue
            # Row group by row group: iter_batches would hold far more (700 MB against 180 MB at full size).
            for index in range(shard_file.num_row_groups):
                yield from ((shard, row) for row in shard_file.read_row_group(index).to_pylist())
        except (pyarrow.ArrowException, OSError) as error:
            yield shard, f"unreadable ({str(error).splitlines()[0]})"
