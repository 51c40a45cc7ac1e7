"""edgerec's own model as evaluation methods: ``edgerec`` (float, numpy) and ``edgerec-int8``.

Both share one fit per (training data, seed, hyper-parameters): the int8 method scores the very
model the float method trained, exported and quantized the way a bundle is, run by onnxruntime.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .._exceptions import ConfigError
from ..types import Catalogue, Sequences
from ..model.config import ModelConfig, TrainConfig
from ..model.examples import latest_histories
from ..model.mix import join, score_items
from ..model.params import Params
from ..training import TrainingRun
from ._method import Method
from ._parallel import TrainingJob, run_jobs
from .progress import Progress, no_progress

__all__ = ["ATTENTION_SETTING", "DEFAULT_GRID", "MIX_SETTING", "QUICK_GRID", "FloatModel", "edgerec_methods", "training_epochs"]

_MODEL_KEYS = {"dim", "history", "hidden", "encoder", "blocks", "dropout", "mix"}
# A mix candidate names its towers' candidates; it is scored from their fits (no training of
# its own when they are in the grid too).
_TOWERS = ("pooled", "attention")

# Chosen from a wider look on MovieLens-100K validation items (epochs 8/16, L2 1e-5/1e-4, history
# dropout 0.1/0.3, dim 64/128): the neighbourhood of the best, for each run to choose from.
# The attention encoder's candidates (one training run validated at two lengths), from a look
# at blocks 1/2, lr 1e-3/2e-3 and 10-70 epochs (BENCHMARKS.md, "Attention encoder"): on
# MovieLens-100K validation items it beats the pooled encoder after 40 epochs (0.1188 vs 0.1167,
# one seed; 30 epochs 0.1108, 50 epochs 0.1128).
ATTENTION_SETTING: dict[str, Any] = {"encoder": "attention", "blocks": 2, "dropout": 0.2,
                                     "lr": 1e-3, "batch_size": 64, "l2": 0.0, "history_dropout": 0.0}
# The pooled and attention encoders mixed (edgerec.model.mix): each tower as the grid's own
# candidate trains it, so the mix costs scoring only. On MovieLens-100K validation items (seed 0)
# mix 0.4 gave 0.1289 against the attention encoder's 0.1188 (BENCHMARKS.md, "Pooled and
# attention mixed"); 0.3 and 0.5 are its neighbours, for each run to choose from.
MIX_SETTING: dict[str, Any] = {"encoder": "mix", "pooled": {"epochs": 16, "l2": 1e-4},
                               "attention": {**ATTENTION_SETTING, "epochs": 40}}
# L2 3e-4 (16 epochs) was a candidate too; it was never chosen (MovieLens-100K and the 10k-item
# CSV pick a mix or 8 epochs at 1e-4; CSV validation 0.1174 against 0.1203) and its training run
# was the tuning's longest path on two cores (BENCHMARKS.md, "the commands end to end").
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"epochs": 8, "l2": 1e-4},
    {"epochs": 16, "l2": 1e-4},
    {**ATTENTION_SETTING, "epochs": 30},
    {**ATTENTION_SETTING, "epochs": 40},
    {**MIX_SETTING, "mix": 0.3},
    {**MIX_SETTING, "mix": 0.4},
    {**MIX_SETTING, "mix": 0.5},
)
# `edgerec eval --quick`: the two candidates that share one training run (validated after 8 and
# after 16 epochs); MovieLens-100K's validation chooses 16 epochs at L2 1e-4 from either grid.
QUICK_GRID: tuple[dict[str, Any], ...] = DEFAULT_GRID[:2]


def _split_hparams(hparams: dict[str, Any], seed: int,
                   threads: int | None) -> tuple[ModelConfig, TrainConfig]:
    model = {k: v for k, v in hparams.items() if k in _MODEL_KEYS}
    train = {k: v for k, v in hparams.items() if k not in _MODEL_KEYS}
    return ModelConfig(**model), TrainConfig(**{"seed": seed, "threads": threads, **train})


def _setting(hparams: dict[str, Any]) -> str:
    """What a training run depends on besides its length: the hyper-parameters but epochs."""
    return repr(sorted((k, v) for k, v in hparams.items() if k != "epochs"))


def _epochs(hparams: dict[str, Any]) -> int:
    return int(hparams.get("epochs", TrainConfig.epochs))


def _trained(configs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``configs`` with each mix replaced by its towers' candidates: what is trained."""
    return [tower for hparams in configs
            for tower in ([hparams[t] for t in _TOWERS] if _is_mix(hparams) else [hparams])]


