"""What a PTB run prints and records in its run folder beyond what every run
writes: its numbers as the tutorial prints them, the perplexity per epoch as a
figure, TensorBoard's curves, and at the end the batch-1 `model.keras` with its
vocabulary (for ptb.score, generate, next_word).

The figures are matplotlib's Figure objects, drawn without pyplot, so that no
display or backend is needed (servers, CI).
"""

import time

import matplotlib.figure
import matplotlib.ticker

from common import run_folder

# In the run folder beside model.keras: the words in id order.
VOCABULARY = "vocabulary.json"
FIGURE = "perplexity.png"


def format_perplexity(value):
    """Two decimals, as the tutorial prints; a diverging run's in three digits and
    a power of ten rather than a hundred digits."""
    return f"{value:.2f}" if value < 1e6 else f"{value:.3g}"


def format_learning_rate(value):
    """Four significant digits: 1, 0.125, 0.4096, 1e+30."""
    return f"{value:.4g}"


class RunRecord:
    """What the trainer prints, as the tutorial prints it, and its records in its run
    folder `run` (a NoRunFolder keeps none)."""

    def __init__(self, run, model, config, num_windows, unigram_perplexity):
        self.run, self.num_windows = run, num_windows
        self.unigram_perplexity = unigram_perplexity  # of the validation text
        self.words_per_window = config.batch_size * config.num_steps
        self.title = (f"{config.rnn_cell} language model, {config.num_layers} x "
                      f"{config.hidden_size} units{', tied' if config.tied else ''}")
        self.tensorboard = run.tensorboard()  # the curves, as Keras' fit writes them
        self.tensorboard.set_model(model)
        self.tensorboard.on_train_begin()

    def epoch_start(self, epoch, learning_rate):
        """Prints the epoch's learning rate; returns its `progress(windows_done,
        perplexity)` for run_epoch, which prints the progress line."""
        print(f"Epoch {epoch + 1}: learning rate {format_learning_rate(learning_rate)}")
        start = time.perf_counter()

        def progress(windows_done, perplexity):
            words_per_second = (windows_done * self.words_per_window
                                / (time.perf_counter() - start))
            print(f"| epoch {epoch + 1:3d} | {windows_done:5d}/{self.num_windows} windows "
                  f"| lr {format_learning_rate(learning_rate):>6} "
                  f"| ppl {format_perplexity(perplexity):>9} "
                  f"| {words_per_second:6.0f} words/s |", flush=True)
        return progress

    def epoch_end(self, history, train_loss, valid_loss):
        print(f"Epoch {history[-1]['epoch']}: train perplexity "
              f"{format_perplexity(history[-1]['train_perplexity'])}, valid perplexity "
              f"{format_perplexity(history[-1]['valid_perplexity'])}", flush=True)
        valid = history[-1]["valid_perplexity"]
        if valid > self.unigram_perplexity:
            # Said at once: a long run that has stuck would otherwise train on for hours.
            print(f"  Warning: valid perplexity {format_perplexity(valid)} is above a unigram "
                  f"model's {format_perplexity(self.unigram_perplexity)} (word frequencies "
                  "alone). A run that ends a whole epoch so has stuck: start it again with "
                  "another --seed (docs/results.md#ptb-word-level-language-model-ptb).",
                  flush=True)
        self.run.save_figure(FIGURE, lambda: perplexity_figure(history, self.title))
        self.tensorboard.on_epoch_end(history[-1]["epoch"] - 1, dict(
            loss=train_loss, perplexity=history[-1]["train_perplexity"],
            val_loss=valid_loss, val_perplexity=history[-1]["valid_perplexity"],
            words_per_second=history[-1]["words_per_second"]))

    def training_end(self):
        self.tensorboard.on_train_end()

    def test_end(self, history, eval_model, words, test_perplexity, words_scored, seconds):
        """Prints the test result; saves the final model, its vocabulary (`words`) and
        the figure with the test result in its title."""
        print(f"Test perplexity: {format_perplexity(test_perplexity)} "
              f"({words_scored:,} words in {seconds:.1f} s)")
        self.run.save_model(eval_model, run_folder.MODEL)
        self.run.write_json(VOCABULARY, words)
        self.run.save_figure(FIGURE, lambda: perplexity_figure(
            history, title=f"{self.title}; test perplexity {test_perplexity:.2f}"))


def perplexity_figure(history, title):
    """Training and validation perplexity per epoch (log scale), the best
    validation epoch marked. history: the run folder's, one dict per epoch."""
    epochs = [epoch["epoch"] for epoch in history]
    valid = [epoch["valid_perplexity"] for epoch in history]
    best = min(range(len(valid)), key=valid.__getitem__)
    figure = matplotlib.figure.Figure(figsize=(6.5, 4))
    axes = figure.subplots()
    axes.plot(epochs, [epoch["train_perplexity"] for epoch in history], "o-", markersize=3,
              label="train")
    axes.plot(epochs, valid, "o-", markersize=3, label="validation")
    axes.axvline(epochs[best], color="gray", linestyle=":",
                 label=f"best validation: {valid[best]:.2f} (epoch {epochs[best]})")
    # The training perplexity is averaged over each epoch while the weights move,
    # so in the first epochs it sits above the validation one.
    return finish_figure(figure, axes, title)


def validation_figure(histories, title):
    """Validation perplexity per epoch of several runs: {label: history}."""
    figure = matplotlib.figure.Figure(figsize=(6.5, 4))
    axes = figure.subplots()
    for label, history in histories.items():
        valid = [epoch["valid_perplexity"] for epoch in history]
        axes.plot([epoch["epoch"] for epoch in history], valid, "o-", markersize=3,
                  label=f"{label} (best {min(valid):.2f})")
    return finish_figure(figure, axes, title, ylabel="validation perplexity")


def finish_figure(figure, axes, title, ylabel="perplexity"):
    axes.set_yscale("log")  # early epochs are far above the rest
    axes.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(8))  # round numbers, not decades
    axes.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure
