"""One error type (domain/errors.py) and one table from its codes to HTTP statuses
(live/errors.py): every code the service can raise must be in that table, or an HTTP
client would get a made-up status for it."""

from __future__ import annotations

import re
from pathlib import Path

from domain.errors import DomainError
from inventory.groups import GroupError
from inventory.guard import StreamRecovering
from inventory.referrals import ReferralError
from inventory.refunds import RefundError
from inventory.reservations import ReservationError
from inventory.sales import SaleError
from live.errors import STATUS

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("live", "realtime", "inventory", "orders", "domain")
RAISED = re.compile(
    r"\b(?:Domain|Hub|Reservation|Group|Referral|Refund|Sale)Error\(\s*\"([a-z_]+)\""
)


def test_every_code_raised_in_the_source_has_an_http_status() -> None:
    raised: dict[str, str] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for code in RAISED.findall(path.read_text()):
                raised.setdefault(code, str(path.relative_to(ROOT)))
    assert len(raised) > 20  # the pattern still finds the raise sites
    missing = {code: where for code, where in raised.items() if code not in STATUS}
    assert not missing, missing


def test_every_worded_code_of_the_inventory_errors_has_an_http_status() -> None:
    for kind in (ReservationError, GroupError, ReferralError, RefundError, SaleError):
        assert issubclass(kind, DomainError)
        missing = set(kind.details) - set(STATUS)
        assert not missing, (kind.__name__, missing)


def test_an_error_words_itself_from_its_kind_and_keeps_a_given_detail() -> None:
    assert ReservationError("sold_out").detail == "not enough stock left"
    assert GroupError("not_found").detail == "no such group"
    assert RefundError("not_found").detail == "no such order in this stream"
    assert DomainError("stream_ended", "over at 9").detail == "over at 9"
    assert DomainError("some_new_code").detail == "some new code"
    recovering = StreamRecovering("s_1")
    assert (recovering.code, STATUS[recovering.code]) == ("stream_recovering", 503)
    assert recovering.retry_after is not None
