"""common/run_folder.py, files.py, checkpoint.py and data.py: the run folder, its guard,
its protocol, resumable pieces."""

import errno
import json
import os

import keras
import numpy as np
import pytest

from common import callbacks
from common import data as common_data
from common import files
from common import machine
from common import run_folder
from common import source
from common.cli import RunFailure
from common.cli import UserInputError
from ptb import reader


def test_settings_are_recorded_once_the_run_begins(tmp_path):
    run = run_folder.RunFolder(tmp_path / "run", "ptb", {"epochs": 2, "sizes": (1, 2)})
    # Nothing of the run is written before it begins; the folder holds only its lock.
    assert [path.name for path in (tmp_path / "run").iterdir()] == [".lock"]
    run.write_metrics([{"epoch": 1, "seconds": 1.5, "loss": 0.25}], test_loss=0.5)
    assert json.loads((tmp_path / "run" / "settings.json").read_text()) == {
        "tutorial": "ptb", "settings": {"epochs": 2, "sizes": [1, 2]}}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["history"] == [{"epoch": 1, "seconds": 1.5, "loss": 0.25}]
    assert metrics["test_loss"] == 0.5 and metrics["tutorial"] == "ptb"
    assert "cores" in metrics["machine"]
    assert (tmp_path / "run" / "history.csv").read_text() == "epoch,seconds,loss\n1,1.5,0.25\n"
    # Same settings (tuples read back as lists): accepted, as a resume.
    assert run_folder.RunFolder(tmp_path / "run", "ptb", {"epochs": 2, "sizes": [1, 2]})


def test_metrics_name_the_commit_the_run_started_from_and_keep_it_on_resume(tmp_path):
    head = source.source_commit()
    assert head and len(head.split("+")[0]) == 40  # the suite runs in a git checkout
    run = run_folder.RunFolder(tmp_path / "run", "ptb", {"epochs": 2})
    run.write_metrics([{"epoch": 1}])
    run.close()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["commit"] == head
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(dict(metrics, commit="c0ffee")))
    resumed = run_folder.RunFolder(tmp_path / "run", "ptb", {"epochs": 2})
    resumed.write_metrics([{"epoch": 1}, {"epoch": 2}])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["commit"] == "c0ffee"


def test_other_settings_are_refused_naming_them_and_restart_clears_the_run(tmp_path):
    run_folder.RunFolder(tmp_path, "mnist_lstm", {"epochs": 2, "units": 8}).begin()
    (tmp_path / "model.keras").write_text("old")
    with pytest.raises(UserInputError, match=r"--save_path=.*: holds a run with other settings "
                                             r"\(epochs 2 -> 3, units 8 -> 9\); use a new "
                                             r"--save_path, or --restart"):
        run_folder.RunFolder(tmp_path, "mnist_lstm", {"epochs": 3, "units": 9})
    with pytest.raises(UserInputError, match="holds a mnist_lstm run, not ptb"):
        run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2, "units": 8})
    run_folder.RunFolder(tmp_path, "mnist_lstm", {"epochs": 3, "units": 9}, restart=True).begin()
    assert not (tmp_path / "model.keras").exists()


def test_a_setting_the_package_gained_later_matches_an_older_run_when_off(tmp_path):
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}).begin()  # written before "tied"
    for off in (None, False):
        run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2, "tied": off}).close()
    for on in (True, 0, 20_000):
        with pytest.raises(UserInputError, match=rf"other settings \(tied None -> {on}\)"):
            run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2, "tied": on})


def test_a_folder_that_is_not_a_run_is_never_used_or_deleted(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for restart in (False, True):
        with pytest.raises(UserInputError, match="exists and is not a run folder"):
            run_folder.RunFolder(tmp_path, "ptb", {}, restart=restart)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_an_unwritable_save_path_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserInputError, match="cannot write there"):
        run_folder.RunFolder(tmp_path / "file" / "run", "ptb", {})


def test_restart_deletes_the_old_run_only_when_the_new_one_begins(tmp_path):
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 1}).begin()
    restarted = run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}, restart=True)
    assert json.loads((tmp_path / "settings.json").read_text())["settings"] == {"epochs": 1}
    restarted.begin()
    assert json.loads((tmp_path / "settings.json").read_text())["settings"] == {"epochs": 2}


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(path, {"old": 1})

    def failing_write(partial):
        partial.write_text('{"half')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # One line naming the file and the reason (cli.run prints a RunFailure so).
    with pytest.raises(RunFailure,
                       match=r"metrics.json: cannot write it \(No space left on device\)"):
        files.atomic_write(path, failing_write)
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


def test_early_stopping_takes_up_its_count_after_a_restart():
    history = [{"val_accuracy": value} for value in (0.5, 0.7, 0.6, 0.65)]
    stopping = callbacks.EarlyStopping("val_accuracy", patience=3, history=history)
    stopping.on_train_begin()
    assert (stopping.best, stopping.best_epoch, stopping.wait) == (0.7, 1, 2)
    assert not stopping.stopped_before()
    stopping.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    stopping.on_epoch_end(4, {"val_accuracy": 0.6})  # a third epoch without a better one
    assert stopping.model.stop_training
    assert callbacks.EarlyStopping("val_accuracy", 2, history).stopped_before()


