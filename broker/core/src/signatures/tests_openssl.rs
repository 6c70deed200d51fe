//! Interoperability with an independent implementation: signatures and certificates made by the
//! Debian `openssl` CLI, and the card's CMS checked by `openssl cms -verify`.

use super::tests::{
    DOCUMENT, SIGN_PIN, assert_code, find, new_card, now as card_now, trust as demo_trust,
};
use super::*;
use crate::card::Key;
use crate::pki::test_support::demo_card;
use crate::pki::{CertKind, TrustAnchor, TrustStore};
use aws_lc_rs::digest;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

/// openssl configuration: a JPKI-signature-profile CA and end-entity certificates.
const CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
C = JP
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[sign]
keyUsage = critical, digitalSignature, nonRepudiation
certificatePolicies = critical, 1.2.392.200149.8.5.1.1.20
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[plain]
basicConstraints = critical, CA:FALSE
subjectKeyIdentifier = hash
";

/// PEM files made once by openssl (RSA key generation is slow); tests write them where needed.
struct Pki {
    files: Vec<(&'static str, Vec<u8>)>,
    trust: TrustStore,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("openssl.cnf"), CONFIG).unwrap();
        let rsa_key = |out: &str| {
            openssl(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    out,
                ],
            );
        };
        rsa_key("ca.key");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-config",
                "openssl.cnf",
                "-extensions",
                "ca",
                "-subj",
                "/C=JP/O=JPKI-OPENSSL-TEST/OU=JPKI for digital signature",
                "-days",
                "3650",
                "-sha256",
                "-out",
                "ca.pem",
            ],
        );
        for (name, cn, serial) in [
            ("ee", "OPENSSL SIGNER ONE", "0x0A0B0C0D01"),
            ("ee2", "OPENSSL SIGNER TWO", "0x0A0B0C0D02"),
        ] {
            rsa_key(&format!("{name}.key"));
            openssl(
                dir,
                &[
                    "req",
                    "-new",
                    "-key",
                    &format!("{name}.key"),
                    "-config",
                    "openssl.cnf",
                    "-subj",
                    &format!("/C=JP/CN={cn}"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-set_serial",
                    serial,
                    "-days",
                    "30",
                    "-sha256",
                    "-extfile",
                    "openssl.cnf",
                    "-extensions",
                    "sign",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "ec.key",
            ],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ec.key",
                "-config",
                "openssl.cnf",
                "-extensions",
                "plain",
                "-subj",
                "/C=JP/CN=EC SIGNER",
                "-days",
                "30",
                "-out",
                "ec.pem",
            ],
        );
        let files = [
            "ca.pem", "ee.pem", "ee.key", "ee2.pem", "ee2.key", "ec.pem", "ec.key",
        ]
        .into_iter()
        .map(|f| (f, std::fs::read(dir.join(f)).unwrap()))
        .collect::<Vec<_>>();
        let ca = TrustAnchor::from_pem_or_der(
            CertKind::Signature,
            "openssl-sign-ca",
            &std::fs::read(dir.join("ca.pem")).unwrap(),
            true,
        )
        .unwrap();
        Pki {
            files,
            trust: TrustStore::new(vec![ca]).expect("openssl CA is a valid trust anchor"),
        }
    })
}

/// A working directory with the PKI files and the document.
fn workdir() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in &pki().files {
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    std::fs::write(tmp.path().join("doc.bin"), DOCUMENT).unwrap();
    tmp
}

/// Runs openssl in `dir`; panics with its stderr when it fails. Returns stdout.
fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `openssl cms -sign` of doc.bin by ee with `extra` options; returns the output file's bytes.
fn cms_sign(dir: &Path, extra: &[&str]) -> Vec<u8> {
    let mut args = vec![
        "cms", "-sign", "-binary", "-in", "doc.bin", "-signer", "ee.pem", "-inkey", "ee.key",
        "-out", "out.cms",
    ];
    if !extra.contains(&"-md") {
        args.extend(["-md", "sha256"]);
    }
    if !extra.contains(&"-outform") {
        args.extend(["-outform", "DER"]);
    }
    args.extend(extra);
    openssl(dir, &args);
    std::fs::read(dir.join("out.cms")).unwrap()
}

