"""``edgerec-server init`` trains the first model exactly as ``edgerec train`` would (the same
training settings), so a fleet's first model is the one the SDK's docs describe."""

from __future__ import annotations

import pytest

from edgerec.model.config import TrainConfig
from edgerec.workflows import DEFAULT_TRAINING

from srv_helpers import cli


@pytest.mark.parametrize("extra, epochs", [((), DEFAULT_TRAINING["epochs"]), (("--epochs", "3"), 3)])
def test_init_trains_with_edgerec_trains_settings(tmp_path, monkeypatch, bundle_dir, extra, epochs):
    import edgerec.workflows as workflows

    seen: list[TrainConfig] = []

    def record(dataset, out, *, model, training, **_):  # the code around training, not training
        seen.append(training)
        import shutil

        shutil.copytree(bundle_dir, out)

    monkeypatch.setattr(workflows, "train_bundle", record)
    cli(tmp_path / "state", "init", "--synthetic", "--synthetic-users", "20",
        "--synthetic-items", "30", *extra)
    [training] = seen
    assert training == TrainConfig(**{**DEFAULT_TRAINING, "epochs": epochs})
