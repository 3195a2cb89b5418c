"""The test split's manifest for H2T (Hearing to Translate), in the published format: one JSON object per utterance,
ordered by `sample_id`, each `json.dumps(record, ensure_ascii=False)` and a newline.

The exporter writes it; the loading script and the exporter prove a split read from part of the archive whole by
it (the loading script imports it with a relative import, so that `datasets` copies it beside the script).
"""

import json
from pathlib import PurePosixPath

DATASET_ID = "emotiontalk"
SOURCE_LANGUAGE, TARGET_LANGUAGE = "zh", "en"
AUDIO_DIR = PurePosixPath("audio") / SOURCE_LANGUAGE  # inside the export folder, and so in every row's src_audio
MANIFEST_NAME = f"{SOURCE_LANGUAGE}-{TARGET_LANGUAGE}.jsonl"
# The manifest that a full export of the real archive writes, which H2T commits as manifests/emotiontalk/zh-en.jsonl.
H2T_MANIFEST_SHA256 = "f5a6754c8514cf78493da47f134473656d20162d864fc7eb47e54ca06008fdd4"


def manifest_line(sample_id: str, transcription: str, emotion: str) -> str:
    record = {
        "dataset_id": DATASET_ID,
        "sample_id": sample_id,
        "src_audio": (DATASET_ID / AUDIO_DIR / f"{sample_id}.wav").as_posix(),
        "src_ref": transcription,
        "tgt_ref": None,
        "src_lang": SOURCE_LANGUAGE,
        "tgt_lang": TARGET_LANGUAGE,
        "benchmark_metadata": {"context": "short", "emotion": emotion, "dataset_type": "emotion"},
    }
    return json.dumps(record, ensure_ascii=False) + "\n"
