//! Tests of the JPKI validator against the demo PKI, a real J-LIS certificate and openssl.

use super::test_support::{
    card_request, demo_card, demo_pki, fixture_now, other_demo_pki, pem_to_der,
};
use super::*;
use std::path::Path;
use std::process::Command;
use time::Duration;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

const AUTH_CA_DN: &str = "C=JP, O=JPKI-DEMO, OU=JPKI for user authentication, \
                          OU=Japan Agency for Local Authority Information Systems";
const SIGN_CA_DN: &str = "C=JP, O=JPKI-DEMO, OU=JPKI for digital signature, \
                          OU=Japan Agency for Local Authority Information Systems";

fn demo_store() -> TrustStore {
    demo_pki().trust_store().expect("demo trust store")
}

fn auth_der() -> Vec<u8> {
    pem_to_der(&demo_card().auth_cert_pem)
}

fn sign_der() -> Vec<u8> {
    pem_to_der(&demo_card().sign_cert_pem)
}

/// (critical, policy OIDs) of the certificatePolicies extension.
fn policies_of(cert: &X509Certificate<'_>) -> (bool, Vec<String>) {
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CertificatePolicies(p) => Some((
                e.critical,
                p.iter().map(|i| i.policy_id.to_id_string()).collect(),
            )),
            _ => None,
        })
        .expect("certificatePolicies present")
}

/// (critical, flags) of keyUsage.
fn key_usage_of(cert: &X509Certificate<'_>) -> (bool, bool, bool, bool) {
    let ku = cert
        .key_usage()
        .expect("keyUsage parses")
        .expect("keyUsage present");
    (
        ku.critical,
        ku.value.digital_signature(),
        ku.value.non_repudiation(),
        ku.value.key_cert_sign(),
    )
}

#[test]
fn demo_auth_cert_validates_as_user_auth() {
    let der = auth_der();
    let v = validate(&der, &demo_store(), CertKind::UserAuth, fixture_now()).expect("valid");
    assert_eq!(v.kind, CertKind::UserAuth);
    assert_eq!(v.issuer, AUTH_CA_DN);
    assert_eq!(v.anchor_label, "demo-auth-ca");
    assert!(v.anchor_demo);
    assert!(v.basic4.is_none());
    assert_eq!(v.der, der);

    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let expected_serial = hex::encode(cert.tbs_certificate.serial.to_bytes_be());
    assert_eq!(v.serial_hex, expected_serial);
    assert_eq!(
        v.serial_hex.len(),
        16,
        "8-byte random serial, minimal encoding"
    );
    assert!(!v.serial_hex.starts_with("00"));
    assert_eq!(
        v.public_key_pkcs1,
        cert.public_key().subject_public_key.data.to_vec()
    );
    // Subject: C=JP, CN=<23 opaque characters>, no personal data.
    let cn = v.subject.strip_prefix("C=JP, CN=").expect("subject shape");
    assert_eq!(cn.len(), 23);
    assert!(
        cn.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    );
    assert_eq!(v.not_before, card_request().not_before);
    assert_eq!(v.not_after, card_request().not_after);

    // The JSON form (what the other layers log/store) skips the raw key and DER.
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["kind"], "user_auth");
    assert!(json.get("der").is_none() && json.get("public_key_pkcs1").is_none());
}

