"""The rows of the test ranges come as their pieces arrive: the pipeline of a build and a stream (arriving_rows over
ArrivingMembers), in this process, over real HTTP from the stand-in Hub."""

import contextlib
import hashlib
import tarfile
import threading

import huggingface_hub
import pytest

import export_jsonl
from stand_in_hub import GOOD_TOKEN, StandInHub
from test_hub import expected_rows
from test_load_members import members_options

builder = export_jsonl.project_module("emotiontalk_test")
ranged_tar = export_jsonl.project_module("ranged_tar")


def raise_it(error):
    raise error


@pytest.fixture
def streamed(layout_archive):
    """For a layout: the stand-in Hub serving it, the plan the probes settled, and the ArrivingMembers of a stream
    from it (this process's HF_ENDPOINT is a closed port, so the reader is made here); whatever the stand-in holds is
    released before the reader is closed."""
    with contextlib.ExitStack() as stack:
        def open_stream(layout):
            hub = stack.enter_context(StandInHub(layout_archive(layout)[0]))
            url = f"{hub.url}/datasets/BAAI/Emotiontalk/resolve/main/Audio.tar"

            def announced():
                return huggingface_hub.get_hf_file_metadata(url, token=GOOD_TOKEN)

            reader = stack.enter_context(ranged_tar.RangeReader(url, announced(), GOOD_TOKEN, resolve=announced, fail=raise_it))
            plan = ranged_tar.ArchiveLayout(reader, builder._TEST_MEMBERS).ranges_to_fetch()
            members = stack.enter_context(ranged_tar.ArrivingMembers(reader, plan, "Audio.tar"))
            stack.callback(hub.released.set)
            return hub, plan, members

        yield open_stream


def wav_ends(archive_path):
    """Where each WAV's data ends in the archive, by sample_id."""
    with tarfile.open(archive_path) as archive:
        return {member.name.rsplit("/", 1)[-1][: -len(".wav")]: member.offset_data + member.size
                for member in archive if member.name.endswith(".wav")}


def as_expected_rows(rows):
    """(key, example) as expected_rows gives them: sample_id, the emotion's index, the WAV's sha256."""
    return [[key, builder._EMOTIONS.index(row["emotion"]), hashlib.sha256(row["audio"]["bytes"]).hexdigest()] for key, row in rows]


def test_the_first_row_comes_while_later_pieces_are_on_their_way(streamed, layout_archive, layout_corpus):
    """The stand-in holds every piece of the WAVs that begins past the first row's WAV until the first row came, or
    for a minute if it does not come (then the test fails)."""
    archive_path, manifest_path = layout_archive("tar_sorted")
    hub, plan, members = streamed("tar_sorted")
    first_wav_end = wav_ends(archive_path)[min(u.sample_id for u in layout_corpus if u.is_test)]
    hub.hold({start for start, _ in plan.pieces(hub.size)[1] if start >= first_wav_end})
    assert len(hub.held_starts) > ranged_tar.AHEAD
    rows = builder.arriving_rows(members, members_options(manifest_path)["expected_manifest_sha256"])
    release = threading.Timer(60, hub.released.set)
    release.start()
    first_row = next(rows)
    came_while_held = not hub.released.is_set()
    hub.released.set()
    release.cancel()
    assert came_while_held
    assert as_expected_rows([first_row, *rows]) == expected_rows(layout_corpus)


def test_in_name_order_the_reader_fetches_a_few_pieces_ahead_of_the_rows(streamed, layout_archive, layout_corpus):
    """When each row comes, the pieces of the WAVs asked for that begin past its WAV are AHEAD at most."""
    archive_path, manifest_path = layout_archive("tar_sorted")
    hub, plan, members = streamed("tar_sorted")
    later_pieces, ends = plan.pieces(hub.size)[1], wav_ends(archive_path)
    assert len(later_pieces) > 3 * ranged_tar.AHEAD
    rows, ahead, held = [], [], []
    arriving = builder.arriving_rows(members, members_options(manifest_path)["expected_manifest_sha256"])
    for key, row in arriving:
        requested = set(hub.ranges_requested())
        ahead.append(sum(f"bytes={start}-{end - 1}" in requested for start, end in later_pieces if start >= ends[key]))
        held.append(len(arriving.gi_frame.f_locals["held"]))
        rows.append((key, row))
    assert as_expected_rows(rows) == expected_rows(layout_corpus)
    assert max(ahead) <= ranged_tar.AHEAD, ahead
    assert max(held) == 0  # no WAV waits for its turn


def test_where_annotations_lie_next_to_their_wavs_everything_is_fetched_first(streamed):
    """No part of an interleaving archive is WAVs alone: the plan reads it all before the first row, not a piece per
    WAV that a probe happened to see."""
    _, plan, _ = streamed("paired")
    assert plan.first and plan.later == []


def test_in_a_shuffled_layout_a_wav_is_held_until_its_turn_only(streamed, layout_archive, layout_corpus):
    """tar_cf's WAVs are not in name order: those that come before their turn are held until it, then let go."""
    archive_path, manifest_path = layout_archive("tar_cf")
    _, _, members = streamed("tar_cf")
    test_utterances = sorted((u for u in layout_corpus if u.is_test), key=lambda u: u.sample_id)
    ends = wav_ends(archive_path)
    assert sorted(test_utterances, key=lambda u: ends[u.sample_id]) != test_utterances  # not in name order
    rows, held = [], []
    arriving = builder.arriving_rows(members, members_options(manifest_path)["expected_manifest_sha256"])
    for position, (key, row) in enumerate(arriving):
        held.append(set(arriving.gi_frame.f_locals["held"]))
        assert held[-1] <= {u.file_path for u in test_utterances[position + 1:]}, key  # only WAVs whose turn is to come
        rows.append((key, row))
    assert as_expected_rows(rows) == expected_rows(layout_corpus)
    assert max(map(len, held)) > 0
