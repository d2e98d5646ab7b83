"""Cost as work grows: step time and peak memory against sequence length, batch size and model size.

For each model (MiniLM, MPNet-base, SmolLM2-135M) and method (full, LoRA, QLoRA), a training step
(loralab's: packed forward, the task's loss, backward, clipping, AdamW) is measured on batches of
exactly `length` tokens per sequence (real questions' tokens, repeated to fill the length; every
token real, so the packed forward does all of them):

- along sequence length (`--lengths`, 32 .. 256) at batch `--length-batch` questions,
- along batch size (`--batch-sizes`, 1 .. 8 questions) at length `--batch-length`.

Step time: one process per model, every (method, point) stepped in turn, round after round (the first
round is warm-up), so the noise of a shared machine falls on every point alike; medians of the rest.
On CPU a step is timed by the process's CPU seconds (with --threads 1: the step's work; a loaded
machine can make its wall time many times that), on CUDA by wall seconds; the wall medians are kept too.
Peak memory: one fresh process per (model, method, point) (`loralab.training.PeakMemory`: the
process's RSS high-water mark, reset before the steps; CUDA's max allocated), as benchmarks/memory.py;
'added' = peak minus the memory held before the first step. That child's first step is also what a
one-step probe (as `loralab recommend` runs) would have seen.

Each curve is fitted as y = a * x^b in log space (`loralab.recommendation.cost.fit_power`); the
largest point of each axis is held out of the fit and predicted (extrapolation), and each interior
point is predicted by the fit on the others (interpolation). Target: within 15%.

    python benchmarks/cost.py --quick --threads 1          # MiniLM full and LoRA, a few minutes
    python benchmarks/cost.py --threads 1                  # every model and method (about an hour of CPU, estimated)
    python benchmarks/cost.py --threads 1 --lengths 64,128,256,512,1024 --batch-sizes 1,2,4,8,16,32 \
        --length-batch 4 --batch-length 128            # the wide grid: tens of GB on a GPU-less machine

The quick subset took about 4 CPU minutes (MiniLM, full and LoRA: 62 s of interleaved steps, the rest
loading the model in 14 fresh processes); MPNet's and SmolLM2's steps cost 5 to 10 times MiniLM's, so
run the whole set per model (--models) where time is short. MiniLM's full fine-tuning at 4 x 512 tokens
already peaks near 6 GB of RSS, hence the small default axes. The committed quick run was measured in
two parallel processes and analysed together:

    python benchmarks/cost.py --quick --threads 1 --no-memory --name cost-time --results /tmp/parts
    python benchmarks/cost.py --quick --threads 1 --no-time --name cost-memory --results /tmp/parts
    python benchmarks/cost.py --quick --threads 1 --reuse /tmp/parts/cost-time.json /tmp/parts/cost-memory.json
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from loralab.recommendation.cost import (fit_polynomial, fit_power, held_out, held_out_polynomial,  # noqa: E402
                                          relative_error, scale)

MODELS = ("minilm", "mpnet", "smollm2")
METHODS = ("full", "lora", "qlora")
# Small enough for a loaded 2-core machine with little memory (4 x 512 tokens of MiniLM full fine-tuning
# already peaks near 6 GB); the held-out points are still 2x beyond the largest fitted one.
QUICK = {"models": "minilm", "methods": "full,lora", "lengths": "32,64,128,256", "batch_sizes": "1,2,4,8",
         "length_batch": 2, "batch_length": 64}


def _task(model: str):
    if model == "smollm2":  # a decoder: multiple choice by letter, as `loralab train` scores it
        from loralab.tasks.decoder_choice import LETTER

        return LETTER
    from loralab.tasks.multiple_choice import TASK

    return TASK


def _base(args, model: str):
    from loralab.models import load_model, load_tokenizer, pad_token_id
    from loralab.tasks.multiple_choice import read_questions

    task = _task(model)
    tokenizer = load_tokenizer(model)
    questions = read_questions(args.data, limit=max(_ints(args.batch_sizes) + [args.length_batch]))
    items = task.encode(questions, tokenizer, max(_ints(args.lengths) + [args.batch_length]))
    base = load_model(model, model_class=task.model_class, seed=args.seed)
    return task, base, items, pad_token_id(tokenizer)


def _batch(task, items, pad: int, batch: int, length: int) -> dict:
    """`batch` questions whose every sequence is exactly `length` real tokens (its own, repeated).

    Padding would be skipped by the packed forward, so every position holds a real token."""
    out = task.collate(items[:batch], pad)
    mask = out["attention_mask"].bool()
    seq = mask.shape[-1]
    for key in ("input_ids", "token_type_ids"):
        if key not in out:
            continue
        rows, real = out[key].reshape(-1, seq), mask.reshape(-1, seq)
        filled = [row[keep].repeat(length // max(1, int(keep.sum())) + 1)[:length] for row, keep in zip(rows, real)]
        out[key] = torch.stack(filled).reshape(*mask.shape[:-1], length)
    out["attention_mask"] = torch.ones(*mask.shape[:-1], length, dtype=torch.long)
    return out


def _build(base, model: str, method: str):
    if model != "smollm2":
        return common.build(base, method)
    import copy

    from loralab.strategies import StrategyConfig, apply_strategy
    from loralab.strategies.lora import LoraConfig

    built = copy.deepcopy(base)
    how = "lora" if method == "qlora" else method
    apply_strategy(built, StrategyConfig(how, lora=LoraConfig(r=8, alpha=16.0, targets=("all-linear",))))
    if method == "qlora":
        from loralab.models.quantize import QuantizeConfig, quantize_model

        quantize_model(built, QuantizeConfig(**common.QUANTIZE))
    return built


class Stepper:
    """One method's model and optimizer; `step` is loralab's training step on one batch."""

    def __init__(self, model, task, device):
        from loralab.training.optimizer import adamw

        self.model, self.task, self.device = model.to(device).train(), task, device
        self.optimizer = adamw(model, 1e-5, 0.0)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def step(self, batch: dict) -> tuple[float, float]:
        """(seconds on the step's clock, wall seconds). On CPU the clock is this process's CPU time: with one
        torch thread it is the step's work, which a CPU shared with other jobs does not inflate (their
        load can make wall time many times the work); on CUDA it is wall time."""
        cpu, start = time.process_time(), common.sync(self.device)
        loss = self.task.loss(self.model, {k: v.to(self.device) for k, v in batch.items()}, True)
        loss.backward()
        loss.item()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        wall = common.sync(self.device) - start
        return (wall if self.device.type == "cuda" else time.process_time() - cpu), wall


def _ints(text: str) -> list[int]:
    return [int(v) for v in str(text).split(",") if v.strip()]


def _points(args) -> list[tuple[int, int]]:
    """(batch, length) points: the length axis at --length-batch, then the batch axis at --batch-length."""
    points = [(args.length_batch, n) for n in _ints(args.lengths)]
    return points + [(b, args.batch_length) for b in _ints(args.batch_sizes) if (b, args.batch_length) not in points]


def times(args, model: str, methods: list[str], device) -> dict:
    """Median step seconds per method and point, interleaved within this process."""
    task, base, items, pad = _base(args, model)
    points = _points(args)
    batches = {p: _batch(task, items, pad, *p) for p in points}
    steppers = {m: Stepper(_build(base, model, m), task, device) for m in methods}
    del base
    seen = {(m, p): [] for m in methods for p in points}
    for round_ in range(args.rounds):
        for i, p in enumerate(points):
            order = methods[i % len(methods):] + methods[:i % len(methods)]  # rotate who goes first
            for m in order:
                seen[m, p].append(steppers[m].step(batches[p]))
        print(f"{model} round {round_ + 1}/{args.rounds}", file=sys.stderr)
    return {m: {f"{b}x{n}": {"batch": b, "length": n, "median_s": common.median([c for c, _ in seen[m, (b, n)][1:]]),
                             "median_wall_s": common.median([w for _, w in seen[m, (b, n)][1:]]),
                             "steps_s": [round(c, 4) for c, _ in seen[m, (b, n)]]} for b, n in points} for m in methods}


def child(args, model: str, method: str, batch: int, length: int) -> dict:
    """Peak memory of two steps at one point, in this (fresh) process; and the first step's seconds."""
    from loralab.heap import release_heap
    from loralab.training import PeakMemory

    device = common.setup(args)
    task, base, items, pad = _base(args, model)
    data = _batch(task, items, pad, batch, length)
    stepper = Stepper(_build(base, model, method), task, device)
    del base
    release_heap(collect=True)
    before = _current_mb(device)
    with PeakMemory(device) as peak:
        seconds = [stepper.step(data) for _ in range(2)]
    return {"peak_mb": peak.peak_mb, "before_mb": before, "added_mb": peak.peak_mb - before,
            "first_step_s": seconds[0][0], "trainable_params": sum(p.numel() for p in stepper.params),
            "total_params": sum(p.numel() for p in stepper.model.parameters())}