#[test]
fn demo_certs_reproduce_the_jpki_profile() {
    let der = auth_der();
    let (_, auth) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(key_usage_of(&auth), (true, true, false, false));
    assert_eq!(
        policies_of(&auth),
        (true, vec![oids::USER_AUTH_POLICY.to_string()])
    );
    let eku = auth.extended_key_usage().unwrap().expect("EKU present");
    assert!(!eku.critical && eku.value.client_auth);
    assert!(auth.basic_constraints().unwrap().is_none());
    let ext_oids: Vec<String> = auth
        .extensions()
        .iter()
        .map(|e| e.oid.to_id_string())
        .collect();
    for oid in ["2.5.29.18", "2.5.29.31", "2.5.29.35", "2.5.29.14"] {
        assert!(
            ext_oids.contains(&oid.to_string()),
            "missing {oid}: {ext_oids:?}"
        );
    }
    let crldp: Vec<String> = auth
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(p) => Some(
                p.points
                    .iter()
                    .filter_map(|dp| match &dp.distribution_point {
                        Some(x509_parser::extensions::DistributionPointName::FullName(names)) => {
                            Some(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                        }
                        _ => None,
                    })
                    .flatten()
                    .collect(),
            ),
            _ => None,
        })
        .expect("CRLDP parses");
    assert_eq!(
        crldp,
        vec![
            "DirectoryName(C=JP, O=JPKI-DEMO, OU=JPKI for user authentication, \
             OU=CRL Distribution Points, OU=Tokyo-to, CN=Demo-shi CRLDP)"
                .to_string()
        ]
    );

    let der = sign_der();
    let (_, sign) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(key_usage_of(&sign), (true, true, true, false));
    assert_eq!(
        policies_of(&sign),
        (true, vec![oids::SIGNATURE_POLICY.to_string()])
    );
    assert!(
        sign.subject()
            .to_string()
            .starts_with("C=JP, L=Tokyo-to, L=Demo-shi, CN=")
    );

    let ca_der = demo_pki().anchors()[0].cert_der.clone();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(ca.subject().to_string(), AUTH_CA_DN);
    assert_eq!(ca.issuer().to_string(), AUTH_CA_DN);
    let bc = ca.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical && bc.value.ca);
    let (ku_critical, _, _, cert_sign) = key_usage_of(&ca);
    assert!(ku_critical && cert_sign);
    let sign_ca_der = demo_pki().anchors()[1].cert_der.clone();
    let (_, sign_ca) = X509Certificate::from_der(&sign_ca_der).unwrap();
    assert_eq!(sign_ca.subject().to_string(), SIGN_CA_DN);
}

#[test]
fn demo_sign_cert_validates_and_basic4_round_trips() {
    let v = validate(
        &sign_der(),
        &demo_store(),
        CertKind::Signature,
        fixture_now(),
    )
    .expect("valid");
    assert_eq!(v.kind, CertKind::Signature);
    assert_eq!(v.issuer, SIGN_CA_DN);
    assert_eq!(v.anchor_label, "demo-sign-ca");
    let req = card_request();
    let expected = Basic4 {
        name: "山田\u{3000}太郎".into(),
        name_substituted: "00010".into(),
        gender: "1".into(),
        birthdate: "1989-01-07".into(),
        birthdate_era: 3,
        address: req.address.clone(),
        address_substituted: "00000010000000".into(),
    };
    let b4 = v.basic4.expect("basic four present");
    assert_eq!(b4, expected);
    assert!(b4.has_substituted_characters());
    assert_eq!(b4.birth_date(), Some(req.birthdate));
}

#[test]
fn basic4_defaults_to_zero_maps_and_heisei_era() {
    let mut req = card_request();
    req.name_substituted = None;
    req.address_substituted = None;
    req.birthdate = time::macros::date!(1989 - 01 - 08);
    req.gender = 3;
    let card = demo_pki().issue_card(&req).expect("issue");
    let v = validate(
        &pem_to_der(&card.sign_cert_pem),
        &demo_store(),
        CertKind::Signature,
        fixture_now(),
    )
    .expect("valid");
    let b4 = v.basic4.expect("basic four");
    assert_eq!(b4.name_substituted, "00000");
    assert_eq!(
        b4.address_substituted,
        "0".repeat(req.address.chars().count())
    );
    assert!(!b4.has_substituted_characters());
    assert_eq!((b4.birthdate_era, b4.birthdate.as_str()), (4, "1989-01-08"));
    assert_eq!(b4.gender, "3");
}

