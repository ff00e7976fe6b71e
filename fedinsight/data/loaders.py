"""Loaders for the built-in datasets, in the canonical schema.

Both loaders read the copy fetched by ``fedinsight data fetch`` by default, and also accept a path to
a user's own copy: the original CDNOW text file, or a folder with GroupLens's ``u.data``/``u.user``/
``u.item`` (or RecBole's ``ml-100k.inter``/``.user``/``.item``). Whatever the source, the result is
validated against the canonical schema, so a damaged copy fails with a :class:`DataValidationError`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from fedinsight.core.errors import DataValidationError, Problem
from fedinsight.data.fetch import require_fetched
from fedinsight.data.schema import CUSTOMERS, INTERACTIONS, ITEMS, TRANSACTIONS, TableSpec
from fedinsight.data.validate import validate_frame

MOVIELENS_GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)


def _checked(frame: pd.DataFrame, spec: TableSpec, source: str) -> pd.DataFrame:
    typed, problems = validate_frame(frame, spec, source)
    if problems:
        raise DataValidationError(problems)
    return typed


def _read_text_table(path: Path, *, sep: str, names: list[str] | None, header: int | None,
                     encoding: str = "utf-8") -> pd.DataFrame:
    if not path.is_file():
        raise DataValidationError(Problem(str(path), "file does not exist"))
    try:
        return pd.read_csv(
            path, sep=sep, names=names, header=header, dtype=str, encoding=encoding,
            quoting=csv.QUOTE_NONE, engine="python" if len(sep) > 1 else "c",
        )
    except UnicodeDecodeError as exc:
        raise DataValidationError(Problem(str(path), f"is not valid {encoding} text ({exc.reason})")) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(Problem(str(path), f"cannot be parsed: {exc}")) from exc


def load_cdnow(path: str | Path | None = None) -> pd.DataFrame:
    """CDNOW master file as canonical transactions: customer_id, timestamp, quantity, amount.

    ``path``: a CDNOW text file (whitespace-separated ``id yyyymmdd cds dollars``) or a folder holding
    ``CDNOW_master.txt``; default: the fetched copy.
    """
    file = Path(path) if path is not None else require_fetched("cdnow") / "CDNOW_master.txt"
    if file.is_dir():
        file = file / "CDNOW_master.txt"
    raw = _read_text_table(file, sep=r"\s+", names=["customer_id", "date", "quantity", "amount"], header=None)
    if len(raw) and not str(raw.iloc[0, 0]).strip().isdigit():
        raw = raw.iloc[1:].reset_index(drop=True)  # the lifetimes copy has a header line
    if raw.empty or raw.shape[1] != 4:
        raise DataValidationError(Problem(str(file), "expected 4 whitespace-separated columns: id date cds dollars"))
    dates = pd.to_datetime(raw["date"], format="%Y%m%d", errors="coerce")
    bad = dates.isna()
    if bad.any():
        rows = tuple(int(i) + 1 for i in bad[bad].index[:10])
        raise DataValidationError(Problem(str(file), "unparsable date (expected yyyymmdd)", column="date", rows=rows))
    frame = pd.DataFrame(
        {
            "customer_id": raw["customer_id"].str.strip(),
            "timestamp": dates,
            "quantity": raw["quantity"],
            "amount": raw["amount"],
        }
    )
    typed = _checked(frame, TRANSACTIONS, str(file))
    typed["quantity"] = typed["quantity"].astype("int64")
    return typed[["customer_id", "timestamp", "quantity", "amount"]]


def cdnow_customers(transactions: pd.DataFrame) -> pd.DataFrame:
    """A canonical customers table for CDNOW (ids only; the dataset has no demographics or consent).

    CDNOW predates consent records; every customer is treated as consenting to analytics so the
    public benchmark can be reproduced, and the table says so explicitly rather than by omission.
    """
    ids = pd.Series(sorted(transactions["customer_id"].unique()), dtype="str")
    return pd.DataFrame({"customer_id": ids, "consent": pd.Series(True, index=ids.index, dtype="boolean")})


def _movielens_files(folder: Path) -> tuple[str, dict[str, Path]]:
    grouplens = {k: folder / f"u.{k}" for k in ("data", "user", "item")}
    if all(p.is_file() for p in grouplens.values()):
        return "grouplens", grouplens
    recbole = {k: folder / f"ml-100k.{k}" for k in ("inter", "user", "item")}
    if all(p.is_file() for p in recbole.values()):
        return "recbole", recbole
    raise DataValidationError(
        Problem(str(folder), "expected GroupLens files u.data, u.user, u.item (or RecBole ml-100k.inter/.user/.item)")
    )


def load_movielens_100k(path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """MovieLens-100K as canonical (interactions, users, items).

    users are a canonical ``customers`` table (customer_id, age, gender, occupation, zip_code, consent);
    items have item_id, title, year, genres ('|'-separated).
    """
    folder = Path(path) if path is not None else require_fetched("movielens-100k")
    kind, files = _movielens_files(folder)
    if kind == "grouplens":
        inter = _read_text_table(files["data"], sep="\t", names=["customer_id", "item_id", "rating", "ts"], header=None)
        users = _read_text_table(
            files["user"], sep="|", names=["customer_id", "age", "gender", "occupation", "zip_code"], header=None
        )
        item_cols = ["item_id", "title", "release", "video", "url", *MOVIELENS_GENRES]
        items_raw = _read_text_table(files["item"], sep="|", names=item_cols, header=None, encoding="latin-1")
        flags = items_raw[list(MOVIELENS_GENRES)].astype(str).eq("1")
        genres = flags.apply(lambda r: "|".join(g for g, on in r.items() if on), axis=1)
        year = pd.to_datetime(items_raw["release"], format="%d-%b-%Y", errors="coerce").dt.year
        title = items_raw["title"].str.replace(r"\s*\(\d{4}\)\s*$", "", regex=True)
        items = pd.DataFrame({"item_id": items_raw["item_id"], "title": title, "year": year, "genres": genres})
    else:
        inter = _read_text_table(files["inter"], sep="\t", names=None, header=0)
        inter.columns = ["customer_id", "item_id", "rating", "ts"]
        users = _read_text_table(files["user"], sep="\t", names=None, header=0)
        users.columns = ["customer_id", "age", "gender", "occupation", "zip_code"]
        items_raw = _read_text_table(files["item"], sep="\t", names=None, header=0)
        items_raw.columns = ["item_id", "title", "year", "genres"]
        items = items_raw.assign(genres=items_raw["genres"].fillna("").str.split().str.join("|"))
        # RecBole's copy has two damaged years ('unkonwn', 'V'); GroupLens has them as unknown too.
        items["year"] = pd.to_numeric(items["year"], errors="coerce")
    ts = pd.to_numeric(inter["ts"], errors="coerce")
    interactions = pd.DataFrame(
        {
            "customer_id": inter["customer_id"],
            "item_id": inter["item_id"],
            "timestamp": pd.to_datetime(ts, unit="s", errors="coerce").dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "rating": inter["rating"],
        }
    )
    users = users.assign(consent="true")
    interactions = _checked(interactions, INTERACTIONS, str(files.get("data", files.get("inter"))))
    users = _checked(users, CUSTOMERS, str(files["user"]))
    items = _checked(items, ITEMS, str(files["item"]))
    return interactions, users, items
