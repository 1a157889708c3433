"""What a recipe run writes: the output layout, callbacks, JSON, export.

Layout under `--output` (`make_output_dirs`; an existing non-empty
directory is continued only with `--resume`, never overwritten):
`config.json` (the resolved flags), `checkpoints/backup/`
(`BackupAndRestore`, every epoch), `checkpoints/best.weights.h5`
(ModelCheckpoint on the monitored held-out metric),
`checkpoints/final.weights.h5`, `logs/` (TensorBoard event files and
`history.csv`, read back by `read_history`), `plots/*.png`, `metrics.json`.
`keras_perceiver.recipes.common.Run` uses these; every public name here is
importable from `keras_perceiver.recipes.common` too.

Example:
>>> import os, tempfile
>>> from keras_perceiver.recipes import outputs
>>> path = outputs.write_json(os.path.join(tempfile.mkdtemp(), "m.json"), {"a": (1, 2)})
>>> outputs.read_json(path)
{'a': [1, 2]}
"""

import csv
import json
import os


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_json(path, value):
    """Writes JSON next to `path` and renames it into place."""
    from keras_perceiver import files

    with files.file_aside(path, "write") as tmp:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=2, sort_keys=True, default=_json_default)
    return path


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def make_output_dirs(output, resume, record):
    """Creates the layout under `output` and writes `record` as `config.json`;
    returns `{"output", "checkpoints", "backup", "logs", "plots"}` paths.

    A non-empty `output` is refused unless `resume` (nothing is overwritten).
    """
    if os.path.isdir(output) and os.listdir(output) and not resume:
        raise FileExistsError(
            f"--output {output} exists and is not empty; pass --resume to continue "
            "that run, or choose another --output (nothing was overwritten)."
        )
    if os.path.exists(output) and not os.path.isdir(output):
        raise NotADirectoryError(f"--output {output} is a file; expected a directory.")
    dirs = {key: os.path.join(output, key) for key in ("checkpoints", "logs", "plots")}
    dirs["output"] = output
    dirs["backup"] = os.path.join(dirs["checkpoints"], "backup")
    for key in ("checkpoints", "logs", "plots"):
        os.makedirs(dirs[key], exist_ok=True)
    write_json(os.path.join(output, "config.json"), record)
    return dirs


def read_history(logs_dir):
    """Per-epoch logs of a run and the runs it resumed (`logs_dir/history.csv`);
    a repeated epoch (logged again after a resume) keeps its last row."""
    path = os.path.join(logs_dir, "history.csv")
    if not os.path.exists(path):
        return {}
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "epoch") != "epoch":
                rows[int(row["epoch"])] = row
    history = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            history.setdefault(key, []).append(float(value) if value not in ("", None) else "")
    return history


def standard_callbacks(dirs, monitor, mode, best=None):
    """BackupAndRestore (every epoch), TerminateOnNaN, ModelCheckpoint of the
    best `monitor` (starting from `best`, a resumed run's best so far),
    CSVLogger and TensorBoard, writing under `dirs` (`make_output_dirs`)."""
    import keras

    return [
        BackupAndRestore(dirs["backup"], save_freq="epoch", delete_checkpoint=False),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            os.path.join(dirs["checkpoints"], "best.weights.h5"), monitor=monitor,
            mode=mode, save_best_only=True, save_weights_only=True,
            initial_value_threshold=best, verbose=0),
        keras.callbacks.CSVLogger(os.path.join(dirs["logs"], "history.csv"), append=True),
        keras.callbacks.TensorBoard(dirs["logs"]),
    ]


def _backup_class():
    import keras
    import numpy as np

    class BackupAndRestore(keras.callbacks.BackupAndRestore):
        """`keras.callbacks.BackupAndRestore` that also keeps the model's random
        states (dropout's `SeedGenerator`s, which `save_weights` leaves out),
        so a resumed run draws the same dropout masks as an uninterrupted one."""

        def _rng_variables(self):
            return [v for v in self.model.variables if "seed_generator_state" in v.path]

        def _save_model(self):
            super()._save_model()
            from keras_perceiver import files

            states = {f"state_{i}": keras.ops.convert_to_numpy(v)
                      for i, v in enumerate(self._rng_variables())}
            with files.file_aside(os.path.join(self.backup_dir, "rng_states.npz")) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **states)

        def _load_model(self):
            super()._load_model()
            path = os.path.join(self.backup_dir, "rng_states.npz")
            if not os.path.exists(path):
                return
            variables = self._rng_variables()
            with np.load(path, allow_pickle=False) as saved:
                if len(saved.files) != len(variables):
                    raise ValueError(
                        f"{path}: {len(saved.files)} random states saved, the model has "
                        f"{len(variables)}; --resume needs the same model and config.")
                for i, variable in enumerate(variables):
                    variable.assign(saved[f"state_{i}"])

    return BackupAndRestore


def BackupAndRestore(*args, **kwargs):  # noqa: N802 - a class, built lazily (keras import)
    return _backup_class()(*args, **kwargs)


def export(model, base_dir, name, options=None):
    """SavedModel `base_dir/<next version>/` + LiteRT `base_dir/<name>_v<version>.tflite`;
    nothing existing is replaced."""
    import keras_perceiver.export as export_lib

    saved = export_lib.export_saved_model(model, base_dir, **(options or {}))
    version = os.path.basename(saved)
    litert = export_lib.export_litert(model, os.path.join(base_dir, f"{name}_v{version}.tflite"))
    return {"saved_model": saved, "litert": litert, "version": int(version)}
