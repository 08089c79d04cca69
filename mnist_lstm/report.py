"""The final report: metrics from test predictions, a text summary, two figures.

The figures are matplotlib's Figure objects, drawn without pyplot, so that no
display or backend is needed (servers, CI).
"""

import matplotlib.figure
import matplotlib.ticker
import numpy as np


def metrics_from_predictions(probabilities, labels, class_names):
    """Accuracy, loss, per-class accuracy and confusion matrix of test predictions.

    Args:
      probabilities: float [N, classes], the model's softmax outputs.
      labels: int [N], the true classes.
      class_names: one name per class, for the per-class table.
    """
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=1)
    # Row = true class, column = predicted class.
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    true_class_probability = probabilities[np.arange(len(labels)), labels]
    return {
        "test_accuracy": float((predictions == labels).mean()),
        "test_loss": float(-np.log(np.maximum(true_class_probability, 1e-7)).mean()),
        "test_examples": int(len(labels)),
        "per_class_accuracy": {
            name: float(accuracy) for name, accuracy in zip(class_names, per_class)
        },
        "confusion_matrix": confusion.tolist(),
    }


def format_report(metrics, class_names):
    """The metrics as a few lines of text: headline, per-class table, confusion matrix."""
    lines = [
        f"test accuracy {metrics['test_accuracy']:.2%} | test loss "
        f"{metrics['test_loss']:.4f} | {metrics['test_examples']} test examples",
        "",
        "per-class accuracy:",
    ]
    for name, accuracy in metrics["per_class_accuracy"].items():
        lines.append(f"  {name:>12s}  {accuracy:7.2%}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted class):"]
    width = max(5, len(str(np.max(metrics["confusion_matrix"]))) + 1)
    lines.append(" " * 15 + "".join(f"{i:>{width}d}" for i in range(len(class_names))))
    for i, (name, row) in enumerate(zip(class_names, metrics["confusion_matrix"])):
        label = name if name == str(i) else f"{i} {name[:11]:>11s}"
        lines.append(f"  {label:>13s}" + "".join(f"{n:>{width}d}" for n in row))
    return "\n".join(lines)


def training_curves(history, title):
    """Loss and accuracy per epoch, train vs validation, side by side.

    Args:
      history: one dict per epoch with "epoch" (from 1), "loss", "accuracy",
        "val_loss", "val_accuracy" (the run folder's history).
    """
    history = {key: np.array([epoch[key] for epoch in history]) for key in history[0]}
    epochs = history["epoch"]
    best_epoch = int(epochs[int(np.argmax(history["val_accuracy"]))])
    figure = matplotlib.figure.Figure(figsize=(11, 4))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.axvline(best_epoch, color="gray", linestyle=":", label=f"best epoch ({best_epoch})")
        axes.plot(epochs, history[metric], "o-", markersize=3, label="train")
        axes.plot(epochs, history["val_" + metric], "o-", markersize=3, label="validation")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    # Training accuracy is averaged over each epoch while the weights move, so
    # early on it sits below validation accuracy; that is not a bug.
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def predictions_figure(images, labels, probabilities, class_names, title,
                       sample_rows=4, mistake_rows=2, cols=10):
    """Test images with their predicted labels; mistakes in red with the true label.

    Top: the first test images, not hand-picked, so the share of red frames is an
    honest sample of the error rate. Bottom: the first mistakes of the whole
    test set, so there are always some to look at.
    """
    predictions = probabilities.argmax(axis=1)
    mistakes = np.flatnonzero(predictions != labels)
    figure = matplotlib.figure.Figure(
        figsize=(cols * 1.25, (sample_rows + mistake_rows) * 1.5 + 1.2))
    top, bottom = figure.subfigures(2, 1, height_ratios=[sample_rows + 0.5, mistake_rows + 0.6])
    sample = np.arange(min(sample_rows * cols, len(images)))
    shown_wrong = int((predictions[sample] != labels[sample]).sum())
    _image_grid(top, sample, sample_rows, cols, images, labels, predictions, class_names)
    top.suptitle(f"{title}\nfirst {len(sample)} test images: predicted label above each; "
                 f"mistakes ({shown_wrong}) framed in red with the true label", fontsize=10)
    _image_grid(bottom, mistakes[: mistake_rows * cols], mistake_rows, cols, images, labels,
                predictions, class_names)
    bottom.suptitle(f"the first {min(len(mistakes), mistake_rows * cols)} of all "
                    f"{len(mistakes)} mistakes on the {len(labels)} test images", fontsize=10)
    return figure


def _image_grid(figure, indices, rows, cols, images, labels, predictions, class_names):
    grid = figure.subplots(rows, cols, squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, index in zip(grid.flat, indices):
        axes.axis("on")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.imshow(images[index], cmap="gray_r", vmin=0.0, vmax=1.0)
        predicted, true = predictions[index], labels[index]
        wrong = predicted != true
        axes.set_title(
            class_names[predicted][:11] + (f"\n(true: {class_names[true][:11]})" if wrong else ""),
            fontsize=7, color="red" if wrong else "black",
        )
        for spine in axes.spines.values():
            spine.set_visible(bool(wrong))
            spine.set_color("red")
            spine.set_linewidth(2.5)
