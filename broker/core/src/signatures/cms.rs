//! CMS SignedData (RFC 5652) as far as verification needs it.
//!
//! BER decoding with bcder (cryptographic-message-syntax's ASN.1 engine, which accepts indefinite
//! lengths and constructed OCTET STRINGs as `openssl cms -stream` writes them), using the crate's
//! `EncapsulatedContentInfo`. The certificates are captured byte-exact instead of being decoded
//! and re-encoded, and the SignerInfo is read here: the crate's own SignerInfo decoder expects
//! `subjectKeyIdentifier` as a constructed `[0]` (RFC 5652 makes it a primitive IMPLICIT one, as
//! `openssl cms -keyid` writes it), and its high-level API cannot verify PSS. The signed
//! attributes, which RFC 5652 requires to be DER, are read strictly with a DER reader.

use super::der::{self, tag};
use super::{Failure, code};
use aws_lc_rs::{digest, signature};
use bcder::decode::{Constructed, DecodeError, SliceSource, Source};
use bcder::{Captured, Integer, Mode, OctetString, Oid, Tag};
use cryptographic_message_syntax::Bytes;
use cryptographic_message_syntax::asn1::rfc5652::{EncapsulatedContentInfo, OID_ID_SIGNED_DATA};
use time::OffsetDateTime;

/// DER contents of the OIDs used here.
pub(super) mod oid {
    /// id-data 1.2.840.113549.1.7.1.
    pub const ID_DATA: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 7, 1];
    /// id-signedData 1.2.840.113549.1.7.2.
    pub const ID_SIGNED_DATA: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 7, 2];
    /// id-contentType 1.2.840.113549.1.9.3.
    pub const CONTENT_TYPE: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 9, 3];
    /// id-messageDigest 1.2.840.113549.1.9.4.
    pub const MESSAGE_DIGEST: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 9, 4];
    /// id-signingTime 1.2.840.113549.1.9.5.
    pub const SIGNING_TIME: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 9, 5];
    /// id-sha256 2.16.840.1.101.3.4.2.1.
    pub const SHA256: &[u8] = &[96, 134, 72, 1, 101, 3, 4, 2, 1];
    /// id-sha384 2.16.840.1.101.3.4.2.2.
    pub const SHA384: &[u8] = &[96, 134, 72, 1, 101, 3, 4, 2, 2];
    /// id-sha512 2.16.840.1.101.3.4.2.3.
    pub const SHA512: &[u8] = &[96, 134, 72, 1, 101, 3, 4, 2, 3];
    /// rsaEncryption 1.2.840.113549.1.1.1.
    pub const RSA_ENCRYPTION: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 1];
    /// id-mgf1 1.2.840.113549.1.1.8.
    pub const MGF1: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 8];
    /// id-RSASSA-PSS 1.2.840.113549.1.1.10.
    pub const RSASSA_PSS: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 10];
    /// sha256WithRSAEncryption 1.2.840.113549.1.1.11.
    pub const SHA256_WITH_RSA: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 11];
    /// sha384WithRSAEncryption 1.2.840.113549.1.1.12.
    pub const SHA384_WITH_RSA: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 12];
    /// sha512WithRSAEncryption 1.2.840.113549.1.1.13.
    pub const SHA512_WITH_RSA: &[u8] = &[42, 134, 72, 134, 247, 13, 1, 1, 13];
}

/// What verification needs of a SignedData.
pub(super) struct SignedData {
    /// eContentType.
    pub econtent_type: Oid,
    /// eContent (the concatenation of a constructed OCTET STRING's segments), if attached.
    pub econtent: Option<Bytes>,
    /// The `certificates` entries exactly as encoded (certificate choices other than
    /// `Certificate` are captured too; they start with a context tag instead of SEQUENCE).
    pub certificates: Vec<Captured>,
    /// signerInfos.
    pub signer_infos: Vec<SignerInfo>,
}

/// How a SignerInfo names its certificate.
pub(super) enum SignerId {
    /// issuerAndSerialNumber: the issuer Name TLV as encoded, and the serial.
    IssuerSerial { issuer: Captured, serial: Integer },
    /// subjectKeyIdentifier.
    KeyId(Bytes),
}

/// An AlgorithmIdentifier: the OID and the encoded parameters (empty when absent).
pub(super) struct AlgorithmId {
    pub oid: Oid,
    pub params: Captured,
}

