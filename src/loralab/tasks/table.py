"""The one reader of tabular input files (CSV, TSV): every task reads its rows through `read_table`.

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
               names: tuple[str, ...] | None = None, what: str = "a CSV file") -> Table:
    """Read a delimited text file with a header row (or, with `names`, without one).

    `delimiter`: None guesses from the name and header; `quoting`: None quotes CSV but not TSV
    (GLUE's TSV files contain bare quote characters and are read with quoting off). `names` names
    the columns of a file without a header row; fields after the last named one are ignored.
    """
    path = Path(path)
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
