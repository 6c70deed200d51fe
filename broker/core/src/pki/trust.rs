//! Trust anchors (JPKI root CAs) and the parsed trust store.

use super::verify::AnchorKey;
use super::{CertKind, PkiError};
use aws_lc_rs::digest;
use std::sync::Arc;
use x509_parser::prelude::{
    FromDer, ParsedExtension, SubjectPublicKeyInfo, X509Certificate, X509Name,
};

/// One configured CA certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustAnchor {
    /// Which kind of end-entity certificate this CA issues.
    pub kind: CertKind,
    /// Operator-chosen label, reported in [`super::ValidatedCert::anchor_label`].
    pub label: String,
    /// DER of the self-signed CA certificate.
    pub cert_der: Vec<u8>,
    /// True for demo CAs (never J-LIS): such certificates prove nothing about a real person.
    pub demo: bool,
}

impl TrustAnchor {
    /// An anchor from PEM (`CERTIFICATE`) or raw DER bytes.
    pub fn from_pem_or_der(
        kind: CertKind,
        label: impl Into<String>,
        bytes: &[u8],
        demo: bool,
    ) -> Result<TrustAnchor, PkiError> {
        let label = label.into();
        let cert_der = if bytes.first() == Some(&0x30) {
            bytes.to_vec()
        } else {
            let blocks = pem::parse_many(bytes)
                .map_err(|e| PkiError::BadAnchor(format!("{label}: not PEM or DER: {e}")))?;
            // One anchor, one certificate: a second one would be silently ignored.
            let [p] = blocks.as_slice() else {
                return Err(PkiError::BadAnchor(format!(
                    "{label}: {} PEM blocks; one CA certificate per anchor",
                    blocks.len()
                )));
            };
            if p.tag() != "CERTIFICATE" {
                return Err(PkiError::BadAnchor(format!(
                    "{label}: PEM block is {:?}, expected CERTIFICATE",
                    p.tag()
                )));
            }
            p.contents().to_vec()
        };
        Ok(TrustAnchor {
            kind,
            label,
            cert_der,
            demo,
        })
    }
}

/// What the validator needs of an anchor, extracted once.
#[derive(Debug, Clone)]
pub(crate) struct ParsedAnchor {
    /// The anchor's DER, shared with every [`super::ValidatedCert`] it verifies.
    pub cert_der: Arc<[u8]>,
    pub subject_raw: Vec<u8>,
    pub subject_norm: Option<Vec<(String, String)>>,
    pub key: AnchorKey,
    /// Key identifiers under which certificates may name this CA in their AKI.
    pub key_ids: Vec<Vec<u8>>,
}

/// Parsed, immutable set of CA certificates; cheap to share in an `Arc`.
#[derive(Debug, Clone)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor>,
    parsed: Vec<ParsedAnchor>,
}

impl TrustStore {
    /// Parses and checks every anchor: it must be a DER certificate, a CA (basicConstraints
    /// cA=TRUE), with keyCertSign if keyUsage is present, an RSA (≥ 2048 bits) or P-256 key,
    /// and a self-signature that verifies.
    /// Labels must be unique (they name the anchor in results and in revocation configuration).
    pub fn new(anchors: Vec<TrustAnchor>) -> Result<TrustStore, PkiError> {
        for (i, anchor) in anchors.iter().enumerate() {
            if anchors.iter().take(i).any(|a| a.label == anchor.label) {
                return Err(PkiError::BadAnchor(format!(
                    "{}: label used by more than one trust anchor",
                    anchor.label
                )));
            }
        }
        let parsed = anchors
            .iter()
            .map(parse_anchor)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustStore { anchors, parsed })
    }

    /// The anchors, in configuration order.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }

    /// The anchors' labels, in configuration order.
    pub fn labels(&self) -> Vec<&str> {
        self.anchors.iter().map(|a| a.label.as_str()).collect()
    }

    /// True when any anchor is a demo CA.
    pub fn has_demo(&self) -> bool {
        self.anchors.iter().any(|a| a.demo)
    }

    /// The DER of the anchor labelled `label`, shared (no copy).
    pub fn anchor_der(&self, label: &str) -> Option<Arc<[u8]>> {
        self.iter()
            .find(|(a, _)| a.label == label)
            .map(|(_, p)| p.cert_der.clone())
    }

    /// Anchors with their parsed data.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&TrustAnchor, &ParsedAnchor)> {
        self.anchors.iter().zip(self.parsed.iter())
    }
}

