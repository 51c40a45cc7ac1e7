"""Federated learning math shared by the in-process simulation and the server (pure)."""

from .strategies import (STRATEGIES, FedAdam, FedAvg, Strategy, StrategyState, apply_federated,
                         make_strategy)

__all__ = ["STRATEGIES", "FedAdam", "FedAvg", "Strategy", "StrategyState", "apply_federated",
           "make_strategy"]
