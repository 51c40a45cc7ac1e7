"""One exceptions module (edgerec._exceptions) whose classes print as their public paths."""

from __future__ import annotations

import importlib
import inspect
import traceback

import edgerec
import edgerec._exceptions as exceptions_module
import edgerec.sync.errors as sync_errors

CLASSES = [obj for obj in vars(exceptions_module).values()
           if inspect.isclass(obj) and issubclass(obj, (Exception, Warning))]


def test_every_class_prints_as_a_module_that_exports_it():
    assert len(CLASSES) >= 30
    for cls in CLASSES:
        assert cls.__module__ in ("edgerec", "edgerec.sync", "edgerec.secagg"), cls
        assert getattr(importlib.import_module(cls.__module__), cls.__name__) is cls, cls


def test_names_exported_from_edgerec_print_as_edgerec():
    for name in edgerec.__all__:
        obj = getattr(edgerec, name)
        if inspect.isclass(obj) and issubclass(obj, (Exception, Warning)):
            assert obj.__module__ == "edgerec", name


def test_a_traceback_shows_the_public_path():
    from edgerec.sync import ServerRejectedError, TransportError

    assert traceback.format_exception_only(edgerec.ConfigError("bad"))[0] == "edgerec.ConfigError: bad\n"
    line = traceback.format_exception_only(TransportError("refused"))[0]
    assert line == "edgerec.sync.TransportError: refused\n"
    assert repr(ServerRejectedError(503, "busy", "later", retry_after=2.0)) \
        == "ServerRejectedError('503 busy: later')"


def test_the_sync_errors_module_re_exports_the_same_classes():
    from edgerec.sync import ProtocolError, RoundRefusedError, SyncError, TransportError

    assert sync_errors.SyncError is SyncError is exceptions_module.SyncError
    assert sync_errors.TransportError is TransportError
    assert sync_errors.ProtocolError is ProtocolError and issubclass(ProtocolError, ValueError)
    assert sync_errors.RoundRefusedError is RoundRefusedError
    assert issubclass(SyncError, edgerec.EdgeRecError)
    from edgerec.sync.bundles import BundleRollbackError
    from edgerec.sync.policy import RoundRefusedError as from_policy

    assert from_policy is RoundRefusedError and issubclass(BundleRollbackError, edgerec.BundleError)


def test_the_docstring_tree_names_every_class():
    tree = exceptions_module.__doc__
    for cls in CLASSES:
        assert cls.__name__ in tree, cls
