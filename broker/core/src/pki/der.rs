//! A deliberately small DER reader and writer.
//!
//! The reader is used on untrusted bytes (otherName values, RSA public keys) and never panics:
//! every malformed input gives an `Err(String)` that says what was wrong. It accepts only
//! low-tag-number, definite, minimally encoded lengths (DER), which is all X.509 needs here.
//! The writer builds the few extension values rcgen has no helper for (certificatePolicies,
//! issuerAltName and CRL distribution points with a directoryName).

/// Universal and context tags used by this crate.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0C;
    pub const PRINTABLE_STRING: u8 = 0x13;
    pub const IA5_STRING: u8 = 0x16;
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

/// Encodes a length in DER.
fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        // Fits in one byte by the branch condition.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 6);
    out.push(tag);
    push_len(&mut out, value.len());
    out.extend_from_slice(value);
    out
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
}
