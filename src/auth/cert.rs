//! The identity in a client certificate: its subject's common name, or its first DNS name,
//! e-mail address or URI among the subject alternative names.

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::config::IdentityField;

/// The identity `field` of the DER certificate `der`, if it has one.
pub fn identity(der: &[u8], field: IdentityField) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    if field == IdentityField::Cn {
        let cn = cert.subject().iter_common_name().next()?;
        return cn.as_str().ok().map(str::to_owned);
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value
        .general_names
        .iter()
        .find_map(|name| match (field, name) {
            (IdentityField::Dns, GeneralName::DNSName(s))
            | (IdentityField::Email, GeneralName::RFC822Name(s))
            | (IdentityField::Uri, GeneralName::URI(s)) => Some((*s).to_owned()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    #[test]
    fn cn_and_sans() {
        let mut params = CertificateParams::new(vec!["dev.example".to_owned()]).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "device-42");
        params.distinguished_name = dn;
        params
            .subject_alt_names
            .push(SanType::Rfc822Name("d@example.org".try_into().unwrap()));
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let der = cert.der();
        assert_eq!(
            identity(der, IdentityField::Cn).as_deref(),
            Some("device-42")
        );
        assert_eq!(
            identity(der, IdentityField::Dns).as_deref(),
            Some("dev.example")
        );
        assert_eq!(
            identity(der, IdentityField::Email).as_deref(),
            Some("d@example.org")
        );
        assert_eq!(identity(der, IdentityField::Uri), None);
        assert_eq!(identity(b"junk", IdentityField::Cn), None);
    }
}