fn verify_openssl(body: &[u8], detached: bool) -> Result<Verified, Failure> {
    let input = Input::Cms {
        cms: decode_cms(body)?,
        detached_content: detached.then(|| DOCUMENT.to_vec()),
    };
    verify(&input, &pki().trust, OffsetDateTime::now_utc())
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

#[test]
fn openssl_attached_cms_verifies_with_every_field() {
    let tmp = workdir();
    let der = cms_sign(tmp.path(), &["-nodetach"]);
    let before = OffsetDateTime::now_utc();
    let v = verify_openssl(&der, false).expect("verifies");
    assert_eq!(v.signer.subject, "C=JP, CN=OPENSSL SIGNER ONE");
    assert_eq!(v.signer.serial_hex, "0a0b0c0d01");
    assert_eq!(v.signer.anchor_label, "openssl-sign-ca");
    assert_eq!(v.signer.kind, CertKind::Signature);
    assert_eq!(
        v.signer.basic4, None,
        "no otherName SAN on the openssl certificate"
    );
    let signed = v.signing_time.expect("openssl adds signingTime");
    assert!((before - signed).abs() < Duration::minutes(5), "{signed}");
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    assert_eq!(v.content_type, "1.2.840.113549.1.7.1");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha256");
    assert!(!v.detached);
}

#[test]
fn openssl_detached_streamed_pem_and_base64_forms_verify() {
    let tmp = workdir();
    let dir = tmp.path();

    let detached = cms_sign(dir, &[]);
    let v = verify_openssl(&detached, true).expect("detached verifies");
    assert!(v.detached);
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));

    // -stream: BER with indefinite lengths (and the content in a constructed OCTET STRING).
    let ber = cms_sign(dir, &["-stream", "-nodetach"]);
    assert_eq!(&ber[..2], &[0x30, 0x80], "indefinite-length BER");
    let v = verify_openssl(&ber, false).expect("BER attached verifies");
    assert!(!v.detached);
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    // openssl streams DER/PEM output attached even without -nodetach (only S/MIME output is
    // detached); and BER inside PEM.
    let ber_pem = cms_sign(dir, &["-stream", "-outform", "PEM"]);
    let ber = decode_cms(&ber_pem).unwrap();
    assert_eq!(&ber[..2], &[0x30, 0x80]);
    assert!(
        !verify_openssl(&ber_pem, false)
            .expect("BER in PEM verifies")
            .detached
    );

    // PEM (label CMS) and base64 text (64 columns, LF) of the DER.
    let pem_text = cms_sign(dir, &["-nodetach", "-outform", "PEM"]);
    assert!(pem_text.starts_with(b"-----BEGIN CMS-----"));
    verify_openssl(&pem_text, false).expect("PEM verifies");
    let der = cms_sign(dir, &["-nodetach"]);
    let b64 = openssl(dir, &["base64", "-in", "out.cms"]);
    assert!(b64.contains(&b'\n'));
    assert_eq!(decode_cms(&b64).unwrap(), der);
    verify_openssl(&b64, false).expect("base64 verifies");

    // PKCS#7 from `openssl smime` (label PKCS7).
    openssl(
        dir,
        &[
            "smime",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-in",
            "doc.bin",
            "-signer",
            "ee.pem",
            "-inkey",
            "ee.key",
            "-outform",
            "PEM",
            "-out",
            "p7.pem",
        ],
    );
    let p7 = std::fs::read(dir.join("p7.pem")).unwrap();
    assert!(p7.starts_with(b"-----BEGIN PKCS7-----"));
    verify_openssl(&p7, false).expect("PKCS7 verifies");
}