def _current_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def memory(args, forwarded: list[str], model: str, methods: list[str]) -> dict:
    out = {}
    for m in methods:
        out[m] = {}
        for b, n in _points(args):
            done = subprocess.run([sys.executable, __file__, *forwarded, "--child", f"{model}:{m}:{b}:{n}"],
                                  capture_output=True, text=True, check=True)
            out[m][f"{b}x{n}"] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{model} {m} {b}x{n}: {out[m][f'{b}x{n}']['peak_mb']:.0f} MB", file=sys.stderr)
    return out


def _axis(points: dict, axis: str, fixed: int, key: str) -> tuple[list[int], list[float]]:
    other = "length" if axis == "batch" else "batch"
    rows = sorted((p[axis], p[key]) for p in points.values() if p[other] == fixed)
    return [x for x, _ in rows], [y for _, y in rows]


def curves(xs: list[int], ys: list[float]) -> dict:
    """The fit over all points, the largest held out (extrapolated), and each interior one held out."""
    if len(xs) < 3:
        return {"x": xs, "y": ys}
    a, b = fit_power(xs, ys)
    last = held_out(xs, ys, len(xs) - 1)
    inner = [held_out(xs, ys, i) for i in range(1, len(xs) - 1)]
    return {"x": xs, "y": [round(y, 5) for y in ys], "a": a, "exponent": round(b, 4),
            "held_out": {"x": last["x"], "fit_on": xs[:-1], "exponent": round(last["b"], 4),
                         "predicted": round(last["predicted"], 5), "actual": round(last["actual"], 5),
                         "error": round(last["error"], 4)},
            "interior_errors": {str(h["x"]): round(h["error"], 4) for h in inner},
            "affine": _fitted(xs, ys, 1), **({"quadratic": _fitted(xs, ys, 2)} if len(xs) >= 4 else {})}