#[test]
fn bad_card_requests_are_refused() {
    let mut req = card_request();
    req.gender = 4;
    assert!(matches!(demo_pki().issue_card(&req), Err(PkiError::Demo(m)) if m.contains("gender")));
    let mut req = card_request();
    req.name_substituted = Some("0a".into());
    assert!(matches!(demo_pki().issue_card(&req), Err(PkiError::Demo(m)) if m.contains("digits")));
    let mut req = card_request();
    req.not_after = req.not_before;
    assert!(matches!(
        demo_pki().issue_card(&req),
        Err(PkiError::Demo(_))
    ));
}

#[test]
fn wrong_kind_is_refused_both_ways() {
    let store = demo_store();
    let now = fixture_now();
    assert_eq!(
        validate(&sign_der(), &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::WrongKind {
            expected: CertKind::UserAuth,
            found: CertKind::Signature
        }
    );
    assert_eq!(
        validate(&auth_der(), &store, CertKind::Signature, now).unwrap_err(),
        PkiError::WrongKind {
            expected: CertKind::Signature,
            found: CertKind::UserAuth
        }
    );
    let msg = validate(&sign_der(), &store, CertKind::UserAuth, now)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected a user-authentication"), "{msg}");
}

#[test]
fn card_from_another_pki_is_untrusted() {
    let other = other_demo_pki()
        .issue_card(&card_request())
        .expect("issue from the other PKI");
    let err = validate(
        &pem_to_der(&other.auth_cert_pem),
        &demo_store(),
        CertKind::UserAuth,
        fixture_now(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        PkiError::UntrustedIssuer {
            issuer: AUTH_CA_DN.into()
        }
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let now = fixture_now();
    let mut req = card_request();
    req.not_before = now - Duration::days(30);
    req.not_after = now - Duration::hours(1);
    let expired = demo_pki().issue_card(&req).expect("issue expired card");
    let err = validate(
        &pem_to_der(&expired.auth_cert_pem),
        &demo_store(),
        CertKind::UserAuth,
        now,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PkiError::Expired { not_after } if not_after.ends_with('Z')),
        "{err:?}"
    );

    // The shared card, looked at before its notBefore / just after its notAfter.
    let der = auth_der();
    let err = validate(
        &der,
        &demo_store(),
        CertKind::UserAuth,
        req_not_before() - Duration::seconds(1),
    )
    .unwrap_err();
    assert!(matches!(err, PkiError::NotYetValid { .. }), "{err:?}");
    // Inclusive bounds.
    assert!(validate(&der, &demo_store(), CertKind::UserAuth, req_not_before()).is_ok());
    let not_after = card_request().not_after;
    assert!(validate(&der, &demo_store(), CertKind::UserAuth, not_after).is_ok());
    assert!(matches!(
        validate(
            &der,
            &demo_store(),
            CertKind::UserAuth,
            not_after + Duration::seconds(1)
        ),
        Err(PkiError::Expired { .. })
    ));
}

fn req_not_before() -> time::OffsetDateTime {
    card_request().not_before
}

#[test]
fn two_ca_generations_with_the_same_dn() {
    let a = demo_pki();
    let b = other_demo_pki();
    // Same DN for both generations: only the signature tells them apart.
    assert_eq!(
        X509Certificate::from_der(&a.anchors()[0].cert_der)
            .unwrap()
            .1
            .subject()
            .as_raw(),
        X509Certificate::from_der(&b.anchors()[0].cert_der)
            .unwrap()
            .1
            .subject()
            .as_raw(),
    );
    let mut anchors = Vec::new();
    for (pki, generation) in [(b, "gen2"), (a, "gen1")] {
        for mut anchor in pki.anchors() {
            anchor.label = format!("{generation}-{}", anchor.label);
            anchors.push(anchor);
        }
    }
    let store = TrustStore::new(anchors).expect("store");
    assert!(store.has_demo());
    assert_eq!(store.anchors().len(), 4);
    let now = fixture_now();

    let from_a = validate(&auth_der(), &store, CertKind::UserAuth, now).expect("gen1 card");
    assert_eq!(from_a.anchor_label, "gen1-demo-auth-ca");
    let card_b = b.issue_card(&card_request()).expect("issue gen2 card");
    let from_b = validate(
        &pem_to_der(&card_b.auth_cert_pem),
        &store,
        CertKind::UserAuth,
        now,
    )
    .expect("gen2 card");
    assert_eq!(from_b.anchor_label, "gen2-demo-auth-ca");
    let sign_b = validate(
        &pem_to_der(&card_b.sign_cert_pem),
        &store,
        CertKind::Signature,
        now,
    )
    .expect("gen2 signature card");
    assert_eq!(sign_b.anchor_label, "gen2-demo-sign-ca");
}

#[test]
fn tampered_and_garbage_certificates() {
    let store = demo_store();
    let now = fixture_now();
    let der = auth_der();

    // Last byte of the signature value.
    let mut t = der.clone();
    let last = t.len() - 1;
    t[last] ^= 0x01;
    assert_eq!(
        validate(&t, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::BadSignature
    );

    // One character of the subject CN (inside tbsCertificate).
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let pos = der
        .windows(cn.len())
        .position(|w| w == cn.as_bytes())
        .expect("CN bytes in DER");
    let mut t = der.clone();
    t[pos] = if t[pos] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        validate(&t, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::BadSignature
    );

    for (what, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"definitely not a certificate".to_vec()),
        ("truncated", der[..der.len() / 2].to_vec()),
        ("trailing", [der.clone(), vec![0]].concat()),
    ] {
        let err = validate(&bytes, &store, CertKind::UserAuth, now).unwrap_err();
        assert!(matches!(err, PkiError::Malformed(_)), "{what}: {err:?}");
    }
}

#[test]
fn trust_store_rejects_bad_anchors() {
    let bad = |cert_der: Vec<u8>| {
        TrustStore::new(vec![TrustAnchor {
            kind: CertKind::UserAuth,
            label: "x".into(),
            cert_der,
            demo: false,
        }])
        .unwrap_err()
    };
    assert!(matches!(bad(b"junk".to_vec()), PkiError::BadAnchor(m) if m.contains("x:")));
    // An end-entity certificate is not a CA.
    assert!(matches!(bad(auth_der()), PkiError::BadAnchor(m) if m.contains("not a CA")));
    // A CA whose self-signature was tampered with.
    let mut ca = demo_pki().anchors()[0].cert_der.clone();
    let last = ca.len() - 1;
    ca[last] ^= 0x01;
    assert!(matches!(bad(ca), PkiError::BadAnchor(m) if m.contains("self-signature")));
    // PEM input to the helper.
    let a = TrustAnchor::from_pem_or_der(
        CertKind::Signature,
        "pem",
        demo_pki().sign_ca_cert_pem().as_bytes(),
        true,
    )
    .unwrap();
    assert_eq!(a.cert_der, demo_pki().anchors()[1].cert_der);
    assert!(!TrustStore::new(vec![]).unwrap().has_demo());
}

fn real_cert_path() -> &'static str {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/jpki-user-auth-real.der"
    )
}

