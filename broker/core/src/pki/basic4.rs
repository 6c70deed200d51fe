//! The "basic four" (基本4情報) in the signature certificate's subjectAltName.

use super::{PkiError, der, oids};
use x509_parser::extensions::GeneralName;

/// Name, gender, date of birth and address as carried by a JPKI signature certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Basic4 {
    /// As in the certificate: family and given name separated by U+3000.
    pub name: String,
    /// The 5.5.2 substituted-character map as in the certificate (one digit per character),
    /// `""` when absent.
    pub name_substituted: String,
    /// `"1"` male, `"2"` female, `"3"` not stated.
    pub gender: String,
    /// ISO `yyyy-mm-dd`, from `EYYYYMMDD`.
    pub birthdate: String,
    /// The era digit E: 0 unknown, 1 明治, 2 大正, 3 昭和, 4 平成, 5 令和.
    pub birthdate_era: u8,
    /// 住所, from the prefecture down.
    pub address: String,
    /// The 5.5.6 substituted-character map as in the certificate, `""` when absent.
    pub address_substituted: String,
}

impl Basic4 {
    /// True when the certificate flags a substituted (代替) character in the name or address:
    /// claims derived from those fields must carry that flag.
    pub fn has_substituted_characters(&self) -> bool {
        self.name_substituted
            .chars()
            .chain(self.address_substituted.chars())
            .any(|c| c != '0')
    }

    /// The date of birth as a date.
    pub fn birth_date(&self) -> Option<time::Date> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(&self.birthdate, format).ok()
    }
}

/// The era digit JPKI uses for a Gregorian date of birth.
pub(crate) fn era_digit(date: time::Date) -> u8 {
    use time::Month;
    let before = |y: i32, m: Month, d: u8| {
        time::Date::from_calendar_date(y, m, d).is_ok_and(|boundary| date < boundary)
    };
    if before(1912, Month::July, 30) {
        1 // 明治
    } else if before(1926, Month::December, 25) {
        2 // 大正
    } else if before(1989, Month::January, 8) {
        3 // 昭和
    } else if before(2019, Month::May, 1) {
        4 // 平成
    } else {
        5 // 令和
    }
}

/// `EYYYYMMDD` for a date of birth.
pub(crate) fn encode_birthdate(date: time::Date) -> Result<String, PkiError> {
    let year = date.year();
    if !(0..=9999).contains(&year) {
        return Err(PkiError::Demo(format!("birth year {year} out of range")));
    }
    Ok(format!(
        "{}{:04}{:02}{:02}",
        era_digit(date),
        year,
        u8::from(date.month()),
        date.day()
    ))
}

/// Parses `EYYYYMMDD` into (era digit, ISO date). A value that is not a real date is an error.
pub(crate) fn parse_birthdate(value: &str) -> Result<(u8, String), String> {
    let bytes = value.as_bytes();
    if bytes.len() != 9 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(format!("date of birth {value:?} is not EYYYYMMDD"));
    }
    let digits: Vec<u32> = bytes.iter().map(|b| u32::from(b - b'0')).collect();
    let num = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .map(|ds| ds.iter().fold(0u32, |acc, d| acc * 10 + d))
            .unwrap_or(0)
    };
    let era = num(0..1);
    if era > 5 {
        return Err(format!(
            "date of birth {value:?} has unknown era digit {era}"
        ));
    }
    let (year, month, day) = (num(1..5), num(5..7), num(7..9));
    let month_enum = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(|| format!("date of birth {value:?} has month {month:02}"))?;
    let day_u8 = u8::try_from(day).map_err(|_| format!("date of birth {value:?} has day {day}"))?;
    let year_i32 =
        i32::try_from(year).map_err(|_| format!("date of birth {value:?} has year {year}"))?;
    let date = time::Date::from_calendar_date(year_i32, month_enum, day_u8)
        .map_err(|_| format!("date of birth {value:?} is not a real calendar date"))?;
    let era = u8::try_from(era).unwrap_or(0);
    Ok((era, format!("{:04}-{:02}-{:02}", date.year(), month, day)))
}

/// Reads the string inside an otherName value: `[0] EXPLICIT UTF8String`
/// (PrintableString and IA5String are tolerated for the ASCII-only fields).
pub(crate) fn other_name_string(raw: &[u8], what: &str) -> Result<String, String> {
    let inner = der::read_single(raw, der::tag::CONTEXT_0, what)?;
    let (tlv, rest) = der::read_tlv(inner).map_err(|e| format!("{what}: {e}"))?;
    if !rest.is_empty() {
        return Err(format!("{what}: {} bytes after the string", rest.len()));
    }
    match tlv.tag {
        der::tag::UTF8_STRING | der::tag::PRINTABLE_STRING | der::tag::IA5_STRING => {
            String::from_utf8(tlv.value.to_vec()).map_err(|_| format!("{what}: not valid UTF-8"))
        }
        other => Err(format!(
            "{what}: expected a UTF8String, found tag {other:#04x}"
        )),
    }
}

