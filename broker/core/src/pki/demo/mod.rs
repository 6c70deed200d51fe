//! The demo JPKI: two self-signed CAs and card certificates with the real JPKI profile.
//!
//! The DNs are the real ones with `O=JPKI` replaced by `O=JPKI-DEMO`, and the issuerAltName says
//! `公的個人認証サービス（デモ）`, so nobody mistakes a demo certificate for one from J-LIS.
//! End-entity certificates reproduce the real shape: critical keyUsage, critical
//! certificatePolicies with a CPS qualifier, EKU clientAuth (user authentication), issuerAltName,
//! a directoryName CRL distribution point per municipality, AKI/SKI, random positive serial;
//! the signature certificate adds nonRepudiation and the six basic-four otherNames.
//!
//! Everything that exists only for demo mode and tests is here, under one name: the demo
//! PKI (this file: CAs, cards, OCSP responder certificates) and the demo CA's revocation
//! database, OCSP answers, CRLs and renewal links (`ca`). Production paths call into it only
//! in demo mode (`demo = true`, or no trust anchors configured).

pub mod ca;

use super::{CertKind, PkiError, TrustAnchor, TrustStore, basic4, der, ocsp, oids};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, OtherNameValue,
    PublicKeyData, SanType,
};
use std::fmt;
use std::path::Path;
use time::{Duration, OffsetDateTime, UtcOffset};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Name};

/// File names of a demo PKI directory.
pub const AUTH_CA_CERT_FILE: &str = "auth-ca.crt.pem";
/// See [`AUTH_CA_CERT_FILE`].
pub const AUTH_CA_KEY_FILE: &str = "auth-ca.key.pem";
/// See [`AUTH_CA_CERT_FILE`].
pub const SIGN_CA_CERT_FILE: &str = "sign-ca.crt.pem";
/// See [`AUTH_CA_CERT_FILE`].
pub const SIGN_CA_KEY_FILE: &str = "sign-ca.key.pem";

/// Trust-anchor labels of the demo CAs.
pub const AUTH_CA_LABEL: &str = "demo-auth-ca";
/// See [`AUTH_CA_LABEL`].
pub const SIGN_CA_LABEL: &str = "demo-sign-ca";

const DEMO_O: &str = "JPKI-DEMO";
const JLIS_OU: &str = "Japan Agency for Local Authority Information Systems";
const ISSUER_ALT_O: &str = "公的個人認証サービス（デモ）";
const CPS_URL: &str = "http://jpki-demo.invalid/cps.html";
const OID_CPS_QUALIFIER: &str = "1.3.6.1.5.5.7.2.1";

const OID_COUNTRY: &str = "2.5.4.6";
const OID_ORG: &str = "2.5.4.10";
const OID_OU: &str = "2.5.4.11";
const OID_CN: &str = "2.5.4.3";

fn ca_ou(kind: CertKind) -> &'static str {
    match kind {
        CertKind::UserAuth => "JPKI for user authentication",
        CertKind::Signature => "JPKI for digital signature",
    }
}

/// One demo CA: certificate, key and the issuer identity rcgen signs with.
struct DemoCa {
    cert_der: Vec<u8>,
    cert_pem: String,
    key: KeyPair,
    /// Carries the DN, key identifier method and key usages of the CA for [`rcgen::Issuer`].
    params: CertificateParams,
}

/// The demo JPKI: a user-authentication CA and a digital-signature CA.
pub struct DemoPki {
    auth: DemoCa,
    sign: DemoCa,
}

impl fmt::Debug for DemoPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoPki")
            .field("auth_ca_der_len", &self.auth.cert_der.len())
            .field("sign_ca_der_len", &self.sign.cert_der.len())
            .finish_non_exhaustive()
    }
}

