"""The registries of the daily runs over the book (``shared.daily_registry``): dunning's runs and
credit's reviews each run a date once and refuse earlier dates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from services.credit.domain.registry import ReviewOutOfOrder, ReviewRegistry, review_id
from services.dunning.domain.registry import RunOutOfOrder, RunRegistry, run_id
from shared.daily_registry import DailyRegistry

D = date.fromisoformat


@pytest.mark.parametrize(("registry_class", "refusal", "make_id", "id_field", "topic"), [
    (RunRegistry, RunOutOfOrder, run_id, "run_id", "services.dunning.domain.registry:RunRegistry"),
    (ReviewRegistry, ReviewOutOfOrder, review_id, "review_id",
     "services.credit.domain.registry:ReviewRegistry"),
])
def test_a_registry_runs_a_date_once_and_refuses_earlier_dates(
    registry_class: type[DailyRegistry], refusal: type[Exception], make_id: Callable[[date], str],
    id_field: str, topic: str,
) -> None:
    registry = registry_class()
    assert registry.check(D("2025-03-01")) is None
    first = registry.record(D("2025-03-01"), {"customers": 2, "notices": 3})
    assert first == {id_field: make_id(D("2025-03-01")), "as_of": "2025-03-01", "customers": 2, "notices": 3}
    assert registry.check(D("2025-03-01")) == first
    assert registry.record(D("2025-03-01"), {"customers": 0, "notices": 0}) == first
    with pytest.raises(refusal, match="2025-02-28"):
        registry.check(D("2025-02-28"))
    assert registry.check(D("2025-03-02")) is None
    assert make_id(D("2025-03-01")) == make_id(D("2025-03-01")) != make_id(D("2025-03-02"))
    rebuilt = None
    events = registry.collect_events()
    # the events are the service's registry's own (their stored topics name it)
    assert [f"{type(e).__module__}:{type(e).__qualname__}" for e in events] == [
        f"{topic}.Opened", f"{topic}.{'RunRecorded' if registry_class is RunRegistry else 'ReviewRecorded'}"]
    for stored in events:
        rebuilt = stored.mutate(rebuilt)
    assert isinstance(rebuilt, registry_class) and rebuilt.recorded == registry.recorded