ROUNDING = {1: (5, 7), 2: (5, 8, 11)}  # digits kept of each coefficient, by degree


def _fitted(xs: list[int], ys: list[float], degree: int) -> dict:
    """The same held-out predictions by a polynomial of `degree` (least squares): 1, the affine fit (a cost
    that does not grow with the work plus one that does); 2, the quadratic (four points or more: each
    prediction is fitted on three or more)."""
    names = ("fixed", "per_unit", "per_square")
    coefficients = fit_polynomial(xs, ys, degree)
    last = held_out_polynomial(xs, ys, len(xs) - 1, degree)
    inner = [held_out_polynomial(xs, ys, i, degree) for i in range(1, len(xs) - 1)]
    return {**{names[k]: round(c, digits) for k, (c, digits) in enumerate(zip(coefficients, ROUNDING[degree]))},
            "held_out": {"x": last["x"], "predicted": round(last["predicted"], 5), "error": round(last["error"], 4)},
            "interior_errors": {str(h["x"]): round(h["error"], 4) for h in inner}}


def analyse(args, timed: dict, mem: dict) -> dict:
    """Per model and method: time and added-memory curves along both axes, and fit against probe."""
    out = {}
    for model in timed:
        for method in timed[model]:
            merged = {k: {**v, **mem.get(model, {}).get(method, {}).get(k, {})} for k, v in timed[model][method].items()}
            entry = {}
            for axis, fixed in (("length", args.length_batch), ("batch", args.batch_length)):
                entry[f"time_{axis}"] = curves(*_axis(merged, axis, fixed, "median_s"))
                if mem.get(model):
                    entry[f"memory_{axis}"] = curves(*_axis(merged, axis, fixed, "added_mb"))
            if mem.get(model):
                entry["fit_vs_probe"] = _fit_vs_probe(merged, entry, args)
            out[f"{model}/{method}"] = entry
    return out


