"""load_movielens on a tiny folder written in tmp_path, and on the real ML-100K when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgerec import DatasetError
from edgerec.data import load_movielens
from edgerec.events import signal_code

ML100K = Path(os.environ.get("EDGEREC_ML100K", Path(__file__).parents[2] / ".." / "shared" / "data" / "ml-100k"))

GENRES_A = ["0"] * 19
GENRES_A[1] = GENRES_A[16] = "1"  # Action, Thriller
GENRES_B = ["0"] * 19
GENRES_B[5] = "1"  # Comedy


def item_line(item: int, title: str, date: str, flags: list[str]) -> str:
    return "|".join([str(item), title, date, "", "http://x"] + flags)


def make_folder(tmp_path: Path, ratings: str | None = None) -> Path:
    folder = tmp_path / "ml"
    folder.mkdir()
    items = [
        item_line(10, "Zéro (1997)", "01-Jan-1997", GENRES_A),
        item_line(2, "Old (1950)", "01-Jan-1950", GENRES_B),
        item_line(3, "unknown", "", GENRES_B),
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n", encoding="latin-1")
    ratings = ratings if ratings is not None else "1\t10\t5\t100\n1\t2\t3\t90\n2\t3\t1\t50\n"
    (folder / "u.data").write_text(ratings, encoding="latin-1")
    return folder


def test_reads_ratings_titles_and_features(tmp_path: Path) -> None:
    ds = load_movielens(make_folder(tmp_path))
    cat = ds.catalogue
    assert cat.item_ids == ("2", "3", "10") and cat.titles == ("Old (1950)", "unknown", "Zéro (1997)")
    assert ds.user_ids == ("1", "2") and len(ds) == 3 and ds.name == "movielens-100k"
    assert sum(n.startswith("genre:") for n in cat.feature_names) == 19
    years = [i for i, n in enumerate(cat.feature_names) if n.startswith("year:")]
    assert len(years) >= 4
    assert cat.features[1, years].sum() == 0  # no release date, no year bucket
    assert cat.features[0, years].sum() > 0 and cat.features[2, years].sum() > 0
    np.testing.assert_allclose(np.linalg.norm(cat.features, axis=1), 1.0, rtol=1e-5)
    action = cat.feature_names.index("genre:Action")
    assert cat.features[2, action] > 0 and cat.features[0, action] == 0
    stars = dict(zip(zip(ds.user.tolist(), ds.item.tolist()), ds.value.tolist()))
    assert stars == {(0, 2): 5.0, (0, 0): 3.0, (1, 1): 1.0}
    assert ds.signal[ds.value == 5.0].tolist() == [signal_code("rating", 5)]


def test_user_features(tmp_path: Path) -> None:
    ds = load_movielens(make_folder(tmp_path))
    names = ds.user_feature_names
    assert ds.user_features is not None and ds.user_features.shape == (2, len(names))
    first = {n for n, v in zip(names, ds.user_features[0]) if v}
    assert first == {"age:18-24", "gender:M", "occupation:technician"}
    second = {n for n, v in zip(names, ds.user_features[1]) if v}
    assert second == {"age:50-55", "gender:F", "occupation:other"}


@pytest.mark.parametrize(
    ("ratings", "match"),
    [
        ("1\t10\t5\t100\n1\t2\t3\n", r"u\.data:2: expected 4 fields"),
        ("1\t10\t5\t100\n\n1\t2\tfive\t9\n", r"u\.data:3: rating must be an integer"),
        ("1\t10\t9\t100\n", r"u\.data:1: rating must be 1\.\.5"),
        ("1\t99\t5\t100\n", r"u\.data:1: item 99 is not in u\.item"),
        ("7\t10\t5\t100\n", r"u\.data:1: user 7 is not in u\.user"),
    ],
)
def test_malformed_ratings_name_file_and_line(tmp_path: Path, ratings: str, match: str) -> None:
    with pytest.raises(DatasetError, match=match):
        load_movielens(make_folder(tmp_path, ratings))


def test_malformed_item_line(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    with (folder / "u.item").open("a", encoding="latin-1") as handle:
        handle.write("11|Short|01-Jan-1990\n")
    with pytest.raises(DatasetError, match=r"u\.item:4: expected 24 fields"):
        load_movielens(folder)


def test_missing_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="folder not found"):
        load_movielens(tmp_path / "absent")
    folder = make_folder(tmp_path)
    (folder / "u.user").unlink()
    with pytest.raises(DatasetError, match=r"u\.user: file not found"):
        load_movielens(folder)


@pytest.mark.movielens
@pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason=f"MovieLens-100K not found at {ML100K} (set EDGEREC_ML100K)")
def test_real_movielens_100k() -> None:
    ds = load_movielens(ML100K)
    assert len(ds) == 100_000 and ds.n_users == 943 and ds.n_items == 1682
    names = ds.catalogue.feature_names
    assert sum(n.startswith("genre:") for n in names) == 19 and any(n.startswith("year:") for n in names)
    assert ds.catalogue.item_ids[0] == "1" and ds.catalogue.titles[0] == "Toy Story (1995)"
    assert set(np.unique(ds.value).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert min(len(s) for s in ds.sequences().items) >= 20  # every ML-100K user rated 20+ movies