/// What to put on a demo card.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardRequest {
    /// Family and given name separated by U+3000.
    pub name: String,
    /// One digit per character of `name`; `None` writes all zeros (no substituted character).
    pub name_substituted: Option<String>,
    /// Gregorian date of birth; the era digit is derived from it.
    pub birthdate: time::Date,
    /// 1 male, 2 female, 3 not stated.
    pub gender: u8,
    /// From the prefecture down, at most 200 characters.
    pub address: String,
    /// One digit per character of `address`; `None` writes all zeros.
    pub address_substituted: Option<String>,
    /// Validity of both certificates.
    pub not_before: OffsetDateTime,
    /// Validity of both certificates.
    pub not_after: OffsetDateTime,
}

/// The two certificates and keys of a demo card, PEM (keys PKCS#8 `PRIVATE KEY`).
#[derive(Clone)]
pub struct IssuedCard {
    /// User-authentication certificate.
    pub auth_cert_pem: String,
    /// Its PKCS#8 key.
    pub auth_key_pem: String,
    /// Digital-signature certificate.
    pub sign_cert_pem: String,
    /// Its PKCS#8 key.
    pub sign_key_pem: String,
}

impl fmt::Debug for IssuedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCard")
            .field("auth_cert_pem", &self.auth_cert_pem)
            .field("auth_key_pem", &"<redacted>")
            .field("sign_cert_pem", &self.sign_cert_pem)
            .field("sign_key_pem", &"<redacted>")
            .finish()
    }
}

fn rc(context: &str) -> impl Fn(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Demo(format!("{context}: {e}"))
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |e| PkiError::Io(format!("{}: {e}", path.display()))
}

impl DemoPki {
    /// Generates both CAs (RSA-2048, sha256WithRSA), valid from `now` − 1 day to `now` + 10 years.
    pub fn generate(now: OffsetDateTime) -> Result<DemoPki, PkiError> {
        let now = to_utc_seconds(now);
        let not_before = now - Duration::days(1);
        let not_after = now
            .replace_year(now.year() + 10)
            .unwrap_or(now + Duration::days(3653));
        Ok(DemoPki {
            auth: generate_ca(CertKind::UserAuth, not_before, not_after)?,
            sign: generate_ca(CertKind::Signature, not_before, not_after)?,
        })
    }

    /// Loads `dir/{auth-ca,sign-ca}.{crt,key}.pem`, or generates and writes them (keys with file
    /// mode 0600) when none is present. Returns `(pki, created)`. Some but not all files present
    /// is an error (nothing is overwritten).
    pub fn load_or_create(dir: &Path, now: OffsetDateTime) -> Result<(DemoPki, bool), PkiError> {
        let files = [
            AUTH_CA_CERT_FILE,
            AUTH_CA_KEY_FILE,
            SIGN_CA_CERT_FILE,
            SIGN_CA_KEY_FILE,
        ];
        let missing: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !dir.join(f).exists())
            .collect();
        if missing.is_empty() {
            return Ok((DemoPki::load(dir)?, false));
        }
        if missing.len() != files.len() {
            return Err(PkiError::Io(format!(
                "{} holds a partial demo PKI (missing {}); restore the files or remove them all",
                dir.display(),
                missing.join(", ")
            )));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let pki = DemoPki::generate(now)?;
        pki.save(dir)?;
        Ok((pki, true))
    }

