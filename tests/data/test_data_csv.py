"""load_csv: round trips, delimiters, timestamps, titles, and errors that name the line."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from edgerec import DatasetError
from edgerec.data import Dataset, load_csv
from edgerec.events import signal_code


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_with_ratings(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,timestamp,stars\n7,10,100,5\n7,2,50,3\n12,10,70,4\n")
    ds = load_csv(path, value_col="stars")
    assert isinstance(ds, Dataset) and ds.name == "events"
    assert ds.catalogue.item_ids == ("2", "10")  # numeric order, not "10" < "2"
    assert ds.user_ids == ("7", "12")
    rows = sorted(zip(ds.user.tolist(), ds.item.tolist(), ds.ts.tolist(), ds.value.tolist()))
    assert rows == [(0, 0, 50.0, 3.0), (0, 1, 100.0, 5.0), (1, 1, 70.0, 4.0)]
    assert set(ds.signal.tolist()) == {signal_code("rating", s) for s in (3, 4, 5)}
    assert ds.sequences().items[0].tolist() == [0, 1]  # user 7 in time order


def test_clicks_by_default_and_event_column(tmp_path: Path) -> None:
    clicks = load_csv(write(tmp_path, "user,item,timestamp\na,x,1\n"))
    assert clicks.signal.tolist() == [signal_code("click", 1.0)] and clicks.value.tolist() == [1.0]
    path = write(tmp_path, "user,item,timestamp,kind\na,x,1,purchase\na,y,2,view\n", "kinds.csv")
    ds = load_csv(path, event_col="kind")
    assert ds.signal.tolist() == [signal_code("purchase", 1.0), signal_code("view", 1.0)]


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_sniffs_the_delimiter(tmp_path: Path, sep: str) -> None:
    path = write(tmp_path, sep.join(["user", "item", "timestamp"]) + "\n" + sep.join(["u1", "i1", "5"]) + "\n")
    ds = load_csv(path)
    assert ds.catalogue.item_ids == ("i1",) and ds.ts.tolist() == [5.0]


def test_iso_timestamps_naive_ones_are_utc(tmp_path: Path) -> None:
    text = "user,item,timestamp\nu,a,2024-01-02T03:04:05Z\nu,b,2024-01-02T03:04:05+01:00\nu,c,2024-01-02 03:04:05\n"
    ds = load_csv(write(tmp_path, text))
    utc = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    assert ds.ts.tolist() == [utc, utc - 3600, utc]


def test_non_integer_ids_are_lexicographic_and_titles(tmp_path: Path) -> None:
    path = write(tmp_path, "user,item,timestamp,title\nu,b,1,Bee\nu,a,2,Ay\nu,c,3,\n")
    assert load_csv(path).catalogue.item_ids == ("a", "b", "c")
    from_column = load_csv(path, titles="title").catalogue
    assert from_column.titles == ("Ay", "Bee", "")
    assert from_column.title(2) == "c"  # falls back to the id
    from_mapping = load_csv(path, titles={"c": "Sea"}).catalogue
    assert from_mapping.titles == ("", "", "Sea")


def test_without_a_time_column_row_order_is_time(tmp_path: Path) -> None:
    ds = load_csv(write(tmp_path, "user,item\nu,9\nu,3\n"), time_col=None)
    assert [ds.catalogue.item_ids[i] for i in ds.sequences().items[0]] == ["9", "3"]


def test_missing_column_names_it_and_the_available_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "uid,item,timestamp\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"'user'.*\['uid', 'item', 'timestamp'\]"):
        load_csv(path)


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("u,i,yesterday", "Invalid isoformat"),
        ("u,i", "expected at least 3 fields"),
        (",i,1", "user"),
        ("u,i,-5", "ts must be"),
    ],
)
def test_bad_row_names_its_line(tmp_path: Path, row: str, why: str) -> None:
    path = write(tmp_path, f"user,item,timestamp\nu,j,1\n\n{row}\n")
    with pytest.raises(DatasetError, match=rf"events\.csv:4: .*{why}"):
        load_csv(path)


def test_bad_event_and_value(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r":2: unknown event type 'like'"):
        load_csv(write(tmp_path, "user,item,timestamp,e\nu,i,1,like\n"), event_col="e")
    with pytest.raises(DatasetError, match=r":3: .*rating value"):
        load_csv(write(tmp_path, "user,item,timestamp,v\nu,i,1,4\nu,j,2,11\n", "b.csv"), value_col="v")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_csv(tmp_path / "nope.csv")


def test_empty_file_has_no_interactions(tmp_path: Path) -> None:
    ds = load_csv(write(tmp_path, "user,item,timestamp\n"))
    assert len(ds) == 0 and ds.n_items == 0 and np.asarray(ds.item).dtype.kind == "i"


def test_byte_order_mark_and_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffuser,item,timestamp\nu,i,1\n".encode("utf-8"))
    assert load_csv(path).catalogue.item_ids == ("i",)
    path.write_bytes(b"user,item,timestamp\nu,\xff\xfe,1\n")
    with pytest.raises(DatasetError, match="not a readable UTF-8 CSV"):
        load_csv(path)