def _fit_vs_probe(points: dict, entry: dict, args) -> dict:
    """Two questions a search asks of one measured step, answered by the probe alone and by the fit.

    Peak memory of a run whose longest batch is the largest length, from a probe that saw
    --batch-length tokens (the probe's own peak, or it scaled by the held-out exponent); step time at
    every point, from a fresh process's one step there (the probe) or from the median at
    --batch-length scaled by the exponent fitted without the point.
    """
    b0, n0 = args.length_batch, args.batch_length
    ref = points.get(f"{b0}x{n0}")
    result = {}
    top = max(p["length"] for p in points.values() if p["batch"] == b0)
    target = points[f"{b0}x{top}"]
    if ref and top != n0:
        exponent = entry["memory_length"]["held_out"]["exponent"]
        fitted = ref["before_mb"] + scale(ref["added_mb"], n0, top, exponent)
        result["peak_at_longest"] = {"probe_at": f"{b0}x{n0}", "target": f"{b0}x{top}", "actual_mb": target["peak_mb"],
                                     "probe_error": round(relative_error(ref["peak_mb"], target["peak_mb"]), 4),
                                     "fit_error": round(relative_error(fitted, target["peak_mb"]), 4)}
    rows = {}
    for key, p in points.items():
        if key == f"{b0}x{n0}" or "first_step_s" not in p:
            continue
        axis = "length" if p["batch"] == b0 else "batch"
        xs, ys = _axis(points, axis, b0 if axis == "length" else n0, "median_s")
        keep = [i for i, x in enumerate(xs) if x != p[axis]]
        _, b = fit_power([xs[i] for i in keep], [ys[i] for i in keep])
        fitted = scale(ref["median_s"], n0 if axis == "length" else b0, p[axis], b)
        rows[key] = {"actual_s": round(p["median_s"], 4), "probe_error": round(relative_error(p["first_step_s"], p["median_s"]), 4),
                     "fit_error": round(relative_error(fitted, p["median_s"]), 4)}
    result["step_time"] = rows
    if rows:
        result["step_time_median_abs_error"] = {
            "probe": round(common.median([abs(r["probe_error"]) for r in rows.values()]), 4),
            "fit": round(common.median([abs(r["fit_error"]) for r in rows.values()]), 4)}
    return result


def _size(timed: dict, mem: dict, args) -> dict:
    """Step time against parameter count across models, per method, at --length-batch x --batch-length."""
    key, out = f"{args.length_batch}x{args.batch_length}", {}
    for method in {m for model in timed for m in timed[model]}:
        rows = [(mem[model][method][key]["total_params"], timed[model][method][key]["median_s"])
                for model in timed if method in timed[model] and key in mem.get(model, {}).get(method, {})]
        if len(rows) >= 2:
            rows.sort()
            out[method] = {"params": [r[0] for r in rows], "median_s": [r[1] for r in rows],
                           "exponent": round(fit_power(*zip(*rows))[1], 4)}
    return out