#[test]
fn openssl_variants_key_id_no_attributes_sha384_and_pss_verify() {
    let tmp = workdir();
    let dir = tmp.path();

    // Signer named by subjectKeyIdentifier ([0] IMPLICIT, primitive).
    let v = verify_openssl(&cms_sign(dir, &["-nodetach", "-keyid"]), false).expect("-keyid");
    assert_eq!(v.signer.serial_hex, "0a0b0c0d01");

    // No signed attributes: the signature is over the content itself.
    let v = verify_openssl(&cms_sign(dir, &["-nodetach", "-noattr"]), false).expect("-noattr");
    assert_eq!(v.signing_time, None);
    let v = verify_openssl(&cms_sign(dir, &["-noattr"]), true).expect("-noattr detached");
    assert!(v.detached);

    let v = verify_openssl(&cms_sign(dir, &["-nodetach", "-md", "sha384"]), false).expect("sha384");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha384");
    assert_eq!(
        v.content_sha256,
        sha256_hex(DOCUMENT),
        "always SHA-256 for the record"
    );
    let v = verify_openssl(&cms_sign(dir, &["-nodetach", "-md", "sha512"]), false).expect("sha512");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha512");

    // RSASSA-PSS with openssl's default salt length, and with a digest-length salt.
    for extra in [
        &["-keyopt", "rsa_padding_mode:pss"][..],
        &[
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:digest",
        ][..],
        &[
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:max",
        ][..],
    ] {
        let mut args = vec!["-nodetach"];
        args.extend(extra);
        let v = verify_openssl(&cms_sign(dir, &args), false)
            .unwrap_or_else(|f| panic!("{extra:?}: {f}"));
        assert_eq!(v.signature_algorithm, "rsa-pss-sha256");
    }
    // A salt length aws-lc-rs cannot check is refused as such, not as a bad signature.
    let odd_salt = cms_sign(
        dir,
        &[
            "-nodetach",
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:20",
        ],
    );
    let f = assert_code(verify_openssl(&odd_salt, false), code::UNSUPPORTED);
    assert!(f.message.contains("salt length 20"), "{f}");
}

#[test]
fn openssl_made_failures_have_their_codes() {
    let tmp = workdir();
    let dir = tmp.path();

    let f = assert_code(
        verify_openssl(&cms_sign(dir, &["-nodetach", "-md", "sha1"]), false),
        code::UNSUPPORTED,
    );
    assert!(f.message.contains("sha1"), "{f}");

    let two = cms_sign(
        dir,
        &["-nodetach", "-signer", "ee2.pem", "-inkey", "ee2.key"],
    );
    let f = assert_code(verify_openssl(&two, false), code::UNSUPPORTED);
    assert!(f.message.contains("2 signers"), "{f}");

    // A certificates-only SignedData (no signer at all).
    openssl(
        dir,
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            "ee.pem",
            "-outform",
            "DER",
            "-out",
            "certs.p7",
        ],
    );
    let f = assert_code(
        verify_openssl(&std::fs::read(dir.join("certs.p7")).unwrap(), true),
        code::UNSUPPORTED,
    );
    assert!(f.message.contains("no signer"), "{f}");

    // ECDSA.
    openssl(
        dir,
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-md",
            "sha256",
            "-in",
            "doc.bin",
            "-signer",
            "ec.pem",
            "-inkey",
            "ec.key",
            "-outform",
            "DER",
            "-out",
            "ec.cms",
        ],
    );
    let f = assert_code(
        verify_openssl(&std::fs::read(dir.join("ec.cms")).unwrap(), false),
        code::UNSUPPORTED,
    );
    assert!(f.message.contains("ecdsa-with-SHA256"), "{f}");

    let f = assert_code(
        verify_openssl(&cms_sign(dir, &["-nodetach", "-nocerts"]), false),
        code::NO_CERTIFICATE,
    );
    assert!(f.message.contains("issuer and serial number"), "{f}");
    assert_code(
        verify_openssl(&cms_sign(dir, &["-nodetach", "-nocerts", "-keyid"]), false),
        code::NO_CERTIFICATE,
    );

    let f = assert_code(
        verify_openssl(
            &cms_sign(dir, &["-nodetach", "-econtent_type", "1.2.3.4"]),
            false,
        ),
        code::WRONG_CONTENT_TYPE,
    );
    assert!(f.message.contains("1.2.3.4"), "{f}");

    let mut tampered = cms_sign(dir, &["-nodetach"]);
    let at = find(&tampered, DOCUMENT) + 3;
    tampered[at] ^= 0x20;
    assert_code(verify_openssl(&tampered, false), code::DIGEST_MISMATCH);

    // A genuine signature whose CA is not trusted.
    let der = cms_sign(dir, &["-nodetach"]);
    let input = Input::Cms {
        cms: der,
        detached_content: None,
    };
    let f = assert_code(
        verify(&input, demo_trust(), OffsetDateTime::now_utc()),
        code::CERTIFICATE,
    );
    assert!(f.message.contains("not a trusted JPKI CA"), "{f}");
}