/// A SignerInfo.
pub(super) struct SignerInfo {
    pub sid: SignerId,
    pub digest_algorithm: AlgorithmId,
    /// Contents of the `[0] IMPLICIT SignedAttributes`, as encoded.
    pub signed_attributes: Option<Captured>,
    pub signature_algorithm: AlgorithmId,
    pub signature: Bytes,
}

/// Decodes a ContentInfo holding a SignedData, DER or BER.
pub(super) fn parse(ber: &[u8]) -> Result<SignedData, Failure> {
    let mut source = SliceSource::new(ber);
    let decoded = Constructed::decode(&mut source, Mode::Ber, |cons| {
        cons.take_sequence(|cons| {
            let content_type = Oid::take_from(cons)?;
            if content_type != OID_ID_SIGNED_DATA {
                return Err(cons.content_err(format!(
                    "ContentInfo holds {content_type}, not id-signedData (1.2.840.113549.1.7.2)"
                )));
            }
            cons.take_constructed_if(Tag::CTX_0, |cons| cons.take_sequence(take_signed_data))
        })
    });
    let signed_data = decoded.map_err(|e| {
        Failure::new(
            code::MALFORMED,
            format!("not a well-formed CMS SignedData: {e}"),
        )
    })?;
    // bcder does not check for trailing bytes at the top level.
    if !source.is_empty() {
        return Err(Failure::new(
            code::MALFORMED,
            format!("{} bytes of trailing data after the CMS", source.len()),
        ));
    }
    Ok(signed_data)
}

fn take_signed_data<S: Source>(
    cons: &mut Constructed<S>,
) -> Result<SignedData, DecodeError<S::Error>> {
    let _version = cons.take_u8()?;
    // digestAlgorithms only announce what the signers use; the SignerInfo's own
    // digestAlgorithm is what is checked.
    cons.take_set(skip_rest)?;
    let eci = EncapsulatedContentInfo::take_from(cons)?;
    let mut certificates = Vec::new();
    cons.take_opt_constructed_if(Tag::CTX_0, |cons| {
        loop {
            let mut more = false;
            let one = cons.capture(|cons| {
                more = cons.skip_opt(|_, _, _| Ok(()))?.is_some();
                Ok(())
            })?;
            if !more {
                return Ok(());
            }
            certificates.push(one);
        }
    })?;
    // crls: revocation is the caller's job.
    cons.take_opt_constructed_if(Tag::CTX_1, skip_rest)?;
    let signer_infos = cons.take_set(|cons| {
        let mut infos = Vec::new();
        while let Some(info) = cons.take_opt_sequence(take_signer_info)? {
            infos.push(info);
        }
        Ok(infos)
    })?;
    Ok(SignedData {
        econtent_type: eci.content_type,
        econtent: eci.content.map(|c| c.to_bytes()),
        certificates,
        signer_infos,
    })
}

fn take_signer_info<S: Source>(
    cons: &mut Constructed<S>,
) -> Result<SignerInfo, DecodeError<S::Error>> {
    let _version = cons.take_u8()?;
    let sid = match cons.take_opt_value_if(Tag::CTX_0, OctetString::from_content)? {
        Some(key_id) => SignerId::KeyId(key_id.to_bytes()),
        None => cons.take_sequence(|cons| {
            let issuer = cons.capture_one()?;
            let serial = Integer::take_from(cons)?;
            Ok(SignerId::IssuerSerial { issuer, serial })
        })?,
    };
    let digest_algorithm = take_algorithm(cons)?;
    // Signed attributes are DER (RFC 5652 §5.3), so their [0] has a definite length.
    let signed_attributes = cons.take_opt_constructed_if(Tag::CTX_0, |cons| cons.capture_all())?;
    let signature_algorithm = take_algorithm(cons)?;
    let signature = OctetString::take_from(cons)?.to_bytes();
    cons.take_opt_constructed_if(Tag::CTX_1, skip_rest)?;
    Ok(SignerInfo {
        sid,
        digest_algorithm,
        signed_attributes,
        signature_algorithm,
        signature,
    })
}

