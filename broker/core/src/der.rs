//! The crate's one hand-written DER reader and writer, for what the ASN.1 crates do not cover
//! or cover too slowly: the CRL index's walk over a million entries (`pki::crl`), CMS signed
//! attributes (which RFC 5652 requires to be DER, read and written byte for byte), the OCSP and
//! CRL structures the demo CA writes, and the few certificate extension values rcgen has no
//! helper for (certificatePolicies, issuerAltName, CRL distribution points with a
//! directoryName). Everything else is parsed with x509-parser, x509-cert/der or bcder.
//!
//! The reader is used on untrusted bytes and never panics: every malformed input gives an
//! `Err(String)` that says what was wrong. It accepts only low-tag-number, definite, minimally
//! encoded lengths (DER). One length encoder ([`push_header`]) and one time codec
//! ([`encode_time`], [`decode_time`]) serve every writer and reader.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Universal and context tags used by this crate.
pub(crate) mod tag {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const ENUMERATED: u8 = 0x0A;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT tagging, or IMPLICIT over a constructed type).
    pub const CONTEXT_0: u8 = 0xA0;
    /// `[4]` constructed: directoryName in a GeneralName.
    pub const CONTEXT_4: u8 = 0xA4;
}

/// One decoded tag-length-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
}

/// Reads one TLV from the front of `input`; returns it and the remaining bytes.
pub(crate) fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), String> {
    let (&tag, rest) = input
        .split_first()
        .ok_or("empty input where a DER element was expected")?;
    if tag & 0x1F == 0x1F {
        return Err(format!(
            "high-tag-number form (tag byte {tag:#04x}) is not supported"
        ));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| format!("DER element with tag {tag:#04x} has no length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else if first == 0x80 {
        return Err(format!(
            "indefinite length (BER) for tag {tag:#04x} is not DER"
        ));
    } else {
        let n = usize::from(first & 0x7F);
        if n > 4 {
            return Err(format!(
                "length of {n} octets for tag {tag:#04x} is too large"
            ));
        }
        if rest.len() < n {
            return Err(format!("truncated length for tag {tag:#04x}"));
        }
        let (len_bytes, rest) = rest.split_at(n);
        if len_bytes.first() == Some(&0) {
            return Err(format!("non-minimal length encoding for tag {tag:#04x}"));
        }
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        if len < 0x80 {
            return Err(format!("non-minimal length encoding for tag {tag:#04x}"));
        }
        (len, rest)
    };
    if rest.len() < len {
        return Err(format!(
            "DER element with tag {tag:#04x} declares {len} bytes but only {} remain",
            rest.len()
        ));
    }
    let (value, rest) = rest.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Reads exactly one TLV with tag `expected` that must span all of `input`.
pub(crate) fn read_single<'a>(
    input: &'a [u8],
    expected: u8,
    what: &str,
) -> Result<&'a [u8], String> {
    let (tlv, rest) = read_tlv(input).map_err(|e| format!("{what}: {e}"))?;
    if tlv.tag != expected {
        return Err(format!(
            "{what}: expected tag {expected:#04x}, found {:#04x}",
            tlv.tag
        ));
    }
    if !rest.is_empty() {
        return Err(format!("{what}: {} trailing bytes", rest.len()));
    }
    Ok(tlv.value)
}

/// Reads one TLV from the front of `input` as `(tag, value, rest)`, `None` when malformed: for
/// readers that say what was wrong at a higher level (CMS signed attributes).
pub(crate) fn split(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    read_tlv(input).ok().map(|(t, rest)| (t.tag, t.value, rest))
}

/// Reads exactly one TLV spanning `input` as `(tag, value)`, `None` when malformed.
pub(crate) fn split_single(input: &[u8]) -> Option<(u8, &[u8])> {
    match read_tlv(input).ok()? {
        (t, []) => Some((t.tag, t.value)),
        _ => None,
    }
}

/// Appends a DER tag and length: the one length encoder.
pub(crate) fn push_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
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

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    tlv_of(tag, &[value])
}

/// One TLV whose value is the concatenation of `parts` (copied once).
pub(crate) fn tlv_of(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 6);
    push_header(&mut out, tag, len);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// `AlgorithmIdentifier`: `SEQUENCE { OID, NULL }` or `SEQUENCE { OID }`; `oid_content` is the
/// OID's encoded value.
pub(crate) fn algorithm(oid_content: &[u8], null_params: bool) -> Vec<u8> {
    let oid = tlv(tag::OID, oid_content);
    if null_params {
        tlv_of(tag::SEQUENCE, &[&oid, &[tag::NULL, 0]])
    } else {
        tlv_of(tag::SEQUENCE, &[&oid])
    }
}

/// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5, RFC 5652 §11.3);
/// whole seconds, Zulu.
pub(crate) fn encode_time(t: OffsetDateTime) -> Result<Vec<u8>, String> {
    let t = t.to_offset(UtcOffset::UTC);
    let year = t.year();
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&year) {
        let text = format!("{:02}{rest}", year.rem_euclid(100));
        Ok(tlv(tag::UTC_TIME, text.as_bytes()))
    } else if (0..=9999).contains(&year) {
        let text = format!("{year:04}{rest}");
        Ok(tlv(tag::GENERALIZED_TIME, text.as_bytes()))
    } else {
        Err(format!("year {year} cannot be encoded"))
    }
}

/// Decodes a UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as RFC 5280 and
/// RFC 5652 require them: Zulu, with seconds, no fraction.
pub(crate) fn decode_time(t: Tlv<'_>) -> Result<OffsetDateTime, String> {
    let (year, rest) = match (t.tag, t.value.len()) {
        (tag::UTC_TIME, 13) => {
            let (yy, rest) = t.value.split_at(2);
            let yy = i32::from(decimal(yy)?);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        (tag::GENERALIZED_TIME, 15) => {
            let (yyyy, rest) = t.value.split_at(4);
            let (hi, lo) = yyyy.split_at(2);
            (
                i32::from(decimal(hi)?) * 100 + i32::from(decimal(lo)?),
                rest,
            )
        }
        (tag::UTC_TIME | tag::GENERALIZED_TIME, _) => {
            return Err(format!(
                "time {:?} is not YYMMDDHHMMSSZ / YYYYMMDDHHMMSSZ",
                String::from_utf8_lossy(t.value)
            ));
        }
        (tag, _) => {
            return Err(format!(
                "tag {tag:#04x} is not a UTCTime or GeneralizedTime"
            ));
        }
    };
    let field = |i: usize| decimal(rest.get(2 * i..2 * i + 2).unwrap_or_default());
    if rest.last() != Some(&b'Z') {
        return Err("time does not end in Z".into());
    }
    let month = Month::try_from(field(0)?).map_err(|e| format!("month: {e}"))?;
    let date =
        Date::from_calendar_date(year, month, field(1)?).map_err(|e| format!("date: {e}"))?;
    let time = Time::from_hms(field(2)?, field(3)?, field(4)?).map_err(|e| format!("time: {e}"))?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc())
}

/// Two ASCII digits.
fn decimal(two: &[u8]) -> Result<u8, String> {
    match two {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Ok((a - b'0') * 10 + (b - b'0')),
        _ => Err(format!(
            "{:?} is not two digits",
            String::from_utf8_lossy(two)
        )),
    }
}