#[test]
fn real_jpki_user_auth_certificate() {
    let der = std::fs::read(real_cert_path()).expect("real JPKI certificate fixture");
    let (rest, cert) = X509Certificate::from_der(&der).expect("parses");
    assert!(rest.is_empty());
    assert_eq!(
        policies_of(&cert),
        (true, vec![oids::USER_AUTH_POLICY.to_string()])
    );
    assert_eq!(key_usage_of(&cert), (true, true, false, false));
    assert_eq!(
        cert.subject().to_string(),
        "C=JP, CN=897434E6BNBFHG01106003A"
    );
    assert_eq!(
        cert.issuer().to_string(),
        "C=JP, O=JPKI, OU=JPKI for user authentication, \
         OU=Japan Agency for Local Authority Information Systems"
    );

    // Within its validity, against the demo store: the J-LIS root is not configured.
    let inside = time::macros::datetime!(2025-01-01 00:00 UTC);
    let err = validate(&der, &demo_store(), CertKind::UserAuth, inside).unwrap_err();
    assert_eq!(
        err,
        PkiError::UntrustedIssuer {
            issuer: cert.issuer().to_string()
        }
    );
    // Presented where a signature certificate is expected: refused as the other kind.
    assert_eq!(
        validate(&der, &demo_store(), CertKind::Signature, inside).unwrap_err(),
        PkiError::WrongKind {
            expected: CertKind::Signature,
            found: CertKind::UserAuth
        }
    );

    // Our profile parser reads it like J-LIS wrote it.
    let info = inspect(&der).expect("inspect");
    assert_eq!(info.kind, Some(CertKind::UserAuth));
    assert_eq!(info.serial_hex, "054cfcd8");
    assert_eq!(info.policies, vec![oids::USER_AUTH_POLICY.to_string()]);
    assert!(info.policies_critical);
    assert_eq!(info.key_usage, vec!["digitalSignature"]);
    assert!(info.key_usage_critical);
    assert_eq!(info.rsa_bits, Some(2048));
    assert_eq!(info.subject, "C=JP, CN=897434E6BNBFHG01106003A");
    assert_eq!(
        info.not_before,
        time::macros::datetime!(2022-11-23 17:29:27 UTC)
    );
    assert_eq!(
        info.not_after,
        time::macros::datetime!(2027-09-23 14:59:59 UTC)
    );
}

