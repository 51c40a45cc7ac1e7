"""The installed edgerec's version, for ``edgerec --version`` and ``edgerec-server --version``."""

from __future__ import annotations

from importlib import metadata

__all__ = ["installed_version"]


def installed_version() -> str:
    """The version of the installed ``edgerec`` distribution (importlib.metadata).

    Run from a source tree that was never installed, it is the package's ``__version__``.
    """
    try:
        return metadata.version("edgerec")
    except metadata.PackageNotFoundError:
        from . import __version__

        return __version__
