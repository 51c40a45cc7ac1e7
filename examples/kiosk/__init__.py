"""A kiosk that embeds edgerec: one device, a screen, many anonymous visitors.

``python -m examples.kiosk`` serves a page with a grid of recommendations for the current
anonymous session; clicks and "not interested" go straight into ``rec.log()`` and the grid is
re-rendered from ``rec.recommend()`` at once. See ``examples/kiosk/README.md``.
"""

from .app import create_app
from .config import FederationSettings, KioskConfig
from .federation import SyncWorker
from .kiosk import Kiosk

__all__ = ["FederationSettings", "Kiosk", "KioskConfig", "SyncWorker", "create_app"]
