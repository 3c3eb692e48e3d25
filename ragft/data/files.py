"""Data files as records: JSONL, CSV, Parquet or saved `datasets` folders read as (place, record)
pairs, where the place is the line or row an error names.

Text files (JSONL, CSV) are read in the configured encoding (`task.data.encoding`,
`task.corpus.encoding`; UTF-8 by default), a leading UTF-8 byte-order mark skipped in either format; a
byte that does not decode is an error naming its line or row and the setting to change.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ragft.errors import ConfigError, DataError, one_line

# byte-order marks of encodings a UTF-8 read cannot take; UTF-32's first, as UTF-32-LE's begins with UTF-16-LE's
FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

Records = Iterator[tuple[str, dict[str, Any]]]


def text_codec(encoding: str, encoding_key: str) -> str:
    """The codec that reads a text file in `encoding`: a ConfigError naming `encoding_key` if Python knows
    no such text encoding; UTF-8 becomes `utf-8-sig`, so a leading byte-order mark is skipped."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, TypeError):
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):  # rot13, base64: codecs, not encodings
        raise ConfigError(
            encoding_key,
            f"unknown text encoding '{encoding}'.",
            "Use the name of the file's encoding as Python knows it: utf-8 (the default), latin-1, cp1252, utf-16, ...",
        )
    return "utf-8-sig" if info.name == "utf-8" else encoding


def _encoding_fix(encoding_key: str | None, suggestion: str) -> str:
    if encoding_key is None:  # a file ragft reads as UTF-8 only (a predictions file)
        return "save the file as UTF-8"
    return f"set {encoding_key} to the file's encoding (e.g. {suggestion})"


def decoding_error(path: Path, encoding: str, encoding_key: str | None, csv_rows: bool = False) -> DataError:
    """The DataError for a text file that is not valid `encoding`: the line (JSONL) or row (CSV) and
    column of the first byte that does not decode, and the config key that sets the file's encoding."""
    data = path.read_bytes()
    codec = text_codec(encoding, encoding_key or "encoding")
    if codec == "utf-8-sig":
        for bom, name in FOREIGN_BOMS:
            if data.startswith(bom):
                fix = "save the file as UTF-8" if encoding_key is None else f"set {encoding_key}={name}"
                problem = (
                    f"the file is {name.upper()} (it starts with a {name.upper()} byte-order mark), not {encoding}"
                )
                return DataError(path, f"{problem}; {fix}")
        data, codec = data.removeprefix(codecs.BOM_UTF8), "utf-8"
    try:
        data.decode(codec)
    except UnicodeDecodeError as err:
        start = err.start
    else:  # the reader's error came from elsewhere; name the file at least
        start = len(data)
    before = data[:start].decode(codec, errors="replace")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    byte = f"byte 0x{data[start]:02x}" if start < len(data) else "the end of the file"
    fix = _encoding_fix(encoding_key, _likely_encoding(data))
    if not csv_rows:
        return DataError(path, f"not valid {encoding} ({byte} at column {column}); {fix}", f"line {line}")
    index = len(list(csv.reader(io.StringIO(before + "\ufffd")))) - 1  # the record the bad byte is in; 0: header
    where = f"row {index}" if index else "header"
    return DataError(path, f"not valid {encoding} ({byte} at line {line}, column {column}); {fix}", where)


def _likely_encoding(data: bytes) -> str:
    """An encoding to suggest for bytes that did not decode: UTF-8 where they are UTF-8 (another encoding
    was set), Windows' code page where they hold its punctuation (bytes 0x80-0x9f), else latin-1."""
    for encoding in ("utf-8", "cp1252"):
        try:
            data.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8" or re.search(rb"[\x80-\x9f]", data):
            return encoding
    return "latin-1"


def read_jsonl(path: Path, encoding: str = "utf-8", encoding_key: str | None = None) -> Records:
    """(line, object) for each non-blank line of a JSONL file in `encoding` (a UTF-8 byte-order mark is
    skipped); `encoding_key` is the config key a decoding error tells the user to set (None: UTF-8 only)."""
    codec = text_codec(encoding, encoding_key or "encoding")
    try:
        with path.open(encoding=codec) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    problem = f"not valid JSON ({err.msg}, column {err.colno})"
                    if "\x00" in line:  # UTF-16 without a byte-order mark reads as UTF-8 with NULs
                        fix = _encoding_fix(encoding_key, "utf-16-le")
                        problem += f"; the line holds NUL characters: is the file UTF-16? {fix}"
                    raise DataError(path, problem, f"line {number}") from None
                if not isinstance(record, dict):
                    raise DataError(path, "expected a JSON object per line", f"line {number}")
                yield f"line {number}", record
    except UnicodeDecodeError:
        raise decoding_error(path, encoding, encoding_key) from None


