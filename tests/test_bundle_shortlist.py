"""A bundle with the shortlist graph: written and verified with the others, used by recommend()
(top k from the probed clusters only; with every cluster probed, the exact answer), the full
graph still there for whole-catalogue scoring, installs and tampering as for any bundle file."""

from __future__ import annotations

import numpy as np
import pytest

import edgerec
from edgerec import BundleIntegrityError, ConfigError, ShortlistConfig
from edgerec.bundle import load_bundle, write_bundle
from edgerec.data import synthetic
from edgerec.model.config import ModelConfig, TrainConfig
from edgerec.model.mix import scoring_tables, user_vectors
from edgerec.model.shortlist import build_index, probe_clusters
from edgerec.scoring import Scorer
from edgerec.training import fit_params
from edgerec._bundle_root import SHORTLIST_FILE

CFG = ModelConfig(dim=8, history=10)


@pytest.fixture(scope="module")
def trained():
    ds = synthetic(n_users=150, n_items=120, seed=2)
    params = fit_params(ds.sequences(), ds.catalogue.features, CFG, TrainConfig(epochs=3))
    return ds, params


def _recommend(path, tmp_path, clicks):
    with edgerec.open(tmp_path / f"app-{path.name}.db", bundle=path) as rec:
        for n, item in enumerate(clicks):
            rec.log(user="me", item=item, event="click", ts=1000.0 + n)
        return [(r.item, r.score) for r in rec.recommend("me", k=10)], rec.bundle


def test_probing_every_cluster_gives_the_exact_answer_and_the_file_is_listed(tmp_path, trained):
    ds, params = trained
    exact, shortlist = tmp_path / "exact", tmp_path / "shortlist"
    write_bundle(exact, params, ds.catalogue, CFG)
    write_bundle(shortlist, params, ds.catalogue, CFG, shortlist=ShortlistConfig(clusters=6, probe=6))
    assert load_bundle(exact).shortlist_path is None  # small catalogues keep the exact graph only
    bundle = load_bundle(shortlist)
    assert SHORTLIST_FILE in bundle.manifest.files and bundle.shortlist_path.is_file()
    clicks = list(ds.catalogue.item_ids[:4])
    want, _ = _recommend(exact, tmp_path, clicks)
    got, _ = _recommend(shortlist, tmp_path, clicks)
    # The same items up to int8 rounding: the shortlist's table has one scale, the full graph's
    # one per item, so near-ties may swap.
    assert len({i for i, _ in got} & {i for i, _ in want}) >= 9
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=0.05, atol=0.05)


def test_recommend_answers_from_the_probed_clusters_and_a_new_event_changes_it(tmp_path, trained):
    ds, params = trained
    scfg = ShortlistConfig(clusters=8, probe=1)
    path = tmp_path / "b"
    write_bundle(path, params, ds.catalogue, CFG, shortlist=scfg)
    _, table_out, bias = scoring_tables(params, ds.catalogue.features, CFG)
    index = build_index(table_out, bias, scfg)  # deterministic: the one the bundle holds
    with edgerec.open(tmp_path / "app.db", bundle=path) as rec:
        cold = rec.recommend("me", k=5)
        rec.log(user="me", item=ds.catalogue.item_ids[7], event="purchase")
        after = rec.recommend("me", k=5)
        assert [r.item for r in after] != [r.item for r in cold]
        table_in, _, _ = scoring_tables(params, ds.catalogue.features, CFG)
        empty = np.zeros((1, CFG.history), np.int64)  # item 0, signal PAD: no history at all
        cluster = probe_clusters(index, user_vectors(params, table_in, empty, empty)[0], 1)[0]
        members = {ds.catalogue.item_ids[j] for j in index.members[cluster] if j < len(ds.catalogue)}
        assert {r.item for r in cold} <= members


def test_a_candidates_restriction_is_answered_exactly_even_outside_the_probed_clusters(tmp_path, trained):
    ds, params = trained
    scfg = ShortlistConfig(clusters=8, probe=1)
    path, exact = tmp_path / "b", tmp_path / "exact"
    write_bundle(path, params, ds.catalogue, CFG, shortlist=scfg)
    write_bundle(exact, params, ds.catalogue, CFG, shortlist=None)
    _, table_out, bias = scoring_tables(params, ds.catalogue.features, CFG)
    index = build_index(table_out, bias, scfg)
    table_in, _, _ = scoring_tables(params, ds.catalogue.features, CFG)
    empty = np.zeros((1, CFG.history), np.int64)
    probed = probe_clusters(index, user_vectors(params, table_in, empty, empty)[0], 1)[0]
    outside = [ds.catalogue.item_ids[j] for c in range(8) if c != probed
               for j in index.members[c] if j < len(ds.catalogue)][:6]
    with edgerec.open(tmp_path / "a.db", bundle=path) as rec, \
            edgerec.open(tmp_path / "e.db", bundle=exact) as ref:
        got = [r.item for r in rec.recommend("me", k=3, candidates=outside)]
        assert got == [r.item for r in ref.recommend("me", k=3, candidates=outside)]
        assert len(got) == 3 and set(got) <= set(outside)


def test_whole_catalogue_scoring_still_uses_the_exact_graph(tmp_path, trained):
    ds, params = trained
    path = tmp_path / "b"
    write_bundle(path, params, ds.catalogue, CFG, shortlist=ShortlistConfig(clusters=8, probe=1))
    bundle = load_bundle(path)
    items = np.zeros((2, CFG.history), np.int64)
    signals = np.zeros((2, CFG.history), np.int64)
    items[0, 0], signals[0, 0] = 3, 2
    both = Scorer(bundle.model_path, len(ds.catalogue), CFG.history, shortlist=bundle.shortlist_path)
    exact = Scorer(bundle.model_path, len(ds.catalogue), CFG.history)
    np.testing.assert_array_equal(both.score_batch(items, signals), exact.score_batch(items, signals))


def test_a_shortlist_bundle_installs_over_another_and_a_tampered_one_is_refused(tmp_path, trained):
    ds, params = trained
    path = tmp_path / "b"
    write_bundle(path, params, ds.catalogue, CFG, model_version=1, shortlist=ShortlistConfig(clusters=4))
    write_bundle(path, params, ds.catalogue, CFG, model_version=2, shortlist=ShortlistConfig(clusters=5))
    bundle = load_bundle(path)
    assert bundle.version == 2 and bundle.shortlist_path.parent == bundle.path
    assert not (path / SHORTLIST_FILE).exists()  # the plain bundle's files went with it
    data = bytearray(bundle.shortlist_path.read_bytes())
    data[-10] ^= 0xFF
    bundle.shortlist_path.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match=SHORTLIST_FILE):
        load_bundle(path)


def test_a_bad_shortlist_option_is_refused_before_anything_is_written(tmp_path, trained):
    ds, params = trained
    with pytest.raises(ConfigError, match="shortlist must be"):
        write_bundle(tmp_path / "b", params, ds.catalogue, CFG, shortlist="yes")
    assert not (tmp_path / "b").exists()