/// Encodes a constructed TLV whose value is the concatenation of `parts`.
pub(crate) fn constructed(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// SEQUENCE of `parts`.
pub(crate) fn sequence(parts: &[Vec<u8>]) -> Vec<u8> {
    constructed(tag::SEQUENCE, parts)
}

/// Parses a dotted OID string into its arcs.
pub(crate) fn oid_arcs(dotted: &str) -> Result<Vec<u64>, String> {
    let arcs = dotted
        .split('.')
        .map(|p| {
            p.parse::<u64>()
                .map_err(|_| format!("bad OID arc {p:?} in {dotted:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match arcs.as_slice() {
        [first, second, ..] if *first <= 2 && (*first == 2 || *second < 40) => Ok(arcs),
        _ => Err(format!("bad OID {dotted:?}")),
    }
}

/// Encodes an OBJECT IDENTIFIER from a dotted string.
pub(crate) fn oid(dotted: &str) -> Result<Vec<u8>, String> {
    let arcs = oid_arcs(dotted)?;
    let mut body = Vec::new();
    let mut push_base128 = |mut v: u64| {
        let mut tmp = vec![(v & 0x7F) as u8];
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7F) as u8);
            v >>= 7;
        }
        tmp.reverse();
        body.extend_from_slice(&tmp);
    };
    // `oid_arcs` guarantees at least two arcs with a valid first pair.
    let first = arcs.first().copied().unwrap_or(0);
    let second = arcs.get(1).copied().unwrap_or(0);
    push_base128(first * 40 + second);
    for arc in arcs.iter().skip(2) {
        push_base128(*arc);
    }
    Ok(tlv(tag::OID, &body))
}

/// A string attribute value of a Name.
pub(crate) enum NameValue<'a> {
    Printable(&'a str),
    Utf8(&'a str),
}

/// Encodes a Name (RDNSequence) with one attribute per RDN, in the given order.
pub(crate) fn name(attrs: &[(&str, NameValue<'_>)]) -> Result<Vec<u8>, String> {
    let mut rdns = Vec::with_capacity(attrs.len());
    for (attr_oid, value) in attrs {
        let value = match value {
            NameValue::Printable(s) => {
                if !s.chars().all(is_printable_char) {
                    return Err(format!("{s:?} is not a PrintableString"));
                }
                tlv(tag::PRINTABLE_STRING, s.as_bytes())
            }
            NameValue::Utf8(s) => tlv(tag::UTF8_STRING, s.as_bytes()),
        };
        let atv = sequence(&[oid(attr_oid)?, value]);
        rdns.push(constructed(tag::SET, &[atv]));
    }
    Ok(sequence(&rdns))
}

/// Characters allowed in an ASN.1 PrintableString.
pub(crate) fn is_printable_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oid_encoding_matches_jpki_reference_bytes() {
        // jpki.md: DER of 1.2.392.200149.8.5.5.1 is 06 0A 2A 83 08 8C 9B 55 08 05 05 01.
        let der = oid("1.2.392.200149.8.5.5.1").unwrap();
        assert_eq!(hex::encode(der), "060a2a83088c9b5508050501");
    }

    #[test]
    fn long_lengths_round_trip() {
        let value = vec![7u8; 300];
        let enc = tlv(tag::OCTET_STRING, &value);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let (t, rest) = read_tlv(&enc).unwrap();
        assert_eq!(t.value, &value[..]);
        assert!(rest.is_empty());
    }

    #[test]
    fn reader_rejects_bad_input() {
        assert!(read_tlv(&[]).is_err());
        assert!(read_tlv(&[0x04]).is_err());
        assert!(
            read_tlv(&[0x04, 0x05, 1, 2])
                .unwrap_err()
                .contains("declares 5")
        );
        assert!(
            read_tlv(&[0x30, 0x80, 0, 0])
                .unwrap_err()
                .contains("indefinite")
        );
        assert!(
            read_tlv(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
                .unwrap_err()
                .contains("non-minimal")
        );
        assert!(
            read_tlv(&[0x1F, 0x01, 0x00])
                .unwrap_err()
                .contains("high-tag")
        );
        assert!(
            read_single(&[0x04, 0x00, 0x00], tag::OCTET_STRING, "x")
                .unwrap_err()
                .contains("trailing")
        );
    }

    #[test]
    fn name_rejects_non_printable() {
        assert!(name(&[("2.5.4.6", NameValue::Printable("日本"))]).is_err());
        assert!(name(&[("2.5.4.6", NameValue::Printable("JP"))]).is_ok());
    }

    /// The time codec every reader and writer shares: both forms round trip at the 2050
    /// boundary; a time without seconds, with an offset or a fraction, a bad month, another
    /// tag, trailing bytes or nothing is refused.
    #[test]
    fn times_round_trip_and_strictness() {
        use time::macros::datetime;
        let decode = |der: &[u8]| {
            read_tlv(der).and_then(|(t, rest)| match rest {
                [] => decode_time(t),
                _ => Err("trailing".into()),
            })
        };
        for t in [
            datetime!(2026-11-27 01:02:03 UTC),
            datetime!(1950-01-01 00:00:00 UTC),
            datetime!(2049-12-31 23:59:59 UTC),
            datetime!(2050-01-01 00:00:00 UTC),
            datetime!(1949-12-31 23:59:59 UTC),
        ] {
            let der = encode_time(t).unwrap();
            assert_eq!(decode(&der), Ok(t), "{t}");
        }
        assert_eq!(
            encode_time(datetime!(2026-11-27 01:02:03 UTC)).unwrap(),
            b"\x17\x0d261127010203Z"
        );
        assert_eq!(
            encode_time(datetime!(2050-01-01 00:00:00 UTC)).unwrap(),
            b"\x18\x0f20500101000000Z"
        );
        assert!(encode_time(datetime!(-0001-01-01 00:00:00 UTC)).is_err());
        for bad in [
            &b"\x17\x0b2611270102Z"[..],
            b"\x17\x11261127010203+0900",
            b"\x18\x1220261127010203.5Z",
            b"\x17\x0d261327010203Z",
            b"\x17\x0d2611270102033",
            b"\x17\x0d26112701020aZ",
            b"\x17\x0d261127010203Z\x00",
            b"\x04\x0d261127010203Z",
            b"",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parts_and_splits() {
        assert_eq!(tlv_of(tag::OCTET_STRING, &[&[1], &[2]]), [4, 2, 1, 2]);
        let long = tlv_of(tag::OCTET_STRING, &[&[7; 200], &[8; 100]]);
        assert_eq!(&long[..4], &[4, 0x82, 0x01, 0x2C]);
        assert_eq!(
            split_single(&long).map(|(t, v)| (t, v.len())),
            Some((4, 300))
        );
        assert_eq!(split_single(&[4, 0x81, 0x02, 1, 2]), None);
        assert_eq!(split_single(&[4, 3, 1, 2]), None);
        assert_eq!(split_single(&[4, 0x80, 0, 0]), None);
        assert_eq!(split_single(&[4, 1, 9, 0]), None);
        assert_eq!(split(&[4, 1, 9, 0]), Some((4, &[9][..], &[0][..])));
        assert_eq!(
            algorithm(&[0x2A], true),
            [0x30, 0x05, 0x06, 0x01, 0x2A, 0x05, 0x00]
        );
    }
}
