"""Federated learning math shared by the in-process simulation and the server (pure)."""

from .strategies import FedAdam, FedAvg, Strategy, StrategyState, apply_federated

__all__ = ["FedAdam", "FedAvg", "Strategy", "StrategyState", "apply_federated"]
