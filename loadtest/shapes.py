"""Load shapes of a live stream's audience. Load with
`-f loadtest/locustfile.py,loadtest/shapes.py --shape steady|surge|spike`.

Locust runs the first concrete shape class of the locustfiles, so `LiveShape` is the one
it finds and it follows the schedule named by `--shape` (see loadtest/schedules.py).
User counts include the one host.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import LoadTestShape

from loadtest.schedules import schedule


class LiveShape(LoadTestShape):
    """Follows `--shape` with the parameters given on the command line (or web UI)."""

    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        t = self.get_run_time()
        plan = schedule(opts)
        step = plan.at(t)
        if step is not None:
            users, rate = step
            return users + 1, rate  # + the host
        # Stop every user, then end: ending while users run loses the workers' last reports.
        if t < plan.end() + opts.wind_down:
            return 0, 10_000
        return None
