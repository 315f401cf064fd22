"""How a schedule spec edited in the Temporal UI is said in status, the dashboard and `nango admin`."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import ScheduleCalendarSpec, ScheduleIntervalSpec, ScheduleRange, ScheduleSpec

from orchestrator.temporal.spec_text import calendar_text, spec_text


def test_calendar_fields_read_as_cron() -> None:
    weekdays = ScheduleCalendarSpec(minute=[ScheduleRange(30)], hour=[ScheduleRange(9)],
                                    day_of_week=[ScheduleRange(1, 5)])
    assert calendar_text(weekdays) == "cron 30 9 * * 1-5"
    every_6h = ScheduleCalendarSpec(hour=[ScheduleRange(0, 23, 6)])
    assert calendar_text(every_6h) == "cron 0 */6 * * *"
    lists = ScheduleCalendarSpec(minute=[ScheduleRange(0), ScheduleRange(15, 45, 15)],
                                 day_of_month=[ScheduleRange(1), ScheduleRange(15)], month=[ScheduleRange(3, 9, 2)])
    assert calendar_text(lists) == "cron 0,15-45/15 0 1,15 3-9/2 *"


def test_seconds_years_and_comments_appear_only_when_set() -> None:
    assert calendar_text(ScheduleCalendarSpec(second=[ScheduleRange(10)], comment="ten past")) == \
        "cron 10 0 0 * * * (ten past)"
    assert calendar_text(ScheduleCalendarSpec(year=[ScheduleRange(2027)])) == "cron 0 0 * * * 2027"
    assert calendar_text(ScheduleCalendarSpec(second=[])) == "cron 0 0 * * *"


def test_whole_specs() -> None:
    assert spec_text(ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(minutes=45))])) == "every 45min"
    assert spec_text(ScheduleSpec()) is None
    both = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(hours=2))],
                        cron_expressions=["0 12 * * *"], time_zone_name="Europe/Paris")
    assert spec_text(both) == "every 2h and cron 0 12 * * * in Europe/Paris"
    # a zone changes nothing for a bare interval, so it is not said
    assert spec_text(ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))],
                                  time_zone_name="Asia/Tokyo")) == "every 1d"
