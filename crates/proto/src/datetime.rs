//! The text form of Date-Time and Date-Time Extended values in the KMIP XML and JSON encodings
//! (xsd:dateTime, RFC 3339), shared by both so that they accept and write the same forms.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Formats a time given in microseconds since the epoch as `YYYY-MM-DDTHH:MM:SS+00:00`, with
/// `.ffffff` before the zone when `with_fraction`; `None` outside the years 0000 to 9999, which
/// the text form cannot hold (callers then write hex).
pub(crate) fn format(unix_micros: i64, with_fraction: bool) -> Option<String> {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
    let (h, m, s) = (t.hour(), t.minute(), t.second());
    Some(if with_fraction {
        let us = t.microsecond();
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{us:06}+00:00")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}+00:00")
    })
}

/// Reads an RFC 3339 date and time into microseconds since the epoch. Also accepted: no zone
/// (UTC, as xsd:dateTime allows) and a `+HHMM` offset. `None` if malformed (including RFC 3339's
/// space between date and time, which xsd:dateTime does not allow), if the date or time does
/// not exist, or if the fraction is finer than a microsecond.
pub(crate) fn parse(text: &str) -> Option<i64> {
    if !matches!(text.as_bytes().get(10), Some(b'T' | b't')) {
        return None;
    }
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .or_else(|| OffsetDateTime::parse(&with_rfc3339_zone(text)?, &Rfc3339).ok())?;
    let nanos = t.unix_timestamp_nanos();
    if nanos % 1000 != 0 {
        return None;
    }
    i64::try_from(nanos / 1000).ok()
}

/// `text` with its zone in the RFC 3339 form: `Z` added where there is none, a colon put into
/// a `+HHMM` offset; `None` if neither applies.
fn with_rfc3339_zone(text: &str) -> Option<String> {
    let time_of_day = text.get(text.find(['T', 't'])?..)?;
    let bytes = time_of_day.as_bytes();
    if let Some(sign_at) = bytes.len().checked_sub(5)
        && matches!(bytes.get(sign_at), Some(b'+' | b'-'))
        && bytes
            .get(sign_at + 1..)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    {
        let (head, minutes) = text.split_at(text.len() - 2);
        return Some(format!("{head}:{minutes}"));
    }
    if time_of_day.contains(['Z', 'z', '+', '-']) {
        return None;
    }
    Some(format!("{text}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_335_514_344; // 2012-04-27T08:12:24Z

    #[test]
    fn formats_utc_with_and_without_fraction() {
        assert_eq!(
            format(T * 1_000_000, false).unwrap(),
            "2012-04-27T08:12:24+00:00"
        );
        assert_eq!(
            format(T * 1_000_000 + 1, true).unwrap(),
            "2012-04-27T08:12:24.000001+00:00"
        );
        assert_eq!(
            format(-1, true).unwrap(),
            "1969-12-31T23:59:59.999999+00:00"
        );
        assert_eq!(
            format(-62_167_219_200_000_000, false).unwrap(),
            "0000-01-01T00:00:00+00:00"
        );
        assert_eq!(
            format(253_402_300_799_000_000, false).unwrap(),
            "9999-12-31T23:59:59+00:00"
        );
        assert_eq!(format(253_402_300_800_000_000, false), None);
        assert_eq!(format(i64::MIN, false), None);
    }

    #[test]
    fn parses_the_accepted_forms() {
        let us = T * 1_000_000;
        for text in [
            "2012-04-27T08:12:24Z",
            "2012-04-27T08:12:24+00:00",
            "2012-04-27t08:12:24z",
            "2012-04-27T08:12:24",
            "2012-04-27T18:12:24+10:00",
            "2012-04-27T03:12:24-0500",
            "2012-04-27T08:12:24.000Z",
            "2012-04-27T08:12:24.000000000",
        ] {
            assert_eq!(parse(text), Some(us), "{text}");
        }
        assert_eq!(parse("2012-04-27T08:12:24.5Z"), Some(us + 500_000));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(951_782_400_000_000));
    }

    #[test]
    fn refuses_what_does_not_exist_or_is_too_fine() {
        for text in [
            "2012-04-27",
            "2012-04-27 08:12:24Z",
            "2012-13-01T00:00:00Z",
            "2013-02-29T00:00:00Z",
            "2012-04-27T24:00:00Z",
            "2012-04-27T08:60:00Z",
            "2012-04-27T08:12:60Z",
            "2012-04-27T08:12:24+24:00",
            "2012-04-27T08:12:24+10",
            "2012-04-27T08:12:24.Z",
            "2012-04-27T08:12:24ZZ",
            "12-04-27T08:12:24Z",
            "2012-04-27T08:12:24.0000001Z",
            "",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
