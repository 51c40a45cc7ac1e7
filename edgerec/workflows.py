"""Library-first workflows behind the CLI: load data, train a bundle, compare against peers.

Each is a plain function an app or a notebook can call; ``edgerec.cli`` only parses arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ._exceptions import DatasetError
from .bundle import Manifest, write_bundle
from .data import Dataset, load_csv, load_movielens, synthetic
from .evaluation import (
    FitRecord,
    LOOSplit,
    Method,
    ProtocolResult,
    available_peers,
    hr_at,
    loo_split,
    missing_peers,
    ndcg_at,
    rank_users,
    run_protocol,
)
from .evaluation.ours import DEFAULT_GRID, QUICK_GRID, FloatModel, edgerec_methods
from .evaluation.peers import QUICK_GRIDS, SASREC_GRID
from .evaluation.peers import sasrec as sasrec_peer
from .evaluation.progress import Progress, resolve_progress
from .federated.simulation import SimulationConfig, SimulationResult, simulate
from .model.params import Params, init_params
from .model.config import ModelConfig, TrainConfig
from .training import fit_params

__all__ = ["DataSpec", "load_data", "train_bundle", "eval_methods", "compare", "result_rows",
           "DEFAULT_TRAINING", "ATTENTION_TRAINING", "QUICK_SEEDS", "default_training",
           "loo_evaluator", "federated_run", "PrivateStudy", "federated_study"]

# What `edgerec train` uses unless told otherwise: the validation-chosen MovieLens setting.
DEFAULT_TRAINING: dict[str, Any] = {"epochs": 16, "l2": 1e-4}
# The same for the attention encoder (ModelConfig(encoder="attention")), chosen on MovieLens-100K
# validation items (BENCHMARKS.md, "Attention encoder"): batches count histories, each training
# every position, hence fewer per batch; dropout regularises, so no L2 or history dropout.
ATTENTION_TRAINING: dict[str, Any] = {"epochs": 40, "lr": 1e-3, "batch_size": 64, "l2": 0.0,
                                      "history_dropout": 0.0}
# `edgerec eval --quick`: one seed (with QUICK_GRID and the peers' QUICK_GRIDS).
QUICK_SEEDS = 1


@dataclass(frozen=True)
class DataSpec:
    """Where interactions come from: "synthetic", a MovieLens-100K folder, or a CSV file."""

    source: str = "synthetic"
    user_col: str = "user"
    item_col: str = "item"
    time_col: str | None = "timestamp"
    value_col: str | None = None
    event_col: str | None = None
    synthetic_users: int = 500
    synthetic_items: int = 300
    seed: int = 0


def load_data(spec: DataSpec) -> Dataset:
    """The dataset a ``DataSpec`` names (a folder with ``u.data`` is read as MovieLens-100K)."""
    if spec.source == "synthetic":
        return synthetic(spec.synthetic_users, spec.synthetic_items, seed=spec.seed)
    path = Path(spec.source)
    if path.is_dir():
        if not (path / "u.data").is_file():
            raise DatasetError(f"{path} is a folder without u.data: not a MovieLens-100K download")
        return load_movielens(path)
    if path.is_file():
        return load_csv(path, user_col=spec.user_col, item_col=spec.item_col, time_col=spec.time_col,
                        value_col=spec.value_col, event_col=spec.event_col)
    raise DatasetError(f"no such dataset: {spec.source} (give 'synthetic', a folder or a CSV file)")


def default_training(model: ModelConfig, **overrides: Any) -> TrainConfig | tuple[TrainConfig, TrainConfig]:
    """The training ``model`` gets unless told otherwise (a mix: one per tower), with
    ``overrides`` (e.g. ``seed``, ``threads``) on each."""
    if model.encoder == "mix":
        return (TrainConfig(**{**DEFAULT_TRAINING, **overrides}),
                TrainConfig(**{**ATTENTION_TRAINING, **overrides}))
    default = ATTENTION_TRAINING if model.encoder == "attention" else DEFAULT_TRAINING
    return TrainConfig(**{**default, **overrides})


def train_bundle(dataset: Dataset, out: str | Path, *, model: ModelConfig | None = None,
                 training: TrainConfig | tuple[TrainConfig, TrainConfig] | None = None, progress: Callable[..., Iterable[int]] | None = None,
                 sign: Callable[[bytes], bytes] | None = None, model_version: int = 1) -> Manifest:
    """Train centrally on all of ``dataset`` and write a bundle to ``out``.

    ``training`` defaults to ``DEFAULT_TRAINING`` or ``ATTENTION_TRAINING`` as the encoder
    needs; a mix takes two (pooled, attention), by default those two.
    """
    model = model or ModelConfig()
    training = training or default_training(model)
    params = fit_params(dataset.sequences(), dataset.catalogue.features, model, training,
                        progress=progress)
    used = ({"pooled": training[0].to_dict(), "attention": training[1].to_dict()}
            if isinstance(training, tuple) else training.to_dict())
    hyper = {"training": used, "dataset": dataset.name,
             "interactions": len(dataset), "users": dataset.n_users}
    return write_bundle(out, params, dataset.catalogue, model, model_version=model_version,
                        hyperparameters=hyper, sign=sign)


def eval_methods(*, quick: bool = False, peers: bool = True,
                 grid: tuple[dict[str, Any], ...] | None = None, threads: int | None = 1,
                 progress: bool | Progress | None = None, sasrec: bool = False,
                 encoders: bool = False, jobs: int = 1) -> list[Method]:
    """edgerec (float and int8) and, with ``peers``, every installed peer; with ``sasrec`` the
    SASRec peer too (opt-in: minutes of training per fit, ``evaluation.peers.sasrec``).

    ``quick`` gives every method its small grid: edgerec validates 8 and 16 epochs of one run
    (``QUICK_GRID``), the peers two candidates each (``peers.QUICK_GRIDS``). ``grid`` overrides
    edgerec's. ``threads``: BLAS threads of the training runs. ``progress`` shows their epochs.
    ``encoders`` adds each encoder alone (``edgerec_methods``). ``jobs``: processes that train
    edgerec's runs of a stage side by side (``edgerec_methods``); they are spawned, so a script
    that asks for more than one needs Python's ``if __name__ == "__main__":`` guard.
    """
    chosen = grid if grid is not None else (QUICK_GRID if quick else DEFAULT_GRID)
    bar = resolve_progress(progress)
    methods = edgerec_methods(chosen, threads=threads, progress=bar, encoders=encoders, jobs=jobs)
    if peers:
        methods += available_peers(quick=quick)
    if sasrec:
        methods.append(sasrec_peer(QUICK_GRIDS["sasrec"] if quick else SASREC_GRID, progress=bar))
    return methods


def compare(dataset: Dataset, *, seeds: Sequence[int] = (0, 1, 2, 3, 4), peers: bool = True,
            grid: tuple[dict[str, Any], ...] = DEFAULT_GRID, progress: Any = None,
            threads: int | None = 1, methods: Sequence[Method] | None = None,
            on_fit: Callable[[FitRecord], None] | None = None, jobs: int = 1) -> ProtocolResult:
    """LOO-full: edgerec (float and int8) and every installed peer, same split, same process.

    ``methods`` (e.g. from ``eval_methods(quick=True)``) replaces the default set; BLAS uses at
    most ``threads`` threads; ``on_fit`` hears of each fit as it ends (``run_protocol``).
    ``jobs`` > 1 trains edgerec's runs side by side and evaluates the classic peers in a side
    process meanwhile (spawned: a script needs the ``if __name__ == "__main__":`` guard).
    """
    if methods is None:
        methods = eval_methods(peers=peers, grid=grid, threads=threads, progress=progress, jobs=jobs)
    return run_protocol(dataset, methods, seeds=seeds, progress=progress, threads=threads,
                        on_fit=on_fit, jobs=jobs)


def result_rows(result: ProtocolResult) -> list[dict[str, Any]]:
    """``[{"method", "hr@10", "ndcg@10", ...}]``: the JSON `edgerec eval --json` prints."""
    k = result.k
    return [{"method": r.name, f"hr@{k}": round(r.hr, 5), f"ndcg@{k}": round(r.ndcg, 5),
             "val_ndcg": round(r.val_ndcg, 5), "hparams": r.hparams,
             "fit_seconds": round(r.fit_seconds, 2)} for r in result]


def peer_notes() -> list[str]:
    """What could not run here and why (for the CLI to print)."""
    return missing_peers()


def loo_evaluator(split: LOOSplit, dataset: Dataset, cfg: ModelConfig, *, stage: str = "test",
                  users: np.ndarray | None = None):
    """``params -> (HR@10, NDCG@10)`` on LOO-full: the validation item (users fit on ``train``)
    or the test item (users fit on ``train_val``), over ``users`` (default: every user with a
    held-out item; others given are ignored)."""
    fit = split.train if stage == "val" else split.train_val
    targets = split.val_item if stage == "val" else split.test_item
    users = split.eval_users if users is None else np.intersect1d(users, split.eval_users)

    def evaluate(params: Params) -> tuple[float, float]:
        model = FloatModel(params, cfg, dataset.catalogue.features)
        ranks = rank_users(model, fit, users, targets[users], dataset.n_items)
        return float(hr_at(ranks).mean()), float(ndcg_at(ranks).mean())

    return evaluate


def federated_run(dataset: Dataset, sim: SimulationConfig, *, model: ModelConfig | None = None,
                  stage: str = "test", progress: Any = None) -> SimulationResult:
    """One device per user, FedAvg/FedAdam from a fresh model, LOO-full after rounds.

    Devices hold what the protocol lets a method fit on: ``train`` when ``stage="val"`` (for
    choosing hyper-parameters), ``train_val`` when ``stage="test"``.
    """
    model = model or ModelConfig()
    split = loo_split(dataset.sequences())
    init = init_params(model, dataset.n_items, dataset.catalogue.features.shape[1],
                       np.random.default_rng(sim.seed))
    fit = split.train if stage == "val" else split.train_val
    return simulate(init, dataset.catalogue.features, fit, model, sim,
                    evaluate=loo_evaluator(split, dataset, model, stage=stage), progress=progress)


@dataclass(frozen=True, eq=False)
class PrivateStudy:
    """A federated run beside what it is judged against, on the same users and split.

    ``ndcg``, ``pilot_ndcg`` and ``central_ndcg`` are LOO-full NDCG@10 over the device users
    (pilot users excluded: their events trained the first model).
    """

    result: SimulationResult
    first_model: Params  # the pilot model (or the random initialisation) the rounds started from
    sim: SimulationConfig  # as run: noise_multiplier is the calibrated z when a target was given
    devices: int
    pilot_users: int
    epsilon: float | None  # None: no noise, no differential privacy
    ndcg: float
    pilot_ndcg: float | None  # the first model alone; None without a pilot
    central_ndcg: float | None  # all users' data in one place; None when not asked for


def federated_study(dataset: Dataset, sim: SimulationConfig, *, model: ModelConfig | None = None,
                    stage: str = "test", pilot_share: float = 0.0, epsilon: float | None = None,
                    central: bool = True, progress: Any = None) -> PrivateStudy:
    """Pilot, federated rounds and the central model of the same run, evaluated side by side.

    ``pilot_share`` of the users (drawn with ``sim.seed``, ``edgerec.federated.draw_pilot``)
    train the first model centrally with consent; every other user is a device. With
    ``epsilon``, the noise multiplier is calibrated (``noise_for_releases``) so that
    ``sim.rounds`` rounds of ``sim.clients_per_round`` of the devices spend at most ``epsilon``
    at ``sim.delta``, accounted as the simulation accounts them. The pilot's epochs are chosen
    on its own users' held-out events (``edgerec.federated.pilot_training.train_pilot``).
    """
    from .federated.pilot import draw_pilot, only_users
    from .federated.pilot_training import train_pilot
    from .privacy import noise_for_releases

    model = model or ModelConfig()
    split = loo_split(dataset.sequences())
    fit = split.train if stage == "val" else split.train_val
    pilot, others = draw_pilot(dataset.n_users, pilot_share, sim.seed)
    device_seqs = only_users(fit, others)
    holders = sum(1 for s in device_seqs.items if len(s))
    if epsilon is not None:
        z = noise_for_releases(epsilon, population=holders, cohort=min(sim.clients_per_round, holders),
                               rounds=sim.rounds, delta=sim.delta)
        sim = replace(sim, noise_multiplier=z)
    features = dataset.catalogue.features
    training = TrainConfig(**DEFAULT_TRAINING, seed=sim.seed)
    if len(pilot):
        init = train_pilot(only_users(fit, pilot), features, model, training).params
    else:
        init = init_params(model, dataset.n_items, features.shape[1], np.random.default_rng(sim.seed))
    evaluate = loo_evaluator(split, dataset, model, stage=stage, users=others)
    result = simulate(init, features, device_seqs, model, sim, evaluate=evaluate, progress=progress)
    central_ndcg = evaluate(fit_params(fit, features, model, training))[1] if central else None
    last = result.records[-1]
    return PrivateStudy(result, init, sim, holders, len(pilot), last.epsilon,
                        last.ndcg if last.ndcg is not None else evaluate(result.params)[1],
                        evaluate(init)[1] if len(pilot) else None, central_ndcg)