#[test]
fn real_jpki_certificate_passes_the_profile_under_a_stand_in_root() {
    // We do not have J-LIS's key, so re-sign the real tbsCertificate (issuer DN, serial, policies,
    // keyUsage, CRLDP, AIA, AKI … all untouched) with a test CA that has the J-LIS DN. Everything
    // after the signature check then runs on real J-LIS data.
    use rcgen::SigningKey as _;
    let der = std::fs::read(real_cert_path()).expect("real JPKI certificate fixture");
    let (_, real) = X509Certificate::from_der(&der).unwrap();

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, "JP");
    dn.push(rcgen::DnType::OrganizationName, "JPKI");
    dn.push(
        rcgen::DnType::OrganizationalUnitName,
        "JPKI for user authentication",
    );
    dn.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 11]),
        "Japan Agency for Local Authority Information Systems",
    );
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = params.self_signed(&key).unwrap();

    let sig = key.sign(real.tbs_certificate.as_ref()).unwrap();
    let resigned = der::sequence(&[
        real.tbs_certificate.as_ref().to_vec(),
        der::sequence(&[der::oid("1.2.840.113549.1.1.11").unwrap(), vec![0x05, 0x00]]),
        der::tlv(0x03, &[vec![0x00], sig].concat()),
    ]);
    let store = TrustStore::new(vec![TrustAnchor {
        kind: CertKind::UserAuth,
        label: "jlis-stand-in".into(),
        cert_der: ca.der().to_vec(),
        demo: false,
    }])
    .unwrap();
    let inside = time::macros::datetime!(2025-01-01 00:00 UTC);
    let v = validate(&resigned, &store, CertKind::UserAuth, inside).expect("real profile passes");
    assert_eq!(v.serial_hex, "054cfcd8");
    assert_eq!(v.subject, "C=JP, CN=897434E6BNBFHG01106003A");
    assert_eq!(v.anchor_label, "jlis-stand-in");
    assert_eq!(v.public_key_pkcs1.len(), 270);
    assert!(v.basic4.is_none());
    // The untouched original does not verify under the stand-in: the AKI names J-LIS's key,
    // not the stand-in's, so this is an untrusted issuer rather than a bad signature.
    assert!(matches!(
        validate(&der, &store, CertKind::UserAuth, inside),
        Err(PkiError::UntrustedIssuer { .. })
    ));
    // After its notAfter (2027-09-23 14:59:59Z).
    let after = time::macros::datetime!(2027-09-23 15:00 UTC);
    assert_eq!(
        validate(&resigned, &store, CertKind::UserAuth, after).unwrap_err(),
        PkiError::Expired {
            not_after: "2027-09-23T14:59:59Z".into()
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Certificates made by the openssl CLI.

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const OPENSSL_CNF: &str = r#"
[req]
distinguished_name = dn
prompt = no
[dn]
C = JP
O = OSSL-TEST
CN = OpenSSL test JPKI CA
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ee_auth]
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
certificatePolicies = critical,1.2.392.200149.8.5.1.3.30
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
[ee_no_policy]
keyUsage = critical,digitalSignature
[ee_no_ku]
certificatePolicies = critical,1.2.392.200149.8.5.1.3.30
[ee_ca]
keyUsage = critical,digitalSignature
certificatePolicies = critical,1.2.392.200149.8.5.1.3.30
basicConstraints = critical,CA:TRUE
[ee_unknown_critical]
keyUsage = critical,digitalSignature
certificatePolicies = critical,1.2.392.200149.8.5.1.3.30
1.2.3.4.5 = critical,ASN1:UTF8String:surprise
"#;

/// Issues `name.crt` (key `name.key`, RSA of `bits`) from the openssl CA with extension section `ext`.
fn openssl_ee(dir: &Path, name: &str, ext: &str, bits: u32) -> Vec<u8> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            &format!("rsa:{bits}"),
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/C=JP/CN=OPENSSLTESTCARD0000001",
            "-config",
            "test.cnf",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "0x0123ABCD",
            "-days",
            "30",
            "-sha256",
            "-extfile",
            "test.cnf",
            "-extensions",
            ext,
            "-out",
            &crt,
        ],
    );
    pem_to_der(&std::fs::read_to_string(dir.join(crt)).unwrap())
}