def _is_mix(hparams: dict[str, Any]) -> bool:
    return hparams.get("encoder") == "mix"


def training_epochs(configs: Sequence[dict[str, Any]]) -> float:
    """Epochs of training that fitting ``configs`` takes (one seed, one training set): configs
    that differ only in epochs share one run, as long as the longest of them; a mix trains its
    towers' candidates."""
    longest: dict[str, int] = {}
    for hparams in _trained(configs):
        setting = _setting(hparams)
        longest[setting] = max(longest.get(setting, 0), _epochs(hparams))
    return float(sum(longest.values()))


@dataclass
class FloatModel:
    """The numpy float model as a ``FittedModel`` (scores users from their histories)."""

    params: Params
    cfg: ModelConfig
    features: np.ndarray

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        items, signals = latest_histories(histories, self.cfg.history, users)
        return score_items(self.params, self.features, self.cfg, items, signals)


@dataclass
class _Int8:
    scorer: Any
    cfg: ModelConfig

    def score(self, users: np.ndarray, histories: Sequences) -> np.ndarray:
        items, signals = latest_histories(histories, self.cfg.history, users)
        return self.scorer.score_batch(items, signals)


class _SharedFits:
    """One training per (training data, seed, setting) for both methods and every epoch count.

    The int8 method scores the very weights the float method trained. Candidates that differ
    only in epochs continue one ``TrainingRun`` (the weights after e epochs are those of a run of
    e epochs), keeping a copy of the weights at each epoch count of the grid on the way. One run
    is kept open at a time, so memory holds one optimizer state, not one per candidate.
    """

    def __init__(self, grid: tuple[dict[str, Any], ...], threads: int | None, progress: Progress,
                 jobs: int = 1):
        self._stops: dict[str, set[int]] = {}
        for hparams in _trained(grid):
            self._stops.setdefault(_setting(hparams), set()).add(_epochs(hparams))
        self._threads = threads
        self._progress = progress
        self._jobs = jobs
        # Keyed by the training object's identity; each entry keeps that object alive, so an id
        # can never be reused for other data while its entry exists.
        self._weights: dict[tuple[int, int, str, int], tuple[Sequences, Params, ModelConfig]] = {}
        self._open: tuple[tuple[int, int, str], Sequences, TrainingRun] | None = None

    def get(self, train: Sequences, catalogue: Catalogue, seed: int,
            hparams: dict[str, Any]) -> tuple[Params, ModelConfig]:
        if _is_mix(hparams):
            (pooled, pooled_cfg), (seq, seq_cfg) = (self.get(train, catalogue, seed, hparams[t])
                                                    for t in _TOWERS)
            cfg = ModelConfig(dim=pooled_cfg.dim, history=pooled_cfg.history, hidden=pooled_cfg.hidden,
                              encoder="mix", blocks=seq_cfg.blocks, dropout=seq_cfg.dropout,
                              mix=hparams.get("mix", ModelConfig.mix))
            if cfg.towers() != (pooled_cfg, seq_cfg):
                raise ConfigError(f"a mix's towers must share dim and history: {hparams}")
            return join(pooled, seq), cfg
        cfg, tcfg = _split_hparams(hparams, seed, self._threads)
        setting = _setting(hparams)
        key = (id(train), seed, setting, tcfg.epochs)
        if key not in self._weights:
            run = self._run_for((id(train), seed, setting), train, catalogue, cfg, tcfg)
            stops = {e for e in self._stops.get(setting, ()) if run.epochs < e < tcfg.epochs}
            for stop in [*sorted(stops), tcfg.epochs]:
                if stop > run.epochs:
                    run.advance(stop - run.epochs, progress=self._bar(run.epochs, stop))
                params = {name: value.copy() for name, value in run.params.items()}
                self._weights[key[:3] + (stop,)] = (train, params, cfg)
        return self._weights[key][1:]

    def prefetch(self, train: Sequences, catalogue: Catalogue,
                 requests: Sequence[tuple[int, dict[str, Any]]]) -> None:
        """Train what ``get`` will need for ``requests`` (seed, hparams) on ``train``: one run
        per (seed, setting) not yet kept, as long as its longest request, on ``jobs`` processes."""
        longest: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}
        for seed, hparams in requests:
            for tower in _trained([hparams]):
                key = (seed, _setting(tower))
                if (id(train), *key, _epochs(tower)) not in self._weights:
                    if key not in longest or _epochs(tower) > longest[key][0]:
                        longest[key] = (_epochs(tower), tower)
        jobs = {}
        for (seed, setting), (epochs, hparams) in longest.items():
            cfg, tcfg = _split_hparams(hparams, seed, self._threads)
            stops = tuple(sorted({e for e in self._stops.get(setting, ()) if e < epochs} | {epochs}))
            jobs[TrainingJob(cfg, tcfg, stops)] = (seed, setting)
        for job, weights in run_jobs(train, catalogue.features, list(jobs), self._jobs, self._progress):
            seed, setting = jobs[job]
            for stop, params in weights.items():
                self._weights[(id(train), seed, setting, stop)] = (train, params, job.cfg)

    def _bar(self, done: int, stop: int) -> Callable[[Iterable[int]], Iterable[int]]:
        """The epoch bar of a run going on from ``done`` epochs to ``stop``."""
        def bar(epochs: Iterable[int]) -> Iterable[int]:
            return self._progress(epochs, total=stop - done, desc=f"training: epochs {done + 1}-{stop}")
        return bar

    def _run_for(self, run_key: tuple[int, int, str], train: Sequences, catalogue: Catalogue,
                 cfg: ModelConfig, tcfg: TrainConfig) -> TrainingRun:
        """The open run when it can reach ``tcfg.epochs``, else a fresh one (then open)."""
        if self._open is None or self._open[0] != run_key or self._open[2].epochs > tcfg.epochs:
            self._open = (run_key, train, TrainingRun.fresh(train, catalogue.features, cfg, tcfg))
        return self._open[2]


