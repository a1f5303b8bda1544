//! Root certificates from PEM text: fingerprint (SHA-256 over the DER), subject and expiry.
//! Certificates only: a PEM block that is not a certificate (a key, by mistake) is skipped
//! without being decoded or kept.

use std::cell::RefCell;
use std::collections::HashMap;

use sha2::{Digest, Sha256};
use x509_cert::der::Decode;
use x509_cert::Certificate;

use crate::topology::clock::rfc3339;
use crate::topology::federation::RootCert;

thread_local! {
    /// Parsed bundles by their text: the same ConfigMap is not re-parsed on every change.
    static BUNDLES: RefCell<HashMap<String, Result<Vec<RootCert>, String>>> = RefCell::new(HashMap::new());
}

/// Every certificate of a PEM bundle, in order. An error names what was wrong, never the text.
pub(super) fn parse_bundle(pem: &str) -> Result<Vec<RootCert>, String> {
    BUNDLES.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(parsed) = memo.get(pem) {
            return parsed.clone();
        }
        let parsed = parse_uncached(pem);
        if memo.len() > 64 {
            memo.clear();
        }
        memo.insert(pem.to_string(), parsed.clone());
        parsed
    })
}

pub(crate) fn parse_uncached(pem: &str) -> Result<Vec<RootCert>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut roots = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else {
            return Err(format!("certificate {} has no END line", roots.len() + 1));
        };
        let block = &rest[start..start + BEGIN.len() + end + END.len()];
        rest = &body[end + END.len()..];
        let (_, der) = x509_cert::der::pem::decode_vec(block.as_bytes())
            .map_err(|_| format!("certificate {} is not valid PEM", roots.len() + 1))?;
        let cert = Certificate::from_der(&der)
            .map_err(|e| format!("certificate {} is not X.509: {e}", roots.len() + 1))?;
        roots.push(root_of(&cert, &der));
    }
    if roots.is_empty() {
        return Err("no certificate in the PEM text".into());
    }
    Ok(roots)
}

fn root_of(cert: &Certificate, der: &[u8]) -> RootCert {
    let sha256 = Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tbs = &cert.tbs_certificate;
    let not_after_secs = tbs.validity.not_after.to_unix_duration().as_secs();
    RootCert {
        sha256,
        subject: tbs.subject.to_string(),
        not_after: rfc3339(not_after_secs),
        not_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed root made with `openssl req -x509 -newkey ec -pkeyopt
    /// ec_paramgen_curve:P-256 -subj /O=meshtop-test/CN=root-a -days 3650` (no key kept).
    pub(crate) const ROOT_A: &str = include_str!("../../../tests/fixtures/federation/root-a.pem");

    #[test]
    fn a_root_reads_with_fingerprint_subject_and_expiry() {
        let roots = parse_bundle(ROOT_A).unwrap();
        assert_eq!(roots.len(), 1);
        let r = &roots[0];
        assert_eq!(r.sha256.len(), 64);
        assert_eq!(
            r.sha256,
            include_str!("../../../tests/fixtures/federation/root-a.sha256").trim()
        );
        assert!(r.subject.contains("CN=root-a"), "{}", r.subject);
        assert!(r.not_after.ends_with('Z'));
        assert!(r.not_after_secs > 1_700_000_000);
    }

    #[test]
    fn a_bundle_of_two_reads_both_and_garbage_is_an_error_without_the_text() {
        let two = format!("{ROOT_A}\n{ROOT_A}");
        assert_eq!(parse_bundle(&two).unwrap().len(), 2);
        let e = parse_bundle("-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----")
            .unwrap_err();
        assert!(e.contains("not X.509"), "{e}");
        assert!(!e.contains("c2VjcmV0"));
        assert!(parse_bundle("hello").is_err());
    }

    #[test]
    fn a_private_key_block_is_never_decoded() {
        let text =
            format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{ROOT_A}");
        assert_eq!(parse_bundle(&text).unwrap().len(), 1);
    }
}