def _within(fits: dict, limit: float = 0.15) -> str:
    """One line: how many held-out predictions each fit gets within `limit`."""
    curves = [c for entry in fits.values() for c in entry.values() if "exponent" in c and "affine" in c]
    if not curves:
        return ""
    def count(errors):
        return f"{sum(abs(e) <= limit for e in errors)} of {len(errors)}"
    power_last = [c["held_out"]["error"] for c in curves]
    affine_last = [c["affine"]["held_out"]["error"] for c in curves]
    power_inner = [e for c in curves for e in c["interior_errors"].values()]
    affine_inner = [e for c in curves for e in c["affine"]["interior_errors"].values()]
    line = (f"Within {limit:.0%}: the largest point (extrapolated) {count(power_last)} by the power law, "
            f"{count(affine_last)} by the affine fit; the inner points (interpolated) {count(power_inner)} by the "
            f"power law, {count(affine_inner)} by the affine fit.")
    quadratic = [c["quadratic"] for c in curves if "quadratic" in c]
    if quadratic:
        line += (f" The quadratic fit: the largest point {count([q['held_out']['error'] for q in quadratic])}, the "
                 f"inner points {count([e for q in quadratic for e in q['interior_errors'].values()])}.")
        by_axis = [(name, c.get("quadratic") if name.endswith("_length") else c["affine"])
                   for entry in fits.values() for name, c in entry.items() if "exponent" in c and "affine" in c]
        if all(f is not None for _, f in by_axis):  # each axis by the form its work takes
            line += (f" Each axis by the form its work takes (quadratic along length: attention's pairs; affine along "
                     f"batch): the largest point {count([f['held_out']['error'] for _, f in by_axis])}, the inner "
                     f"points {count([e for _, f in by_axis for e in f['interior_errors'].values()])}.")
    return line


