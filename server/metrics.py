"""Prometheus metrics (``GET /metrics``), one registry per server instance (prometheus-client)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class Metrics:
    """The server's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("edgerec_http_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram("edgerec_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=_SECONDS, registry=r)
        self.rejections = Counter("edgerec_rejections", "Requests or messages refused",
                                  ["reason"], registry=r)
        self.rounds = Counter("edgerec_rounds", "Rounds closed", ["outcome"], registry=r)
        self.rounds_opened = Counter("edgerec_rounds_opened", "Rounds opened", registry=r)
        self.messages = Counter("edgerec_stage_messages", "Stage messages accepted", ["kind"], registry=r)
        self.participants = Gauge("edgerec_round_participants", "Participants of the last closed round",
                                  registry=r)
        self.survivors = Gauge("edgerec_round_survivors", "Survivors of the last completed round",
                               registry=r)
        self.stage_open = Histogram("edgerec_stage_open_seconds", "Wall time a stage was open",
                                    ["stage"], buckets=_SECONDS, registry=r)
        self.stage_receive = Counter("edgerec_stage_receive_seconds",
                                     "Server time spent accepting a stage's messages", ["stage"],
                                     registry=r)
        self.stage_close = Histogram("edgerec_stage_close_seconds", "Server time to close a stage",
                                     ["stage"], buckets=_SECONDS, registry=r)
        self.aggregate = Histogram("edgerec_aggregate_seconds",
                                   "Unmask + decode + server optimizer", buckets=_SECONDS, registry=r)
        self.publish = Histogram("edgerec_publish_seconds", "ONNX + int8 + sign + store a model",
                                 buckets=_SECONDS, registry=r)
        self.model_version = Gauge("edgerec_model_version",
                                   "Latest published model version (as /healthz; 0 before the first)",
                                   registry=r)
        self.enrolments = Counter("edgerec_enrolments", "Devices enrolled", registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
