//! The fixed vocabulary of the generated world: orgs, their issuers and
//! badge class names, browser and bot User-Agents, Referers with the view
//! source ingest will derive from them, and the documentation address
//! ranges viewers come from.
//!
//! Owns only constant data and the one explicit Referer → source mapping
//! the ledger relies on ([`expected_view_source`]). Must not: hold
//! randomness or state; the seeded choices live in `generate.rs`.

use badgepulse_contract::event::{AwardMethod, ViewSource};

/// The badge platform's own host: a Referer there is view source `platform`
/// (the demo config lists it in `ingest.platform_hosts`).
pub const PLATFORM_HOST: &str = "badges.example.org";

/// An org of the generated world.
pub struct OrgSpec {
    pub id: &'static str,
    pub name: &'static str,
    /// Its issuers; the first two always exist, the third only for some seeds.
    pub issuers: &'static [IssuerSpec],
}

/// An issuer and the badge classes it may offer.
pub struct IssuerSpec {
    pub id: &'static str,
    pub name: &'static str,
    /// The award method most of its badges are issued with.
    pub primary_method: AwardMethod,
    /// Candidate badge classes: (id suffix, name, skills). A seed picks 3–6.
    pub badges: &'static [(&'static str, &'static str, &'static [&'static str])],
}

/// The orgs. Badge class ids are `<issuer id>.<suffix>`, unique per org.
pub const ORGS: &[OrgSpec] = &[
    OrgSpec {
        id: "acme-univ",
        name: "Acme University",
        issuers: &[
            IssuerSpec {
                id: "acme-cs",
                name: "School of Computer Science",
                primary_method: AwardMethod::Lms,
                badges: &[
                    (
                        "rust-101",
                        "Rust Fundamentals",
                        &["Rust", "Systems programming"],
                    ),
                    (
                        "dsa",
                        "Data Structures and Algorithms",
                        &["Algorithms", "Complexity analysis"],
                    ),
                    (
                        "cloud-native",
                        "Cloud Native Development",
                        &["Kubernetes", "Containers"],
                    ),
                    (
                        "ml-found",
                        "Machine Learning Foundations",
                        &["Python", "Machine learning"],
                    ),
                    (
                        "secure-code",
                        "Secure Coding",
                        &["Application security", "Threat modelling"],
                    ),
                    ("a11y", "Web Accessibility", &["WCAG", "HTML"]),
                    ("db-101", "Databases 101", &["SQL", "Data modelling"]),
                    (
                        "dist-sys",
                        "Distributed Systems",
                        &["Consensus", "Networking"],
                    ),
                ],
            },
            IssuerSpec {
                id: "acme-biz",
                name: "Business School",
                primary_method: AwardMethod::Manual,
                badges: &[
                    ("negotiation", "Negotiation Essentials", &["Negotiation"]),
                    (
                        "fin-lit",
                        "Financial Literacy",
                        &["Budgeting", "Accounting basics"],
                    ),
                    (
                        "pm",
                        "Project Management",
                        &["Scheduling", "Risk management"],
                    ),
                    ("analytics", "Business Analytics", &["Excel", "Forecasting"]),
                    ("startup", "Entrepreneurship", &["Business models"]),
                    (
                        "marketing",
                        "Marketing Strategy",
                        &["Segmentation", "Branding"],
                    ),
                ],
            },
            IssuerSpec {
                id: "acme-ce",
                name: "Continuing Education",
                primary_method: AwardMethod::Bulk,
                badges: &[
                    ("speaking", "Public Speaking", &["Presentation"]),
                    ("writing", "Academic Writing", &["Writing", "Citation"]),
                    ("spanish-a2", "Spanish A2", &["Spanish"]),
                    (
                        "digital-lit",
                        "Digital Literacy",
                        &["Office tools", "Online safety"],
                    ),
                    (
                        "research",
                        "Research Methods",
                        &["Survey design", "Statistics"],
                    ),
                    ("critical", "Critical Thinking", &["Reasoning"]),
                ],
            },
        ],
    },
    OrgSpec {
        id: "globex",
        name: "Globex Corporation",
        issuers: &[
            IssuerSpec {
                id: "globex-academy",
                name: "Globex Academy",
                primary_method: AwardMethod::Api,
                badges: &[
                    ("sales-onb", "Sales Onboarding", &["Consultative selling"]),
                    ("product-expert", "Product Expert", &["Globex Suite"]),
                    (
                        "cust-success",
                        "Customer Success",
                        &["Account management", "Retention"],
                    ),
                    (
                        "cert-admin",
                        "Globex Certified Administrator",
                        &["Globex Suite", "Administration"],
                    ),
                    (
                        "cert-dev",
                        "Globex Certified Developer",
                        &["Globex API", "JavaScript"],
                    ),
                    ("partner", "Partner Specialist", &["Channel sales"]),
                ],
            },
            IssuerSpec {
                id: "globex-safety",
                name: "Safety and Compliance",
                primary_method: AwardMethod::Integration,
                badges: &[
                    ("forklift", "Forklift Safety", &["Forklift operation"]),
                    ("first-aid", "First Aid", &["First aid", "CPR"]),
                    ("fire-warden", "Fire Warden", &["Evacuation"]),
                    ("gdpr", "Data Protection", &["GDPR", "Privacy"]),
                    ("anti-bribery", "Anti-Bribery", &["Compliance"]),
                    ("ergonomics", "Workplace Ergonomics", &["Ergonomics"]),
                ],
            },
            IssuerSpec {
                id: "globex-lead",
                name: "Leadership Institute",
                primary_method: AwardMethod::Manual,
                badges: &[
                    (
                        "first-manager",
                        "First-Time Manager",
                        &["People management"],
                    ),
                    (
                        "coaching",
                        "Coaching Conversations",
                        &["Coaching", "Feedback"],
                    ),
                    ("inclusive", "Inclusive Leadership", &["Inclusion"]),
                    ("strategy", "Strategic Thinking", &["Strategy"]),
                    ("change", "Change Management", &["Change management"]),
                ],
            },
        ],
    },
    OrgSpec {
        id: "initech",
        name: "Initech Learning",
        issuers: &[
            IssuerSpec {
                id: "initech-cloud",
                name: "Cloud Skills",
                primary_method: AwardMethod::Api,
                badges: &[
                    ("practitioner", "Cloud Practitioner", &["Cloud concepts"]),
                    (
                        "architect",
                        "Solutions Architect Associate",
                        &["Architecture", "High availability"],
                    ),
                    (
                        "devops",
                        "DevOps Engineer",
                        &["CI/CD", "Infrastructure as code"],
                    ),
                    (
                        "serverless",
                        "Serverless Specialist",
                        &["Functions", "Event-driven design"],
                    ),
                    ("cloud-sec", "Cloud Security", &["IAM", "Encryption"]),
                    ("finops", "Cost Optimization", &["FinOps"]),
                ],
            },
            IssuerSpec {
                id: "initech-data",
                name: "Data Guild",
                primary_method: AwardMethod::Lms,
                badges: &[
                    ("sql-analyst", "SQL Analyst", &["SQL"]),
                    ("dataviz", "Data Visualization", &["Charts", "Storytelling"]),
                    (
                        "data-eng",
                        "Data Engineering",
                        &["Pipelines", "Batch processing"],
                    ),
                    ("stats", "Statistics for Analysts", &["Statistics"]),
                    ("dashboards", "Dashboard Design", &["Grafana", "UX"]),
                    (
                        "governance",
                        "Data Governance",
                        &["Data quality", "Lineage"],
                    ),
                ],
            },
        ],
    },
];

/// Real desktop and mobile browser User-Agents; none matches a bot pattern.
pub const BROWSER_UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
];

