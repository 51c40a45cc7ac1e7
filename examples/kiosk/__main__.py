"""``python -m examples.kiosk [--port 8080] [--db ...] [--bundle ...]``: serve the kiosk."""

from __future__ import annotations

import sys
from typing import Sequence

import edgerec

from .app import create_app
from .bootstrap import ensure_bundle
from .config import KioskConfig, parse_args
from .federation import SyncWorker
from .kiosk import Kiosk


def main(argv: Sequence[str] | None = None) -> int:
    """Load (or first train) the bundle, open the store, and serve until interrupted."""
    import uvicorn

    config = parse_args(argv)
    config.db.parent.mkdir(parents=True, exist_ok=True)
    bundle = ensure_bundle(config.bundle, config.data, quick=config.quick)
    with edgerec.open(config.db, bundle=bundle) as rec:
        kiosk, worker = _kiosk(rec, config)
        print(f"kiosk: model v{rec.model_version}, {len(rec.bundle.catalogue)} items; "
              f"open http://{config.host}:{config.port}/ (operator view: /operator)", flush=True)
        uvicorn.run(create_app(kiosk, worker=worker), host=config.host, port=config.port,
                    log_level="warning", access_log=False)
    return 0


def _kiosk(rec: edgerec.EdgeRec, config: KioskConfig) -> tuple[Kiosk, SyncWorker | None]:
    """The kiosk, and its sync worker when a coordinating server is configured."""
    if config.federation is None:
        return Kiosk(rec, config), None
    kiosk = Kiosk(rec, config)
    worker = SyncWorker(kiosk, config.federation)
    kiosk.federation = worker.view
    fed = config.federation
    print(f"kiosk: federated learning with {fed.server} every {fed.interval:g} s"
          + ("" if fed.server_key else " (no --server-key: new models are never downloaded)"), flush=True)
    return kiosk, worker


if __name__ == "__main__":
    sys.exit(main())