fn parse_anchor(anchor: &TrustAnchor) -> Result<ParsedAnchor, PkiError> {
    let label = &anchor.label;
    let bad = |what: String| PkiError::BadAnchor(format!("{label}: {what}"));
    let (rest, cert) = X509Certificate::from_der(&anchor.cert_der)
        .map_err(|e| bad(format!("not a DER X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    let mut is_ca = false;
    let mut cert_sign = true;
    let mut ski = None;
    let mut seen = Vec::new();
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if seen.contains(&oid) {
            return Err(bad(format!("duplicate extension {oid}")));
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => cert_sign = ku.key_cert_sign(),
            ParsedExtension::SubjectKeyIdentifier(id) => ski = Some(id.0.to_vec()),
            ParsedExtension::ParseError { .. } if ext.critical => {
                return Err(bad(format!("critical extension {oid} cannot be parsed")));
            }
            _ => {}
        }
        seen.push(oid);
    }
    if !is_ca {
        return Err(bad(
            "not a CA certificate (basicConstraints cA=TRUE required)".into(),
        ));
    }
    if !cert_sign {
        return Err(bad("keyUsage lacks keyCertSign".into()));
    }
    let key = anchor_key(cert.public_key()).map_err(bad)?;
    match super::verify::verify_signed_by(&cert, &key) {
        Ok(()) => {}
        Err(super::verify::SigCheck::Unsupported(alg)) => {
            return Err(bad(format!("unsupported self-signature algorithm {alg}")));
        }
        Err(super::verify::SigCheck::Invalid) => {
            return Err(bad("self-signature does not verify".into()));
        }
    }
    let spki = cert.public_key();
    let bits = spki.subject_public_key.data.as_ref();
    let mut key_ids = Vec::new();
    if let Some(ski) = ski {
        key_ids.push(ski);
    }
    // RFC 5280 method 1 (SHA-1 of the key bits) and the truncated SHA-256 variants rcgen uses.
    key_ids.push(
        digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
            .as_ref()
            .to_vec(),
    );
    for data in [bits, spki.raw] {
        let d = digest::digest(&digest::SHA256, data);
        key_ids.push(d.as_ref().get(..20).unwrap_or_default().to_vec());
    }
    Ok(ParsedAnchor {
        cert_der: Arc::from(anchor.cert_der.as_slice()),
        subject_raw: cert.subject().as_raw().to_vec(),
        subject_norm: normalized_name(cert.subject()),
        key,
        key_ids,
    })
}

/// The anchor's key, if it is RSA ≥ 2048 or EC P-256.
fn anchor_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<AnchorKey, String> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.113549.1.1.1" => {
            let bits = spki.subject_public_key.data.as_ref();
            let size = super::verify::rsa_modulus_bits(bits)?;
            if size < 2048 {
                return Err(format!("RSA key of {size} bits; at least 2048 required"));
            }
            Ok(AnchorKey::Rsa(bits.to_vec()))
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            if curve.as_deref() != Some("1.2.840.10045.3.1.7") {
                return Err(format!(
                    "EC key on curve {} (only P-256 is supported)",
                    curve.unwrap_or_else(|| "?".into())
                ));
            }
            Ok(AnchorKey::EcP256(spki.subject_public_key.data.to_vec()))
        }
        other => Err(format!("key algorithm {other} is neither RSA nor EC")),
    }
}

/// True when two Names are the same: byte-identical, or equal attribute by attribute after
/// whitespace and case folding (RFC 5280 §7.1, simplified).
pub(crate) fn same_name(a: &X509Name<'_>, b: &X509Name<'_>) -> bool {
    if a.as_raw() == b.as_raw() {
        return true;
    }
    let na = normalized_name(a);
    na.is_some() && na == normalized_name(b)
}

/// A Name as (OID, normalised value) pairs in order, for comparison across string encodings.
/// `None` when an attribute value is not a string.
pub(crate) fn normalized_name(name: &X509Name<'_>) -> Option<Vec<(String, String)>> {
    name.iter_attributes()
        .map(|atv| {
            let value = atv.as_str().ok()?;
            let folded = value
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            Some((atv.attr_type().to_id_string(), folded))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_support::{demo_pki, other_demo_pki};

    #[test]
    fn duplicate_anchor_labels_are_refused() {
        let mut anchors = demo_pki().anchors();
        let mut other = other_demo_pki().anchors();
        // Another CA generation under the label already used by the first anchor.
        other[0].label = anchors[0].label.clone();
        anchors.push(other.swap_remove(0));
        assert_eq!(
            TrustStore::new(anchors).unwrap_err(),
            PkiError::BadAnchor("demo-auth-ca: label used by more than one trust anchor".into())
        );
        // Distinct labels for the same certificates are fine.
        let mut anchors = demo_pki().anchors();
        let mut second = demo_pki().anchors();
        for a in &mut second {
            a.label.push_str("-copy");
        }
        anchors.extend(second);
        assert_eq!(TrustStore::new(anchors).unwrap().anchors().len(), 4);
    }
}
