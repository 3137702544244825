"""What Locust runs: `locust -f loadtest/locustfile.py --host http://127.0.0.1:8000`.

Add load shapes with `-f loadtest/locustfile.py,loadtest/shapes.py --shape surge`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Locust puts this file's folder on sys.path; the package lives one level up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from locust import events
from locust.env import Environment

from loadtest import options, shared, social  # noqa: F401  (they register listeners)
from loadtest.buyer import BuyerUser
from loadtest.host import HostUser
from loadtest.social import GroupBuyUser
from loadtest.viewer import ViewerUser

__all__ = ["BuyerUser", "GroupBuyUser", "HostUser", "ViewerUser"]


@events.init.add_listener
def split_audience(environment: Environment, **_: Any) -> None:
    # Weights matter where users are dispatched: the master or the single local process.
    opts = environment.parsed_options
    if opts is not None:
        share = min(1.0, max(0.0, opts.buyer_share))
        groups = min(1.0 - share, max(0.0, opts.group_share))
        BuyerUser.weight = round(share * 1000)
        GroupBuyUser.weight = round(groups * 1000)
        ViewerUser.weight = 1000 - BuyerUser.weight - GroupBuyUser.weight