#[test]
fn openssl_made_jpki_profile_validates_and_signs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("test.cnf"), OPENSSL_CNF).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "30",
            "-sha256",
            "-config",
            "test.cnf",
            "-extensions",
            "ca_ext",
        ],
    );
    let ca_pem = std::fs::read(dir.join("ca.crt")).unwrap();
    let ee = openssl_ee(dir, "ee", "ee_auth", 2048);
    // openssl starts validity when it signs; look a little later.
    let now = time::OffsetDateTime::now_utc() + Duration::minutes(2);

    // Unknown CA first.
    assert!(matches!(
        validate(&ee, &demo_store(), CertKind::UserAuth, now),
        Err(PkiError::UntrustedIssuer { .. })
    ));
    let mut anchors = demo_pki().anchors();
    anchors.push(
        TrustAnchor::from_pem_or_der(CertKind::UserAuth, "openssl-ca", &ca_pem, false).unwrap(),
    );
    let store = TrustStore::new(anchors).expect("openssl CA is a valid anchor");
    let v = validate(&ee, &store, CertKind::UserAuth, now).expect("openssl JPKI-profile cert");
    assert_eq!(v.anchor_label, "openssl-ca");
    assert!(!v.anchor_demo);
    assert_eq!(v.serial_hex, "0123abcd");
    assert_eq!(v.subject, "C=JP, CN=OPENSSLTESTCARD0000001");
    assert_eq!(v.issuer, "C=JP, O=OSSL-TEST, CN=OpenSSL test JPKI CA");

    // The openssl key signs a challenge (PKCS#1 v1.5, SHA-256, as the card does); the
    // certificate's key verifies it.
    let key_pem = std::fs::read(dir.join("ee.key")).unwrap();
    let key =
        aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pem::parse(&key_pem).unwrap().contents())
            .expect("openssl PKCS#8 key");
    let challenge = b"login challenge: nonce=abc123";
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        challenge,
        &mut sig,
    )
    .expect("sign");
    assert_eq!(sig.len(), 256);
    verify_rsa_pkcs1_sha256(&v.public_key_pkcs1, challenge, &sig).expect("signature verifies");
    assert_eq!(
        verify_rsa_pkcs1_sha256(&v.public_key_pkcs1, b"another challenge", &sig),
        Err(PkiError::BadSignature)
    );

    // Profile violations, each with its own error.
    let no_policy = openssl_ee(dir, "nopol", "ee_no_policy", 2048);
    assert_eq!(
        validate(&no_policy, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::Policy { found: vec![] }
    );
    let no_ku = openssl_ee(dir, "noku", "ee_no_ku", 2048);
    assert!(matches!(
        validate(&no_ku, &store, CertKind::UserAuth, now),
        Err(PkiError::KeyUsage(m)) if m.contains("missing")
    ));
    let is_ca = openssl_ee(dir, "isca", "ee_ca", 2048);
    assert_eq!(
        validate(&is_ca, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::IsCa
    );
    let unknown = openssl_ee(dir, "unk", "ee_unknown_critical", 2048);
    assert_eq!(
        validate(&unknown, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::UnsupportedCriticalExtension("1.2.3.4.5".into())
    );
    let weak = openssl_ee(dir, "weak", "ee_auth", 1024);
    assert!(matches!(
        validate(&weak, &store, CertKind::UserAuth, now),
        Err(PkiError::WeakKey(m)) if m.contains("1024")
    ));
    // A user-auth-policy cert from a CA configured as a signature anchor is the wrong kind.
    let mut anchors = demo_pki().anchors();
    anchors.push(
        TrustAnchor::from_pem_or_der(CertKind::Signature, "sign-ca", &ca_pem, false).unwrap(),
    );
    let store = TrustStore::new(anchors).unwrap();
    assert_eq!(
        validate(&no_policy, &store, CertKind::UserAuth, now).unwrap_err(),
        PkiError::WrongKind {
            expected: CertKind::UserAuth,
            found: CertKind::Signature
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Demo PKI persistence.

#[test]
fn demo_pki_load_or_create_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-pki");
    let now = fixture_now();
    let (created, was_created) =
        crate::pki::demo::DemoPki::load_or_create(&dir, now).expect("create");
    assert!(was_created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [
            crate::pki::demo::AUTH_CA_KEY_FILE,
            crate::pki::demo::SIGN_CA_KEY_FILE,
        ] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let (loaded, was_created) = crate::pki::demo::DemoPki::load_or_create(&dir, now).expect("load");
    assert!(!was_created);
    assert_eq!(loaded.auth_ca_cert_pem(), created.auth_ca_cert_pem());
    assert_eq!(loaded.sign_ca_cert_pem(), created.sign_ca_cert_pem());
    let labels: Vec<_> = loaded
        .anchors()
        .into_iter()
        .map(|a| (a.label, a.kind, a.demo))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("demo-auth-ca".to_string(), CertKind::UserAuth, true),
            ("demo-sign-ca".to_string(), CertKind::Signature, true)
        ]
    );

    // A card issued by the reloaded PKI validates against the originally created CAs, with an
    // issuer DN byte-identical to the CA subject.
    let card = loaded
        .issue_card(&card_request())
        .expect("issue from loaded PKI");
    let store = created.trust_store().unwrap();
    let v = validate(
        &pem_to_der(&card.auth_cert_pem),
        &store,
        CertKind::UserAuth,
        now,
    )
    .unwrap();
    assert_eq!(v.issuer, AUTH_CA_DN);
    let (_, ee) = X509Certificate::from_der(&v.der).unwrap();
    let ca_der = created.anchors()[0].cert_der.clone();
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(ee.issuer().as_raw(), ca.subject().as_raw());
    validate(
        &pem_to_der(&card.sign_cert_pem),
        &store,
        CertKind::Signature,
        now,
    )
    .unwrap();

    // A partial directory is an error, not silently regenerated.
    std::fs::remove_file(dir.join(crate::pki::demo::SIGN_CA_KEY_FILE)).unwrap();
    let err = crate::pki::demo::DemoPki::load_or_create(&dir, now).unwrap_err();
    assert!(
        matches!(&err, PkiError::Io(m) if m.contains("sign-ca.key.pem")),
        "{err:?}"
    );
    // A key that does not match its certificate is refused.
    std::fs::copy(
        dir.join(crate::pki::demo::AUTH_CA_KEY_FILE),
        dir.join(crate::pki::demo::SIGN_CA_KEY_FILE),
    )
    .unwrap();
    let err = crate::pki::demo::DemoPki::load(&dir).unwrap_err();
    assert!(
        matches!(&err, PkiError::Demo(m) if m.contains("does not match")),
        "{err:?}"
    );
}