    /// Loads the four files of a demo PKI directory; checks each key matches its certificate and
    /// both are valid trust anchors.
    pub fn load(dir: &Path) -> Result<DemoPki, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(io(&path))
        };
        let auth = load_ca(
            CertKind::UserAuth,
            &read(AUTH_CA_CERT_FILE)?,
            &read(AUTH_CA_KEY_FILE)?,
        )?;
        let sign = load_ca(
            CertKind::Signature,
            &read(SIGN_CA_CERT_FILE)?,
            &read(SIGN_CA_KEY_FILE)?,
        )?;
        let pki = DemoPki { auth, sign };
        TrustStore::new(pki.anchors())
            .map_err(|e| PkiError::Demo(format!("{}: {e}", dir.display())))?;
        Ok(pki)
    }

    /// Writes the four files into `dir` (which must exist); keys get mode 0600.
    fn save(&self, dir: &Path) -> Result<(), PkiError> {
        let write = |name: &str, contents: &str, private: bool| {
            let path = dir.join(name);
            write_file_atomic(&path, contents.as_bytes(), private).map_err(io(&path))
        };
        write(AUTH_CA_KEY_FILE, &self.auth.key.serialize_pem(), true)?;
        write(SIGN_CA_KEY_FILE, &self.sign.key.serialize_pem(), true)?;
        write(AUTH_CA_CERT_FILE, &self.auth.cert_pem, false)?;
        write(SIGN_CA_CERT_FILE, &self.sign.cert_pem, false)?;
        Ok(())
    }

    /// The two CAs as trust anchors labelled `demo-auth-ca` / `demo-sign-ca`, `demo = true`.
    pub fn anchors(&self) -> Vec<TrustAnchor> {
        vec![
            TrustAnchor {
                kind: CertKind::UserAuth,
                label: AUTH_CA_LABEL.into(),
                cert_der: self.auth.cert_der.clone(),
                demo: true,
            },
            TrustAnchor {
                kind: CertKind::Signature,
                label: SIGN_CA_LABEL.into(),
                cert_der: self.sign.cert_der.clone(),
                demo: true,
            },
        ]
    }

    /// A trust store holding just the two demo CAs.
    pub fn trust_store(&self) -> Result<TrustStore, PkiError> {
        TrustStore::new(self.anchors())
    }

    /// PEM of the user-authentication CA certificate.
    pub fn auth_ca_cert_pem(&self) -> String {
        self.auth.cert_pem.clone()
    }

    /// PEM of the digital-signature CA certificate.
    pub fn sign_ca_cert_pem(&self) -> String {
        self.sign.cert_pem.clone()
    }

    /// Issues a card: a user-authentication and a digital-signature certificate, each with a
    /// fresh RSA-2048 key.
    ///
    /// Long, and kept so: the two certificates' profiles (jpki.md) side by side, so that
    /// they are read against each other.
    pub fn issue_card(&self, req: &CardRequest) -> Result<IssuedCard, PkiError> {
        let maps = check_request(req)?;
        let (prefecture, city) = locality(&req.address);
        let not_before = to_utc_seconds(req.not_before);
        let not_after = to_utc_seconds(req.not_after);

        // User authentication: C=JP, CN=<opaque id>, no personal data.
        let auth_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(rc("RSA key"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("JP")?);
        dn.push(DnType::CommonName, printable(&random_alnum(23)?)?);
        let mut params = ee_params(
            CertKind::UserAuth,
            dn,
            not_before,
            not_after,
            prefecture,
            city,
        )?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let auth_cert = self.sign_ee(&self.auth, params, &auth_key)?.pem();

        // Digital signature: C=JP, L=<prefecture>, L=<city>, CN=<time + sequence + office>.
        let sign_key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(rc("RSA key"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("JP")?);
        dn.push(DnType::LocalityName, printable(prefecture)?);
        // rcgen keeps one value per type: a second L goes in as a custom type with the L OID.
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 7]), printable(city)?);
        let issued_at = OffsetDateTime::now_utc();
        let cn = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{}DEMO01",
            issued_at.year(),
            u8::from(issued_at.month()),
            issued_at.day(),
            issued_at.hour(),
            issued_at.minute(),
            issued_at.second(),
            random_digits(5)?
        );
        dn.push(DnType::CommonName, printable(&cn)?);
        let mut params = ee_params(
            CertKind::Signature,
            dn,
            not_before,
            not_after,
            prefecture,
            city,
        )?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        let other_name = |oid: &str, value: &str| -> Result<SanType, PkiError> {
            let arcs = der::oid_arcs(oid).map_err(PkiError::Demo)?;
            Ok(SanType::OtherName((
                arcs,
                OtherNameValue::Utf8String(value.to_owned()),
            )))
        };
        params.subject_alt_names = vec![
            other_name(oids::BASIC4_NAME, &req.name)?,
            other_name(oids::BASIC4_NAME_SUBSTITUTED, &maps.0)?,
            other_name(oids::BASIC4_GENDER, &req.gender.to_string())?,
            other_name(
                oids::BASIC4_BIRTHDATE,
                &basic4::encode_birthdate(req.birthdate)?,
            )?,
            other_name(oids::BASIC4_ADDRESS, &req.address)?,
            other_name(oids::BASIC4_ADDRESS_SUBSTITUTED, &maps.1)?,
        ];
        let sign_cert = self.sign_ee(&self.sign, params, &sign_key)?.pem();

        Ok(IssuedCard {
            auth_cert_pem: auth_cert,
            auth_key_pem: auth_key.serialize_pem(),
            sign_cert_pem: sign_cert,
            sign_key_pem: sign_key.serialize_pem(),
        })
    }

    /// The CA of `kind`.
    fn ca(&self, kind: CertKind) -> &DemoCa {
        match kind {
            CertKind::UserAuth => &self.auth,
            CertKind::Signature => &self.sign,
        }
    }

    /// DER of the CA certificate of `kind`.
    pub fn ca_cert_der(&self, kind: CertKind) -> Vec<u8> {
        self.ca(kind).cert_der.clone()
    }

    /// PKCS#8 DER of the RSA key of the CA of `kind` (signs CRLs and CA-signed OCSP responses).
    pub fn ca_key_pkcs8(&self, kind: CertKind) -> Vec<u8> {
        self.ca(kind).key.serialize_der()
    }

    /// The CA of `kind` as its own OCSP responder (responses signed by the CA key, no
    /// certificate included).
    pub fn ca_signer(&self, kind: CertKind) -> ocsp::ResponderSigner {
        ocsp::ResponderSigner {
            cert_der: self.ca_cert_der(kind),
            key_pkcs8: self.ca_key_pkcs8(kind),
            delegated: false,
        }
    }

    /// Issues a delegated OCSP responder certificate from the CA of `kind` (RFC 6960 §4.2.2.2):
    /// fresh RSA-2048 key, `CN=<kind> OCSP Responder` under the CA's O/OU, keyUsage
    /// digitalSignature, EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck. The certificate is
    /// included in the responses it signs.
    pub fn issue_ocsp_responder(
        &self,
        kind: CertKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<ocsp::ResponderSigner, PkiError> {
        self.issue_responder(kind, not_before, not_after, true)
    }

    /// Like [`DemoPki::issue_ocsp_responder`] but without the OCSPSigning EKU (an unauthorised
    /// responder, for tests).
    #[cfg(test)]
    pub(crate) fn issue_responder_without_eku(
        &self,
        kind: CertKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<ocsp::ResponderSigner, PkiError> {
        self.issue_responder(kind, not_before, not_after, false)
    }

    fn issue_responder(
        &self,
        kind: CertKind,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        ocsp_signing: bool,
    ) -> Result<ocsp::ResponderSigner, PkiError> {
        let not_before = to_utc_seconds(not_before);
        let not_after = to_utc_seconds(not_after);
        if not_before >= not_after {
            return Err(PkiError::Demo(
                "OCSP responder: not_before must be before not_after".into(),
            ));
        }
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(rc("RSA key"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, printable("JP")?);
        dn.push(DnType::OrganizationName, printable(DEMO_O)?);
        dn.push(DnType::OrganizationalUnitName, printable(ca_ou(kind))?);
        let cn = match kind {
            CertKind::UserAuth => "Demo user-authentication OCSP Responder",
            CertKind::Signature => "Demo digital-signature OCSP Responder",
        };
        dn.push(DnType::CommonName, printable(cn)?);
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if ocsp_signing {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        }
        // id-pkix-ocsp-nocheck ::= NULL: clients need not check the responder's own status.
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
                vec![0x05, 0x00],
            ));
        let cert = self.sign_ee(self.ca(kind), params, &key)?;
        Ok(ocsp::ResponderSigner {
            cert_der: cert.der().to_vec(),
            key_pkcs8: key.serialize_der(),
            delegated: true,
        })
    }

    /// Signs an end-entity certificate with `ca`; adds the SKI computed from `key`.
    fn sign_ee(
        &self,
        ca: &DemoCa,
        mut params: CertificateParams,
        key: &KeyPair,
    ) -> Result<rcgen::Certificate, PkiError> {
        let ski = params.key_identifier(key);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[2, 5, 29, 14],
                der::tlv(der::tag::OCTET_STRING, &ski),
            ));
        let issuer = rcgen::Issuer::from_params(&ca.params, &ca.key);
        params
            .signed_by(key, &issuer)
            .map_err(rc("signing the certificate"))
    }
}

