"""Bad arguments to the facade are EdgeRecErrors naming the argument, never a raw TypeError, and
change nothing (issue 14, item 5, as a hostile app would call it)."""

from __future__ import annotations

import pytest

import edgerec
from edgerec import ConfigError, EdgeRecError


@pytest.fixture
def rec(tmp_path, trained_bundle):
    device = edgerec.open(tmp_path / "app.db", bundle=trained_bundle)
    items = device.bundle.catalogue.item_ids
    device.log_many([{"user": "u1", "item": items[i], "event": "click"} for i in range(5)])
    yield device
    device.close()


@pytest.mark.parametrize("kwargs, named", [
    (dict(candidates=5), "candidates"),
    (dict(candidates="1234"), "candidates"),  # one str is not a list of ids (it was read per char)
    (dict(candidates=b"i1"), "candidates"),
    (dict(candidates=[1.5]), "candidates"),
    (dict(candidates=[None]), "candidates"),
    (dict(exclude=5), "exclude"),
    (dict(exclude="i1"), "exclude"),
    (dict(exclude=[object()]), "exclude"),
    (dict(k=0), "k"),
    (dict(k="10"), "k"),
    (dict(k=True), "k"),
    (dict(exclude_seen="yes"), "exclude_seen"),
])
def test_bad_recommend_arguments_are_config_errors_naming_them(rec, kwargs, named):
    before = rec.store.count()
    with pytest.raises(ConfigError, match=named):
        rec.recommend("u1", **kwargs)
    assert rec.store.count() == before
    assert rec.recommend("u1", k=3)  # the device works as before


def test_candidates_and_exclude_take_ids_as_str_or_int(rec):
    items = rec.bundle.catalogue.item_ids
    allowed = {items[7], items[8], items[9]}
    got = {r.item for r in rec.recommend("u1", k=3, candidates=list(allowed))}
    assert got == allowed
    assert items[7] not in {r.item for r in rec.recommend("u1", k=3, candidates=allowed, exclude=(items[7],))}
    assert rec.recommend("u1", k=2, candidates=(12345,)) == []  # unknown ids are ignored


@pytest.mark.parametrize("kwargs, named", [
    (dict(path=None), "path"),
    (dict(path=5), "path"),
    (dict(bundle=None), "bundle"),
    (dict(bundle=3), "bundle"),
    (dict(threads="2"), "threads"),
    (dict(threads=0), "threads"),
    (dict(threads=True), "threads"),
    (dict(public_key=5), "public_key"),
    (dict(retention="1000"), "retention"),
])
def test_bad_open_arguments_are_config_errors_naming_them(tmp_path, trained_bundle, kwargs, named):
    args = dict(path=tmp_path / "app.db", bundle=trained_bundle) | kwargs
    with pytest.raises(ConfigError, match=named):
        edgerec.open(args.pop("path"), args.pop("bundle"), **args)
    assert not (tmp_path / "app.db").exists()  # nothing was created for a refused call


def test_install_takes_only_a_loaded_bundle(rec, trained_bundle):
    with pytest.raises(ConfigError, match="bundle"):
        rec.install(str(trained_bundle))  # type: ignore[arg-type]
    rec.install(edgerec.load_bundle(trained_bundle))
    assert rec.recommend("u1", k=2)


def test_every_facade_error_is_catchable_as_edgerec_error(rec):
    for call in (lambda: rec.recommend(None), lambda: rec.log_many(None), lambda: rec.forget(3.5),
                 lambda: rec.export(None), lambda: rec.recommend("u1", candidates=5)):
        with pytest.raises(EdgeRecError):
            call()
