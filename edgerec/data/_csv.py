"""Load any interactions CSV with a header row (user, item, time, optional value and event)."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

import numpy as np

from .._exceptions import DatasetError, InvalidEventError
from ..events import signal_code, validate_interaction
from ._build import indices, ordered_ids
from ..types import Catalogue, Dataset

__all__ = ["load_csv"]

_DELIMITERS = (",", ";", "\t")


class _Rows(NamedTuple):
    users: list[str]
    items: list[str]
    ts: list[float]
    values: list[float]
    events: list[str]
    titles: dict[str, str]


def load_csv(
    path: str | Path,
    *,
    user_col: str = "user",
    item_col: str = "item",
    time_col: str | None = "timestamp",
    value_col: str | None = None,
    event_col: str | None = None,
    delimiter: str | None = None,
    titles: str | Mapping[str, str] | None = None,
) -> Dataset:
    """Read an interactions CSV into a ``Dataset``.

    Timestamps are epoch seconds or ISO-8601 strings (naive ones are taken as UTC); with
    ``time_col=None`` the row order is the time order. Without ``event_col`` every row is a
    "rating" when ``value_col`` is given, else a "click"; ``value`` defaults to 1. The delimiter is
    sniffed among comma, semicolon and tab from the header when not given. ``titles`` is either the
    name of a column holding each item's title or a mapping item id -> title. Items (and users) are
    ordered numerically when every id is an integer, else lexicographically. Rows are checked like
    logged events (``edgerec.events``); a missing column or bad row raises ``DatasetError``.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    title_col = titles if isinstance(titles, str) else None
    title_map = None if isinstance(titles, str) else titles
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = None
        try:
            sep = delimiter or _sniff(handle.readline())
            handle.seek(0)
            reader = csv.reader(handle, delimiter=sep)
            header = [h.strip() for h in next(reader, [])]
            cols = _columns(path, header, user_col, item_col, time_col, value_col, event_col, title_col)
            rows = _read_rows(path, reader, cols, value_col is not None)
        except UnicodeDecodeError as exc:
            # Text is decoded in blocks ahead of the csv reader, so no trustworthy line number here.
            raise DatasetError(f"{path}: not a readable UTF-8 CSV ({exc})") from exc
        except csv.Error as exc:
            raise DatasetError(f"{path}:{reader.line_num if reader else 1}: malformed CSV ({exc})") from exc
    users, items, ts, values, events, row_titles = rows
    item_ids = ordered_ids(items)
    user_ids = ordered_ids(users)
    names = row_titles if title_col else dict(title_map or {})
    catalogue = Catalogue(
        item_ids, tuple(names.get(i, "") for i in item_ids), np.zeros((len(item_ids), 0), np.float32)
    )
    return Dataset(
        user_ids=user_ids,
        catalogue=catalogue,
        user=indices(users, user_ids, what="user"),
        item=indices(items, item_ids, what="item"),
        ts=np.array(ts, dtype=np.float64),
        value=np.array(values, dtype=np.float32),
        signal=np.array([signal_code(e, v) for e, v in zip(events, values)], dtype=np.int64),
        name=path.stem,
    )


def _sniff(header_line: str) -> str:
    # The header is the most regular line: the candidate it contains most often is the delimiter.
    counts = [header_line.count(d) for d in _DELIMITERS]
    return _DELIMITERS[int(np.argmax(counts))] if max(counts) else ","


def _columns(path: Path, header: list[str], *wanted: str | None) -> list[int | None]:
    """Position of each wanted column (None stays None); a missing one is a DatasetError."""
    out: list[int | None] = []
    for name in wanted:
        if name is None:
            out.append(None)
        elif name not in header:
            raise DatasetError(f"{path}: no column {name!r}; available columns: {header}")
        else:
            out.append(header.index(name))
    return out


def _timestamp(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    # Python 3.10's fromisoformat does not accept a trailing "Z".
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _read_rows(path: Path, reader: Iterator[list[str]], cols: list[int | None], has_value: bool) -> _Rows:
    """Validate every data row like a logged event; blank lines are skipped."""
    u_col, i_col, t_col, v_col, e_col, title_col = cols
    width = 1 + max(c for c in cols if c is not None)
    users: list[str] = []
    items: list[str] = []
    ts: list[float] = []
    values: list[float] = []
    events: list[str] = []
    titles: dict[str, str] = {}
    default_event = "rating" if has_value else "click"
    for row in reader:
        lineno = reader.line_num  # type: ignore[attr-defined]  # csv.reader: physical line
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < width:
            raise DatasetError(f"{path}:{lineno}: expected at least {width} fields, got {len(row)}")
        cell = [c.strip() for c in row]
        try:
            stamp = float(len(ts)) if t_col is None else _timestamp(cell[t_col])
            event = validate_interaction(
                user=cell[u_col],  # type: ignore[index]
                item=cell[i_col],  # type: ignore[index]
                event=cell[e_col] if e_col is not None else default_event,
                value=float(cell[v_col]) if v_col is not None else 1.0,
                ts=stamp,
                now=0.0,
            )
        except (InvalidEventError, ValueError) as exc:
            raise DatasetError(f"{path}:{lineno}: {exc}") from exc
        users.append(event.user)
        items.append(event.item)
        ts.append(event.ts)
        values.append(event.value)
        events.append(event.event)
        if title_col is not None and cell[title_col]:
            titles.setdefault(event.item, cell[title_col])
    return _Rows(users, items, ts, values, events, titles)
