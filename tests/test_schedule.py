from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.core.schedule import current_period


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_daily_is_due_once_the_local_hour_has_passed() -> None:
    # 07:00 in Tokyo is 22:00 UTC the day before.
    before = current_period(utc(2026, 11, 28, 21, 59), "Asia/Tokyo", "daily", 7)
    after = current_period(utc(2026, 11, 28, 22, 0), "Asia/Tokyo", "daily", 7)
    assert before.label == "2026-11-28"
    assert after.label == "2026-11-29"
    assert after.due_at == utc(2026, 11, 28, 22, 0)


def test_daily_same_label_all_local_day() -> None:
    labels = {
        current_period(utc(2026, 11, 29, 12) + timedelta(hours=h), "America/New_York", "daily", 7)
        for h in range(0, 10)
    }
    assert {p.label for p in labels} == {"2026-11-29"}


@pytest.mark.parametrize(
    ("day", "expected_utc_hour"),
    [
        ((2026, 3, 7), 12),  # EST, UTC-5: 07:00 local = 12:00 UTC
        ((2026, 3, 8), 11),  # DST starts that night: EDT, UTC-4
        ((2026, 10, 31), 11),
        ((2026, 11, 1), 12),  # DST ends
    ],
)
def test_daily_due_follows_daylight_saving(
    day: tuple[int, int, int], expected_utc_hour: int
) -> None:
    period = current_period(utc(*day, 23), "America/New_York", "daily", 7)
    assert period.due_at == utc(*day, expected_utc_hour)


def test_send_hour_in_the_spring_forward_gap_still_sends() -> None:
    # 02:00 does not exist in New York on 2026-03-08; the digest goes at 03:00 EDT.
    period = current_period(utc(2026, 3, 8, 12), "America/New_York", "daily", 2)
    assert period.label == "2026-03-08"
    assert period.due_at == utc(2026, 3, 8, 7)


def test_weekly_on_its_weekday_and_hour() -> None:
    # 2026-11-30 is a Monday.
    sunday = current_period(utc(2026, 11, 29, 12), "UTC", "weekly", 8, weekday=0)
    monday_early = current_period(utc(2026, 11, 30, 7), "UTC", "weekly", 8, weekday=0)
    monday = current_period(utc(2026, 11, 30, 8), "UTC", "weekly", 8, weekday=0)
    wednesday = current_period(utc(2026, 12, 2, 8), "UTC", "weekly", 8, weekday=0)
    assert sunday.label == "2026-W48"  # last Monday's week
    assert sunday.due_at == utc(2026, 11, 23, 8)
    assert monday_early.label == "2026-W48"
    assert monday.label == "2026-W49"
    assert wednesday.label == "2026-W49"
    assert monday.length == timedelta(days=7)


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        current_period(utc(2026, 11, 29), "Mars/Olympus", "daily", 7)