/// Bot User-Agents with the family ingest files them under
/// (`badgepulse_ingest_bots_total{family}`).
pub const BOT_UAS: &[(&str, &str)] = &[
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", "link_preview"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "link_preview"),
    ("Twitterbot/1.0", "link_preview"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "search"),
    ("curl/8.0.1", "http_library"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36", "headless"),
];

/// The Referers views arrive with (`None`: no Referer header).
pub const REFERERS: &[Option<&str>] = &[
    Some("https://www.linkedin.com/feed/"),
    Some("https://lnkd.in/gAbC12d"),
    Some("https://www.facebook.com/"),
    Some("https://m.facebook.com/story.php?story_fbid=1"),
    Some("https://t.co/Xy12AbCdE9"),
    Some("https://x.com/home"),
    Some("https://mail.google.com/mail/u/0/"),
    Some("https://www.google.com/search?q=digital+badge"),
    Some("https://duckduckgo.com/"),
    Some("https://badges.example.org/public/assertions"),
    Some("https://blog.example.net/2025/05/my-new-badge"),
    None,
];

/// The view source ingest derives (SPEC §4) for a pixel or beacon view
/// with placement hint `src` and Referer `referer`, for the Referers this
/// generator sends. A valid `src` wins; an unknown `src` is ignored.
///
/// This is the expectation the ledger is built on, written out by host
/// on purpose rather than shared with ingest's classifier.
pub fn expected_view_source(src: Option<&str>, referer: Option<&str>) -> ViewSource {
    if let Some(s) = src.and_then(ViewSource::parse) {
        return s;
    }
    let Some(referer) = referer else {
        return ViewSource::Direct;
    };
    let host = referer
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .unwrap_or("");
    match host {
        "www.linkedin.com" | "lnkd.in" => ViewSource::Linkedin,
        "www.facebook.com" | "m.facebook.com" => ViewSource::Facebook,
        "t.co" | "x.com" => ViewSource::X,
        "mail.google.com" => ViewSource::Email,
        "www.google.com" | "duckduckgo.com" => ViewSource::Search,
        PLATFORM_HOST => ViewSource::Platform,
        _ => ViewSource::Other,
    }
}

/// Placement hints sent as `src`: three valid sources and one that ingest
/// must ignore (falling back to the Referer).
pub const SRC_HINTS: &[&str] = &["email", "embed", "platform", "qr-code"];

/// Countries of platform `badge.viewed` events and of viewers.
pub const COUNTRIES: &[&str] = &["US", "DE", "GB", "IN", "FR", "NL", "CA", "AU", "BR", "JP"];

/// The header carrying a viewer's country, as a CDN in front of ingest sets
/// it; the demo and test configs name it in `ingest.country_header`.
pub const COUNTRY_HEADER: &str = "CF-IPCountry";

/// The country header value of viewer address number `n`: fixed per
/// address, sometimes Cloudflare's `XX` (unknown, ingest ignores it) or
/// absent.
pub fn client_country(n: u16) -> Option<&'static str> {
    let slot = usize::from(n) * 7 % (COUNTRIES.len() + 2);
    match slot.checked_sub(COUNTRIES.len()) {
        None => Some(COUNTRIES[slot]),
        Some(0) => Some("XX"),
        Some(_) => None,
    }
}

