"""The one reader of input files: every task reads its rows through `read_table` (or, for records
with nested fields, `read_records`).

CSV and TSV are read as text; JSON Lines, a JSON array of objects, Parquet and a `datasets` folder
(`save_to_disk`) as records, whose fields are the columns, found by name exactly as a CSV header's.

It reads UTF-8 with or without a byte-order mark (Excel writes one), finds columns by name and
refuses a header that names a column twice (which one would win is a guess), reads cells of any
size, and says what it could not parse with the file, row and, where known, the field. Rows come
back with their line numbers, so a task's own checks can name them too.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from loralab.errors import LoralabError

RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
# Formats people reach for that loralab does not read: named as such, not parsed as garbled CSV.
UNSUPPORTED = (".xlsx", ".xls", ".ods", ".arrow", ".feather", ".pkl", ".pickle", ".h5", ".hdf5", ".npy", ".npz",
               ".avro", ".orc", ".zip", ".gz", ".bz2", ".xz", ".zst", ".tar")
SUPPORTED = "CSV, TSV, JSON Lines, a JSON array of objects, Parquet, or a datasets folder (save_to_disk)"

# The csv module refuses fields over 128 KB by default; a long passage is a valid cell.
_FIELD_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class Table:
    """A file's header and its non-blank rows, each row with the line it starts on."""

    path: Path
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]

    def column(self, name: str) -> int | None:
        """The index of the column called `name`, or None."""
        try:
            return self.header.index(name)
        except ValueError:
            return None

    def has(self, *names: str) -> bool:
        return all(name in self.header for name in names)


def read_text(path: str | Path, what: str, missing: str = "file not found") -> str:
    """A user's text file as UTF-8 (a byte-order mark dropped); what cannot be read is refused in
    one line naming the file and, for a bad byte, its row and offset."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LoralabError(f"{path}: {missing}") from None
    except IsADirectoryError:
        raise LoralabError(f"{path}: is a directory, expected {what}") from None
    except OSError as e:
        raise LoralabError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LoralabError(f"{path}, row {line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start})") from None


def check_text(value: str, where: str) -> str:
    """`value` when it is text a tokenizer can take; a lone surrogate (JSON's "\\ud800", which no UTF-8
    file can hold but a JSON escape can) is refused naming `where`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise LoralabError(f"{where}: character {e.start + 1} is a lone surrogate ({value[e.start]!a}), "
                           "not text") from None
    return value


def sniff_delimiter(path: Path, text: str) -> str:
    """Comma for .csv files, tab for .tsv/.txt; otherwise tab when the header line has tabs and no comma."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".txt"):
        return "," if suffix == ".csv" else "\t"
    first = re.split(r"\r\n|\r|\n", text, maxsplit=1)[0]
    return "\t" if "\t" in first and "," not in first else ","


def read_table(path: str | Path, *, delimiter: str | None = None, quoting: bool | None = None,
               names: tuple[str, ...] | None = None, what: str = "a CSV file", split: str | None = None) -> Table:
    """Read a delimited text file with a header row (or, with `names`, without one).

    `delimiter`: None guesses from the name and header; `quoting`: None quotes CSV but not TSV
    (GLUE's TSV files contain bare quote characters and are read with quoting off). `names` names
    the columns of a file without a header row; fields after the last named one are ignored.
    """
    path = Path(path)
    if is_records(path):
        return _records_table(path, read_records(path, split=split), names)
    text = read_text(path, what)
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise LoralabError(f"{path}, row {line}: contains a NUL character; not a text file")
    delimiter = delimiter or sniff_delimiter(path, text)
    if quoting is None:
        quoting = delimiter != "\t"
    old_limit = csv.field_size_limit(_FIELD_LIMIT)
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                            quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
        rows, end = [], 0
        try:
            for row in reader:
                rows.append((end + 1, row))  # the line the row starts on (a quoted cell may span lines)
                end = reader.line_num
        except csv.Error as e:
            raise LoralabError(f"{path}, row {reader.line_num}: cannot parse as {what} ({e})") from None
    finally:
        csv.field_size_limit(old_limit)
    if names:
        rows.insert(0, (0, list(names)))
    if not rows:
        raise LoralabError(f"{path}: the file is empty; expected a header row")
    header = tuple(name.strip() for name in rows[0][1])
    if not any(header):
        raise LoralabError(f"{path}, row {rows[0][0] or 1}: the header row names no columns")
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if name and name in seen:
            raise LoralabError(f"{path}: header names column {name!r} twice (columns {seen[name] + 1} and {index + 1}); "
                               "rename one")
        seen[name] = index
    body = []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if names and len(row) > len(header):
            row = row[: len(header)]
        if len(row) != len(header):
            raise LoralabError(f"{path}, row {line}: has {len(row)} fields, "
                               + (f"{len(header)} columns are named" if names else f"the header has {len(header)}"))
        body.append((line, tuple(row)))
    return Table(path, header, tuple(body))


def is_records(path: Path) -> bool:
    """Whether `path` is read as records (JSON, JSON Lines, Parquet, a datasets folder); an unsupported
    format is refused here, by name."""
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED:
        raise LoralabError(f"{path}: unsupported format {suffix}; loralab reads {SUPPORTED}")
    return suffix in RECORD_SUFFIXES or path.is_dir()


def read_records(path: str | Path, *, split: str | None = None) -> list[tuple[int, dict]]:
    """The records of a JSON Lines, JSON, Parquet file or datasets folder, each with its line (JSON
    Lines) or its row as in a CSV export (the header row 1, the first record row 2)."""
    from loralab.tasks import formats

    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        return formats.read_dataset_folder(path, split)
    if suffix == ".parquet":
        return formats.read_parquet(path)
    text = read_text(path, "a JSON file" if suffix == ".json" else "a JSON Lines file")
    if suffix == ".json" or (suffix != ".jsonl" and text.lstrip().startswith("[")):
        return formats.json_array(path, text)
    return formats.json_lines(path, text)


def cell(path: Path, line: int, name: str, value) -> str:
    """A record's field as a CSV cell would hold it: text, a number written out, empty for null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return check_text(value, f"{path}, row {line}, field {name!r}")
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    raise LoralabError(f"{path}, row {line}, field {name!r}: a {type(value).__name__}, expected text or a number")


def _records_table(path: Path, records: list[tuple[int, dict]], names: tuple[str, ...] | None) -> Table:
    if not records:
        raise LoralabError(f"{path}: no records")
    header = tuple(names) if names else tuple(dict.fromkeys(str(k).strip() for _, r in records for k in r))
    body = tuple((line, tuple(cell(path, line, name, record.get(name)) for name in header)) for line, record in records)
    return Table(path, header, body)
