"""A full round against a real uvicorn process: 10 devices, 2 drop mid-round, FedAvg of the rest.

With 10 devices on the complete graph the threshold is 7 (> 2/3 of 10), so up to 3 may drop."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from edgerec.bundle import load_bundle
from edgerec.model.params import flatten, param_names
from edgerec.privacy import rounding_bound
from edgerec.sync import RoundParticipant, SyncTimeouts, install_bundle, verify_archive

from srv_helpers import authority_key, cli, enrol_devices


def test_ten_devices_two_drop_new_model_is_fedavg_of_survivors(server, data_dir, tmp_path):
    token = cli(data_dir, "token", "create", "--uses", "10")
    devices = enrol_devices(server.url, token, 10)
    opened = json.loads(cli(data_dir, "round", "open", "--min", "10", "--clip", "1",
                            "--noise", "0", "--deadlines", "30,30,2,30"))
    assert opened["cohort"] == 10 and opened["threshold"] == 7
    pinned = authority_key(data_dir)  # the embedded authority: the bundle-signing key
    assert pinned == bytes.fromhex(cli(data_dir, "public-key"))
    first = devices[0].api.latest_bundle()
    base = install_bundle(first.archive, tmp_path / "base", devices[0].api.public_key())
    weights = flatten(base.params, param_names(base.config)).astype(np.float64)

    ann = devices[0].api.current_round()
    assert ann is not None and ann.round_id == opened["round_id"] and ann.vector_length == weights.size
    rng = np.random.default_rng(7)
    deltas = [rng.normal(0, 1, weights.size) for _ in devices]
    deltas = [d / np.linalg.norm(d) * 0.5 for d in deltas]  # inside the clip: no clipping

    def take_part(i: int):
        dev = devices[i]
        part = RoundParticipant(dev.api, dev.identity, dev.api.current_round(), deltas[i],
                                authority_key=pinned,
                                timeouts=SyncTimeouts(poll_interval=0.05, stage_timeout=60))
        if i < 8:
            return part.run()
        part.advertise()
        part.share_keys()  # then drops: never sends its masked input
        return None

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(take_part, range(10)))
    done = [o for o in outcomes if o is not None]
    assert len(done) == 8 and all(o.status.state == "done" for o in done)
    assert {o.status.survivors for o in done} == {8} and {o.status.model_version_out for o in done} == {2}

    download = devices[0].api.latest_bundle()
    assert download.model_version == 2
    public_key = bytes.fromhex(cli(data_dir, "public-key"))
    manifest = verify_archive(download.archive, public_key)
    assert manifest.model_version == 2 and manifest.parent_version == 1
    new = install_bundle(download.archive, tmp_path / "model", public_key)
    got = flatten(new.params, param_names(new.config)).astype(np.float64)
    expected = weights + np.mean(deltas[:8], axis=0)
    fp = ann.fixed_point()
    tolerance = rounding_bound(fp, 8) / 8 + 1e-6  # fixed-point rounding, then float32 storage
    np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)
    assert not np.allclose(got, weights + np.mean(deltas, axis=0), atol=1e-4)  # the dropped are out

    # Not modified: the same ETag answers 304; the audit has the round.
    assert devices[1].api.latest_bundle(etag=download.etag) is None
    rows = httpx.get(server.url + "/v1/audit").json()["rounds"]
    assert rows[-1]["participants"] == 10 and rows[-1]["survivors"] == 8
    assert rows[-1]["model_version_in"] == 1 and rows[-1]["model_version_out"] == 2
    kinds = [k for k, _ in devices[0].uploads]
    assert kinds == ["advertise_keys", "share_keys", "masked_input", "consistency", "unmask"]
    assert [k for k, _ in devices[9].uploads] == ["advertise_keys", "share_keys"]
    assert load_bundle(tmp_path / "model", public_key=public_key).version == 2