/// Checks a card request; returns the (name, address) substitution maps to write.
fn check_request(req: &CardRequest) -> Result<(String, String), PkiError> {
    let bad = |m: String| Err(PkiError::Demo(format!("card request: {m}")));
    if req.name.trim().is_empty() || req.name.chars().any(char::is_control) {
        return bad(format!(
            "name {:?} is empty or has control characters",
            req.name
        ));
    }
    if req.address.trim().is_empty() || req.address.chars().any(char::is_control) {
        return bad(format!(
            "address {:?} is empty or has control characters",
            req.address
        ));
    }
    if req.address.chars().count() > 200 {
        return bad("address is longer than 200 characters".into());
    }
    if !(1..=3).contains(&req.gender) {
        return bad(format!("gender {} is not 1, 2 or 3", req.gender));
    }
    if req.not_before >= req.not_after {
        return bad("not_before must be before not_after".into());
    }
    basic4::encode_birthdate(req.birthdate)?;
    let map = |given: &Option<String>, of: &str, what: &str| -> Result<String, PkiError> {
        match given {
            None => Ok("0".repeat(of.chars().count())),
            Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()) => Ok(m.clone()),
            Some(m) => Err(PkiError::Demo(format!(
                "card request: {what} substitution map {m:?} must be digits"
            ))),
        }
    };
    Ok((
        map(&req.name_substituted, &req.name, "name")?,
        map(&req.address_substituted, &req.address, "address")?,
    ))
}

