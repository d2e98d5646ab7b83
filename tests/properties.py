"""Property-based checks of loralab's input readers, shared by tests/test_properties.py and
benchmarks/fuzz_readers.py.

Each `Property` pairs a hypothesis strategy with a check. The checks state what every reader
promises for *any* input: it either loads valid data, or it raises `LoralabError` with a one-line
message. Any other exception, a message over several lines, or invalid data returned as valid is a
bug in loralab. The round-trip properties state that valid files written by Python's csv module
read back exactly.

Readers under test: `read_questions` (loralab.tasks.multiple_choice), `read_table`
(loralab.tasks.table), `read_examples` and `infer_task` (loralab.tasks.classification, loralab.tasks),
`load_experiment` (loralab.sweeps.experiment), the completion reader (JSON Lines of prompts and chats,
loralab.tasks.completion), and run.json and sweep.json (loralab.runs.record, loralab.reports.rows). Files are written into one temporary folder per process, which also holds
a valid train.csv and valid.csv, so an experiment's relative paths resolve next to it.
"""

from __future__ import annotations

import dataclasses

import atexit
import csv
import io
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.runs.config import RunConfig
from loralab.tasks import TASK_NAMES, TaskConfig, infer_task
from loralab.tasks.classification import PAIRS, Example, read_examples
from loralab.tasks.multiple_choice import LETTERS, Question, looks_like, read_questions
from loralab.tasks.table import Table, read_table
from loralab.errors import LoralabError
from loralab.sweeps.experiment import ALIASES, Experiment, PlannedRun, load_experiment

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "science-exam" / "train.csv"
PACKAGED_TRAIN = ROOT / "src" / "loralab" / "datasets" / "openbookqa-train.csv"
EXPERIMENT_FILES = [ROOT / "experiments" / "seed-blog.yaml", ROOT / "experiments" / "packed-check.yaml",
                    ROOT / "src" / "loralab" / "experiments" / "default.yaml"]
TINY_CSV = b"id,prompt,A,B,answer\n1,q,x,y,A\n"
HUGE = 200_000  # bytes in a "huge cell": over the csv module's default 128 KB field limit


# ---------------------------------------------------------------------------------------------
# A scratch folder per process


_workspace: Path | None = None


def workspace() -> Path:
    """A temporary folder holding a valid train.csv and valid.csv; removed when the process exits."""
    global _workspace
    if _workspace is None or not _workspace.is_dir():
        _workspace = Path(tempfile.mkdtemp(prefix="loralab-properties-"))
        atexit.register(shutil.rmtree, _workspace, True)
        for name in ("train.csv", "valid.csv"):
            (_workspace / name).write_bytes(TINY_CSV)
    return _workspace


def write(name: str, data: bytes | str) -> Path:
    path = workspace() / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ---------------------------------------------------------------------------------------------
# What valid output and a valid refusal look like


class PropertyFailure(AssertionError):
    """A reader broke its promise without raising (invalid data loaded, a multi-line message, ...)."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise PropertyFailure(message)


def check_one_line(error: LoralabError) -> None:
    """A user error's message is one line: the CLI prints it as is."""
    message = str(error)
    require(len(message.splitlines()) <= 1, f"LoralabError message spans lines: {message!r}")
    require(bool(message.strip()), "LoralabError with an empty message")


def check_questions(questions: Any, *, require_answer: bool) -> None:
    require(isinstance(questions, list) and questions, f"read_questions returned {questions!r}")
    for q in questions:
        require(isinstance(q, Question), f"not a Question: {q!r}")
        require(isinstance(q.id, str) and "\x00" not in q.id, f"bad id in {q!r}")
        require(isinstance(q.prompt, str) and q.prompt and q.prompt == q.prompt.strip() and "\x00" not in q.prompt,
                f"empty or unstripped prompt in {q!r}")
        require(2 <= len(q.options) <= 5 and len(q.letters) == len(q.options), f"bad option count in {q!r}")
        require(all(letter in LETTERS for letter in q.letters)
                and list(q.letters) == sorted(set(q.letters), key=LETTERS.index),
                f"letters not a subset of A..E in order in {q!r}")
        require(all(isinstance(o, str) and o and o == o.strip() and "\x00" not in o for o in q.options),
                f"empty or unstripped option in {q!r}")
        if require_answer:
            require(isinstance(q.answer, int) and not isinstance(q.answer, bool) and 0 <= q.answer < len(q.options),
                    f"answer out of range in {q!r}")
        else:
            require(q.answer is None or (isinstance(q.answer, int) and 0 <= q.answer < len(q.options)),
                    f"answer out of range in {q!r}")


def check_table(table: Any, path: Path) -> None:
    require(isinstance(table, Table), f"read_table returned {table!r}")
    require(Path(table.path) == path, f"table path {table.path} is not {path}")
    header = table.header
    require(isinstance(header, tuple) and any(header), f"a header that names no column: {header!r}")
    require(all(isinstance(n, str) and n == n.strip() and "\x00" not in n for n in header), f"bad header {header!r}")
    named = [n for n in header if n]
    require(len(named) == len(set(named)), f"header names a column twice: {header!r}")
    previous = 1
    for line, cells in table.rows:
        require(isinstance(line, int) and line > previous, f"row line {line} after line {previous}")
        previous = line
        require(isinstance(cells, tuple) and len(cells) == len(header), f"row {line} has {len(cells)} cells, header {len(header)}")
        require(all(isinstance(c, str) and "\x00" not in c for c in cells), f"row {line}: bad cell")
        require(any(c.strip() for c in cells), f"row {line}: a blank row kept")


def check_experiment(experiment: Any, path: Path) -> None:
    require(isinstance(experiment, Experiment), f"load_experiment returned {experiment!r}")
    require(isinstance(experiment.name, str) and isinstance(experiment.description, str), "name/description not text")
    require(experiment.source == str(path), f"source {experiment.source!r}")
    runs = experiment.runs
    require(isinstance(runs, tuple) and runs, "an experiment without runs")
    folders = [p.folder for p in runs]
    require(len(folders) == len(set(folders)), f"two runs share a folder: {folders}")
    for p in runs:
        require(isinstance(p, PlannedRun), f"not a PlannedRun: {p!r}")
        require(isinstance(p.folder, str) and p.folder not in ("", ".", "..") and len(p.folder) <= 130
                and all(c.isalnum() or c in "-_.+" for c in p.folder), f"unsafe run folder {p.folder!r}")
        require(isinstance(p.labels, tuple) and p.labels and all(isinstance(x, str) for x in p.labels),
                f"bad labels {p.labels!r}")
        config = p.config
        require(isinstance(config, RunConfig), f"not a RunConfig: {config!r}")
        require(isinstance(config.train, str) and os.path.isabs(config.train), f"train not an absolute path: {config.train!r}")
        # `valid: ''` reads as no validation file, like a missing `valid`
        require(config.valid in (None, "") or (isinstance(config.valid, str) and os.path.isabs(config.valid)),
                f"valid not an absolute path: {config.valid!r}")
        # A valid configuration survives its own record: run.json is read back through from_dict.
        require(RunConfig.from_dict(config.to_dict()) == config, f"{p.folder}: configuration does not round-trip")
        flat = config.flat()
        for key, value in flat.items():
            if isinstance(value, float):
                require(math.isfinite(value), f"{p.folder}: {key}={value!r} is not finite")


# ---------------------------------------------------------------------------------------------
# Checks: call a reader, accept valid data or a one-line LoralabError, let anything else raise


def check_question_file(data: bytes) -> None:
    """read_questions on `data`, with and without answers required, and with a limit."""
    path = write("questions.csv", data)
    loaded: dict[bool, list[Question] | None] = {}
    for need in (True, False):
        try:
            questions = read_questions(path, require_answer=need)
        except LoralabError as e:
            check_one_line(e)
            loaded[need] = None
        else:
            check_questions(questions, require_answer=need)
            loaded[need] = questions
    if loaded[True] is not None:
        require(loaded[False] == loaded[True], "require_answer=False reads a file with answers differently")
        for limit in (1, 2):
            try:
                limited = read_questions(path, limit=limit)
            except LoralabError as e:
                raise PropertyFailure(f"limit={limit} refuses a file that loads in full: {e}") from None
            require(limited == loaded[True][:limit], f"limit={limit} does not give the first {limit} questions")