/// Extracts the basic four from the subjectAltName's general names.
/// `Ok(None)` when none of the basic-four OIDs is present.
pub(crate) fn from_general_names(names: &[GeneralName<'_>]) -> Result<Option<Basic4>, PkiError> {
    const FIELDS: [(&str, &str); 6] = [
        (oids::BASIC4_NAME, "name (5.5.1)"),
        (
            oids::BASIC4_NAME_SUBSTITUTED,
            "name substitution map (5.5.2)",
        ),
        (oids::BASIC4_GENDER, "gender (5.5.3)"),
        (oids::BASIC4_BIRTHDATE, "date of birth (5.5.4)"),
        (oids::BASIC4_ADDRESS, "address (5.5.5)"),
        (
            oids::BASIC4_ADDRESS_SUBSTITUTED,
            "address substitution map (5.5.6)",
        ),
    ];
    let mut values: [Option<String>; 6] = Default::default();
    for gn in names {
        let GeneralName::OtherName(oid, raw) = gn else {
            continue;
        };
        let oid = oid.to_id_string();
        let Some(idx) = FIELDS.iter().position(|(o, _)| *o == oid) else {
            continue;
        };
        let what = FIELDS[idx].1;
        let slot = &mut values[idx];
        if slot.is_some() {
            return Err(PkiError::Basic4(format!("{what} appears more than once")));
        }
        *slot = Some(other_name_string(raw, what).map_err(PkiError::Basic4)?);
    }
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let [name, name_sub, gender, birth, address, address_sub] = values;
    let missing = |what: &str| PkiError::Basic4(format!("{what} is missing"));
    let name = name.ok_or_else(|| missing(FIELDS[0].1))?;
    let gender = gender.ok_or_else(|| missing(FIELDS[2].1))?;
    let birth = birth.ok_or_else(|| missing(FIELDS[3].1))?;
    let address = address.ok_or_else(|| missing(FIELDS[4].1))?;
    if name.trim().is_empty() {
        return Err(PkiError::Basic4("name is empty".into()));
    }
    if address.trim().is_empty() {
        return Err(PkiError::Basic4("address is empty".into()));
    }
    if !matches!(gender.as_str(), "1" | "2" | "3") {
        return Err(PkiError::Basic4(format!(
            "gender {gender:?} is not one of \"1\", \"2\", \"3\""
        )));
    }
    let (birthdate_era, birthdate) = parse_birthdate(&birth).map_err(PkiError::Basic4)?;
    let name_substituted = name_sub.unwrap_or_default();
    let address_substituted = address_sub.unwrap_or_default();
    for (map, what) in [
        (&name_substituted, FIELDS[1].1),
        (&address_substituted, FIELDS[5].1),
    ] {
        if !map.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PkiError::Basic4(format!(
                "{what} {map:?} is not all digits"
            )));
        }
    }
    Ok(Some(Basic4 {
        name,
        name_substituted,
        gender,
        birthdate,
        birthdate_era,
        address,
        address_substituted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn era_boundaries() {
        assert_eq!(era_digit(date!(1912 - 07 - 29)), 1);
        assert_eq!(era_digit(date!(1912 - 07 - 30)), 2);
        assert_eq!(era_digit(date!(1926 - 12 - 24)), 2);
        assert_eq!(era_digit(date!(1926 - 12 - 25)), 3);
        assert_eq!(era_digit(date!(1989 - 01 - 07)), 3);
        assert_eq!(era_digit(date!(1989 - 01 - 08)), 4);
        assert_eq!(era_digit(date!(2019 - 04 - 30)), 4);
        assert_eq!(era_digit(date!(2019 - 05 - 01)), 5);
        assert_eq!(
            encode_birthdate(date!(1989 - 01 - 07)).unwrap(),
            "319890107"
        );
    }

    #[test]
    fn birthdate_parsing() {
        assert_eq!(
            parse_birthdate("319890107").unwrap(),
            (3, "1989-01-07".into())
        );
        assert_eq!(
            parse_birthdate("020000229").unwrap(),
            (0, "2000-02-29".into())
        );
        assert!(
            parse_birthdate("319890230")
                .unwrap_err()
                .contains("real calendar date")
        );
        assert!(parse_birthdate("319891301").unwrap_err().contains("month"));
        assert!(parse_birthdate("619890107").unwrap_err().contains("era"));
        assert!(
            parse_birthdate("31989010")
                .unwrap_err()
                .contains("EYYYYMMDD")
        );
        assert!(parse_birthdate("3198901０7").is_err());
        assert!(parse_birthdate("").is_err());
    }

    #[test]
    fn other_name_value_parsing() {
        // [0] { UTF8String "1" }
        assert_eq!(
            other_name_string(&[0xA0, 0x03, 0x0C, 0x01, b'1'], "x").unwrap(),
            "1"
        );
        assert!(other_name_string(&[0xA0, 0x03, 0x04, 0x01, b'1'], "x").is_err());
        assert!(other_name_string(&[0xA0, 0x04, 0x0C, 0x01, b'1'], "x").is_err());
        assert!(other_name_string(&[0xA0, 0x02, 0x0C, 0x01], "x").is_err());
        assert!(other_name_string(&[0xA0, 0x02, 0x0C, 0x00, 0x00], "x").is_err());
        assert!(
            other_name_string(&[0xA0, 0x03, 0x0C, 0x01, 0xFF], "x")
                .unwrap_err()
                .contains("UTF-8")
        );
    }
}