/// Parameters shared by both end-entity profiles.
fn ee_params(
    kind: CertKind,
    subject: DistinguishedName,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    prefecture: &str,
    city: &str,
) -> Result<CertificateParams, PkiError> {
    let policy = match kind {
        CertKind::UserAuth => oids::USER_AUTH_POLICY,
        CertKind::Signature => oids::SIGNATURE_POLICY,
    };
    let mut policies =
        CustomExtension::from_oid_content(&[2, 5, 29, 32], certificate_policies(policy)?);
    policies.set_criticality(true);
    let crldp_name = der::name(&[
        (OID_COUNTRY, der::NameValue::Printable("JP")),
        (OID_ORG, der::NameValue::Printable(DEMO_O)),
        (OID_OU, der::NameValue::Printable(ca_ou(kind))),
        (OID_OU, der::NameValue::Printable("CRL Distribution Points")),
        (OID_OU, der::NameValue::Printable(prefecture)),
        (OID_CN, der::NameValue::Printable(&format!("{city} CRLDP"))),
    ])
    .map_err(PkiError::Demo)?;
    // CRLDistributionPoints ::= SEQUENCE OF DistributionPoint { [0] { fullName [0] { [4] Name } } }
    let crldp = der::sequence(&[der::sequence(&[der::constructed(
        der::tag::CONTEXT_0,
        &[der::constructed(
            der::tag::CONTEXT_0,
            &[der::constructed(der::tag::CONTEXT_4, &[crldp_name])],
        )],
    )])]);

    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::NoCa;
    params.use_authority_key_identifier_extension = true;
    params.custom_extensions = vec![
        policies,
        issuer_alt_name()?,
        CustomExtension::from_oid_content(&[2, 5, 29, 31], crldp),
    ];
    Ok(params)
}

/// `certificatePolicies` value: one policy with a CPS qualifier, as J-LIS does.
fn certificate_policies(policy: &str) -> Result<Vec<u8>, PkiError> {
    let qualifier = der::sequence(&[
        der::oid(OID_CPS_QUALIFIER).map_err(PkiError::Demo)?,
        der::tlv(der::tag::IA5_STRING, CPS_URL.as_bytes()),
    ]);
    let info = der::sequence(&[
        der::oid(policy).map_err(PkiError::Demo)?,
        der::sequence(&[qualifier]),
    ]);
    Ok(der::sequence(&[info]))
}