def read_csv(path: Path, encoding: str = "utf-8", encoding_key: str | None = None) -> Records:
    """Every cell as text (list fields may hold a JSON list); row numbers count data rows, header excluded."""
    codec = text_codec(encoding, encoding_key or "encoding")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=codec)
    except UnicodeDecodeError:
        raise decoding_error(path, encoding, encoding_key, csv_rows=True) from None
    except pd.errors.EmptyDataError:
        return  # no header either: the caller says the file is empty
    except pd.errors.ParserError as err:
        raise _csv_parser_error(path, codec, err) from None
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        yield f"row {number}", record


def _csv_parser_error(path: Path, codec: str, err: Exception) -> DataError:
    """The first row whose field count differs from the header's, or pandas' own words where none does."""
    with path.open(encoding=codec, newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            rows = (row for row in reader if row)  # pandas skips blank lines: its row numbers do not count them
            for number, row in enumerate(rows, start=1):
                if len(row) > len(header):
                    problem = f"{len(row)} fields where the header has {len(header)} (line {reader.line_num})"
                    return DataError(path, f"{problem}; quote a cell that holds a comma", f"row {number}")
        except (csv.Error, UnicodeDecodeError):  # pandas' own words below, or the decoding error first
            pass
    if unclosed := re.search(r"EOF inside string starting at row (\d+)", str(err)):
        return DataError(path, "a quoted cell is never closed; close its quote", f"row {unclosed.group(1)}")
    return DataError(path, f"not a well-formed CSV file ({one_line(err)})")


def read_parquet(path: Path, encoding: str = "utf-8", encoding_key: str | None = None) -> Records:
    """Rows of a Parquet file (binary: `encoding` does not apply)."""
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        reason = re.sub(r"^Could not open Parquet input source '[^']*': ", "", one_line(err))
        raise DataError(path, f"cannot be read as Parquet ({reason})") from None
    for number, record in enumerate(frame.to_dict(orient="records"), start=1):
        yield f"row {number}", {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def read_hf_dataset(path: Path, split_field: str = "split") -> Records:
    """A Hugging Face `datasets` Dataset or DatasetDict saved with `save_to_disk`; a DatasetDict's keys
    give the split where the rows have no split field of their own."""
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(path))
    except (OSError, ValueError, KeyError, IndexError) as err:
        if _saved_without_data(path):
            return  # the caller says the dataset is empty
        raise DataError(path, f"cannot be read as a dataset saved by save_to_disk ({one_line(err)})") from None
    parts = data.items() if isinstance(data, DatasetDict) else [(None, data)]
    for split, dataset in parts:
        for number, record in enumerate(dataset, start=1):
            if split is not None:
                record.setdefault(split_field, split)
            yield (f"split {split}, row {number}" if split else f"row {number}"), record


def _saved_without_data(path: Path) -> bool:
    """Whether `path` is a Dataset saved with no rows (`datasets` then writes no data file and cannot load it)."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("_data_files") == []


READERS: dict[str, Callable[[Path, str, str | None], Records]] = {
    ".jsonl": read_jsonl,
    ".csv": read_csv,
    ".parquet": read_parquet,
}


def read_records(
    path: str | Path,
    config_key: str,
    split_field: str = "split",
    encoding: str = "utf-8",
    encoding_key: str | None = None,
) -> Records:
    """(place, record) pairs from a JSONL, CSV or Parquet file, or a folder saved by `datasets`.

    `encoding` is the text files' encoding; `encoding_key` the config key that sets it (by default
    `config_key`'s section: task.data.path -> task.data.encoding), checked whatever the format."""
    path = Path(path)
    encoding_key = encoding_key or f"{config_key.removesuffix('.path')}.encoding"
    text_codec(encoding, encoding_key)
    if path.is_dir():
        if not (path / "dataset_dict.json").is_file() and not (path / "dataset_info.json").is_file():
            raise ConfigError(config_key, f"'{path}' is a folder but not one saved by datasets' save_to_disk.")
        return read_hf_dataset(path, split_field)
    if not path.is_file():
        raise ConfigError(config_key, f"data file '{path}' does not exist.", "Point it at an existing file.")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(
            config_key,
            f"cannot read '{path.name}': unknown format '{path.suffix}'.",
            f"Use one of {sorted(READERS)} or a folder saved by datasets' save_to_disk.",
        )
    return reader(path, encoding, encoding_key)


def empty_error(path: Path, what: str) -> DataError:
    kind = "saved dataset" if path.is_dir() else "file"
    return DataError(path, f"the {kind} is empty (no {what})")
