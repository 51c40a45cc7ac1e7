"""Device-level state: put/get/delete, survives reopening, untouched by forget and retention."""

from __future__ import annotations

from edgerec.store import DeviceState, InteractionStore, Retention


def test_put_get_overwrite_delete_and_reopen(tmp_path):
    path = tmp_path / "app.db"
    with InteractionStore(path) as store:
        state = DeviceState(store)
        assert state.get("k") is None
        state.put("k", b"\x00\x01", model_version=3, now=10.0)
        state.put("k", b"\x02", model_version=4, now=11.0)
        assert state.get("k") == (b"\x02", 4, 11.0)
    with InteractionStore(path, retention=Retention(max_rows=0)) as store:
        store.log("u", "i")
        store.forget("u")
        store.prune()
        state = DeviceState(store)
        assert state.get("k") == (b"\x02", 4, 11.0)
        assert state.delete("k") is True and state.delete("k") is False
        assert state.get("k") is None
