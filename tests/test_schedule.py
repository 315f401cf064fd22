"""The `runs:` grammar: Nango's phrases, ms-style units, the 30 s floor and the round trip."""

import pickle
from datetime import timedelta

import pytest

from orchestrator.config.schedule import MAX_INTERVAL, MIN_INTERVAL, ScheduleError, format_interval, parse_schedule
from orchestrator.errors import OrchestratorError

MIN = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 30min", 30 * MIN),
        ("every 2h", 2 * HOUR),
        ("every 1d", DAY),
        ("every 5m", 5 * MIN),
        ("every 5mins", 5 * MIN),
        ("every 5 minutes", 5 * MIN),
        ("every 6 hours", 6 * HOUR),
        ("every 1h", HOUR),
        ("every 1 hour", HOUR),
        ("every 4 hours", 4 * HOUR),
        ("every half hour", 30 * MIN),
        ("every quarter hour", 15 * MIN),
        ("every half day", 12 * HOUR),
        ("every hour", HOUR),
        ("every day", DAY),
        ("every week", 7 * DAY),
        ("every month", 30 * DAY),
        ("30min", 30 * MIN),
        ("half hour", 30 * MIN),
        ("hour", HOUR),
        ("EVERY  6   Hours", 6 * HOUR),
        ("  every 45 s ", timedelta(seconds=45)),
        ("every 30 seconds", timedelta(seconds=30)),
        ("every 30sec", timedelta(seconds=30)),
        ("every 30 secs", timedelta(seconds=30)),
        ("every 1 minute", MIN),
        ("every 2 min", 2 * MIN),
        ("every 3hr", 3 * HOUR),
        ("every 3 hrs", 3 * HOUR),
        ("every 2 days", 2 * DAY),
        ("every 1w", 7 * DAY),
        ("every 2 weeks", 14 * DAY),
        ("every 1.5h", 90 * MIN),
        ("every 90000ms", 90 * timedelta(seconds=1)),
    ],
)
def test_accepted_forms(text: str, expected: timedelta) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text", ["every 10s", "every 29 seconds", "every 1000ms", "every second", "every 0m"]
)
def test_below_minimum(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    assert "shorter than the 30s minimum" in str(info.value)
    assert "every half hour" in str(info.value)  # the message lists the accepted forms


@pytest.mark.parametrize(
    "text", ["", "every", "every 5 parsecs", "sometimes", "every -5m", "every 5m 3s", "5"]
)
def test_unparseable(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    err = info.value
    assert isinstance(err, OrchestratorError)
    assert err.terminal
    assert str(err).startswith(f"invalid schedule {text!r}: ")
    assert "'every <number> <unit>'" in str(err)


def test_exact_message() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule("every 5 parsecs")
    assert str(info.value).startswith("invalid schedule 'every 5 parsecs': unknown interval; accepted: ")


@pytest.mark.parametrize("text", ["every 9999999 years", "every 11 years", "every 3653 days", f"every 1{'0' * 400}s"])
def test_above_maximum(text: str) -> None:
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    assert str(info.value).startswith(f"invalid schedule {text!r}: longer than the 10-year maximum; accepted: ")


def test_max_interval_is_accepted() -> None:
    assert parse_schedule("every 10 years") == MAX_INTERVAL == parse_schedule(format_interval(MAX_INTERVAL))


def test_min_interval_is_accepted() -> None:
    assert MIN_INTERVAL == timedelta(seconds=30)
    assert parse_schedule("every 30s") == MIN_INTERVAL


def test_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(ScheduleError("every 1s", "too short")))
    assert (err.text, err.reason) == ("every 1s", "too short")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (30 * MIN, "every 30min"),
        (2 * HOUR, "every 2h"),
        (DAY, "every 1d"),
        (7 * DAY, "every 7d"),
        (90 * MIN, "every 90min"),
        (timedelta(seconds=45), "every 45s"),
        (timedelta(seconds=90), "every 90s"),
        (timedelta(seconds=30.5), "every 30.5s"),
    ],
)
def test_format_round_trip(td: timedelta, text: str) -> None:
    assert format_interval(td) == text
    assert parse_schedule(format_interval(td)) == td


def test_format_round_trips_every_corpus_phrase() -> None:
    for text in ["every half hour", "every 6 hours", "every day", "every week", "every month", "every 5mins"]:
        td = parse_schedule(text)
        assert parse_schedule(format_interval(td)) == td
