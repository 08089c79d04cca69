"""Files a run writes: each written whole or not at all, in formats every reader takes.

    atomic_write(path, write)     write(temporary_path), then renamed onto `path`
    write_text, write_json        text; strict JSON, non-finite numbers kept beside it
    read_json                     what write_json wrote, non-finite numbers restored
    save_model, save_figure       a Keras model, a matplotlib figure
    history_as_csv                one row per epoch

A write the disk refuses (full, no permission) leaves the previous version as
it was and no temporary file, and ends the run in one line (`write_failure`).
"""

import contextlib
import csv
import io
import json
import math
import os
import pathlib
import re

from common.cli import RunFailure



def atomic_write(path, write):
    """Calls write(temporary_path), then renames it to `path` (atomic on POSIX).

    A write that fails (a full disk, a lost permission) leaves the previous version
    of `path` as it was and no temporary file, and ends the run in one line.
    """
    path = pathlib.Path(path)
    # Same suffix, so that writers that pick a format by suffix (Keras, matplotlib) agree.
    partial = path.with_name(f".partial-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # its folder may be what failed
            partial.unlink(missing_ok=True)
        raise write_failure(path, error) from None


def failure_reason(error):
    """Why a write failed, in a few words: an OSError's reason, or the last clause
    of TensorFlow's message ("...; No space left on device [Op:SaveV2]")."""
    return getattr(error, "strerror", None) or re.sub(
        r"\s*\[Op:\w+\]$", "", str(error).strip().splitlines()[-1]).rsplit("; ", 1)[-1]


def write_failure(path, error):
    """The one-line RunFailure for a file the run could not write."""
    reason = failure_reason(error)
    return RunFailure(f"{path}: cannot write it ({reason}); what the run saved before is "
                      "kept: make room, or fix the path or its permission, and run the same "
                      "command again to resume")


def write_text(path, text):
    atomic_write(path, lambda partial: partial.write_text(text))


def write_json(path, data):
    """Strict JSON, which every parser reads: a number that is not finite is written as
    null, and a top-level dict gets "non_finite": {where: "inf" or "nan"} beside it."""
    non_finite = {}
    data = _finite_or_null(data, "", non_finite)
    if non_finite and isinstance(data, dict):
        data = dict(data, non_finite=non_finite)
    write_text(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def read_json(text):
    """The data that write_json wrote as `text`, its nulls that stood for inf or nan
    restored."""
    data = json.loads(text)
    if not isinstance(data, dict):
        return data
    for where, value in (data.pop("non_finite", None) or {}).items():
        parent, key = None, None
        node = data
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", where):
            parent, key = node, int(part[1:-1]) if part.startswith("[") else part
            node = node[key]
        parent[key] = float(value)
    return data


def _finite_or_null(value, where, non_finite):
    if isinstance(value, float) and not math.isfinite(value):
        non_finite[where] = str(value)
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item, f"{where}.{key}".lstrip("."), non_finite)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item, f"{where}[{index}]", non_finite)
                for index, item in enumerate(value)]
    return value


def save_figure(figure, path):
    atomic_write(path, lambda partial: figure.savefig(partial, dpi=100))


def save_model(model, path):
    atomic_write(path, lambda partial: model.save(partial))


def history_as_csv(history):
    columns = list(dict.fromkeys(key for epoch in history for key in epoch))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return text.getvalue()
