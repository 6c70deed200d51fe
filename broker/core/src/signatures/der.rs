//! The few DER pieces this module reads by hand (signed attribute values, which RFC 5652
//! requires to be DER) and writes (the SignedData that `sign.rs` builds).

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

pub(super) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed.
    pub const CONTEXT_0: u8 = 0xA0;
}

/// Reads one DER TLV from the front of `input` (low tag number, definite minimal length):
/// `(tag, value, rest)`.
pub(super) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        if len_bytes.first() == Some(&0) {
            return None;
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return None;
        }
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// Reads exactly one DER TLV spanning `input`: `(tag, value)`.
pub(super) fn read_single(input: &[u8]) -> Option<(u8, &[u8])> {
    match read_tlv(input)? {
        (tag, value, []) => Some((tag, value)),
        _ => None,
    }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if let Ok(short) = u8::try_from(len)
        && short < 0x80
    {
        out.push(short);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let significant = bytes.get(skip..).unwrap_or_default();
    // At most size_of::<usize>() bytes.
    out.push(0x80 | significant.len() as u8);
    out.extend_from_slice(significant);
}

/// One TLV whose value is the concatenation of `parts`.
pub(super) fn tlv(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    out.push(tag);
    push_len(&mut out, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `SEQUENCE { OID, NULL }` or `SEQUENCE { OID }`.
pub(super) fn algorithm(oid_content: &[u8], null_params: bool) -> Vec<u8> {
    let oid = tlv(tag::OID, &[oid_content]);
    if null_params {
        tlv(tag::SEQUENCE, &[&oid, &[tag::NULL, 0]])
    } else {
        tlv(tag::SEQUENCE, &[&oid])
    }
}

/// The CMS signingTime value: UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5652 §11.3).
pub(super) fn encode_time(t: OffsetDateTime) -> Option<Vec<u8>> {
    let t = t.to_offset(UtcOffset::UTC);
    let (year, month, day) = (t.year(), u8::from(t.month()), t.day());
    let (h, m, s) = (t.hour(), t.minute(), t.second());
    if (1950..2050).contains(&year) {
        let text = format!(
            "{:02}{month:02}{day:02}{h:02}{m:02}{s:02}Z",
            year.rem_euclid(100)
        );
        Some(tlv(tag::UTC_TIME, &[text.as_bytes()]))
    } else if (0..=9999).contains(&year) {
        let text = format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z");
        Some(tlv(tag::GENERALIZED_TIME, &[text.as_bytes()]))
    } else {
        None
    }
}

/// Decodes a signingTime value (a whole DER TLV): UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`, as RFC 5652 §11.3 requires (Zulu, with seconds, no fraction).
pub(super) fn decode_time(value: &[u8]) -> Option<OffsetDateTime> {
    let (tag, text) = read_single(value)?;
    if !text.iter().all(|b| b.is_ascii_digit() || *b == b'Z') {
        return None;
    }
    let digits = text.strip_suffix(b"Z")?;
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = std::str::from_utf8(digits.get(range)?).ok()?;
        s.parse().ok()
    };
    let (year, rest) = match (tag, digits.len()) {
        (tag::UTC_TIME, 12) => {
            let yy = i32::try_from(num(0..2)?).ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (tag::GENERALIZED_TIME, 14) => (i32::try_from(num(0..4)?).ok()?, 4),
        _ => return None,
    };
    let field =
        |i: usize| -> Option<u8> { u8::try_from(num(rest + 2 * i..rest + 2 * i + 2)?).ok() };
    let date = Date::from_calendar_date(year, Month::try_from(field(0)?).ok()?, field(1)?).ok()?;
    let time = Time::from_hms(field(2)?, field(3)?, field(4)?).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_round_trip_and_strictness() {
        for t in [
            datetime!(2026-11-27 01:02:03 UTC),
            datetime!(1950-01-01 00:00:00 UTC),
            datetime!(2049-12-31 23:59:59 UTC),
            datetime!(2050-01-01 00:00:00 UTC),
            datetime!(1949-12-31 23:59:59 UTC),
        ] {
            let der = encode_time(t).unwrap();
            assert_eq!(decode_time(&der), Some(t), "{t}");
        }
        assert_eq!(
            encode_time(datetime!(2026-11-27 01:02:03 UTC)).unwrap(),
            b"\x17\x0d261127010203Z"
        );
        // Without seconds, with an offset, a fraction, a bad month, trailing bytes: refused.
        for bad in [
            &b"\x17\x0b2611270102Z"[..],
            b"\x17\x11261127010203+0900",
            b"\x18\x1220261127010203.5Z",
            b"\x17\x0d261327010203Z",
            b"\x17\x0d261127010203Z\x00",
            b"\x04\x0d261127010203Z",
            b"",
        ] {
            assert_eq!(decode_time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tlv_lengths() {
        assert_eq!(tlv(tag::OCTET_STRING, &[&[1, 2]]), [4, 2, 1, 2]);
        let long = tlv(tag::OCTET_STRING, &[&[7; 200], &[8; 100]]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2C]);
        assert_eq!(
            read_single(&long).map(|(t, v)| (t, v.len())),
            Some((4, 300))
        );
        // Non-minimal length and truncation are refused.
        assert_eq!(read_single(&[4, 0x81, 0x02, 1, 2]), None);
        assert_eq!(read_single(&[4, 3, 1, 2]), None);
        assert_eq!(read_single(&[4, 0x80, 0, 0]), None);
    }
}
