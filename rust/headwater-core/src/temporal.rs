//! Calendar arithmetic and exact unit conversion for dates, times, timestamps and durations.
//!
//! Every conversion that would drop precision (a microsecond into `timestamp[s]`) or overflow
//! (year 3000 into `timestamp[ns]`) is an error with a reason, never a silent truncation.

use arrow_schema::TimeUnit;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

/// Nanoseconds in each unit.
pub fn nanos_per(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// Arrow's short name of a unit (`s`, `ms`, `us`, `ns`).
pub fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "s",
        TimeUnit::Millisecond => "ms",
        TimeUnit::Microsecond => "us",
        TimeUnit::Nanosecond => "ns",
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day`.
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    // Howard Hinnant's algorithm: shift the year to start in March so leap days come last.
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Converts a count of `from` units into `to` units, failing rather than losing precision or
/// overflowing. `what` names the target type in messages (e.g. `timestamp[s]`).
pub fn convert(value: i64, from: TimeUnit, to: TimeUnit, what: &str) -> Result<i64, String> {
    let (from_ns, to_ns) = (nanos_per(from), nanos_per(to));
    if from_ns >= to_ns {
        value
            .checked_mul(from_ns / to_ns)
            .ok_or_else(|| format!("out of range for {what}"))
    } else {
        let factor = to_ns / from_ns;
        if value % factor != 0 {
            return Err(format!(
                "has sub-{} precision that {what} cannot hold",
                unit_name(to)
            ));
        }
        Ok(value / factor)
    }
}

/// Parses an RFC 3339 / ISO 8601 date-time into `(seconds, nanoseconds)` since the epoch.
///
/// With an offset (`Z`, `+02:00`) the instant is exact; without one it is read as UTC, the same
/// rule as for naive `datetime` objects. `T` or a space may separate date and time.
pub fn parse_datetime(text: &str) -> Result<(i64, u32), String> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok((dt.timestamp(), dt.timestamp_subsec_nanos()));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            let utc = naive.and_utc();
            return Ok((utc.timestamp(), utc.timestamp_subsec_nanos()));
        }
    }
    Err("is not an RFC 3339 / ISO 8601 date-time (e.g. 2024-05-01T12:30:00Z)".into())
}

/// Parses an ISO 8601 calendar date (`2024-05-01`) into days since the epoch.
pub fn parse_date(text: &str) -> Result<i64, String> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map_err(|_| "is not an ISO 8601 date (e.g. 2024-05-01)".to_string())?;
    Ok(date.signed_duration_since(NaiveDate::default()).num_days())
}

/// Parses an ISO 8601 time of day (`12:30:00`, `12:30:00.25`) into nanoseconds since midnight.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let time = NaiveTime::parse_from_str(text.trim(), "%H:%M:%S%.f")
        .map_err(|_| "is not an ISO 8601 time (e.g. 12:30:00)".to_string())?;
    Ok(i64::from(time.num_seconds_from_midnight()) * 1_000_000_000 + i64::from(time.nanosecond()))
}

/// Seconds and nanoseconds since the epoch as a count of `unit`, exactly.
pub fn instant_in(seconds: i64, nanos: u32, unit: TimeUnit, what: &str) -> Result<i64, String> {
    let whole = convert(seconds, TimeUnit::Second, unit, what)?;
    let part = convert(i64::from(nanos), TimeUnit::Nanosecond, unit, what)?;
    whole
        .checked_add(part)
        .ok_or_else(|| format!("out of range for {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
    }

    #[test]
    fn conversions_are_exact() {
        assert_eq!(
            convert(1_500_000, TimeUnit::Microsecond, TimeUnit::Millisecond, "t"),
            Ok(1500)
        );
        assert!(
            convert(1_500_001, TimeUnit::Microsecond, TimeUnit::Millisecond, "t")
                .unwrap_err()
                .contains("sub-ms")
        );
        assert!(convert(
            i64::MAX / 10,
            TimeUnit::Microsecond,
            TimeUnit::Nanosecond,
            "t"
        )
        .unwrap_err()
        .contains("out of range"));
    }

    #[test]
    fn parses_datetimes() {
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok((1, 0)));
        assert_eq!(parse_datetime("1970-01-01T02:00:01+02:00"), Ok((1, 0)));
        assert_eq!(
            parse_datetime("1970-01-01 00:00:01.5"),
            Ok((1, 500_000_000))
        );
        assert!(parse_datetime("yesterday").is_err());
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert!(parse_date("1970-13-02").is_err());
        assert_eq!(parse_time("00:00:01.5"), Ok(1_500_000_000));
        assert!(parse_time("25:00:00").is_err());
    }
}