TABLE_READS = ((".csv", {}), (".tsv", {}), (".csv", {"delimiter": ",", "quoting": True}),
               (".txt", {"delimiter": "\t", "quoting": False}), (".csv", {"delimiter": ";", "quoting": False}))


def check_table_file(data: bytes) -> None:
    """read_table on `data` under several names, delimiters and quoting modes."""
    for suffix, kwargs in TABLE_READS:
        path = write("table" + suffix, data)
        try:
            table = read_table(path, **kwargs)
        except LoralabError as e:
            check_one_line(e)
        else:
            check_table(table, path)


def check_experiment_file(data: bytes, suffix: str = ".yaml") -> None:
    """load_experiment on `data`; what loads must load the same way twice (folder names are stable)."""
    path = write("experiment" + suffix, data)
    try:
        experiment = load_experiment(path)
    except LoralabError as e:
        check_one_line(e)
        return
    check_experiment(experiment, path)
    require(load_experiment(path) == experiment, "loading the same file twice plans different runs")


# ---------------------------------------------------------------------------------------------
# Mutations: small operations on a valid file's bytes, kept as plain tuples so a failing example
# prints as something that can be pasted back into `mutate`.


def _index(p: int, n: int) -> int:
    return p % (n + 1)


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True)


def _split_end(line: bytes) -> tuple[bytes, bytes]:
    body = line.rstrip(b"\r\n")
    return body, line[len(body):]


def _huge(style: str) -> bytes:
    if style == "plain":
        return b"x" * HUGE
    if style == "words":
        return b"word " * (HUGE // 5)
    if style == "quoted":  # one valid quoted cell with commas, quotes and line breaks inside
        return b'"' + b'a,b ""c""\n' * (HUGE // 12) + b'"'
    return b'"' + b"y" * HUGE  # "unclosed": a quote that never ends


def _set_field(line: bytes, col: int, value: bytes, sep: bytes = b",") -> bytes:
    body, end = _split_end(line)
    fields = body.split(sep)
    fields[col % len(fields)] = value
    return sep.join(fields) + end


def _on_line(data: bytes, i: int, fn: Callable[[bytes], bytes]) -> bytes:
    lines = _lines(data)
    if not lines:
        return fn(b"")
    i %= len(lines)
    lines[i] = fn(lines[i])
    return b"".join(lines)


def _set_value(line: bytes, value: bytes) -> bytes:
    body, end = _split_end(line)
    for sep in (b": ", b" = ", b":"):
        if sep in body:
            return body.split(sep, 1)[0] + sep + value + (end or b"\n")
    return body + b": " + value + (end or b"\n")


def apply_op(data: bytes, op: tuple) -> bytes:
    name, *args = op
    n = len(data)
    if name == "delete":
        p, k = args
        i = _index(p, n)
        return data[:i] + data[i + k:]
    if name == "insert":
        p, chunk = args
        i = _index(p, n)
        return data[:i] + chunk + data[i:]
    if name == "truncate":
        return data[:_index(args[0], n)]
    if name == "flip":
        p, x = args
        if not data:
            return data
        i = p % n
        return data[:i] + bytes([data[i] ^ x]) + data[i + 1:]
    if name == "insert_bom":
        i = _index(args[0], n)
        return data[:i] + b"\xef\xbb\xbf" + data[i:]
    if name == "insert_nul":
        i = _index(args[0], n)
        return data[:i] + b"\x00" + data[i:]
    if name == "line_endings":
        return re.sub(rb"\r\n|\r|\n", args[0], data)
    lines = _lines(data)
    if name in ("dup_line", "del_line", "swap_lines", "insert_line") and not lines:
        return data + (args[-1] if name == "insert_line" else b"")
    if name == "dup_line":
        i = args[0] % len(lines)
        line = lines[i] if lines[i].endswith((b"\n", b"\r")) else lines[i] + b"\n"
        return b"".join(lines[:i] + [line] + lines[i:])
    if name == "del_line":
        i = args[0] % len(lines)
        return b"".join(lines[:i] + lines[i + 1:])
    if name == "swap_lines":
        i, j = args[0] % len(lines), args[1] % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines)
    if name == "insert_line":
        i = _index(args[0], len(lines))
        return b"".join(lines[:i] + [args[1] + b"\n"] + lines[i:])
    # CSV operations
    if name == "dup_header_name":
        i, j = args

        def dup(line: bytes) -> bytes:
            body, end = _split_end(line)
            fields = body.split(b",")
            fields[j % len(fields)] = fields[i % len(fields)]
            return b",".join(fields) + end
        return _on_line(data, 0, dup)
    if name == "huge_cell":
        i, col, style = args
        return _on_line(data, i, lambda line: _set_field(line, col, _huge(style)))
    if name == "set_cell":
        i, col, value = args
        return _on_line(data, i, lambda line: _set_field(line, col, value))
    if name == "delimiter":
        new, i = args
        if i is None:
            return data.replace(b",", new)
        return _on_line(data, i, lambda line: line.replace(b",", new))
    # YAML / TOML operations
    if name == "set_value":
        i, value = args
        return _on_line(data, i, lambda line: _set_value(line, value))
    if name == "add_setting":
        i, indent, key, value = args
        return b"".join(lines[:_index(i, len(lines))] + [b" " * indent + key + b": " + value + b"\n"]
                        + lines[_index(i, len(lines)):])
    if name == "indent":
        i, delta = args

        def shift(line: bytes) -> bytes:
            stripped = line.lstrip(b" ")
            return b" " * max(0, len(line) - len(stripped) + delta) + stripped
        return _on_line(data, i, shift)
    if name == "nest":
        i, depth = args
        return _on_line(data, i, lambda line: _set_value(line, b"[" * depth + b"]" * depth))
    raise ValueError(f"unknown mutation {op!r}")


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    for op in ops:
        data = apply_op(data, op)
        if len(data) > 4 * HUGE:  # repeated huge cells: enough is enough
            data = data[:4 * HUGE]
    return data


# ---------------------------------------------------------------------------------------------
# Strategies

_pos = st.integers(0, 2**16)
_line = st.integers(0, 64)
_small_bytes = st.binary(min_size=1, max_size=16)

# Bytes that mean something to a CSV or YAML reader, so random soups get past the first check.
CSV_TOKENS = ["id", "prompt", "A", "B", "C", "D", "E", "answer", "a", "b", ",", ",", "\n", "\r\n", "\r", '"', '""',
              " ", "\t", ";", "x", "1", "\ufeff", "\u00a0", "\u2028", "\x85", "é", "\x00", "\xff"]
YAML_TOKENS = ["name", "base", "runs", "train", "valid", "model", ":", ": ", " ", "  ", "\n", "\n  ", "\n    ", "- ",
               "[", "]", "{", "}", ",", "train.csv", "valid.csv", "lora_alpha", "lora_targets", "lr", "seeds", "grid",
               "strategy", "lora", "full", "subspace", "training", "training.lr", ".inf", ".nan", "-1", "0", "8",
               "1e-4", "1.0e-3", "&a ", "*a", "!!binary ", "!!str ", "'", '"', "#", "---", "...", "%YAML 1.1\n", "? ",
               "|", ">", "\t", "~", "null", "true", "=", "[base]", "[[runs]]", "\\0", "\\u2028", "\x00", "\xff"]


def _token_soup(tokens: list[str]) -> st.SearchStrategy[bytes]:
    def encode(parts: list[str]) -> bytes:
        # "\xff" stands for a byte that is not UTF-8; everything else is encoded as UTF-8
        return b"".join(b"\xff" if p == "\xff" else p.encode("utf-8") for p in parts)
    return st.lists(st.sampled_from(tokens), max_size=60).map(encode)


COLUMN_NAMES = ["id", "prompt", "A", "B", "C", "D", "E", "answer", " A", "a", "", "x"]
PLAIN_CELLS = ["a", "b", "A", "B", "c", "C", "x y", " ", "", "é", "\ufeffA", "\u00a0", " b "]
CELL_TOKENS = ["a", "b", "c", "A", "B", "C", "x", "y", "e", " ", '"', ",", "\n", "\r", "\t", "\ufeff", "\u00a0", "é", "1"]


def rarely(draw) -> bool:
    """True about one time in eight (hypothesis draws small integers, hence 0, more often than uniform)."""
    return all(draw(st.booleans()) for _ in range(3))


@st.composite
def csv_soups(draw) -> bytes:
    """A header naming some known columns (maybe twice), then rows of random cells: past the header
    check often enough to reach the row checks."""
    header = draw(st.one_of(st.permutations(["id", "prompt", "A", "B", "C", "answer"]),
                            st.permutations(["prompt", "A", "B"]),
                            st.lists(st.sampled_from(COLUMN_NAMES), min_size=1, max_size=9)))
    tricky = st.lists(st.sampled_from(CELL_TOKENS), max_size=3).map("".join)
    plain = st.sampled_from(PLAIN_CELLS)
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        width = len(header) + (draw(st.sampled_from([-1, 1])) if rarely(draw) else 0)
        cells = tricky if rarely(draw) else plain
        rows.append(draw(st.lists(cells, min_size=max(width, 1), max_size=max(width, 1))))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    data = (end.join(",".join(row) for row in [header, *rows]) + end).encode("utf-8")
    if rarely(draw):  # a byte that is not UTF-8, or a NUL
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3"])) + data[i:]
    return data


ARBITRARY_CSV = st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda s: s.encode("utf-8")),
                          _token_soup(CSV_TOKENS), csv_soups())

