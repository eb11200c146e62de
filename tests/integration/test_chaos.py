"""Short runs of every `streamrec chaos` scenario against the real broker, each judged by the oracle."""

from __future__ import annotations

import pytest

from serving.artifact import resolve_version
from streams.tools.chaos.harness import Setup
from streams.tools.chaos.scenarios import SCENARIOS, run_scenario

pytestmark = pytest.mark.kafka

# A worker that crashed must be serving again well before the 60 s the consumer group used to wait; a loose
# bound (the chaos table reports the measured seconds) so a slow CI machine does not make this flaky.
RECOVERY_BOUND_S = 30.0


@pytest.fixture(scope="module")
def setup(kafka, model_root, tmp_path_factory) -> Setup:
    return Setup(
        kafka,
        resolve_version(model_root),
        tmp_path_factory.mktemp("chaos"),
        users=60,
        events_per_user=20,
        rate=150.0,
        hostile=600,
        local_broker=True,
        timeout=120.0,
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_loses_nothing_and_applies_nothing_twice(setup, name):
    row = run_scenario(name, setup)
    verdict = row.verdict
    detail = f"{row.scenario}: {verdict}\n" + "\n".join(row.notes)
    assert verdict.events == setup.users * setup.events_per_user, detail
    assert (verdict.lost, verdict.applied_twice, verdict.wrong_sequences) == (0, 0, 0), detail
    assert (verdict.unanswered, verdict.history_in_list, verdict.stale_records) == (0, 0, 0), detail
    assert row.exits == 0, detail
    if name == "hostile":
        assert verdict.dead_letters == setup.hostile and verdict.hostile_missed == 0, detail
        assert verdict.bytes_mismatch == 0 and verdict.metric_mismatch == 0, detail
    else:
        assert verdict.dead_letters == 0, detail
    assert row.recovery_s == [] if name == "hostile" else row.recovery_s, detail
    assert all(seconds < RECOVERY_BOUND_S for seconds in row.recovery_s), detail
    assert row.ok
