"""What every recipe run writes under `--output`, checked the same way for each recipe."""

import json
import os

PNG = b"\x89PNG\r\n\x1a\n"


def check_run_outputs(out, pictures):
    """Asserts the run directory's files (and `plots/<picture>` PNGs); returns metrics.json."""
    for path in ("config.json", "metrics.json", "checkpoints/best.weights.h5",
                 "checkpoints/final.weights.h5", "checkpoints/backup/latest.weights.h5",
                 "logs/history.csv") + tuple(f"plots/{p}" for p in pictures):
        assert os.path.getsize(os.path.join(out, path)) > 0, path
    for picture in pictures:
        with open(os.path.join(out, "plots", picture), "rb") as f:
            assert f.read(8) == PNG
    events = [f for _, _, fs in os.walk(os.path.join(out, "logs")) for f in fs
              if f.startswith("events.out.tfevents")]
    assert len(events) >= 2  # train and validation
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)