CELL_VALUES = [b"", b" ", b"Z", b"a", b"e", b" b ", b"\xc2\xa0", b'"', b'"x', b'x"y', b"A,B", b'"A,B"', b"\t",
               b"\xff", b"\x00", b"\xef\xbb\xbf", b"answer", b"prompt", b"id", b"\r", b'"\n"']
CSV_OPS = st.one_of(
    st.tuples(st.just("delete"), _pos, st.integers(1, 64)),
    st.tuples(st.just("insert"), _pos, st.one_of(_small_bytes, _token_soup(CSV_TOKENS))),
    st.tuples(st.just("truncate"), _pos),
    st.tuples(st.just("flip"), _pos, st.integers(1, 255)),
    st.tuples(st.just("insert_bom"), st.one_of(st.just(0), _pos)),
    st.tuples(st.just("insert_nul"), _pos),
    st.tuples(st.just("line_endings"), st.sampled_from([b"\r\n", b"\r", b"\n\n", b"\n\r\n"])),
    st.tuples(st.just("dup_line"), _line),
    st.tuples(st.just("del_line"), _line),
    st.tuples(st.just("swap_lines"), _line, _line),
    st.tuples(st.just("insert_line"), _line, st.one_of(_small_bytes, _token_soup(CSV_TOKENS))),
    st.tuples(st.just("dup_header_name"), _line, _line),
    st.tuples(st.just("huge_cell"), _line, _line, st.sampled_from(["plain", "words", "quoted", "unclosed"])),
    st.tuples(st.just("set_cell"), _line, _line, st.one_of(st.sampled_from(CELL_VALUES), _small_bytes)),
    st.tuples(st.just("delimiter"), st.sampled_from([b"\t", b";", b", ", b"|", b""]), st.one_of(st.none(), _line)),
)

YAML_VALUES = [".inf", "-.inf", ".nan", "-1", "0", "1", "5", "2.5", "1e-4", "1.0e-3", "1e400", "1" * 400, '"x"', "x",
               "''", "[]", "{}", "[1, 2]", "[x, 5]", "[[1], [2]]", "[1, [2]]", "{a: 1}", "{a: {b: {c: d}}}",
               "{lora_alpha: [1, 2]}", "{lora_alpha: 5}", "{seed: [0, 1]}", "null", "~", "true", "false", "no",
               "!!binary aGk=", "2001-01-01", "2001-12-14t21:59:43.10-05:00", "&a [*a]", "&b {x: *b}", '"\\0"',
               '"a\\0b"', "a" * 300, "../" * 5, "/", ".", "..", '"\\u2028"', '"\\n"', "0x10", "0o7", "1_000",
               "!!set {a, b}", "[query, value]", "[query, 5]", "[]", "['']", "full", "lora", "subspace", "qv",
               "attention", "dense", "said", "cpu", "cuda:0", "auto", "tpu", "{1: 2}", "*undefined", "!!python/name:os.system",
               "|\n  multi\n  line", '"x"\n  - 1', "inf", "nan", "-0", "9223372036854775808", "[0, 1, 2, 3]", "3.0",
               "1979-05-27T07:32:00Z", '"1e-4"', "train.csv", "valid.csv", "missing.csv", "[train.csv]", "{train: x}"]
EXPERIMENT_KEYS = sorted({*ALIASES, *RunConfig(train="").flat(), "name", "description", "base", "runs", "grid",
                          "seeds", "training", "strategy", "lora", "junk", "Train", "- name", "- strategy"})
_yaml_value = st.one_of(st.sampled_from(YAML_VALUES), st.text(max_size=12)).map(lambda s: s.encode("utf-8"))
YAML_OPS = st.one_of(
    st.tuples(st.just("delete"), _pos, st.integers(1, 32)),
    st.tuples(st.just("insert"), _pos, st.one_of(_small_bytes, _token_soup(YAML_TOKENS))),
    st.tuples(st.just("truncate"), _pos),
    st.tuples(st.just("flip"), _pos, st.integers(1, 255)),
    st.tuples(st.just("insert_bom"), st.one_of(st.just(0), _pos)),
    st.tuples(st.just("insert_nul"), _pos),
    st.tuples(st.just("line_endings"), st.sampled_from([b"\r\n", b"\r", b"\n\n"])),
    st.tuples(st.just("dup_line"), _line),
    st.tuples(st.just("del_line"), _line),
    st.tuples(st.just("swap_lines"), _line, _line),
    st.tuples(st.just("set_value"), _line, _yaml_value),
    st.tuples(st.just("set_value"), _line, _yaml_value),  # twice: the most telling operation
    st.tuples(st.just("add_setting"), _line, st.sampled_from([0, 2, 4, 6]),
              st.sampled_from(EXPERIMENT_KEYS).map(str.encode), _yaml_value),
    st.tuples(st.just("indent"), _line, st.integers(-4, 4)),
    st.tuples(st.just("nest"), _line, st.sampled_from([2, 50, 700])),  # 700: past the recursion limit
)