/// Skips the remaining values of a constructed value. (bcder's `skip_all`, `skip_one` and
/// `capture_all` report "missing further values" at the end-of-contents octets of an
/// indefinite-length value instead of ending there.)
fn skip_rest<S: Source>(cons: &mut Constructed<S>) -> Result<(), DecodeError<S::Error>> {
    while cons.skip_opt(|_, _, _| Ok(()))?.is_some() {}
    Ok(())
}

fn take_algorithm<S: Source>(
    cons: &mut Constructed<S>,
) -> Result<AlgorithmId, DecodeError<S::Error>> {
    cons.take_sequence(|cons| {
        let oid = Oid::take_from(cons)?;
        let params = cons.capture_all()?;
        Ok(AlgorithmId { oid, params })
    })
}

/// A digest algorithm this module accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Digest {
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    pub(super) fn from_oid(oid: &[u8]) -> Option<Digest> {
        match oid {
            oid::SHA256 => Some(Digest::Sha256),
            oid::SHA384 => Some(Digest::Sha384),
            oid::SHA512 => Some(Digest::Sha512),
            _ => None,
        }
    }

    pub(super) fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            Digest::Sha256 => &digest::SHA256,
            Digest::Sha384 => &digest::SHA384,
            Digest::Sha512 => &digest::SHA512,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
            Digest::Sha512 => "sha512",
        }
    }
}

/// RSA padding of a SignerInfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Padding {
    Pkcs1,
    /// PSS with MGF1 over the same hash and this salt length.
    Pss {
        salt_len: u32,
    },
}

/// A resolved signature algorithm: RSA with this padding over this digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SigAlg {
    pub digest: Digest,
    pub padding: Padding,
}

static PSS_SHA256_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA384_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(signature::RsaPssSaltLength::Max);
static PSS_SHA512_MAX: signature::RsaParameters =
    signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(signature::RsaPssSaltLength::Max);

impl SigAlg {
    /// `rsa-pkcs1-sha256`, `rsa-pss-sha256`, …
    pub(super) fn name(self) -> String {
        let padding = match self.padding {
            Padding::Pkcs1 => "pkcs1",
            Padding::Pss { .. } => "pss",
        };
        format!("rsa-{padding}-{}", self.digest.name())
    }

    /// The aws-lc-rs verification parameters; `modulus_bits` (of the key) is asked only for a
    /// PSS salt other than the digest length. `Err` (`unsupported`) names a PSS salt length
    /// aws-lc-rs cannot check (only the digest length and the maximum are).
    pub(super) fn parameters(
        self,
        modulus_bits: impl FnOnce() -> Result<u32, Failure>,
    ) -> Result<&'static signature::RsaParameters, Failure> {
        use signature::{
            RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
            RSA_PSS_2048_8192_SHA256, RSA_PSS_2048_8192_SHA384, RSA_PSS_2048_8192_SHA512,
        };
        let Padding::Pss { salt_len } = self.padding else {
            return Ok(match self.digest {
                Digest::Sha256 => &RSA_PKCS1_2048_8192_SHA256,
                Digest::Sha384 => &RSA_PKCS1_2048_8192_SHA384,
                Digest::Sha512 => &RSA_PKCS1_2048_8192_SHA512,
            });
        };
        let h_len = self.digest.algorithm().output_len() as u32;
        if salt_len == h_len {
            return Ok(match self.digest {
                Digest::Sha256 => &RSA_PSS_2048_8192_SHA256,
                Digest::Sha384 => &RSA_PSS_2048_8192_SHA384,
                Digest::Sha512 => &RSA_PSS_2048_8192_SHA512,
            });
        }
        // emLen = ceil((modBits - 1) / 8); the largest salt is emLen - hLen - 2 (RFC 8017 §9.1.1).
        let max = modulus_bits()?
            .saturating_sub(1)
            .div_ceil(8)
            .saturating_sub(h_len + 2);
        if salt_len == max {
            return Ok(match self.digest {
                Digest::Sha256 => &PSS_SHA256_MAX,
                Digest::Sha384 => &PSS_SHA384_MAX,
                Digest::Sha512 => &PSS_SHA512_MAX,
            });
        }
        Err(Failure::new(
            code::UNSUPPORTED,
            format!(
                "RSASSA-PSS salt length {salt_len} (only the digest length {h_len} or the maximum \
                 {max} for this key are supported)"
            ),
        ))
    }
}