def markdown(record: dict, partial: bool) -> str:
    rows = []
    for name, entry in record["fits"].items():
        for curve, c in entry.items():
            if "exponent" in c:
                affine = c.get("affine")
                rows.append([name, curve, c["exponent"], f"{c['held_out']['x']} (fit on {c['held_out']['fit_on']})",
                             f"{100 * c['held_out']['error']:+.1f}%",
                             ", ".join(f"{k}: {100 * v:+.1f}%" for k, v in c["interior_errors"].items()),
                             f"{100 * affine['held_out']['error']:+.1f}%" if affine else "",
                             ", ".join(f"{k}: {100 * v:+.1f}%" for k, v in affine["interior_errors"].items())
                             if affine else "",
                             f"{100 * c['quadratic']['held_out']['error']:+.1f}%" if "quadratic" in c else ""])
    counts = _within(record["fits"])
    probe = []
    for name, entry in record["fits"].items():
        fp = entry.get("fit_vs_probe", {})
        if "peak_at_longest" in fp:
            q = fp["peak_at_longest"]
            probe.append([name, f"peak at {q['target']} from {q['probe_at']}", f"{100 * q['probe_error']:+.1f}%",
                          f"{100 * q['fit_error']:+.1f}%"])
        if "step_time_median_abs_error" in fp:
            q = fp["step_time_median_abs_error"]
            probe.append([name, "step time, median absolute error over points", f"{100 * q['probe']:.1f}%",
                          f"{100 * q['fit']:.1f}%"])
    size = [[m, s["params"], [round(t, 3) for t in s["median_s"]], s["exponent"]] for m, s in record["size"].items()]
    parts = [f"# Cost as work grows{' (PARTIAL: not every model and method)' if partial else ''}", f"`{record['command']}`",
             *([" measured by: " + "; ".join(f"`{c}`" for c in record["measured_by"])] if record["measured_by"] else []),
             "## Machine\n" + common.machine_lines(record["machine"]),
             "Step time: medians of interleaved steps in one process (first round dropped; CPU seconds of the process on CPU, "
             "wall seconds on CUDA). Memory: 'added' MB "
             "(peak RSS minus the memory held before the first step), one fresh process per point. Fit: "
             "y = a x^b in log space. Held out: the largest point, predicted by the fit on the others "
             "(extrapolation); interior: each inner point predicted by the fit on the rest. Affine: the same "
             "predictions by y = fixed + per_unit x (least squares), a cost that does not grow with the work "
             "plus one that does. Quadratic (curves of four points or more): y = fixed + per_unit x + per_square x^2, "
             "the square being attention's work per pair of tokens along the length.",
             counts,
             common.table(["model/method", "curve", "exponent b", "held out", "error", "interior errors",
                           "affine: held-out error", "affine: interior errors", "quadratic: held-out error"], rows),
             "## Fit against a one-step probe\nMemory: the run's peak at the longest length, from a probe at the "
             "shorter length (the probe's own peak, or scaled by the exponent). Step time: a fresh process's one "
             "step at the point (the probe) against the median at the reference point scaled by the exponent "
             "fitted without the point.",
             common.table(["model/method", "estimate", "probe error", "fit error"], probe)]
    if size:
        parts.append("## Model size\n" + common.table(["method", "parameters", "median step s", "exponent"], size))
    return "\n\n".join(parts) + "\n"


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "cost")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list from {', '.join(MODELS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {', '.join(METHODS)}")
    p.add_argument("--lengths", default="32,64,128,256", help="sequence lengths of the length axis")
    p.add_argument("--batch-sizes", default="1,2,4,8", help="batch sizes (questions) of the batch axis")
    p.add_argument("--length-batch", type=int, default=2, help="batch size along the length axis")
    p.add_argument("--batch-length", type=int, default=64, help="sequence length along the batch axis")
    p.add_argument("--no-memory", action="store_true", help="step time only (no fresh processes)")
    p.add_argument("--no-time", action="store_true", help="peak memory only (no interleaved timing)")
    p.add_argument("--reuse", nargs="*", default=[], metavar="JSON",
                   help="earlier cost.json files whose step times and memory are taken instead of measured (one run per model, "
                        "or per method, or times and memory apart) "
                        "(split a run: one --no-memory, one --no-time, in parallel; then --reuse both)")
    p.add_argument("--quick", action="store_true", help=f"a small subset: {QUICK}")
    p.add_argument("--child", help=argparse_hidden())
    p.set_defaults(rounds=4)
    args = p.parse_args(argv)
    forwarded = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        for k, v in QUICK.items():
            if f"--{k.replace('_', '-')}" not in forwarded:
                setattr(args, k, v)
    if args.child:
        model, method, b, n = args.child.split(":")
        print(json.dumps(child(args, model, method, int(b), int(n))))
        return None
    device = common.setup(args)
    models, methods = [m for m in args.models.split(",") if m], [m for m in args.methods.split(",") if m]
    for name, chosen, known in (("models", models, MODELS), ("methods", methods, METHODS)):
        if set(chosen) - set(known):
            p.error(f"unknown {name} {sorted(set(chosen) - set(known))}; choose from {', '.join(known)}")
    start = time.process_time()
    reused = [json.loads(Path(f).read_text()) for f in args.reuse]
    old_times, old_memory = {}, {}
    for r in reused:  # step times and memory may come from several runs: one per model, or per method
        for model, methods_ in (r.get("step_times") or {}).items():
            old_times.setdefault(model, {}).update(methods_)
        for model, methods_ in r.get("memory", {}).items():
            old_memory.setdefault(model, {}).update(methods_)
    timed = old_times or ({} if args.no_time else {model: times(args, model, methods, device) for model in models})
    mem = old_memory or ({} if args.no_memory else {model: memory(args, forwarded, model, methods) for model in models})
    measured = set(timed or mem or models)  # reused runs: the models they hold
    partial = args.quick or measured != set(MODELS) or set(methods) != set(METHODS)
    record = {"benchmark": "cost", "command": "python benchmarks/cost.py " + " ".join(forwarded),
              "measured_by": [r["command"] for r in reused], "machine": common.machine(device), "partial": partial,
              "models": models, "methods": methods,
              "lengths": _ints(args.lengths), "batch_sizes": _ints(args.batch_sizes), "length_batch": args.length_batch,
              "batch_length": args.batch_length, "rounds": args.rounds,
              "measure": "max allocated (CUDA)" if device.type == "cuda" else "peak RSS",
              "parent_cpu_seconds": round(time.process_time() - start, 1),
              "fits": analyse(args, timed, mem) if timed else {}, "size": _size(timed, mem, args) if mem and timed else {},
              "step_times": timed, "memory": mem}
    common.write(args.name, record, markdown(record, partial), args.no_write, args.results)
    return record


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
