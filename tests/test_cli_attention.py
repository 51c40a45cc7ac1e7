"""`edgerec train --encoder attention` writes an attention bundle with the attention training
defaults, and `edgerec recommend` serves it."""

from __future__ import annotations

import json

from edgerec.bundle import load_bundle
from edgerec.cli import main
from edgerec.workflows import ATTENTION_TRAINING


def test_train_with_the_attention_encoder_then_recommend(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["train", "--out", str(out), "--epochs", "1", "--dim", "8", "--history", "5",
                 "--encoder", "attention", "--blocks", "1", "--quiet"]) == 0
    bundle = load_bundle(out)
    assert (bundle.config.encoder, bundle.config.blocks) == ("attention", 1)
    training = bundle.manifest.hyperparameters["training"]
    assert training["epochs"] == 1 and training["batch_size"] == ATTENTION_TRAINING["batch_size"]
    capsys.readouterr()
    assert main(["recommend", "--bundle", str(out), "--db", str(tmp_path / "app.db"),
                 "--user", "u1", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_a_bad_block_count_is_refused_with_a_clear_message(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "b"), "--epochs", "1", "--encoder", "attention",
                 "--blocks", "0", "--quiet"])
    assert code != 0 and "blocks must be an int within 1..16" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_train_a_mix_then_recommend(tmp_path, capsys):
    out = tmp_path / "b"
    assert main(["train", "--data", "synthetic", "--out", str(out), "--dim", "4", "--history", "5",
                 "--encoder", "mix", "--blocks", "1", "--quiet"]) == 0
    bundle = load_bundle(out)
    assert bundle.config.encoder == "mix" and bundle.config.mix == 0.4
    training = bundle.manifest.hyperparameters["training"]
    assert training["pooled"]["epochs"] == 16 and training["attention"]["epochs"] == ATTENTION_TRAINING["epochs"]
    capsys.readouterr()
    assert main(["recommend", "--bundle", str(out), "--db", str(tmp_path / "app.db"),
                 "--user", "u1", "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_epochs_for_a_mix_are_refused_before_any_training(tmp_path, capsys):
    code = main(["train", "--out", str(tmp_path / "b"), "--epochs", "1", "--encoder", "mix", "--quiet"])
    assert code != 0 and "a mix trains its towers" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