/// A well-known algorithm OID by name (for messages).
fn algorithm_name(oid: &Oid) -> String {
    let name = match oid.as_ref() {
        [43, 14, 3, 2, 26] => "sha1",
        [42, 134, 72, 134, 247, 13, 2, 5] => "md5",
        [96, 134, 72, 1, 101, 3, 4, 2, 4] => "sha224",
        [42, 134, 72, 134, 247, 13, 1, 1, 5] => "sha1WithRSAEncryption",
        [42, 134, 72, 134, 247, 13, 1, 1, 4] => "md5WithRSAEncryption",
        [42, 134, 72, 206, 61, 4, 3, 2] => "ecdsa-with-SHA256",
        [42, 134, 72, 206, 61, 4, 3, 3] => "ecdsa-with-SHA384",
        [42, 134, 72, 206, 61, 2, 1] => "ecPublicKey",
        [43, 101, 112] => "Ed25519",
        _ => return oid.to_string(),
    };
    format!("{name} ({oid})")
}

/// The SignerInfo's digest and signature algorithms, if this module accepts them.
pub(super) fn resolve_algorithms(signer: &SignerInfo) -> Result<SigAlg, Failure> {
    let unsupported = |m: String| Failure::new(code::UNSUPPORTED, m);
    let digest_oid = &signer.digest_algorithm.oid;
    let digest = Digest::from_oid(digest_oid.as_ref()).ok_or_else(|| {
        unsupported(format!(
            "digest algorithm {} (SHA-256, SHA-384 and SHA-512 are accepted)",
            algorithm_name(digest_oid)
        ))
    })?;
    let sig_oid = &signer.signature_algorithm.oid;
    let named_digest = match sig_oid.as_ref() {
        oid::RSA_ENCRYPTION => None,
        oid::SHA256_WITH_RSA => Some(Digest::Sha256),
        oid::SHA384_WITH_RSA => Some(Digest::Sha384),
        oid::SHA512_WITH_RSA => Some(Digest::Sha512),
        oid::RSASSA_PSS => {
            let params = signer.signature_algorithm.params.as_slice();
            let pss = pss_parameters(params)
                .map_err(|m| unsupported(format!("RSASSA-PSS parameters: {m}")))?;
            if pss.hash != digest {
                return Err(unsupported(format!(
                    "RSASSA-PSS over {} but the digest algorithm is {}",
                    pss.hash.name(),
                    digest.name()
                )));
            }
            return Ok(SigAlg {
                digest,
                padding: Padding::Pss {
                    salt_len: pss.salt_len,
                },
            });
        }
        _ => {
            return Err(unsupported(format!(
                "signature algorithm {} (RSA PKCS#1 v1.5 and RSASSA-PSS are accepted)",
                algorithm_name(sig_oid)
            )));
        }
    };
    if let Some(named) = named_digest
        && named != digest
    {
        return Err(unsupported(format!(
            "signature algorithm {}WithRSAEncryption with digest algorithm {}",
            named.name(),
            digest.name()
        )));
    }
    Ok(SigAlg {
        digest,
        padding: Padding::Pkcs1,
    })
}

struct PssParams {
    hash: Digest,
    salt_len: u32,
}

/// RSASSA-PSS-params (RFC 4055): the hash and MGF1's hash must be SHA-2 and equal, trailer 1.
fn pss_parameters(params: &[u8]) -> Result<PssParams, String> {
    let decoded = Mode::Ber.decode(params, |cons| {
        cons.take_sequence(|cons| {
            let hash = cons.take_opt_constructed_if(Tag::CTX_0, take_algorithm)?;
            let mgf = cons.take_opt_constructed_if(Tag::CTX_1, take_algorithm)?;
            let salt = cons.take_opt_constructed_if(Tag::CTX_2, |c| c.take_u32())?;
            let trailer = cons.take_opt_constructed_if(Tag::CTX_3, |c| c.take_u8())?;
            Ok((hash, mgf, salt, trailer))
        })
    });
    let (hash, mgf, salt, trailer) = decoded.map_err(|e| format!("not RSASSA-PSS-params: {e}"))?;
    let hash = match hash {
        None => return Err("the default hash SHA-1 is not accepted".into()),
        Some(alg) => Digest::from_oid(alg.oid.as_ref())
            .ok_or_else(|| format!("hash {} is not accepted", algorithm_name(&alg.oid)))?,
    };
    let mgf = mgf.ok_or("the default mask generation MGF1-SHA-1 is not accepted")?;
    if mgf.oid.as_ref() != oid::MGF1 {
        return Err(format!(
            "mask generation function {} (MGF1 is accepted)",
            algorithm_name(&mgf.oid)
        ));
    }
    let mgf_hash = mgf
        .params
        .decode(take_algorithm)
        .map_err(|e| format!("MGF1 hash algorithm: {e}"))?;
    if Digest::from_oid(mgf_hash.oid.as_ref()) != Some(hash) {
        return Err(format!(
            "MGF1 over {} with hash {}",
            algorithm_name(&mgf_hash.oid),
            hash.name()
        ));
    }
    if trailer.is_some_and(|t| t != 1) {
        return Err("trailer field other than 1".into());
    }
    Ok(PssParams {
        hash,
        salt_len: salt.unwrap_or(20),
    })
}