def _rewrite_first_rows(path: Path, rows: int = 5) -> bytes | None:
    """The header and first `rows` rows of a real CSV, rewritten by the csv module."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        kept = [row for _, row in zip(range(rows + 1), reader)]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(kept)
    return out.getvalue().encode("utf-8")


CSV_SEEDS = [s for s in (
    _rewrite_first_rows(SHARED_TRAIN),
    _rewrite_first_rows(PACKAGED_TRAIN),
    TINY_CSV,
    b"\xef\xbb\xbfanswer,B,prompt,C,A\r\nc,no,\"Is it, really?\",maybe,yes\r\n b ,\"two\nlines\",Q2, ,a\r\n",
) if s]


# --- valid question files, with what they must read back as


WHITESPACE = " \t\u00a0\u2003\u3000\x0b\x0c"
TRICKY = [",", '"', '""', "\n", "\r\n", "\r", "a\rb", " , ", "'", "\ufeff", "\u2028", "\x85", "\x1c", '", "', "\\", "#",
          "=1+2", "A", "answer", "é" * 3, "🙂", "\u200b"]
_char = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
cell_text = st.one_of(st.text(_char, max_size=30), st.sampled_from(TRICKY),
                      st.lists(st.sampled_from(TRICKY), max_size=4).map("".join))
padding = st.text(st.sampled_from(WHITESPACE), max_size=2)
nonblank_text = st.tuples(padding, cell_text.filter(lambda s: s.strip() != ""), padding).map("".join)
blank_text = st.text(st.sampled_from(WHITESPACE), max_size=3)
_extra_name = st.text(st.sampled_from("xyz_09 "), max_size=5)


@dataclass(frozen=True)
class QuestionFile:
    """A valid multiple-choice CSV and the questions it holds."""

    data: bytes
    expected: tuple[Question, ...]
    has_answer: bool
    limit: int | None = None


def _line_breaks(text: str) -> int:
    return len(re.findall(r"\r\n|\r|\n", text))


@st.composite
def question_files(draw) -> QuestionFile:
    letters = sorted(draw(st.sets(st.sampled_from(LETTERS), min_size=2)))
    has_id, has_answer = draw(st.booleans()), draw(st.booleans())
    extras = draw(st.lists(_extra_name, max_size=2, unique_by=lambda s: s.strip() or object()))
    columns = draw(st.permutations((["id"] if has_id else []) + ["prompt"] + letters + (["answer"] if has_answer else [])
                                   + [f"\x01extra{i}" for i in range(len(extras))]))
    names = {f"\x01extra{i}": name for i, name in enumerate(extras)}
    terminator = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    # The csv module quotes a field holding \r or \n only when the terminator holds that character.
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])) if terminator == "\r\n" else csv.QUOTE_ALL
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow([names[c] if c in names else draw(padding) + c + draw(padding) for c in columns])
    expected = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 4)) == 0:  # a blank line, which the reader skips
            out.write(draw(st.sampled_from(["", ",", " ", ",  ,"])) + terminator)
        start = len(out.getvalue())
        present = [x for x in letters if draw(st.booleans())]
        if len(present) < 2:
            present = draw(st.permutations(letters))[:2]
        present = [x for x in letters if x in present]
        cells = {"prompt": draw(nonblank_text), "id": draw(cell_text)}
        for letter in letters:
            cells[letter] = draw(nonblank_text) if letter in present else draw(blank_text)
        answer = draw(st.sampled_from(present))
        cells["answer"] = draw(padding) + draw(st.sampled_from([answer, answer.lower()])) + draw(padding)
        for name in names:
            cells[name] = draw(cell_text)
        writer.writerow([cells[c] for c in columns])
        text = out.getvalue()
        line = 1 + _line_breaks(text[:start])
        expected.append(Question(
            id=cells["id"].strip() if has_id else str(line - 2),
            prompt=cells["prompt"].strip(),
            letters=tuple(present),
            options=tuple(cells[x].strip() for x in present),
            answer=present.index(answer) if has_answer else None,
        ))
    text = out.getvalue()
    if draw(st.booleans()):
        text = text.removesuffix(terminator)  # no line break after the last row
    bom = "\ufeff" if draw(st.booleans()) else ""
    limit = draw(st.one_of(st.none(), st.integers(1, len(expected) + 1)))
    return QuestionFile((bom + text).encode("utf-8"), tuple(expected), has_answer, limit)


def check_question_round_trip(qf: QuestionFile) -> None:
    path = write("roundtrip.csv", qf.data)
    got = read_questions(path, require_answer=False)
    require(tuple(got) == qf.expected, f"read back {got!r}, wrote {qf.expected!r}")
    if qf.has_answer:
        got = read_questions(path, limit=qf.limit)
        wanted = qf.expected if qf.limit is None else qf.expected[:qf.limit]
        require(tuple(got) == wanted, f"with limit={qf.limit}: read back {got!r}, wrote {wanted!r}")


# --- valid TSV files (quoting off), with the table they hold


@dataclass(frozen=True)
class TableFile:
    data: bytes
    header: tuple[str, ...]
    rows: tuple[tuple[int, tuple[str, ...]], ...]


_tsv_char = st.characters(exclude_categories=("Cs",), exclude_characters="\x00\t\r\n")
tsv_text = st.one_of(st.text(_tsv_char, max_size=12), st.sampled_from(['"', '"a"', '"a', " ", "", "x y", ",", "\u2028"]))


@st.composite
def tsv_files(draw) -> TableFile:
    header = draw(st.lists(tsv_text, min_size=1, max_size=5, unique_by=lambda s: s.strip() or object()))
    if not any(name.strip() for name in header):
        header[0] = "only"  # a header must name at least one column
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    lines = ["\t".join(header)]
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        cells = tuple(draw(st.lists(tsv_text, min_size=len(header), max_size=len(header))))
        lines.append("\t".join(cells))
        if any(c.strip() for c in cells):
            rows.append((len(lines), cells))
    text = terminator.join(lines) + (terminator if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    return TableFile((bom + text).encode("utf-8"), tuple(n.strip() for n in header), tuple(rows))


def check_tsv_round_trip(tf: TableFile) -> None:
    for path, kwargs in ((write("roundtrip.txt", tf.data), {"delimiter": "\t", "quoting": False}),
                         (write("roundtrip.tsv", tf.data), {})):
        table = read_table(path, **kwargs)
        require(table.header == tf.header, f"header {table.header!r}, wrote {tf.header!r}")
        require(table.rows == tf.rows, f"rows {table.rows!r}, wrote {tf.rows!r}")


# --- experiment files


_DEFAULTS = RunConfig(train="").flat()
STRATEGY_NAMES = ["full", "attention", "qv", "lora", "subspace"]
garbage = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -1, 0, 2**63, 2**31]),
              st.floats(), st.text(max_size=10), st.sampled_from(["1e-4", "inf", "", " ", "train.csv", "query", "a" * 300])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=6), st.integers(), st.none()), inner, max_size=3)),
    max_leaves=8,
)


def plausible(key: str) -> st.SearchStrategy:
    """Values a user would give for `key`: mostly valid, sometimes out of range."""
    flat = ALIASES.get(key, key)
    if flat == "strategy.strategy":
        return st.sampled_from(STRATEGY_NAMES)
    if flat == "strategy.subspace.projection":
        return st.sampled_from(["dense", "sparse", "fastfood", "said", "other"])
    if flat in ("train", "valid"):
        return st.sampled_from(["train.csv", "valid.csv", "missing.csv", "sub/../train.csv", "", "a\x00b.csv", "t" * 300])
    if flat == "model":
        return st.sampled_from(["minilm", "no-such-model", ".", "train.csv", "a\x00b", "m" * 300])
    if flat == "device":
        return st.sampled_from(["cpu", "auto", "cuda", "cuda:1", "gpu"])
    if flat == "strategy.lora.targets":
        return st.one_of(st.lists(st.sampled_from(["query", "value", "key", "attention_output", "all-linear"]),
                                  min_size=1, max_size=3), st.sampled_from(["query", "all-linear"]))
    if flat in ("strategy.subspace.direct", "strategy.subspace.exclude"):
        return st.lists(st.sampled_from(["embeddings", "classifier", ".bad", ""]), max_size=2)
    default = _DEFAULTS.get(flat)
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int) or flat in ("training.max_steps", "train_limit", "valid_limit"):
        return st.integers(0, 64) if default is not None else st.one_of(st.integers(0, 64), st.just(None))
    if isinstance(default, float) or flat == "training.theta_lr":
        return st.one_of(st.floats(0, 2), st.sampled_from(["1e-4", "5.0e-5", "-1", ".5"]))
    return garbage


SETTING_KEYS = sorted({*ALIASES, *_DEFAULTS, "junk"})


def _value_for(key: str) -> st.SearchStrategy:
    return st.one_of(plausible(key), plausible(key), garbage)


_setting = st.sampled_from(SETTING_KEYS).flatmap(lambda k: st.tuples(st.just(k), _value_for(k)))


@st.composite
def settings_dict(draw, max_size: int = 4) -> dict:
    """Settings as dotted names, or nested mappings, or a mix."""
    out: dict = {}
    for key, value in draw(st.lists(_setting, max_size=max_size)):
        if "." in key and draw(st.booleans()):
            *parents, leaf = key.split(".")
            node = out
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[leaf] = value
        else:
            out[key] = value
    return out


@st.composite
def run_entries(draw) -> Any:
    if rarely(draw):
        return draw(garbage)
    entry = draw(settings_dict(max_size=2))
    if draw(st.booleans()):
        entry["name"] = draw(st.one_of(st.text(max_size=8), garbage))
    if draw(st.booleans()):
        entry["strategy"] = draw(st.one_of(st.sampled_from(STRATEGY_NAMES), garbage))
    if draw(st.booleans()):
        entry["seeds"] = draw(st.one_of(st.lists(st.integers(0, 3), max_size=3), garbage))
    if draw(st.booleans()):
        grid_keys = draw(st.lists(st.sampled_from(SETTING_KEYS), max_size=2, unique=True))
        entry["grid"] = draw(st.one_of(
            st.fixed_dictionaries({k: st.one_of(st.lists(plausible(k), min_size=1, max_size=3), garbage)
                                   for k in grid_keys}),
            garbage))
    return entry


@st.composite
def experiment_documents(draw) -> dict:
    """An experiment as Python data, before it is written as YAML."""
    base = draw(settings_dict())
    if not rarely(draw):
        base["train"] = "train.csv"
    if draw(st.booleans()):  # the paths: resolved against the file's folder, so worth a closer look
        key = draw(st.sampled_from(["model", "valid", "train"]))
        base[key] = draw(plausible(key))
    doc: dict = {"base": draw(garbage) if rarely(draw) else base}
    if draw(st.booleans()):
        doc["name"] = draw(st.one_of(st.text(max_size=8), garbage))
    if draw(st.booleans()):
        doc["description"] = draw(st.one_of(st.text(max_size=20), garbage))
    if not rarely(draw):
        doc["runs"] = draw(st.lists(run_entries(), max_size=3))
    elif draw(st.booleans()):
        doc["runs"] = draw(garbage)
    if rarely(draw) and rarely(draw):
        doc[draw(st.text(max_size=5))] = draw(garbage)
    return doc


def _dump(doc: dict) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")


EXPERIMENT_TEMPLATE = b"""\
name: fuzz
description: a valid experiment for property tests
base:
  train: train.csv
  valid: valid.csv
  model: minilm
  train_limit: 4
  valid_limit: 2
  device: cpu
  training.lr: 1e-4
  training:
    epochs: 1
    batch_size: 2
    max_length: 32
    warmup_ratio: 0.1
  strategy:
    lora:
      r: 4
      alpha: 16
      dropout: 0.1
      targets:
        - query
        - value
