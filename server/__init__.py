"""edgerec's coordinating server (import name ``edgerec_server``; the folder is ``server/``).

Devices enrol, take part in secure-aggregation rounds over HTTP (``edgerec.sync``), and the
server unmasks only the sum, applies FedAvg or FedAdam, and publishes a new signed bundle.
Start it with ``edgerec-server --data-dir ./state`` (see ``cli.py``); embed it with::

    from edgerec_server import Coordinator, SqliteBackend, Publisher, create_app, load_config
"""

from __future__ import annotations

from ._exceptions import ServerError
from .app import create_app
from .config import ServerConfig, load_config
from .coordinator import Coordinator, open_round
from .keys import load_or_create_key
from .publisher import Publisher
from .rounds import RoundParams
from .state import SqliteBackend, StateBackend

__all__ = ["Coordinator", "Publisher", "RoundParams", "ServerConfig", "ServerError",
           "SqliteBackend", "StateBackend", "create_app", "load_config", "load_or_create_key",
           "open_round"]
