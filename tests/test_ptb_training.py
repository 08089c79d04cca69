"""ptb/ptb_word_lm.py end to end: the CLI on real PTB, checkpoints and resuming."""

import dataclasses
import json
import os
import re
import subprocess

import numpy as np
import pytest

from common import run_folder
from common.cli import UserInputError
from ptb import benchmark
from ptb import language_model
from ptb import ptb_word_lm
from ptb import reader
from ptb import record
from tests.conftest import (ROOT, assert_one_line_error, killed_and_rerun_like_uninterrupted,
                            module_command, ptb_stopped_run_command, read_metrics, run_module,
                            timing_free)

# A tiny corpus over a 40-word vocabulary, to train in seconds.
TINY = dataclasses.replace(ptb_word_lm.PRESETS["test"], vocab_size=40, hidden_size=8,
                           batch_size=4, num_steps=5, epochs=3, epochs_at_full_lr=1)


def write_tiny_corpus(folder):
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(39)]  # + <eos> = 40 words
    for split, lines in (("train", 400), ("valid", 40), ("test", 40)):
        text = "\n".join(" ".join(rng.choice(words, size=8)) for _ in range(lines))
        (folder / f"ptb.{split}.txt").write_text(text + "\n")
    return str(folder)


def test_resume_after_a_crash_ends_like_an_uninterrupted_run(tmp_path, monkeypatch):
    """With dropout, so that its random stream must continue, not restart."""
    data_path = write_tiny_corpus(tmp_path)
    config = dataclasses.replace(TINY, keep_prob=0.5)
    uninterrupted = ptb_word_lm.train_and_evaluate(config, data_path, seed=3)

    save_path = str(tmp_path / "run")
    epoch_start = record.RunRecord.epoch_start

    def crash_in_third_epoch(self, epoch, *args):
        progress = epoch_start(self, epoch, *args)
        if epoch == 2:
            def progress(*_):
                raise KeyboardInterrupt("simulated crash")
        return progress

    monkeypatch.setattr(record.RunRecord, "epoch_start", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        ptb_word_lm.train_and_evaluate(config, data_path, save_path=save_path, seed=3)
    with open(f"{save_path}/metrics.json") as f:
        assert [epoch["epoch"] for epoch in json.load(f)["history"]] == [1, 2]

    monkeypatch.undo()
    resumed = ptb_word_lm.train_and_evaluate(config, data_path, save_path=save_path, seed=3)
    assert timing_free(resumed["history"]) == timing_free(uninterrupted["history"])
    assert resumed["test_perplexity"] == uninterrupted["test_perplexity"]

    # The saved model loads back for evaluation and gives the reported number.
    model, saved_config = language_model.load_trained_model(save_path)
    assert saved_config == config
    test_ids = reader.ptb_raw_data(data_path)[2]
    assert ptb_word_lm.evaluate_stream(model, config, test_ids) == pytest.approx(
        resumed["test_perplexity"], rel=1e-6)


def test_other_settings_into_the_same_run_folder_are_refused(tmp_path):
    data_path = write_tiny_corpus(tmp_path)
    save_path = tmp_path / "run"
    ptb_word_lm.train_and_evaluate(dataclasses.replace(TINY, epochs=1), data_path,
                                   save_path=save_path)
    with pytest.raises(UserInputError, match=r"other settings \(epochs 1 -> 2\).*--restart"):
        ptb_word_lm.train_and_evaluate(dataclasses.replace(TINY, epochs=2), data_path,
                                       save_path=save_path)
    # --restart with bad data: refused before the old run is touched.
    with pytest.raises(UserInputError, match="holds no corpus"):
        ptb_word_lm.train_and_evaluate(dataclasses.replace(TINY, epochs=2), str(tmp_path / "run"),
                                       save_path=save_path, restart=True)
    assert len(read_metrics(save_path)["history"]) == 1
    restarted = ptb_word_lm.train_and_evaluate(dataclasses.replace(TINY, epochs=2), data_path,
                                               save_path=save_path, restart=True)
    assert len(restarted["history"]) == 2 and len(read_metrics(save_path)["history"]) == 2


def test_a_quick_look_keeps_out_of_the_full_runs_default_folder(tmp_path):
    data_path = write_tiny_corpus(tmp_path)
    work = tmp_path / "work"  # the default run folders are relative: runs/ptb/...
    work.mkdir()

    def trainer(*flags):
        result = subprocess.run(module_command("ptb.ptb_word_lm", "--model=test",
                                               f"--data_path={data_path}", *flags),
                                cwd=work, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert result.returncode == 0, result.stderr[-2000:]

    trainer("--steps_per_epoch=10")
    assert [path.name for path in (work / "runs" / "ptb").iterdir()] == ["test_steps_per_epoch10"]
    trainer()  # the full run, in its own folder: not refused for the quick look's settings
    assert read_metrics(work / "runs" / "ptb" / "test")["settings"]["steps_per_epoch"] is None


def test_cli_end_to_end_on_real_ptb(data_dir, tmp_path, forked):
    save_path = tmp_path / "run"
    result = run_module("ptb.ptb_word_lm", f"--data_path={data_dir / 'ptb'}", "--model=test",
                        "--steps_per_epoch=500", f"--save_path={save_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "Model 50,040 parameters" in out
    assert "Epoch 1: learning rate 1\n" in out
    assert out.count("| epoch   1 |") == 10  # progress about ten times an epoch
    metrics = read_metrics(save_path)
    (epoch,) = metrics["history"]
    # Uniform guessing scores 10,000; even 500 windows of the 2-unit model beat it widely.
    assert epoch["valid_perplexity"] < 2000
    assert metrics["test_perplexity"] < 2000
    assert f"Test perplexity: {metrics['test_perplexity']:.2f} (82,429 words" in out
    assert metrics["tutorial"] == "ptb" and metrics["settings"]["epochs"] == 1
    # Said when the epoch ends above the validation text's unigram perplexity, and only then.
    unigram = reader.read_corpus(str(data_dir / "ptb")).unigram_perplexity("valid")
    assert unigram == pytest.approx(684.73, abs=0.01)
    warned = f"above a unigram model's {unigram:.2f}" in out
    assert warned == (epoch["valid_perplexity"] > unigram)
    # The run folder's model is the batch-1 evaluation model, and gives the same number.
    test_ids = reader.ptb_raw_data(str(data_dir / "ptb"))[2]
    model, config = language_model.load_trained_model(save_path)
    assert ptb_word_lm.evaluate_stream(model, config, test_ids) == pytest.approx(
        metrics["test_perplexity"], rel=1e-6)

    # The run folder is a tool: scoring the test file as one stream prints the
    # trainer's own test perplexity; the next words of a real text, most likely first.
    scored = run_module("ptb.score", f"--save_path={save_path}", data_dir / "ptb" / "ptb.test.txt")
    assert scored.returncode == 0, scored.stderr[-2000:]
    lines = scored.stdout.strip().splitlines()
    assert len(lines) == 1 + 3761 + 2 and lines[-2].startswith("0 of the words were outside")
    assert lines[-1] == f"perplexity {metrics['test_perplexity']:.2f} over 82,429 words"
    predicted = run_module("ptb.next_word", f"--save_path={save_path}", "--top_k=5", "the company")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    rows = [line.split("\t") for line in predicted.stdout.strip().splitlines()]
    vocabulary = json.loads((save_path / "vocabulary.json").read_text())
    assert len(rows) == 5 and all(word in vocabulary for word, _ in rows)
    probabilities = [float(p) for _, p in rows]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1

    # The same folder with other settings: refused in one line, naming them.
    assert_one_line_error(
        forked.run("ptb.ptb_word_lm", f"--data_path={data_dir / 'ptb'}", "--model=test",
                   "--steps_per_epoch=500", "--epochs=2", f"--save_path={save_path}"),
        "holds a run with other settings (epochs 1 -> 2)")


def test_killed_and_rerun_cli_ends_like_an_uninterrupted_run(data_dir, tmp_path,
                                                             uninterrupted_ptb_run):
    """A real stop: SIGKILL after the first epoch's checkpoint, then the same command;
    it ends as the same command run whole (shared with test_faults' SIGTERM)."""
    whole, killed = killed_and_rerun_like_uninterrupted(
        lambda save_path: ptb_stopped_run_command(data_dir, save_path), tmp_path, epochs=2,
        whole_folder=uninterrupted_ptb_run)
    assert killed["test_perplexity"] == whole["test_perplexity"]


def test_an_epoch_worse_than_word_counts_is_said_at_once(capsys):
    """A stuck run is told after its epoch, not after hours more of training."""
    records = record.RunRecord(run_folder.NoRunFolder(), None, TINY, num_windows=10,
                               unigram_perplexity=684.73)
    history = [dict(epoch=1, train_perplexity=2172.69, valid_perplexity=946.98,
                    words_per_second=1.0)]
    records.epoch_end(history, train_loss=7.7, valid_loss=6.9)
    out = capsys.readouterr().out
    assert "Epoch 1: train perplexity 2172.69, valid perplexity 946.98\n" in out
    assert "Warning: valid perplexity 946.98 is above a unigram model's 684.73 (word" in out
    history.append(dict(epoch=2, train_perplexity=600.0, valid_perplexity=450.0,
                        words_per_second=1.0))
    records.epoch_end(history, train_loss=6.4, valid_loss=6.1)
    assert "Warning" not in capsys.readouterr().out


def test_benchmark_prints_the_machine_and_its_speed_line():
    result = run_module("ptb.benchmark", "--model=test", "--steps=5", "--calls=1",
                        "--eval_words=300", "--nocompare_plain")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "machine: " in result.stdout and "cores; TensorFlow" in result.stdout
    assert "train (this package): " in result.stdout and " words/s best, " in result.stdout
    assert re.search(r"^bfloat16 dot products: (none|AVX512_BF16|AMX|AVX512_BF16, AMX)"
                     r"( \(no AMX\))?$", result.stdout, re.MULTILINE), result.stdout
    # MFU against the faster of TensorFlow's and numpy's float32 product, named.
    peaks = re.search(r"CPU matmul peaks, GFLOP/s: TensorFlow fp32 (\d+), numpy fp32 (\d+), "
                      r"TensorFlow bf16 (\d+); MFU below is against (\w+)'s fp32 (\d+) "
                      r"\(the step's products: fp32\)", result.stdout)
    assert peaks, result.stdout
    tensorflow, numpy, _, library, peak = peaks.groups()
    assert int(peak) == max(int(tensorflow), int(numpy)) > 0
    assert library == ("TensorFlow" if int(tensorflow) >= int(numpy) else "numpy")
    assert re.search(r"per window \d+ page faults, [\d.]+ ms system time", result.stdout)
    assert "eval (batch 1 stream): " in result.stdout


def test_mfu_of_a_bfloat16_step_is_against_the_faster_product():
    peaks = {("fp32", "TensorFlow"): 440.0, ("fp32", "numpy"): 250.0, ("bf16", "TensorFlow"): 820.0}
    assert benchmark.peak_for(peaks, "fp32") == (440.0, "TensorFlow's fp32")
    assert benchmark.peak_for(peaks, "bf16") == (820.0, "TensorFlow's bf16")
    # Where bfloat16 is the slower (no bfloat16 dot products), float32's peak stays the bar.
    slow = {**peaks, ("bf16", "TensorFlow"): 90.0}
    assert benchmark.peak_for(slow, "bf16") == (440.0, "TensorFlow's fp32")
    assert benchmark.peak_for({("fp32", "TensorFlow"): 5e3, ("fp16", "TensorFlow"): 2e4},
                              "fp16") == (2e4, "TensorFlow's fp16")


def test_breakdown_cuts_the_trainers_step_after_each_stage():
    stages = benchmark.step_stages(ptb_word_lm.PRESETS["test"])
    forward, backward, norm, whole_step = stages.values()
    assert list(stages) == ["whole step: forward only", "whole step: forward + backward",
                            "whole step: + the gradient's global norm",
                            "whole step: + the SGD update (the trainer's)"]
    loss = forward().numpy()
    backward()
    assert np.isfinite(loss) and loss > 0 and norm().numpy() > 0
    # The stages share the trainer's model and optimizer; only the whole step updates it.
    assert forward().numpy() == loss
    whole_step()
    assert forward().numpy() != loss
