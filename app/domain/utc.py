"""Calendar year and month of an epoch-milliseconds instant, in UTC.

`year_month` uses pure integer arithmetic (H. Hinnant's days-to-civil algorithm) instead of datetime,
so any 64-bit timestamp works: a member clock outside datetime's years 1..9999 must not crash a decision.
"""

from datetime import UTC, datetime, timedelta

MS_PER_DAY = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def year_month(ms: int) -> tuple[int, int]:
    z = ms // MS_PER_DAY + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0 = March
    month = shifted_month + 3 if shifted_month < 10 else shifted_month - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month


def year_of(ms: int) -> int:
    return year_month(ms)[0]


def format_ms(ms: int) -> str:
    """ISO-8601 for human-readable details; raw milliseconds when outside datetime's range."""
    try:
        instant = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms"
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")