def test_early_stopping_resumed_with_patience_0_stops_only_after_a_worse_epoch():
    improving = [{"val_accuracy": value} for value in (0.5, 0.6)]
    assert not callbacks.EarlyStopping("val_accuracy", 0, improving).stopped_before()
    worse = improving + [{"val_accuracy": 0.55}]
    assert callbacks.EarlyStopping("val_accuracy", 0, worse).stopped_before()


def test_best_model_remembers_the_best_before_a_restart(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    run = run_folder.RunFolder(tmp_path, "mnist_lstm", {})
    best = callbacks.BestModel(run, "model.keras", "val_accuracy",
                               history=[{"val_accuracy": 0.8}])
    best.set_model(model)
    best.on_epoch_end(1, {"val_accuracy": 0.7})
    assert not (tmp_path / "model.keras").exists() and best.weights is None
    best.on_epoch_end(2, {"val_accuracy": 0.9})
    assert (tmp_path / "model.keras").is_file() and best.weights is not None


def test_without_a_run_folder_the_protocol_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_folder.open_run(None, "ptb", {"epochs": 1})
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd")
    assert run.resume(model) == (0, [])
    history = [{"epoch": 1, "valid_perplexity": 2.0}]
    run.end_epoch(history)
    drawn = []
    run.save_figure("curves.png", lambda: drawn.append(1))
    run.save_model(model, "model.keras")
    run.write_json("vocabulary.json", ["a"])
    run.tensorboard().on_epoch_end(0, {"loss": 1.0})
    run.finish(history, test_scalars={"test_perplexity": 2.0}, test_perplexity=2.0)
    assert not drawn and not list(tmp_path.iterdir())
    with pytest.raises(RunFailure, match="give --save_path"):
        run.load_weights(model, "model.keras")


def test_restart_deletes_the_tutorials_own_files_it_names(tmp_path):
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 1}).begin()
    (tmp_path / "vocabulary.json").write_text("[]")
    with pytest.raises(UserInputError, match="also holds 'vocabulary.json'"):
        run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}, restart=True)
    run_folder.RunFolder(tmp_path, "ptb", {"epochs": 2}, restart=True,
                         own_files=["vocabulary.json"]).begin()
    assert not (tmp_path / "vocabulary.json").exists()


def test_each_epoch_is_a_shuffle_of_all_examples_fixed_by_seed_and_epoch():
    features = np.arange(10, dtype=np.int64)

    def epochs(first_epoch, seed=3):
        batches = common_data.shuffled_epochs(features, features, 4, seed, first_epoch, 4)
        flat = np.concatenate([x.numpy() for x, _ in batches])
        return flat.reshape(-1, 10)

    all_four = epochs(0)
    assert all(sorted(epoch) == list(range(10)) for epoch in all_four)
    assert len({tuple(epoch) for epoch in all_four}) == 4  # a new order every epoch
    np.testing.assert_array_equal(epochs(2), all_four[2:])  # a resumed run: the same
    assert not np.array_equal(epochs(0, seed=4), all_four)
    sizes = [len(x) for x, _ in common_data.shuffled_epochs(features, features, 4, 3, 0, 1)]
    assert sizes == [4, 4, 2] == [4] * (common_data.batches_per_epoch(10, 4) - 1) + [2]


def test_the_tutorials_pipelines_run_without_tf_data_autotuning():
    """Ending an autotuned iterator stalled for seconds (common/data.py); every
    pipeline the trainers read an epoch from has the autotuning model off and
    still gives its windows or batches."""
    features = np.arange(10, dtype=np.int64)
    ptb_ids = np.arange(2 * (3 * 20 + 1))  # 2 rows of 3 windows of 20 words, + the targets' last
    pipelines = {
        "shuffled_epochs": common_data.shuffled_epochs(features, features, 4, 3, 0, 2),
        "in_order": common_data.in_order(features, features, 4),
        "PTB windows": reader.ptb_producer(ptb_ids, batch_size=2, num_steps=20),
    }
    for name, pipeline in pipelines.items():
        assert pipeline.options().autotune.enabled is False, name
    assert sum(len(x) for x, _ in pipelines["shuffled_epochs"]) == 20
    assert [len(x) for x, _ in pipelines["in_order"]] == [4, 4, 2]
    windows = [(x.numpy(), y.numpy()) for x, y in pipelines["PTB windows"]]
    assert len(windows) == 3 and windows[0][0].shape == (2, 20)
    np.testing.assert_array_equal(windows[1][1], windows[1][0] + 1)  # targets: one word on


@pytest.mark.parametrize("cpu_flags, expected, dot_products", [
    ("fma avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "(AVX-512, AVX512_BF16, AMX)",
     ["AVX512_BF16", "AMX"]),
    ("fma avx2 avx512f avx512_bf16", "(AVX-512, AVX512_BF16)", ["AVX512_BF16"]),
    ("fma avx2 avx512f", "(AVX-512)", []),
    ("fma avx2", "(AVX2, no AVX-512)", []),
    ("sse4_2", "(no AVX2)", []),
])
def test_describe_cpu_names_the_widest_vector_extension_and_bfloat16_products(
        tmp_path, monkeypatch, cpu_flags, expected, dot_products):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {cpu_flags}\n\n"
                       f"processor\t: 1\nmodel name\t: Some CPU\nflags\t\t: {cpu_flags}\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *args, **kwargs: real_open(
        cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs))
    assert machine.describe_cpu() == f"Some CPU {expected}"
    assert machine.bfloat16_dot_products() == dot_products