/// The signed attributes verification relies on.
pub(super) struct SignedAttributes<'a> {
    /// DER contents of the contentType OID.
    pub content_type: &'a [u8],
    /// messageDigest.
    pub message_digest: &'a [u8],
    /// signingTime, if present.
    pub signing_time: Option<OffsetDateTime>,
    /// The DER `SET OF Attribute` the signature is computed over (RFC 5652 §5.4).
    pub der: Vec<u8>,
}

/// The signer's signed attributes, `None` when absent. They must be DER; contentType and
/// messageDigest must each be present once with one value, signingTime at most once (RFC 5652
/// §5.3, §11).
pub(super) fn signed_attributes(
    signer: &SignerInfo,
) -> Result<Option<SignedAttributes<'_>>, Failure> {
    let Some(captured) = signer.signed_attributes.as_ref() else {
        return Ok(None);
    };
    let malformed = |m: String| Failure::new(code::MALFORMED, format!("signed attributes: {m}"));
    let mut content_type = None;
    let mut message_digest = None;
    let mut signing_time = None;
    let mut rest = captured.as_slice();
    while !rest.is_empty() {
        let Some((tag::SEQUENCE, attribute, after)) = der::split(rest) else {
            return Err(malformed("not a DER SET OF Attribute".into()));
        };
        rest = after;
        let Some((tag::OID, attribute_type, values)) = der::split(attribute) else {
            return Err(malformed("an Attribute without a type".into()));
        };
        let Some((tag::SET, values)) = der::split_single(values) else {
            return Err(malformed("an Attribute without a SET of values".into()));
        };
        let (slot, name, expected_tag) = match attribute_type {
            oid::CONTENT_TYPE => (&mut content_type, "contentType", Some(tag::OID)),
            oid::MESSAGE_DIGEST => (
                &mut message_digest,
                "messageDigest",
                Some(tag::OCTET_STRING),
            ),
            oid::SIGNING_TIME => (&mut signing_time, "signingTime", None),
            _ => continue,
        };
        if slot.is_some() {
            return Err(malformed(format!("{name} appears more than once")));
        }
        let Some((value_tag, content)) = der::split_single(values) else {
            return Err(malformed(format!("{name} must have exactly one DER value")));
        };
        *slot = Some(match expected_tag {
            Some(expected) if value_tag != expected => {
                return Err(malformed(format!("{name} value has tag {value_tag:#04x}")));
            }
            Some(_) => content,
            // signingTime: the whole TLV (UTCTime or GeneralizedTime).
            None => values,
        });
    }
    let content_type = content_type.ok_or_else(|| malformed("contentType is missing".into()))?;
    let message_digest =
        message_digest.ok_or_else(|| malformed("messageDigest is missing".into()))?;
    let signing_time = match signing_time {
        None => None,
        Some(value) => Some(
            der::read_tlv(value)
                .and_then(|(t, rest)| match rest {
                    [] => der::decode_time(t),
                    _ => Err("trailing bytes".into()),
                })
                .map_err(|_| {
                    malformed(
                "signingTime is not a UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ"
                    .into(),
            )
                })?,
        ),
    };
    // RFC 5652 §5.4: the signature is over the DER SET OF, i.e. the [0] contents re-tagged.
    Ok(Some(SignedAttributes {
        content_type,
        message_digest,
        signing_time,
        der: der::tlv_of(tag::SET, &[captured.as_slice()]),
    }))
}
