"""The training progress a DVC log shows: each bar named by student and epoch, and a log line per epoch."""

import logging
from types import SimpleNamespace

from stages.students.training import NamedProgress


def test_the_training_bar_is_named_by_student_and_epoch(caplog, capsys):
    progress = NamedProgress("gliner")
    args = SimpleNamespace(num_train_epochs=6)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=120, global_step=0, epoch=0.0)
    progress.on_train_begin(args, state, None)
    with caplog.at_level(logging.INFO, logger="headline_ner"):
        progress.on_epoch_begin(args, state, None)
        assert progress.training_bar.desc.startswith("gliner epoch 1/6")
        state.epoch, state.global_step = 1.0, 20
        progress.on_epoch_begin(args, state, None)
        assert progress.training_bar.desc.startswith("gliner epoch 2/6")
    progress.on_train_end(args, state, None)
    assert "gliner: epoch 2/6, 20 steps so far of 120" in caplog.text
    assert "gliner epoch 2/6" in capsys.readouterr().err  # tqdm draws on stderr
