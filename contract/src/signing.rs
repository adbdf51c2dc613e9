//! Pixel signatures (SPEC §4): `sig` = lowercase hex of the first 16 bytes of
//! HMAC-SHA256(key, "v1\n" + o + "\n" + i + "\n" + b + "\n" + a), plus the
//! signed pixel URL and embed snippet a badge page needs.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Bytes of the HMAC kept in a signature.
pub const SIG_BYTES: usize = 16;

/// The ids a pixel signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelIds<'a> {
    pub org_id: &'a str,
    pub issuer_id: &'a str,
    pub badge_class_id: &'a str,
    pub assertion_id: &'a str,
}

fn mac(key: &[u8], ids: &PixelIds<'_>) -> [u8; SIG_BYTES] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for (n, part) in [
        ids.org_id,
        ids.issuer_id,
        ids.badge_class_id,
        ids.assertion_id,
    ]
    .iter()
    .enumerate()
    {
        m.update(if n == 0 { b"v1\n" } else { b"\n" });
        m.update(part.as_bytes());
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; SIG_BYTES];
    out.copy_from_slice(&full[..SIG_BYTES]);
    out
}

/// The signature of `ids` under `key`, as lowercase hex.
pub fn sign(key: &[u8], ids: &PixelIds<'_>) -> String {
    hex::encode(mac(key, ids))
}

/// Whether `sig` (hex, either case) is the signature of `ids` under `key`,
/// compared in constant time.
pub fn verify(key: &[u8], ids: &PixelIds<'_>, sig: &str) -> bool {
    let mut given = [0u8; SIG_BYTES];
    if sig.len() != SIG_BYTES * 2 || hex::decode_to_slice(sig, &mut given).is_err() {
        return false;
    }
    bool::from(mac(key, ids).ct_eq(&given))
}

/// A signed view-pixel URL under `base` (e.g. `https://t.example.org`).
pub fn pixel_url(base: &str, kid: &str, key: &[u8], ids: &PixelIds<'_>) -> String {
    format!(
        "{}/p.gif?o={}&i={}&b={}&a={}&kid={}&sig={}",
        base.trim_end_matches('/'),
        ids.org_id,
        ids.issuer_id,
        ids.badge_class_id,
        ids.assertion_id,
        kid,
        sign(key, ids)
    )
}

/// The HTML a badge page embeds: the view pixel, invisible and without
/// referrer stripping (the Referer is how the view source is known).
pub fn embed_snippet(base: &str, kid: &str, key: &[u8], ids: &PixelIds<'_>) -> String {
    format!(
        "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\" style=\"position:absolute;width:1px;height:1px;border:0\" loading=\"eager\" referrerpolicy=\"no-referrer-when-downgrade\">",
        pixel_url(base, kid, key, ids).replace('&', "&amp;")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: PixelIds<'static> = PixelIds {
        org_id: "acme",
        issuer_id: "iss1",
        badge_class_id: "bc1",
        assertion_id: "as1",
    };

    #[test]
    fn signature_matches_the_spec_formula() {
        // Independent computation of the SPEC formula.
        let mut m = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        m.update(b"v1\nacme\niss1\nbc1\nas1");
        let expected = hex::encode(&m.finalize().into_bytes()[..16]);
        assert_eq!(sign(b"secret", &IDS), expected);
        assert_eq!(expected.len(), 32);
        assert!(verify(b"secret", &IDS, &expected));
        assert!(verify(b"secret", &IDS, &expected.to_uppercase()));
    }

    #[test]
    fn forgeries_fail() {
        let sig = sign(b"secret", &IDS);
        assert!(!verify(b"other", &IDS, &sig));
        let moved = PixelIds {
            assertion_id: "as2",
            ..IDS
        };
        assert!(!verify(b"secret", &moved, &sig));
        // Shifting a separator must not keep the signature valid.
        let shifted = PixelIds {
            org_id: "acme\niss1",
            issuer_id: "",
            ..IDS
        };
        assert!(!verify(b"secret", &shifted, &sig));
        assert!(!verify(b"secret", &IDS, &sig[..30]));
        assert!(!verify(b"secret", &IDS, "zz"));
    }

    #[test]
    fn url_and_snippet() {
        let url = pixel_url("https://t.example.org/", "k1", b"secret", &IDS);
        assert!(
            url.starts_with("https://t.example.org/p.gif?o=acme&i=iss1&b=bc1&a=as1&kid=k1&sig=")
        );
        assert!(
            embed_snippet("https://t.example.org", "k1", b"secret", &IDS).contains("&amp;kid=k1")
        );
    }
}