/// `issuerAltName`: DirName C=JP, O=公的個人認証サービス（デモ）.
fn issuer_alt_name() -> Result<CustomExtension, PkiError> {
    let name = der::name(&[
        (OID_COUNTRY, der::NameValue::Printable("JP")),
        (OID_ORG, der::NameValue::Utf8(ISSUER_ALT_O)),
    ])
    .map_err(PkiError::Demo)?;
    let value = der::sequence(&[der::constructed(der::tag::CONTEXT_4, &[name])]);
    Ok(CustomExtension::from_oid_content(&[2, 5, 29, 18], value))
}

fn generate_ca(
    kind: CertKind,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<DemoCa, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(rc("RSA key"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, printable("JP")?);
    dn.push(DnType::OrganizationName, printable(DEMO_O)?);
    dn.push(DnType::OrganizationalUnitName, printable(ca_ou(kind))?);
    // rcgen keeps one value per type: the second OU goes in as a custom type with the OU OID.
    dn.push(DnType::CustomDnType(vec![2, 5, 4, 11]), printable(JLIS_OU)?);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.custom_extensions = vec![issuer_alt_name()?];
    let cert = params.self_signed(&key).map_err(rc("CA certificate"))?;
    Ok(DemoCa {
        cert_der: cert.der().to_vec(),
        cert_pem: cert.pem(),
        key,
        params,
    })
}

fn load_ca(kind: CertKind, cert_pem: &str, key_pem: &str) -> Result<DemoCa, PkiError> {
    let what = match kind {
        CertKind::UserAuth => "auth CA",
        CertKind::Signature => "sign CA",
    };
    let bad = |m: String| PkiError::Demo(format!("{what}: {m}"));
    let block = pem::parse(cert_pem).map_err(|e| bad(format!("certificate PEM: {e}")))?;
    if block.tag() != "CERTIFICATE" {
        return Err(bad(format!(
            "PEM block is {:?}, expected CERTIFICATE",
            block.tag()
        )));
    }
    let cert_der = block.into_contents();
    let (_, cert) =
        X509Certificate::from_der(&cert_der).map_err(|e| bad(format!("certificate DER: {e}")))?;
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| bad(format!("PKCS#8 RSA key: {e}")))?;
    if key.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(bad("key does not match the certificate".into()));
    }
    let ski = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let mut params = CertificateParams::default();
    params.distinguished_name = dn_from_x509(cert.subject()).map_err(bad)?;
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    if let Some(ski) = ski {
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
    }
    let cert_pem = crate::pki::demo::pem_lf(&pem::Pem::new("CERTIFICATE", cert_der.clone()));
    Ok(DemoCa {
        cert_der,
        cert_pem,
        key,
        params,
    })
}

/// Rebuilds an rcgen DN from a parsed one, keeping order and string types so that issued
/// certificates carry an issuer DN byte-identical to the CA's subject.
fn dn_from_x509(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for atv in name.iter_attributes() {
        let arcs: Vec<u64> = atv
            .attr_type()
            .iter()
            .ok_or("subject attribute OID too large")?
            .collect();
        let value = atv
            .as_str()
            .map_err(|_| format!("subject attribute {} is not a string", atv.attr_type()))?;
        let value = if atv.attr_value().tag() == x509_parser::asn1_rs::Tag::PrintableString {
            DnValue::PrintableString(value.try_into().map_err(|e| format!("{e}"))?)
        } else {
            DnValue::Utf8String(value.to_owned())
        };
        let mut ty = DnType::from_oid(&arcs);
        if dn.get(&ty).is_some() {
            ty = DnType::CustomDnType(arcs);
            if dn.get(&ty).is_some() {
                return Err(format!(
                    "subject repeats attribute {} more than twice",
                    atv.attr_type()
                ));
            }
        }
        dn.push(ty, value);
    }
    Ok(dn)
}

fn printable(s: &str) -> Result<DnValue, PkiError> {
    Ok(DnValue::PrintableString(s.try_into().map_err(|e| {
        PkiError::Demo(format!("{s:?} is not a PrintableString: {e}"))
    })?))
}

