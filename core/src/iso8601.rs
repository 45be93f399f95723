//! Unix milliseconds as an ISO-8601 UTC timestamp, exactly as JavaScript's
//! `new Date(ms).toISOString()` writes it: the user-update calls send it, and the I/O layer
//! stamps every log line with it (so this writes into a caller's buffer, without allocating).

use std::fmt::Write as _;

/// `YYYY-MM-DDTHH:MM:SS.sssZ` (proleptic Gregorian; years past 9999 as `+YYYYYY`).
pub fn format(unix_ms: u64) -> String {
    let mut out = String::with_capacity(24);
    write(&mut out, unix_ms);
    out
}

/// Appends [`format()`]`(unix_ms)` to `out`.
pub fn write(out: &mut String, unix_ms: u64) {
    let in_day = unix_ms % 86_400_000;
    let (year, month, day) = civil_from_days(unix_ms / 86_400_000);
    if year <= 9999 {
        push_digits(out, year, 4);
    } else {
        let _ = write!(out, "+{year:06}");
    }
    out.push('-');
    push_digits(out, month, 2);
    out.push('-');
    push_digits(out, day, 2);
    out.push('T');
    push_digits(out, in_day / 3_600_000, 2);
    out.push(':');
    push_digits(out, in_day / 60_000 % 60, 2);
    out.push(':');
    push_digits(out, in_day / 1000 % 60, 2);
    out.push('.');
    push_digits(out, in_day % 1000, 3);
    out.push('Z');
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut String, value: u64, width: u32) {
    for position in (0..width).rev() {
        let digit = value / 10u64.pow(position) % 10;
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}
