//! Where a view came from and where a badge was shared (SPEC §4): the
//! Referer host → view source, `src` overriding it, and the share channel
//! of a share beacon.
//!
//! Pure.

use badgepulse_contract::event::{FieldError, ShareChannel, ViewSource};

/// Known webmail hosts: a view coming from them is source `email`.
const WEBMAIL_HOSTS: &[&str] = &[
    "mail.google.com",
    "outlook.live.com",
    "outlook.office.com",
    "outlook.office365.com",
    "mail.yahoo.com",
    "mail.aol.com",
    "mail.proton.me",
    "mail.protonmail.com",
    "app.fastmail.com",
    "mail.zoho.com",
    "mail.zoho.eu",
    "mail.yandex.ru",
    "mail.yandex.com",
    "e.mail.ru",
    "webmail.gmx.net",
    "navigator.gmx.net",
    "mail.gmx.com",
    "3c.web.de",
    "www.icloud.com",
    "mail.tutanota.com",
    "app.tuta.com",
    "mail.qq.com",
    "mail.163.com",
];

/// Search engines, matched on the host or any parent domain.
const SEARCH_DOMAINS: &[&str] = &[
    "bing.com",
    "duckduckgo.com",
    "search.yahoo.com",
    "yandex.com",
    "yandex.ru",
    "baidu.com",
    "ecosia.org",
    "search.brave.com",
    "startpage.com",
    "qwant.com",
    "search.naver.com",
    "seznam.cz",
    "sogou.com",
    "so.com",
    "perplexity.ai",
    "kagi.com",
];

/// Whether `host` is `domain` or a subdomain of it.
/// Whether `host` is `domain` or a subdomain of it, ignoring ASCII case.
fn host_matches(host: &str, domain: &str) -> bool {
    let (h, d) = (host.as_bytes(), domain.as_bytes());
    if h.len() < d.len() || !h[h.len() - d.len()..].eq_ignore_ascii_case(d) {
        return false;
    }
    h.len() == d.len() || h[h.len() - d.len() - 1] == b'.'
}

/// Whether `host` is a Google search host (`google.com`, `www.google.co.uk`, …).
fn is_google_search(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    match labels.iter().position(|l| *l == "google") {
        Some(0) => labels.len() >= 2,
        Some(1) => labels[0] == "www" && labels.len() >= 3,
        _ => false,
    }
}

/// The host of a Referer URL, lower case, without port or credentials.
pub fn referer_host(referer: &str) -> Option<String> {
    let rest = referer.split_once("://").map(|(_, r)| r)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(stripped) = host_port.strip_prefix('[') {
        stripped.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// The view source of a pixel hit: `src` (if a valid source) wins, else
/// the Referer host is classified (SPEC §4).
pub fn view_source(
    src: Option<&str>,
    referer: Option<&str>,
    platform_hosts: &[String],
) -> ViewSource {
    if let Some(s) = src.and_then(ViewSource::parse) {
        return s;
    }
    let Some(referer) = referer.map(str::trim).filter(|r| !r.is_empty()) else {
        return ViewSource::Direct;
    };
    let Some(host) = referer_host(referer) else {
        return ViewSource::Other;
    };
    if platform_hosts.iter().any(|p| host_matches(&host, p)) {
        return ViewSource::Platform;
    }
    if ["linkedin.com", "lnkd.in"]
        .iter()
        .any(|d| host_matches(&host, d))
    {
        return ViewSource::Linkedin;
    }
    if ["facebook.com", "fb.com", "fb.me", "messenger.com"]
        .iter()
        .any(|d| host_matches(&host, d))
    {
        return ViewSource::Facebook;
    }
    if ["twitter.com", "x.com", "t.co"]
        .iter()
        .any(|d| host_matches(&host, d))
    {
        return ViewSource::X;
    }
    if WEBMAIL_HOSTS.contains(&host.as_str()) || host.starts_with("webmail.") {
        return ViewSource::Email;
    }
    if is_google_search(&host) || SEARCH_DOMAINS.iter().any(|d| host_matches(&host, d)) {
        return ViewSource::Search;
    }
    ViewSource::Other
}

/// The share channel of a share beacon: missing → `other`, unknown → error.
pub fn share_channel(c: Option<&str>) -> Result<ShareChannel, FieldError> {
    match c {
        None | Some("") => Ok(ShareChannel::Other),
        Some(c) => ShareChannel::parse(c).ok_or_else(|| {
            FieldError::new(
                "c",
                format!(
                    "unknown channel {c:?} (expected one of {})",
                    ShareChannel::expected()
                ),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referer_sources() {
        let platform = vec!["badges.example.org".to_owned()];
        let cases = [
            (None, ViewSource::Direct),
            (Some(""), ViewSource::Direct),
            (Some("https://www.linkedin.com/feed/"), ViewSource::Linkedin),
            (Some("https://lnkd.in/abc"), ViewSource::Linkedin),
            (Some("https://m.facebook.com/story"), ViewSource::Facebook),
            (Some("https://fb.com/x"), ViewSource::Facebook),
            (Some("https://t.co/xyz"), ViewSource::X),
            (Some("https://x.com/someone/status/1"), ViewSource::X),
            (Some("https://twitter.com/"), ViewSource::X),
            (Some("https://mail.google.com/mail/u/0/"), ViewSource::Email),
            (
                Some("https://outlook.live.com/mail/0/inbox"),
                ViewSource::Email,
            ),
            (Some("https://www.google.com/"), ViewSource::Search),
            (
                Some("https://www.google.co.uk/search?q=badge"),
                ViewSource::Search,
            ),
            (Some("https://duckduckgo.com/"), ViewSource::Search),
            (Some("https://www.bing.com/search?q=x"), ViewSource::Search),
            (
                Some("https://badges.example.org/public/123"),
                ViewSource::Platform,
            ),
            (
                Some("https://user:pw@BADGES.example.org:8443/x"),
                ViewSource::Platform,
            ),
            (Some("https://notlinkedin.com/"), ViewSource::Other),
            (
                Some("https://docs.google.com/document/d/1"),
                ViewSource::Other,
            ),
            (Some("https://blog.example.net/post"), ViewSource::Other),
            (Some("not a url"), ViewSource::Other),
        ];
        for (referer, want) in cases {
            assert_eq!(view_source(None, referer, &platform), want, "{referer:?}");
        }
        assert_eq!(
            view_source(Some("embed"), Some("https://www.linkedin.com/"), &platform),
            ViewSource::Embed
        );
        assert_eq!(
            view_source(Some("bogus"), Some("https://www.linkedin.com/"), &platform),
            ViewSource::Linkedin
        );
    }

    #[test]
    fn share_channels() {
        assert_eq!(share_channel(None).unwrap(), ShareChannel::Other);
        assert_eq!(
            share_channel(Some("linkedin")).unwrap(),
            ShareChannel::Linkedin
        );
        assert_eq!(share_channel(Some("myspace")).unwrap_err().field, "c");
    }
}