fn to_utc_seconds(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    t.replace_nanosecond(0).unwrap_or(t)
}

fn random_bytes<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| PkiError::Demo("random generator failed".into()))?;
    Ok(buf)
}

/// A random positive 8-byte serial with a non-zero first byte.
fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    let mut b = random_bytes::<8>()?;
    b[0] = (b[0] & 0x7F) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&b))
}

fn random_alnum(len: usize) -> Result<String, PkiError> {
    const ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let bytes = random_bytes::<32>()?;
    Ok(bytes
        .iter()
        .take(len)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

fn random_digits(len: usize) -> Result<String, PkiError> {
    let bytes = random_bytes::<16>()?;
    Ok(bytes
        .iter()
        .take(len)
        .map(|b| char::from(b'0' + b % 10))
        .collect())
}

/// (prefecture, municipality) in the ASCII form of JPKI's L attributes and CRL distribution
/// points, derived roughly from the address: the prefecture from a table, the municipality fixed.
fn locality(address: &str) -> (&'static str, &'static str) {
    const PREFECTURES: [(&str, &str); 47] = [
        ("北海道", "Hokkaido"),
        ("青森県", "Aomori-ken"),
        ("岩手県", "Iwate-ken"),
        ("宮城県", "Miyagi-ken"),
        ("秋田県", "Akita-ken"),
        ("山形県", "Yamagata-ken"),
        ("福島県", "Fukushima-ken"),
        ("茨城県", "Ibaraki-ken"),
        ("栃木県", "Tochigi-ken"),
        ("群馬県", "Gunma-ken"),
        ("埼玉県", "Saitama-ken"),
        ("千葉県", "Chiba-ken"),
        ("東京都", "Tokyo-to"),
        ("神奈川県", "Kanagawa-ken"),
        ("新潟県", "Niigata-ken"),
        ("富山県", "Toyama-ken"),
        ("石川県", "Ishikawa-ken"),
        ("福井県", "Fukui-ken"),
        ("山梨県", "Yamanashi-ken"),
        ("長野県", "Nagano-ken"),
        ("岐阜県", "Gifu-ken"),
        ("静岡県", "Shizuoka-ken"),
        ("愛知県", "Aichi-ken"),
        ("三重県", "Mie-ken"),
        ("滋賀県", "Shiga-ken"),
        ("京都府", "Kyoto-fu"),
        ("大阪府", "Osaka-fu"),
        ("兵庫県", "Hyogo-ken"),
        ("奈良県", "Nara-ken"),
        ("和歌山県", "Wakayama-ken"),
        ("鳥取県", "Tottori-ken"),
        ("島根県", "Shimane-ken"),
        ("岡山県", "Okayama-ken"),
        ("広島県", "Hiroshima-ken"),
        ("山口県", "Yamaguchi-ken"),
        ("徳島県", "Tokushima-ken"),
        ("香川県", "Kagawa-ken"),
        ("愛媛県", "Ehime-ken"),
        ("高知県", "Kochi-ken"),
        ("福岡県", "Fukuoka-ken"),
        ("佐賀県", "Saga-ken"),
        ("長崎県", "Nagasaki-ken"),
        ("熊本県", "Kumamoto-ken"),
        ("大分県", "Oita-ken"),
        ("宮崎県", "Miyazaki-ken"),
        ("鹿児島県", "Kagoshima-ken"),
        ("沖縄県", "Okinawa-ken"),
    ];
    let prefecture = PREFECTURES
        .iter()
        .find(|(kanji, _)| address.starts_with(kanji))
        .map_or("Demo-ken", |(_, ascii)| ascii);
    (prefecture, "Demo-shi")
}

/// PEM with LF line endings (what rcgen and openssl write).
pub(crate) fn pem_lf(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename, so
/// readers never see a partial file. `private` files get mode 0600 (on Unix).
pub(crate) fn write_file_atomic(
    path: &Path,
    contents: &[u8],
    private: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = random_bytes::<6>().map(hex::encode).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.{suffix}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
