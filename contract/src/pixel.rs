//! The query of a view pixel or share beacon URL (SPEC §4): the ids,
//! `kid` and `sig` that [`crate::signing`] builds into a URL, and the
//! unsigned `src` and `c`, read back.
//!
//! Pure; decoding is `form_urlencoded`'s (`+` a space, `%XX` decoded, a
//! malformed escape kept as written, invalid UTF-8 replaced).

use crate::event::{check_id, FieldError};
use crate::signing::PixelIds;

/// What a pixel or beacon carries, before the signature check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PixelQuery {
    pub org_id: String,
    pub issuer_id: String,
    pub badge_class_id: String,
    pub assertion_id: String,
    pub kid: String,
    pub sig: String,
    /// View placement hint (`src`), unsigned.
    pub src: Option<String>,
    /// Share channel (`c` / `channel`).
    pub channel: Option<String>,
}

impl PixelQuery {
    /// Reads a pixel query string (`o`, `i`, `b`, `a`, `kid`, `sig`, `src`,
    /// `c`); other parameters are ignored, the last of a repeated one wins.
    pub fn parse(query: &str) -> Self {
        let mut p = PixelQuery::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match k.as_ref() {
                "o" => &mut p.org_id,
                "i" => &mut p.issuer_id,
                "b" => &mut p.badge_class_id,
                "a" => &mut p.assertion_id,
                "kid" => &mut p.kid,
                "sig" => &mut p.sig,
                "src" => {
                    p.src = Some(v.into_owned());
                    continue;
                }
                "c" => {
                    p.channel = Some(v.into_owned());
                    continue;
                }
                _ => continue,
            };
            *slot = v.into_owned();
        }
        p
    }

    /// Checks the ids' syntax, naming the first bad parameter.
    pub fn check_ids(&self) -> Result<(), FieldError> {
        check_id("o", &self.org_id)?;
        check_id("i", &self.issuer_id)?;
        check_id("b", &self.badge_class_id)?;
        check_id("a", &self.assertion_id)?;
        Ok(())
    }

    /// The ids its signature covers.
    pub fn ids(&self) -> PixelIds<'_> {
        PixelIds {
            org_id: &self.org_id,
            issuer_id: &self.issuer_id,
            badge_class_id: &self.badge_class_id,
            assertion_id: &self.assertion_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{pixel_url, verify};

    #[test]
    fn query_parsing() {
        let p = PixelQuery::parse("o=acme&i=iss&b=bc%2E1&a=as+1&kid=k1&sig=ab&src=email&c=x&zz=1");
        assert_eq!(p.org_id, "acme");
        assert_eq!(p.badge_class_id, "bc.1");
        assert_eq!(p.assertion_id, "as 1");
        assert_eq!(p.src.as_deref(), Some("email"));
        assert_eq!(p.channel.as_deref(), Some("x"));
        assert_eq!(p.check_ids().unwrap_err().field, "a");
        assert_eq!(PixelQuery::parse("o=%&i=%4").org_id, "%");
        assert_eq!(PixelQuery::parse("o=%&i=%4").issuer_id, "%4");
        assert_eq!(PixelQuery::parse("o=%e2%82%ac").org_id, "€");
        assert_eq!(PixelQuery::parse("o=%€").org_id, "%€");
        assert_eq!(PixelQuery::parse("o=%ff").org_id, "\u{fffd}");
        assert_eq!(PixelQuery::parse("").org_id, "");
    }

    #[test]
    fn a_signed_url_reads_back() {
        let ids = PixelIds {
            org_id: "acme",
            issuer_id: "i.1",
            badge_class_id: "b:2",
            assertion_id: "a-3",
        };
        let url = pixel_url("https://t.example.org", "k1", b"secret-key", &ids);
        let p = PixelQuery::parse(url.split_once('?').unwrap().1);
        assert_eq!(p.ids(), ids);
        assert_eq!(p.kid, "k1");
        assert!(verify(b"secret-key", &p.ids(), &p.sig));
    }
}