runs:
  - name: full
    strategy: full
    seeds:
      - 0
      - 1
  - name: lora
    strategy: lora
    lr: 1.0e-3
    lora_targets: [query, value]
    grid:
      lora_alpha:
        - 8
        - 32
      lora_r: [2, 4]
  - name: subspace
    strategy: subspace
    subspace_dim: 100
    projection: dense
    train_head: true
    seeds: [3]
"""
TOML_TEMPLATE = b"""\
name = "fuzz-toml"
[base]
train = "train.csv"
valid = "valid.csv"
"training.lr" = "1e-4"
[base.training]
epochs = 1
batch_size = 2
[[runs]]
name = "full"
strategy = "full"
seeds = [0, 1]
[[runs]]
name = "lora"
strategy = "lora"
grid = { lora_alpha = [8, 32] }
"""
EXPERIMENT_SEEDS = [(".yaml", EXPERIMENT_TEMPLATE), (".toml", TOML_TEMPLATE)] + [
    (".yaml", p.read_bytes()) for p in EXPERIMENT_FILES if p.is_file()]


# --- classification and regression files (GLUE's layouts)


GLUE = ROOT.parent / "shared" / "data" / "glue"
COLA_COLUMNS = ("source", "label", "notes", "sentence")
STS_COLUMNS = ("genre", "file", "year", "id", "score", "sentence1", "sentence2")

# The configurations a classification file is read under: the default (GLUE's column names), a
# headerless file's names, and user-named columns. Examples refer to them by index, so they print short.
CLASS_CONFIGS: list[TaskConfig | None] = [
    None,
    TaskConfig(),
    TaskConfig(columns=COLA_COLUMNS),
    TaskConfig(columns=STS_COLUMNS),
    TaskConfig(text="sentence", label="label"),
    TaskConfig(text="sentence1", text_pair="sentence2", label="score"),
    TaskConfig(columns=("label", "sentence", "")),
]


def _first_lines(path: Path, lines: int = 5) -> bytes | None:
    """The first `lines` lines of a real file, byte for byte (GLUE's TSV files are read with quoting off)."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return b"".join(f.readline() for _ in range(lines))


# (file suffix, bytes, index into CLASS_CONFIGS): valid files to mutate, inline ones always, real
# GLUE ones where ../shared/data/glue holds them.
CLASS_SEEDS = [(suffix, data, config) for suffix, data, config in (
    (".tsv", b"sentence\tlabel\nit 's a \"charming\" film \t1\nbleak \t0\n", 0),  # SST-2
    (".tsv", b"index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n"
             b"1\tA dog.\tA cat.\tnot_entailment\n", 0),  # RTE
    (".txt", "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe said \"yes\".\tHe agreed.\n"
             "0\t3\t4\tIt rained.\tIt was dry.\n".encode(), 0),  # MRPC
    (".tsv", b"gj04\t1\t\tThe sailors rode the breeze.\ngj04\t0\t*\tThe car honked down the road.\n", 2),  # CoLA
    (".tsv", b"g\tf\t2012\t1\t5.000\tA plane.\tAn air plane.\ng\tf\t2012\t2\t0.400\tA man.\tA dog.\tsrc\tsrc\n",
     3),  # STS Benchmark, a line with two extra fields
    (".csv", b'id,question,sentence,label\r\nq1,"Who, then?","He did, ""twice"".",entailment\r\n'
             b'q2,Why?,"Two\nlines",not_entailment\r\n', 0),  # QNLI as a quoted CSV
    (".csv", b"text,label\nfine,0.5\ngood,1.25\n", 1),  # a regression CSV
    (".tsv", _first_lines(GLUE / "SST-2" / "dev.tsv"), 0),
    (".tsv", _first_lines(GLUE / "RTE" / "dev.tsv"), 0),
    (".txt", _first_lines(GLUE / "MRPC" / "msr_paraphrase_train.txt"), 0),
    (".tsv", _first_lines(GLUE / "CoLA" / "dev.tsv"), 2),
    (".tsv", _first_lines(GLUE / "QNLI" / "dev.tsv"), 0),
    (".tsv", _first_lines(GLUE / "STS-B" / "original_sts-dev.tsv"), 3),
) if data]


def _number(text: str) -> float | None:
    """A finite number, or None (the documented rule: regression labels are finite numbers)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_regression(labels: list[str]) -> bool:
    """A training file is a regression task when its labels are numbers that are not all whole."""
    values = [_number(label) for label in labels]
    return all(v is not None for v in values) and any(not v.is_integer() for v in values)


def _clean(text: Any) -> bool:
    return isinstance(text, str) and bool(text) and text == text.strip() and "\x00" not in text


def check_examples(examples: Any, path: Path, config: TaskConfig | None, *, labelled: bool) -> None:
    """Valid examples: non-empty stripped texts, a pair iff the file has a pair column, labels when labelled."""
    require(isinstance(examples, list) and examples, f"read_examples returned {examples!r}")
    table = read_table(path, names=(config.columns if config else ()) or None)  # loaded once already
    if config is not None and config.text_pair is not None:
        has_pair = True
    elif config is not None and config.text is not None:
        has_pair = False
    else:
        has_pair = any(table.has(*pair) for pair in PAIRS)
    previous = 0
    for e in examples:
        require(isinstance(e, Example), f"not an Example: {e!r}")
        require(_clean(e.text), f"empty or unstripped text in {e!r}")
        require((e.text_pair is not None) == has_pair, f"pair {'missing' if has_pair else 'made up'} in {e!r}")
        require(e.text_pair is None or _clean(e.text_pair), f"empty or unstripped second text in {e!r}")
        require(e.label is None or _clean(e.label), f"empty or unstripped label in {e!r}")
        require(not labelled or e.label is not None, f"no label in {e!r}, read as labelled")
        require(isinstance(e.id, str) and e.id == e.id.strip() and "\x00" not in e.id, f"bad id in {e!r}")
        require(isinstance(e.line, int) and e.line > previous, f"row line {e.line} after line {previous}")
        previous = e.line
    require(len(examples) <= len(table.rows), f"{len(examples)} examples from {len(table.rows)} rows")


def check_classification_file(data: bytes, suffix: str = ".tsv", config: TaskConfig | None = None) -> None:
    """read_examples labelled and not, with limits, and infer_task on `data`."""
    path = write("examples" + suffix, data)
    loaded: dict[bool, list[Example] | None] = {}
    for labelled in (True, False):
        try:
            examples = read_examples(path, config, labelled=labelled)
        except LoralabError as e:
            check_one_line(e)
            loaded[labelled] = None
        else:
            check_examples(examples, path, config, labelled=labelled)
            loaded[labelled] = examples
    full = loaded[True]
    if full is not None:
        # labelled=False (prediction) ignores the labels: the same examples, labels left out
        require(loaded[False] == [dataclasses.replace(e, label=None) for e in full],
                "labelled=False reads a file with labels differently")
        for limit in (1, 2):
            try:
                limited = read_examples(path, config, limit=limit)
            except LoralabError as e:
                raise PropertyFailure(f"limit={limit} refuses a file that loads in full: {e}") from None
            require(limited == full[:limit], f"limit={limit} does not give the first {limit} examples")
    task_config = config or TaskConfig()
    try:
        name = infer_task(path, task_config)
    except LoralabError as e:
        check_one_line(e)
        # The one file infer_task refuses although it reads: number labels with a nan or inf among them (a
        # regression file with a broken row, which --task classification still reads as class names).
        require(full is None or _numbers_not_all_finite([e.label for e in full]),
                f"infer_task refuses a file read_examples loads: {e}")
        return
    require(name in TASK_NAMES, f"infer_task returned {name!r}")
    if name == "multiple-choice":
        require(not task_config.columns and looks_like(read_table(path)), "multiple-choice without its columns")
    elif full is not None:
        wanted = "regression" if is_regression([e.label for e in full]) else "classification"
        require(name == wanted, f"infer_task says {name}, labels {[e.label for e in full][:5]} say {wanted}")
    else:
        raise PropertyFailure(f"infer_task says {name} for a file read_examples refuses")


def _numbers_not_all_finite(labels: list) -> bool:
    try:
        values = [float(label) for label in labels]
    except (TypeError, ValueError):
        return False
    return not all(math.isfinite(v) for v in values)


# Arbitrary input: bytes, and soups of GLUE's column names and cells with tabs or commas.
CLASS_NAMES = ["sentence", "sentence1", "sentence2", "question", "label", "Quality", "score", "#1 String",
               "#2 String", "text", "index", "id", "idx", "premise", "hypothesis", " label", "", "x", "prompt", "A", "B"]
CLASS_CELLS = ["a", "b c", " ", "", "0", "1", "0.5", "2.5", "-1", "nan", "inf", "1e999", "1_0", "entailment",
               "not_entailment", "é", "\ufeff", "\u00a0", "\u2028", "\x85", '"', '"a"', "#1 String", "label", "x y "]
CLASS_CELL_TOKENS = ["a", "b", " ", '"', ",", "\t", "\n", "\r", "\r\n", "\ufeff", "\u00a0", "1", ".", "5", "e", "é"]


@st.composite
def class_soups(draw) -> bytes:
    header = draw(st.one_of(
        st.permutations(["sentence1", "sentence2", "label"]),
        st.permutations(["sentence", "label"]),
        st.permutations(["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]),
        st.lists(st.sampled_from(CLASS_NAMES), min_size=1, max_size=6)))
    sep = draw(st.sampled_from(["\t", ","]))
    tricky = st.lists(st.sampled_from(CLASS_CELL_TOKENS), max_size=3).map("".join)
    plain = st.sampled_from(CLASS_CELLS)
    rows = [] if rarely(draw) else [header]  # sometimes headerless, for the configurations naming columns
    for _ in range(draw(st.integers(0, 4))):
        width = len(header) + (draw(st.sampled_from([-1, 1, 3])) if rarely(draw) else 0)
        cells = tricky if rarely(draw) else plain
        rows.append(draw(st.lists(cells, min_size=max(width, 1), max_size=max(width, 1))))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    data = (end.join(sep.join(row) for row in rows) + end).encode("utf-8")
    if rarely(draw):
        i = draw(st.integers(0, len(data)))
        data = data[:i] + draw(st.sampled_from([b"\xff", b"\x00", b"\xc3", b"\xef\xbb\xbf"])) + data[i:]
    return data


CLASS_TOKENS = CSV_TOKENS + ["sentence", "sentence1", "sentence2", "label", "Quality", "#1 String", "score", "0.5"]
_class_suffix = st.sampled_from([".tsv", ".csv", ".txt"])
_class_config = st.integers(0, len(CLASS_CONFIGS) - 1)
ARBITRARY_CLASS = st.tuples(_class_suffix, _class_config,
                            st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda s: s.encode("utf-8")),
                                      _token_soup(CLASS_TOKENS), class_soups(), class_soups()))


def _sep_of(line: bytes) -> bytes:
    return b"\t" if b"\t" in line else b","


def apply_class_op(data: bytes, op: tuple) -> bytes:
    """The CSV operations, and the same on tab-separated lines; ("swap_delimiters",) swaps tabs and commas."""
    name, *args = op
    if name == "tsv_cell":
        i, col, value = args
        return _on_line(data, i, lambda line: _set_field(line, col, value, _sep_of(line)))
    if name == "tsv_dup_header_name":
        i, j = args

        def dup(line: bytes) -> bytes:
            body, end = _split_end(line)
            sep = _sep_of(body)
            fields = body.split(sep)
            fields[j % len(fields)] = fields[i % len(fields)]
            return sep.join(fields) + end
        return _on_line(data, 0, dup)
    if name == "tsv_huge_cell":
        i, col, style = args
        return _on_line(data, i, lambda line: _set_field(line, col, _huge(style), _sep_of(line)))
    if name == "swap_delimiters":
        return data.replace(b"\t", b"\x01").replace(b",", b"\t").replace(b"\x01", b",")
    return apply_op(data, op)


def mutate_class(data: bytes, ops: list[tuple]) -> bytes:
    for op in ops:
        data = apply_class_op(data, op)
        if len(data) > 4 * HUGE:
            data = data[:4 * HUGE]
    return data


CLASS_VALUES = [b"", b" ", b"\t", b"x", b"entailment", b"neutral", b"0", b"1", b"0.5", b"5.000", b"nan", b"inf",
                b"-inf", b"1e999", b"high", b'"', b'"x', b"sentence", b"label", b"#1 String", b"Quality", b"\xff",
                b"\x00", b"\xef\xbb\xbf", b"\r", b"a\tb", b"\xc2\xa0", b"\xe2\x80\xa8"]
CLASS_OPS = st.one_of(
    CSV_OPS,
    st.tuples(st.just("tsv_cell"), _line, _line, st.one_of(st.sampled_from(CLASS_VALUES), _small_bytes)),
    st.tuples(st.just("tsv_cell"), _line, _line, st.sampled_from(CLASS_VALUES)),  # twice: the most telling
    st.tuples(st.just("tsv_dup_header_name"), _line, _line),
    st.tuples(st.just("tsv_huge_cell"), _line, _line, st.sampled_from(["plain", "words", "quoted", "unclosed"])),
    st.tuples(st.just("swap_delimiters")),
)


# --- valid classification files, with the examples they hold


@dataclass(frozen=True)
class ClassFile:
    """A valid classification or regression file, how to read it, and what it holds."""

    data: bytes
    suffix: str
    config: TaskConfig | None
    expected: tuple[Example, ...]
    labelled: bool


# (text column, second text column or None, label column, whether the configuration names them)
LAYOUTS = [
    ("sentence", None, "label", False),  # SST-2, CoLA
    ("text", None, "label", False),
    ("sentence1", "sentence2", "label", False),  # RTE, WNLI
    ("question", "sentence", "label", False),  # QNLI
    ("#1 String", "#2 String", "Quality", False),  # MRPC
    ("question1", "question2", "label", False),  # QQP
    ("premise", "hypothesis", "label", False),  # MNLI as some copies have it
    ("sentence1", "sentence2", "score", False),  # STS-B
    ("body", None, "target", True),  # user-named columns
    ("first", "second", "gold", True),
]
LABEL_SETS = [["0", "1"], ["entailment", "not_entailment"], ["neg", "pos"], ["0", "1", "2"], ["1", "10", "2"]]
_extra_column = st.sampled_from(["notes", "genre", "#1 ID", "#2 ID", "year", "x y", "source"])
_class_char = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
_tsv_class_char = st.characters(exclude_categories=("Cs",), exclude_characters="\x00\t\r\n")
_tsv_padding = st.text(st.sampled_from(" \u00a0\u2003\u3000\x0b\x0c"), max_size=2)


@st.composite
def class_files(draw) -> ClassFile:
    text_col, pair_col, label_col, named = draw(st.sampled_from(LAYOUTS))
    labelled = draw(st.booleans()) or draw(st.booleans())
    id_col = draw(st.sampled_from([None, "id", "idx", "index"]))
    extras = draw(st.lists(_extra_column, max_size=2, unique=True))
    columns = draw(st.permutations([c for c in (text_col, pair_col, label_col if labelled else None, id_col) if c]
                                   + extras))
    tsv = draw(st.booleans())
    headerless = draw(st.booleans()) and not named and draw(st.booleans())
    if headerless:
        config: TaskConfig | None = TaskConfig(columns=tuple(columns))
    elif named:
        config = TaskConfig(text=text_col, text_pair=pair_col, label=label_col if labelled else None)
    else:
        config = draw(st.sampled_from([None, TaskConfig()]))
    if tsv:
        core = st.text(_tsv_class_char, min_size=1, max_size=20).filter(lambda s: s.strip() != "")
        text = st.tuples(_tsv_padding, core, _tsv_padding).map("".join)
        free = st.text(_tsv_class_char, max_size=10)
        terminator = draw(st.sampled_from(["\n", "\r\n"]))
    else:
        text = st.one_of(nonblank_text, st.tuples(padding, st.text(_class_char, min_size=1, max_size=20)
                                                  .filter(lambda s: s.strip() != ""), padding).map("".join))
        free = cell_text
        # Not "\r" alone with a single column: loralab then takes a tab in any cell for the delimiter
        # (see test_a_one_column_csv_with_cr_line_ends_keeps_its_tabs in tests/test_properties.py).
        terminator = draw(st.sampled_from(["\r\n", "\n"] + (["\r"] if len(columns) > 1 else [])))
    regression = draw(st.booleans())
    labels = draw(st.sampled_from(LABEL_SETS))
    rows: list[dict[str, str]] = []
    for _ in range(draw(st.integers(1, 5))):
        cells = {text_col: draw(text), "": ""}
        if pair_col:
            cells[pair_col] = draw(text)
        if regression:
            label = f"{draw(st.floats(-5, 5, allow_nan=False)):.{draw(st.integers(0, 3))}f}"
        else:
            label = draw(st.sampled_from(labels))
        cells[label_col] = draw(padding if not tsv else _tsv_padding) + label
        if id_col:
            cells[id_col] = draw(text)
        for name in extras:
            cells[name] = draw(free)
        rows.append(cells)
    trailing = draw(st.lists(free, max_size=2)) if headerless else []  # fields after the last named column
    out = io.StringIO()
    if tsv:
        def write_row(cells: list[str]) -> None:
            out.write("\t".join(cells) + terminator)
    else:
        quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL])) if terminator == "\r\n" else csv.QUOTE_ALL
        writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
        write_row = writer.writerow
    if not headerless:
        write_row(columns)
    expected = []
    for index, cells in enumerate(rows):
        if draw(st.integers(0, 5)) == 0:  # a blank line, which the reader skips
            out.write(("" if tsv else draw(st.sampled_from(["", ",", " ", ",  ,"]))) + terminator)
        line = 1 + _line_breaks(out.getvalue())
        write_row([cells[c] for c in columns] + trailing)
        expected.append(Example(
            id=cells[id_col].strip() if id_col else str(index),
            text=cells[text_col].strip(),
            text_pair=cells[pair_col].strip() if pair_col else None,
            label=cells[label_col].strip() if labelled else None,
            line=line,
        ))
    body = out.getvalue()
    if draw(st.booleans()):
        body = body.removesuffix(terminator)  # no line break after the last row
    bom = "\ufeff" if draw(st.booleans()) or body.startswith("\ufeff") else ""  # a leading U+FEFF is a BOM
    suffix = (draw(st.sampled_from([".tsv", ".txt"])) if tsv else ".csv")
    return ClassFile((bom + body).encode("utf-8"), suffix, config, tuple(expected), labelled)


def check_class_round_trip(cf: ClassFile) -> None:
    path = write("roundtrip" + cf.suffix, cf.data)
    got = read_examples(path, cf.config, labelled=cf.labelled)
    require(tuple(got) == cf.expected, f"read back {got!r}, wrote {cf.expected!r}")
    unlabelled = tuple(read_examples(path, cf.config, labelled=False))  # prediction: labels ignored
    require(unlabelled == tuple(dataclasses.replace(e, label=None) for e in cf.expected), "labelled=False differs")
    if not cf.labelled:
        try:
            read_examples(path, cf.config)
        except LoralabError as e:
            require("no label column" in str(e), f"a file without labels refused as: {e}")
        else:
            raise PropertyFailure("a file without a label column read as labelled")
        return
    require(tuple(read_examples(path, cf.config)) == cf.expected, "labelled=True reads differently")
    name = infer_task(path, cf.config or TaskConfig())
    wanted = "regression" if is_regression([e.label for e in cf.expected]) else "classification"
    require(name == wanted, f"infer_task says {name}, the labels say {wanted}")


def _class_example(example: tuple[str, int, bytes]) -> None:
    suffix, config, data = example
    check_classification_file(data, suffix, CLASS_CONFIGS[config])


def _mutated_class(example: tuple[int, list[tuple]]) -> bytes:
    seed, ops = example
    return mutate_class(CLASS_SEEDS[seed][1], ops)


def _check_mutated_class(example: tuple[int, list[tuple]]) -> None:
    suffix, _, config = CLASS_SEEDS[example[0]]
    check_classification_file(_mutated_class(example), suffix, CLASS_CONFIGS[config])


_class_mutation = st.tuples(st.integers(0, len(CLASS_SEEDS) - 1), st.lists(CLASS_OPS, min_size=1, max_size=5))


# ---------------------------------------------------------------------------------------------
# JSON Lines of prompts and completions (plain and chat), run.json and sweep.json


_any_text = st.text(st.characters(blacklist_categories=()), max_size=12)  # lone surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | _any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_any_text, inner, max_size=3), max_leaves=8)
_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant", "bot"]) | json_values,
                                  "content": _any_text | json_values})
completion_records = st.one_of(
    st.fixed_dictionaries({"prompt": _any_text | json_values, "completion": _any_text | json_values},
                          optional={"id": json_values}),
    st.fixed_dictionaries({"messages": st.lists(_message, max_size=4) | json_values}),
    json_values)


@st.composite
def completion_files(draw) -> bytes:
    lines = []
    for record in draw(st.lists(completion_records, min_size=0, max_size=5)):
        lines.append(json.dumps(record, ensure_ascii=draw(st.booleans())))
        if draw(st.integers(0, 6)) == 0:
            lines.append(draw(st.sampled_from(["", "   ", "{", "[1]", '{"prompt": 1e999}', "nul\x00"])))
    try:
        return "\n".join(lines).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate written raw: as bytes no UTF-8 file can hold
        return "\n".join(lines).encode("utf-8", "surrogatepass")


def check_completion_file(data: bytes) -> None:
    """The completion reader on `data`: prompts and completions that a tokenizer can take, or a one-line LoralabError."""
    from loralab.tasks.completion import read_examples as read_completions

    path = write("completions.jsonl", data)
    for labelled in (True, False):
        try:
            examples = read_completions(path, labelled=labelled)
        except LoralabError as e:
            check_one_line(e)
            continue
        require(isinstance(examples, list) and examples, f"read_examples returned {examples!r}")
        for e in examples:
            texts = [e.prompt, e.completion or ""] + [c for _, c in (e.messages or ())]
            require(all(isinstance(t, str) for t in texts), f"not text in {e!r}")
            for t in texts:
                t.encode("utf-8")  # a lone surrogate here is a bug: the tokenizer would raise
            require(bool(e.messages) or bool(e.prompt.strip()), f"an empty prompt in {e!r}")
            if labelled:
                require(isinstance(e.completion, str) and e.completion.strip() != "" or bool(e.messages),
                        f"no completion in {e!r}")
    try:
        infer_task(path, TaskConfig())
    except LoralabError as e:
        check_one_line(e)


_RECORD_KEYS = ("status", "loralab_version", "task", "strategy", "metric", "scoring", "base_model", "config",
                "hyperparameters", "valid", "weights", "weights_sha256", "peak_memory_mb", "train_seconds",
                "trainable_params", "total_params", "loss", "step_seconds", "head", "label_space",
                "diverged_at_step", "median_step_seconds", "tokens_per_second")
_plausible = {"status": st.sampled_from(["completed", "diverged", "running", "failed"]),
              "hyperparameters": st.just(RunConfig(train="t.csv").flat()),
              "valid": st.dictionaries(st.sampled_from(["map@3", "accuracy", "pearson", "path", "questions"]),
                                       st.none() | st.floats() | st.integers(0, 100) | st.sampled_from(["NaN", "x"]),
                                       max_size=4),
              "loralab_version": st.sampled_from(["0.1.0", "0.0.1", "99.0.0", "x"])}
run_records = st.fixed_dictionaries({}, optional={k: (_plausible[k] | json_values) if k in _plausible else json_values
                                                  for k in _RECORD_KEYS})


def check_run_record(record: dict) -> None:
    """run.json: read (`read_record`) and reported on (rows, sections, the Markdown table), or a one-line
    LoralabError; a record that is read is reported without any other exception."""
    from loralab.reports.markdown import report_markdown
    from loralab.reports.rows import build_sections, load_records
    from loralab.runs.record import read_record

    folder = workspace() / "records"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "run").mkdir(parents=True)
    (folder / "run" / "run.json").write_text(json.dumps(record))
    try:
        read_record(folder / "run" / "run.json")
    except LoralabError as e:
        check_one_line(e)
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records, _ = load_records(folder)
    if records:
        report_markdown(build_sections(records), [], "t")


manifests = st.fixed_dictionaries({}, optional={"experiment": json_values, "description": json_values,
                                                "runs": json_values | st.lists(st.fixed_dictionaries(
                                                    {"folder": _any_text | json_values},
                                                    optional={"labels": st.lists(_any_text) | json_values}))})


def check_manifest(data: dict) -> None:
    """sweep.json: its runs read, or a one-line LoralabError; the report's reader of it never raises."""
    from loralab.reports.rows import read_manifest
    from loralab.runs.record import read_manifest_runs

    folder = workspace() / "manifest"
    folder.mkdir(exist_ok=True)
    (folder / "sweep.json").write_text(json.dumps(data))
    try:
        runs = read_manifest_runs(folder / "sweep.json")
    except LoralabError as e:
        check_one_line(e)
    else:
        require(all(isinstance(f, str) and all(isinstance(x, str) for x in labels) for f, labels in runs),
                f"manifest runs {runs!r}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read_manifest(folder)


# ---------------------------------------------------------------------------------------------
# The properties


@dataclass(frozen=True)
class Property:
    name: str
    strategy: st.SearchStrategy
    check: Callable[[Any], None]
    doc: str
    render: Callable[[Any], bytes] | None = None
    """The file a failing example wrote, for the report (None: the example itself is the file)."""


# A mutation example is (seed, operations); a seed is an index into CSV_SEEDS / EXPERIMENT_SEEDS, so
# that a failing example prints short, or (CSV only) the bytes of a generated valid file.


def _mutated_csv(example: tuple[int | bytes, list[tuple]]) -> bytes:
    seed, ops = example
    return mutate(CSV_SEEDS[seed] if isinstance(seed, int) else seed, ops)


def _experiment_suffix(example: tuple[int, list[tuple]]) -> str:
    return EXPERIMENT_SEEDS[example[0]][0]


def _mutated_experiment(example: tuple[int, list[tuple]]) -> bytes:
    seed, ops = example
    return mutate(EXPERIMENT_SEEDS[seed][1], ops)


_csv_seed = st.one_of(st.integers(0, len(CSV_SEEDS) - 1), question_files().map(lambda qf: qf.data))
_csv_mutation = st.tuples(_csv_seed, st.lists(CSV_OPS, min_size=1, max_size=5))
_experiment_mutation = st.tuples(st.integers(0, len(EXPERIMENT_SEEDS) - 1), st.lists(YAML_OPS, min_size=1, max_size=5))
_experiment_text = st.tuples(st.sampled_from([".yaml", ".yml", ".toml", ""]),
                             st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                                       _token_soup(YAML_TOKENS)))

PROPERTIES: dict[str, Property] = {p.name: p for p in [
    Property("questions_arbitrary_bytes", ARBITRARY_CSV, check_question_file,
             "read_questions on arbitrary bytes: valid questions or a one-line LoralabError"),
    Property("questions_mutations", _csv_mutation, lambda ex: check_question_file(_mutated_csv(ex)),
             "read_questions on mutated valid files: valid questions or a one-line LoralabError", _mutated_csv),
    Property("table_arbitrary_bytes", ARBITRARY_CSV, check_table_file,
             "read_table on arbitrary bytes (CSV/TSV, quoting on/off): a valid table or a one-line LoralabError"),
    Property("table_mutations", _csv_mutation, lambda ex: check_table_file(_mutated_csv(ex)),
             "read_table on mutated valid files: a valid table or a one-line LoralabError", _mutated_csv),
    Property("experiment_arbitrary_text", _experiment_text, lambda ex: check_experiment_file(ex[1], ex[0]),
             "load_experiment on arbitrary bytes and YAML/TOML token soups", lambda ex: ex[1]),
    Property("experiment_generated", experiment_documents(), lambda doc: check_experiment_file(_dump(doc)),
             "load_experiment on generated YAML documents: known keys with random and nested values", _dump),
    Property("experiment_mutations", _experiment_mutation,
             lambda ex: check_experiment_file(_mutated_experiment(ex), _experiment_suffix(ex)),
             "load_experiment on mutated valid experiment files", _mutated_experiment),
    Property("questions_round_trip", question_files(), check_question_round_trip,
             "valid question sets written by the csv module read back exactly", lambda qf: qf.data),
    Property("table_tsv_round_trip", tsv_files(), check_tsv_round_trip,
             "TSV files with quoting off read back exactly", lambda tf: tf.data),
    Property("class_arbitrary_bytes", ARBITRARY_CLASS, _class_example,
             "read_examples and infer_task on arbitrary bytes and GLUE-like soups, under several configurations: "
             "valid examples or a one-line LoralabError", lambda ex: ex[2]),
    Property("class_mutations", _class_mutation, _check_mutated_class,
             "read_examples and infer_task on mutated GLUE-like files (SST-2, RTE, MRPC, CoLA, STS-B, QNLI)",
             _mutated_class),
    Property("class_round_trip", class_files(), check_class_round_trip,
             "classification/regression files written as TSV (quoting off) or CSV read back exactly",
             lambda cf: cf.data),
    Property("completion_jsonl", completion_files(), check_completion_file,
             "the completion reader on generated JSON Lines (prompts, chats, wrong types, lone surrogates, bad "
             "lines): text a tokenizer takes, or a one-line LoralabError"),
    Property("run_record", run_records, check_run_record,
             "run.json with known fields of any type: read and reported, or a one-line LoralabError",
             lambda r: json.dumps(r).encode()),
    Property("sweep_manifest", manifests, check_manifest,
             "sweep.json of any shape: its runs, or a one-line LoralabError; the report's reader never raises",
             lambda m: json.dumps(m).encode()),
]}

HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.large_base_example]


def hypothesis_test(prop: Property, max_examples: int, *, wrap: Callable[[Callable], Callable] | None = None,
                    **overrides: Any) -> Callable[[], None]:
    """`prop` as a hypothesis test running `max_examples` examples; `wrap` decorates the check."""
    check = wrap(prop.check) if wrap else prop.check

    def property_body(example):
        check(example)

    property_body.__name__ = property_body.__qualname__ = prop.name
    config = dict(max_examples=max_examples, deadline=None, database=None, suppress_health_check=HEALTH)
    config.update(overrides)
    return settings(**config)(given(prop.strategy)(property_body))