def edgerec_methods(grid: tuple[dict[str, Any], ...] = DEFAULT_GRID, *, int8: bool = True,
                    progress: Progress | None = None, threads: int | None = 1,
                    encoders: bool = False, jobs: int = 1) -> list[Method]:
    """The float method and, with ``int8``, the int8 method sharing its fits.

    With ``encoders``, also ``edgerec-pooled`` and ``edgerec-attention``: the float model
    restricted to the grid's candidates of one encoder, for a side-by-side report. They share
    the same fits (a mix's towers are those candidates), so they cost scoring, not training,
    when the chosen candidates coincide.

    Training uses at most ``threads`` BLAS threads (and the int8 scorer as many onnxruntime
    threads; None: their defaults); ``progress`` (tqdm-like) shows the runs of each stage.
    Each stage's training runs are trained before its first fit (``Method.prepare``), on up to
    ``jobs`` worker processes (``_parallel``; the weights do not depend on ``jobs``).
    """
    fits = _SharedFits(grid, threads, progress or no_progress, jobs)

    def fit_float(train: Sequences, catalogue: Catalogue, seed: int, **hparams: Any) -> FloatModel:
        params, cfg = fits.get(train, catalogue, seed, hparams)
        return FloatModel(params, cfg, catalogue.features)

    def fit_int8(train: Sequences, catalogue: Catalogue, seed: int, **hparams: Any) -> _Int8:
        from ..model.export import export_onnx, quantize_int8
        from ..scoring import Scorer

        params, cfg = fits.get(train, catalogue, seed, hparams)
        with tempfile.TemporaryDirectory() as tmp:
            float_path = export_onnx(params, catalogue.features, cfg, Path(tmp) / "f.onnx")
            int8_path = quantize_int8(float_path, Path(tmp) / "q.onnx")
            scorer = Scorer(int8_path, len(catalogue), cfg.history, threads=threads or 0)
        return _Int8(scorer, cfg)

    methods = [Method("edgerec", fit_float, grid, cost=training_epochs, cost_unit="epochs",
                      prepare=fits.prefetch)]
    if int8:  # edgerec's chosen model quantized: its fits are exports of edgerec's
        methods.append(Method("edgerec-int8", fit_int8, grid, prepare=fits.prefetch,
                              follows="edgerec"))
    for encoder in ("pooled", "attention") if encoders else ():
        alone = tuple(h for h in grid if h.get("encoder", "pooled") == encoder)
        if alone:
            methods.append(Method(f"edgerec-{encoder}", fit_float, alone, cost=training_epochs,
                                  cost_unit="epochs", prepare=fits.prefetch))
    return methods
