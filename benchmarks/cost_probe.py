"""`recommend`'s memory screen on real questions: the one-step probe's peak, and the probe scaled to the
data's largest batch by the fitted exponent (`loralab.recommendation.memory.predicted_peak`),
each against the peak of a real epoch over the same data (the held-out point).

The probe trains on the first batch only; an epoch's length-grouped batches put the longest
questions together, so its peak comes later. Everything runs in one process, as in a search.

    python benchmarks/cost_probe.py --threads 1
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from loralab.recommendation import RecommendConfig, candidates  # noqa: E402
from loralab.recommendation.cost import relative_error  # noqa: E402
from loralab.recommendation.search import _screen, open_search  # noqa: E402
from loralab.runs import run  # noqa: E402
from loralab.runs.config import RunConfig  # noqa: E402
from loralab.strategies import Strategy  # noqa: E402
from loralab.training import TrainConfig  # noqa: E402


def main(argv=None):
    p = common.parser(__doc__.splitlines()[0], "cost-probe")
    p.set_defaults(batch_size=4, max_length=256)
    p.add_argument("--examples", type=int, default=48, help="training questions in the epoch")
    p.add_argument("--strategies", default="lora,full")
    args = p.parse_args(argv)
    device = common.setup(args)
    valid = str(Path(args.data).with_name("valid.csv"))
    base = RunConfig(train=args.data, valid=valid, model=args.model, device="cpu", train_limit=args.examples,
                     valid_limit=4, training=TrainConfig(batch_size=args.batch_size, max_length=args.max_length,
                                                         epochs=1.0, seed=args.seed))
    chosen = tuple(Strategy.parse(s) for s in args.strategies.split(","))
    rows, out = [], {}
    with tempfile.TemporaryDirectory() as folder:
        config = RecommendConfig(base=base, candidates=candidates((args.model,), chosen), budget_seconds=1e9,
                                 memory_mb=1e9, brackets=1)
        search = open_search(config, Path(folder) / "search", log=lambda line: print(line, file=sys.stderr))
        _screen(search)  # every candidate probed, and its probe scaled to the largest batch
        for candidate in config.candidates:
            fit = search.fits[candidate.name]
            low, high = candidate.lr_range
            epoch = dataclasses.replace(candidate.config(base, {"lr": (low * high) ** 0.5}), valid=None)
            record = run(epoch, Path(folder) / candidate.name, progress=False, log=lambda _: None)
            actual = float(record["peak_memory_mb"])
            predicted = fit.predicted_mb if fit.predicted_mb is not None else fit.probe_mb
            out[candidate.name] = {"probe_mb": fit.probe_mb, "predicted_mb": fit.predicted_mb, "epoch_peak_mb": actual,
                                   "probe_error": round(relative_error(fit.probe_mb, actual), 4),
                                   "fit_error": round(relative_error(predicted, actual), 4)}
            rows.append([candidate.name, fit.probe_mb, predicted, actual, f"{100 * out[candidate.name]['probe_error']:+.1f}%",
                         f"{100 * out[candidate.name]['fit_error']:+.1f}%"])
    record = {"benchmark": "cost-probe", "command": "python benchmarks/cost_probe.py " + " ".join(sys.argv[1:]),
              "machine": common.machine(device), "model": args.model, "batch_size": args.batch_size,
              "max_length": args.max_length, "examples": args.examples, "candidates": out}
    markdown = "\n\n".join([
        f"# recommend's memory screen: probe against fit ({args.model}, {args.examples} questions, batch {args.batch_size})",
        f"`{record['command']}`", "## Machine\n" + common.machine_lines(record["machine"]),
        "Probe: the peak of one step on the first batch. Fit: the probe's peak scaled to the data's largest "
        "batch (in tokens) by the exponent of loralab.recommendation.cost. Held out: the peak of a real epoch "
        "(length-grouped batches) in the same process.",
        common.table(["candidate", "probe MB", "fit MB", "epoch peak MB", "probe error", "fit error"], rows)]) + "\n"
    common.write(args.name, record, markdown, args.no_write, args.results)


if __name__ == "__main__":
    main()
