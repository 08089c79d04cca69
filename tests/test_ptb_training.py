"""ptb/ptb_word_lm.py end to end: the CLI on real PTB, checkpoints and resuming."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from ptb import ptb_word_lm
from ptb import reader
from tests.conftest import ROOT

# A tiny corpus over a 40-word vocabulary, to train in seconds.
TINY = dataclasses.replace(ptb_word_lm.PRESETS["test"], vocab_size=40, hidden_size=8,
                           batch_size=4, num_steps=5, num_epochs=3, epochs_at_full_lr=1)


def write_tiny_corpus(folder):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(39)]  # + <eos> = 40 words
    for split, lines in (("train", 400), ("valid", 40), ("test", 40)):
        text = "\n".join(" ".join(rng.choice(words, size=8)) for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n")
    return str(folder)


def comparable(metrics):
    """The metrics that must not depend on timing."""
    return ([{k: v for k, v in epoch.items() if k not in ("seconds", "words_per_second")}
             for epoch in metrics["history"]], metrics["test_perplexity"])


def test_resume_after_a_crash_ends_like_an_uninterrupted_run(tmp_path, monkeypatch):
    data_path = write_tiny_corpus(tmp_path)
    uninterrupted = ptb_word_lm.train_and_evaluate(TINY, data_path, seed=3)

    save_path = str(tmp_path / "run")
    crash_in_third_epoch = ptb_word_lm.ProgressLogger.on_train_batch_end

    def crash(self, batch, logs=None):
        if self.epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        crash_in_third_epoch(self, batch, logs)

    monkeypatch.setattr(ptb_word_lm.ProgressLogger, "on_train_batch_end", crash)
    with pytest.raises(KeyboardInterrupt):
        ptb_word_lm.train_and_evaluate(TINY, data_path, save_path=save_path, seed=3)
    with open(f"{save_path}/metrics.json") as f:
        assert [epoch["epoch"] for epoch in json.load(f)["history"]] == [1, 2]

    monkeypatch.undo()
    resumed = ptb_word_lm.train_and_evaluate(TINY, data_path, save_path=save_path, seed=3)
    assert comparable(resumed)[0] == comparable(uninterrupted)[0]
    assert resumed["test_perplexity"] == pytest.approx(uninterrupted["test_perplexity"], rel=1e-6)

    # The saved model loads back for evaluation and gives the reported number.
    model = ptb_word_lm.load_trained_model(TINY, save_path)
    test_ids = reader.ptb_raw_data(data_path)[2]
    assert ptb_word_lm.evaluate_stream(model, test_ids) == pytest.approx(
        resumed["test_perplexity"], rel=1e-6)


def test_cli_end_to_end_on_real_ptb(data_dir, tmp_path):
    save_path = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "ptb.ptb_word_lm", f"--data_path={data_dir / 'ptb'}",
         "--model=test", "--steps_per_epoch=500", f"--save_path={save_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Model 50,040 parameters" in out
    assert "Epoch 1: learning rate 1.000" in out
    assert out.count("| epoch   1 |") == 10  # progress about ten times an epoch
    metrics = json.loads((save_path / "metrics.json").read_text())
    (epoch,) = metrics["history"]
    # Uniform guessing scores 10,000; even 500 windows of the 2-unit model beat it widely.
    assert epoch["valid_perplexity"] < 2000
    assert metrics["test_perplexity"] < 2000
    assert f"Test perplexity: {metrics['test_perplexity']:.2f} (82,429 words" in out
