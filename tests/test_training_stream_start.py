"""A saved stream position resumed by another number of processes."""

from __future__ import annotations

import pytest

from hf_ipt.cli import UsageError
from hf_ipt.training.position import Position, StreamStart, save_position


def test_positions_saved_by_more_processes_are_refused_not_partly_read(tmp_path):
    """A checkpoint of 4 processes resumed on 2 read the positions of ranks 0 and 1 and dropped the others:
    each is a row count within its rank's share of the sources, so the resumed ranks skipped rows of
    shares that 2 processes split otherwise, and the rows of ranks 2 and 3 were never accounted for."""
    for rank in range(4):
        save_position(tmp_path, rank, Position({"rows:domain": 10 + rank}).to_json())
    start = StreamStart()
    with pytest.raises(UsageError, match=r"positions of 4 processes, this run has 2.*--num_processes 4"):
        start.load(tmp_path, world_size=2)
    assert start(0) == Position()  # nothing read
    assert start.load(tmp_path, world_size=4) and start(3).rows("domain") == 13


def test_positions_saved_by_fewer_processes_say_so_and_the_trainer_replays(tmp_path, caplog):
    """Saved by 2, resumed on 4: the replay's warning blamed "an older hf_ipt"."""
    from types import SimpleNamespace

    from hf_ipt.training.trainer import resume_stream

    for rank in range(2):
        save_position(tmp_path, rank, Position({"rows:domain": 10 + rank}).to_json())
    trainer = SimpleNamespace(train_dataset=SimpleNamespace(stream_start=StreamStart()),
                              args=SimpleNamespace(ignore_data_skip=False, world_size=4))
    with caplog.at_level("WARNING", logger="hf_ipt"):
        assert resume_stream(trainer, str(tmp_path)) is False
    assert "it holds the positions of 2 processes, this run has 4" in caplog.text
    assert "older hf_ipt" not in caplog.text and trainer.args.ignore_data_skip is False