#[test]
fn card_cms_verifies_with_openssl() {
    let tmp = workdir();
    let dir = tmp.path();
    let (_card_dir, mut card) = new_card(demo_card());
    let at = card_now() - Duration::minutes(5);

    let attached = sign(&mut card, SIGN_PIN, DOCUMENT, false, at).unwrap();
    std::fs::write(dir.join("card.cms"), &attached).unwrap();
    openssl(
        dir,
        &[
            "cms",
            "-verify",
            "-noverify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "card.cms",
            "-out",
            "content.out",
        ],
    );
    assert_eq!(std::fs::read(dir.join("content.out")).unwrap(), DOCUMENT);
    // openssl reads the signed attributes as we wrote them.
    let printed = openssl(
        dir,
        &[
            "cms", "-cmsout", "-print", "-noout", "-inform", "DER", "-in", "card.cms",
        ],
    );
    let printed = String::from_utf8_lossy(&printed);
    assert!(printed.contains("signingTime"), "{printed}");
    assert!(printed.contains("messageDigest"), "{printed}");

    let detached = sign(&mut card, SIGN_PIN, DOCUMENT, true, at).unwrap();
    std::fs::write(dir.join("card-detached.cms"), &detached).unwrap();
    openssl(
        dir,
        &[
            "cms",
            "-verify",
            "-noverify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "card-detached.cms",
            "-content",
            "doc.bin",
            "-out",
            "/dev/null",
        ],
    );
    // …and refuses it over other content (so the check above means something).
    std::fs::write(dir.join("other.bin"), b"other").unwrap();
    let status = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-noverify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "card-detached.cms",
            "-content",
            "other.bin",
            "-out",
            "/dev/null",
        ])
        .current_dir(dir)
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
}

#[test]
fn raw_signatures_made_by_openssl_verify() {
    let tmp = workdir();
    let dir = tmp.path();
    std::fs::write(dir.join("card.key"), &demo_card().sign_key_pem).unwrap();
    // With a digest set, pkeyutl signs its input as the already-computed hash.
    std::fs::write(
        dir.join("doc.sha256"),
        digest::digest(&digest::SHA256, DOCUMENT).as_ref(),
    )
    .unwrap();
    let raw_sign = |opts: &[&str], out: &str| {
        let mut args = vec![
            "pkeyutl",
            "-sign",
            "-inkey",
            "card.key",
            "-in",
            "doc.sha256",
            "-out",
            out,
        ];
        args.extend(opts);
        openssl(dir, &args);
        std::fs::read(dir.join(out)).unwrap()
    };
    let pss = raw_sign(
        &[
            "-pkeyopt",
            "rsa_padding_mode:pss",
            "-pkeyopt",
            "rsa_pss_saltlen:32",
            "-pkeyopt",
            "digest:sha256",
        ],
        "pss.sig",
    );
    let pkcs1 = raw_sign(&["-pkeyopt", "digest:sha256"], "pkcs1.sig");
    let (_card_dir, mut card) = new_card(demo_card());
    let certificate_der = card.sign_certificate_der(SIGN_PIN).unwrap();
    // The card's own signature is PKCS#1 v1.5 and deterministic: openssl's must be identical.
    assert_eq!(card.sign(Key::Sign, SIGN_PIN, DOCUMENT).unwrap(), pkcs1);

    let raw = |data: &[u8], signature: &[u8], algorithm| Input::Raw {
        data: data.to_vec(),
        signature: signature.to_vec(),
        certificate_der: certificate_der.clone(),
        algorithm,
    };
    let v = verify(
        &raw(DOCUMENT, &pss, RawAlgorithm::RsaPssSha256),
        demo_trust(),
        card_now(),
    )
    .expect("PSS verifies");
    assert_eq!(v.signature_algorithm, "rsa-pss-sha256");
    assert_eq!(v.content_sha256, sha256_hex(DOCUMENT));
    assert_eq!(
        v.signer.basic4.as_ref().map(|b| b.name.as_str()),
        Some("山田\u{3000}太郎")
    );
    let v = verify(
        &raw(DOCUMENT, &pkcs1, RawAlgorithm::RsaPkcs1Sha256),
        demo_trust(),
        card_now(),
    )
    .expect("PKCS#1 verifies");
    assert_eq!(v.signature_algorithm, "rsa-pkcs1-sha256");

    assert_code(
        verify(
            &raw(b"other data", &pss, RawAlgorithm::RsaPssSha256),
            demo_trust(),
            card_now(),
        ),
        code::BAD_SIGNATURE,
    );
    // The padding is part of what is verified.
    assert_code(
        verify(
            &raw(DOCUMENT, &pss, RawAlgorithm::RsaPkcs1Sha256),
            demo_trust(),
            card_now(),
        ),
        code::BAD_SIGNATURE,
    );
}
