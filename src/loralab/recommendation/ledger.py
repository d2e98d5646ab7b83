"""What a search has spent: one JSON line per probe, pilot and final run, and per session of the search itself.

A resumed search reads the ledger back and so knows what it already spent; the budget, the final
run's reserve and each pilot's expected cost are all read from it.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

Clock = Callable[[], tuple[float, float]]
"""(wall seconds, CPU seconds) now; a test passes a fake one."""


def real_clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class Ledger:
    """What each probe, pilot and final run cost, one JSON line per run folder (relative to the
    search's folder, so the folder may move), so that a resumed search knows what it already spent.

    Costs are kept on two clocks: wall seconds, and the process's CPU seconds (`time.process_time`),
    which a CPU shared with other jobs does not inflate; `clock` says which one the budget counts.
    """

    def __init__(self, path: Path, clock: str = "wall", start: tuple[float, float] | None = None,
                 now: Clock = real_clock):
        self.path, self.clock, self.now = path, clock, now
        self.entries: dict[str, dict[str, Any]] = {}
        # What this process spends outside the runs (the study, the sampler, counting parameters) is
        # charged too, as one entry per session, rewritten by `settle`.
        self.session = f"search:{time.time_ns()}"
        self.start, self.logged = start or now(), [0.0, 0.0]
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by a kill: its run is redone or re-read
                        continue
                    self.entries[entry["folder"]] = entry

    def key(self, folder: Path) -> str:
        return folder.relative_to(self.path.parent).as_posix()

    def add(self, key: str, kind: str, *, wall: float, cpu: float, train_wall: float = 0.0, steps: int = 0,
            candidate: str | None = None, step_wall: float | None = None) -> None:
        entry = {"folder": key, "kind": kind, "candidate": candidate, "seconds": round(wall, 3),
                 "cpu_seconds": round(cpu, 3), "train_seconds": round(train_wall, 3), "steps": steps}
        if step_wall:
            entry["step_seconds"] = round(step_wall, 5)
        self.entries[key] = entry
        if kind != "search":
            self.logged[0] += wall
            self.logged[1] += cpu
        with open(self.path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def settle(self) -> None:
        """Charge what this process spent outside the runs since it started."""
        wall, cpu = self.now()
        wall, cpu = wall - self.start[0] - self.logged[0], cpu - self.start[1] - self.logged[1]
        self.add(self.session, "search", wall=max(0.0, wall), cpu=max(0.0, cpu))

    def cost(self, entry: dict[str, Any]) -> float:
        return float(entry["cpu_seconds" if self.clock == "cpu" else "seconds"])

    def spent(self, kind: str | None = None) -> float:
        return sum(self.cost(e) for e in self.entries.values() if kind is None or e["kind"] == kind)

    def _training_share(self, entry: dict[str, Any]) -> float:
        """The share of a run's cost that went into its training steps, by wall time."""
        return min(1.0, entry["train_seconds"] / entry["seconds"]) if entry["seconds"] > 0 else 0.0

    def _per_step(self, entry: dict[str, Any]) -> float:
        """A run's cost per optimizer step on the budget's clock: its median step (the first step's
        warm-up is a one-off, counted as overhead) where the run recorded one, else its mean step."""
        if entry.get("step_seconds") and entry["seconds"] > 0:
            return entry["step_seconds"] * self.cost(entry) / entry["seconds"]
        return self.cost(entry) * self._training_share(entry) / entry["steps"]

    def step_cost(self, candidate: str) -> float | None:
        """A candidate's median cost per optimizer step, on the budget's clock."""
        values = [self._per_step(e) for e in self.entries.values() if e.get("candidate") == candidate and e.get("steps")]
        return statistics.median(values) if values else None

    def overhead(self, kind: str) -> float | None:
        """The largest cost a run of this kind spent outside its steady training steps (loading, the
        first step's warm-up, scoring)."""
        values = [max(0.0, self.cost(e) - (self._per_step(e) * e["steps"] if e.get("steps") else 0.0))
                  for e in self.entries.values() if e["kind"] == kind]
        return max(values) if values else None
