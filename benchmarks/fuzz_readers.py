"""Fuzz loralab's input readers: every property of tests/properties.py, with many examples each.

    python benchmarks/fuzz_readers.py --examples 2000
    python benchmarks/fuzz_readers.py --examples 500 --only class_arbitrary_bytes class_mutations class_round_trip

The readers: multiple-choice questions, tables, experiment files, classification/regression
files (read_examples and infer_task on GLUE-like TSV/CSV: SST-2, RTE, MRPC, CoLA, STS-B, QNLI),
JSON Lines of prompts and completions (plain and chat), and run.json and sweep.json records.

Unlike the test suite, a failure does not end a property: hypothesis shrinks it to a minimal example,
and the property runs again tolerating it, until a round of --examples examples finds no new kind of
failure (a kind: the exception type and the loralab line it came from, or the promise broken).
Prints a JSON object {"machine", "examples": {property: examples in its last, complete round},
"calls": {property: examples run in all rounds, shrinking included}, "failures": [...], "seconds"}
and writes it to benchmarks/results/fuzz-readers.json; exits 1 when a property failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "tests"))  # tests/properties.py
sys.path.insert(0, str(ROOT / "src"))  # this checkout's loralab, installed or not

import common  # noqa: E402  (benchmarks/common.py: the machine description)
import hypothesis  # noqa: E402
import torch  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

import properties  # noqa: E402

LONG = 3000  # characters of an example or a file kept in the report


def machine() -> dict[str, Any]:
    return {**common.machine(torch.device("cpu")), "platform": platform.platform(), "hypothesis": hypothesis.__version__}


def signature(error: BaseException) -> str:
    """What tells one bug from another: the exception type and where it was raised, in loralab if the
    traceback passes through it; a broken promise by the check that noticed it."""
    frames = traceback.extract_tb(error.__traceback__)
    if isinstance(error, properties.PropertyFailure):
        frames = [f for f in frames if f.name != "require"]
    else:
        frames = [f for f in frames if f"{os.sep}loralab{os.sep}" in f.filename] or frames
    if not frames:
        return type(error).__name__
    last = frames[-1]
    where = os.path.relpath(last.filename, ROOT) if last.filename.startswith(str(ROOT)) else last.filename
    return f"{type(error).__name__} at {where}:{last.lineno} ({last.name})"


def _clip(text: str) -> str:
    return text if len(text) <= LONG else f"{text[:LONG]}... ({len(text)} characters)"


def _record(prop: properties.Property, example: Any, error: BaseException) -> dict[str, Any]:
    try:
        data = prop.render(example) if prop.render else example
    except Exception as e:  # a renderer that fails is reported, not fatal
        data = f"<cannot render: {e!r}>"
    return {
        "property": prop.name,
        "signature": signature(error),
        "exception": type(error).__name__,
        "message": _clip(str(error)),
        "example": _clip(repr(example)),
        "file": _clip(repr(data)),
        "file_size": len(data) if isinstance(data, (bytes, str)) else None,
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)[-12:]),
    }


def run_property(prop: properties.Property, examples: int, seed: int | None,
                 max_bugs: int = 10) -> tuple[int, int, list[dict], float]:
    """Run `prop` until a round of `examples` examples finds nothing new.

    Each round tolerates the failures found so far; a new one stops the round, and hypothesis
    shrinks it to a minimal example (the last failing example it runs: it replays the minimal one to
    report it). Returns (examples in the last, complete round, calls in all rounds, failures, seconds).
    """
    known: dict[str, dict[str, Any]] = {}
    calls = 0
    start = time.perf_counter()
    while True:
        count = 0
        new: dict[str, Any] = {}

        def tolerant(check):
            def body(example):
                nonlocal count, calls
                count += 1
                calls += 1
                try:
                    check(example)
                except Exception as e:  # noqa: BLE001 - every exception is a finding
                    sig = signature(e)
                    if sig in known or new.setdefault("signature", sig) != sig:
                        return  # found before, or not this round's: look for something else
                    new["record"] = _record(prop, example, e)  # the last one is the shrunk one
                    raise
            return body

        test = properties.hypothesis_test(prop, examples, wrap=tolerant, report_multiple_bugs=False)
        if seed is not None:
            test = hypothesis_seed(seed)(test)
        try:
            test()
        except Exception as e:  # noqa: BLE001
            if "record" not in new:  # hypothesis itself gave up (a health check, a flaky test, ...)
                known[f"hypothesis: {type(e).__name__}"] = {
                    "property": prop.name, "signature": f"hypothesis: {type(e).__name__}",
                    "exception": type(e).__name__, "message": _clip(str(e))}
                break
            known[new["signature"]] = new["record"]
            if len(known) < max_bugs:
                continue
        break
    return count, calls, list(known.values()), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--examples", type=int, default=2000, help="examples per property")
    p.add_argument("--only", nargs="*", choices=sorted(properties.PROPERTIES), help="run only these properties")
    p.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    p.add_argument("--out", type=Path, default=RESULTS / "fuzz-readers.json", help="result file")
    p.add_argument("--no-write", action="store_true", help="print the JSON only")
    args = p.parse_args(argv)

    start = time.perf_counter()
    counts: dict[str, int] = {}
    calls: dict[str, int] = {}
    seconds: dict[str, float] = {}
    failures: list[dict] = []
    for name in args.only or list(properties.PROPERTIES):
        with contextlib.redirect_stdout(sys.stderr):  # hypothesis's notes: stdout is the JSON's alone
            count, total, found, took = run_property(properties.PROPERTIES[name], args.examples, args.seed)
        counts[name], calls[name], seconds[name] = count, total, round(took, 2)
        failures.extend(found)
        print(f"{name}: {count} examples, {len(found)} distinct failure(s), {took:.1f} s", file=sys.stderr)
    result = {
        "machine": machine(),
        "max_examples": args.examples,
        "seed": args.seed,
        "examples": counts,
        "calls": calls,
        "property_seconds": seconds,
        "failures": failures,
        "seconds": round(time.perf_counter() - start, 2),
    }
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if not args.no_write:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