/// The IPv4 documentation prefixes (RFC 5737) viewer addresses come from.
pub const DOC_PREFIXES: &[&str] = &["192.0.2", "198.51.100", "203.0.113"];

/// Usable host numbers in each documentation /24.
pub const DOC_HOSTS: u16 = 254;

/// The address of viewer address number `n` (< 3 × 254).
pub fn doc_ip(n: u16) -> String {
    format!(
        "{}.{}",
        DOC_PREFIXES[usize::from(n / DOC_HOSTS)],
        n % DOC_HOSTS + 1
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referer_mapping_is_total_and_varied() {
        use std::collections::BTreeSet;
        let sources: BTreeSet<_> = REFERERS
            .iter()
            .map(|r| expected_view_source(None, *r))
            .collect();
        for s in [
            ViewSource::Linkedin,
            ViewSource::Facebook,
            ViewSource::X,
            ViewSource::Email,
            ViewSource::Search,
            ViewSource::Platform,
            ViewSource::Direct,
            ViewSource::Other,
        ] {
            assert!(sources.contains(&s), "{s} never produced");
        }
        assert_eq!(
            expected_view_source(Some("embed"), Some("https://t.co/x")),
            ViewSource::Embed
        );
        assert_eq!(
            expected_view_source(Some("qr-code"), Some("https://t.co/x")),
            ViewSource::X
        );
    }

    #[test]
    fn ids_are_valid_and_unique() {
        use badgepulse_contract::event::is_valid_id;
        let mut seen = std::collections::BTreeSet::new();
        for org in ORGS {
            assert!(is_valid_id(org.id));
            assert!((2..=3).contains(&org.issuers.len()));
            for issuer in org.issuers {
                assert!(issuer.badges.len() >= 3);
                for (suffix, _, _) in issuer.badges {
                    let id = format!("{}.{}", issuer.id, suffix);
                    assert!(is_valid_id(&id), "{id}");
                    assert!(seen.insert(id.clone()), "{id} twice");
                }
            }
        }
        assert_eq!(doc_ip(0), "192.0.2.1");
        assert_eq!(doc_ip(253), "192.0.2.254");
        assert_eq!(doc_ip(254), "198.51.100.1");
        assert_eq!(doc_ip(3 * DOC_HOSTS - 1), "203.0.113.254");
    }
}
