//! Pure logic of pixel and share beacons (SPEC §4): query parsing, bot
//! families, Referer → view source, client IP behind trusted proxies,
//! viewer keys and the per-client rate limiter.
//!
//! Must not: keep or return a raw IP address or User-Agent beyond the
//! request that carried it. Only keyed hashes leave this module.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use badgepulse_contract::event::{check_id, FieldError, ShareChannel, ViewSource};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;

/// What a pixel or beacon carries, before the signature check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BeaconParams {
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

impl BeaconParams {
    /// Reads the pixel query string (`o`, `i`, `b`, `a`, `kid`, `sig`, `src`, `c`).
    pub fn from_query(query: &str) -> Self {
        let mut p = BeaconParams::default();
        for (k, v) in form_urlencoded_pairs(query) {
            let v = v.into_owned();
            let slot = match k.as_ref() {
                "o" => &mut p.org_id,
                "i" => &mut p.issuer_id,
                "b" => &mut p.badge_class_id,
                "a" => &mut p.assertion_id,
                "kid" => &mut p.kid,
                "sig" => &mut p.sig,
                "src" => {
                    p.src = Some(v);
                    continue;
                }
                "c" => {
                    p.channel = Some(v);
                    continue;
                }
                _ => continue,
            };
            *slot = v;
        }
        p
    }

    /// Checks the ids' syntax, naming the first bad one.
    pub fn check_ids(&self) -> Result<(), FieldError> {
        check_id("o", &self.org_id)?;
        check_id("i", &self.issuer_id)?;
        check_id("b", &self.badge_class_id)?;
        check_id("a", &self.assertion_id)?;
        Ok(())
    }
}

/// Splits `a=1&b=2` into decoded pairs (`+` is a space, `%XX` decoded,
/// invalid UTF-8 replaced); parts without escapes are borrowed.
fn form_urlencoded_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Bot families, the label values of `badgepulse_ingest_bots_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotFamily {
    /// Link-preview crawlers of social networks and chat apps.
    LinkPreview,
    /// Search engine and SEO/AI crawlers.
    Search,
    /// HTTP client libraries and command-line tools.
    HttpLibrary,
    /// Headless and automated browsers.
    Headless,
    /// Anything else calling itself a bot, crawler or spider, or no User-Agent at all.
    Other,
}

impl BotFamily {
    pub const ALL: [BotFamily; 5] = [
        BotFamily::LinkPreview,
        BotFamily::Search,
        BotFamily::HttpLibrary,
        BotFamily::Headless,
        BotFamily::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BotFamily::LinkPreview => "link_preview",
            BotFamily::Search => "search",
            BotFamily::HttpLibrary => "http_library",
            BotFamily::Headless => "headless",
            BotFamily::Other => "other",
        }
    }
}

/// Lower-case User-Agent tokens by family; when tokens of several families
/// match, the family listed first wins. A token counts wherever it occurs,
/// unless marked: `^` at its start, it must start the User-Agent
/// (`^whatsapp` is WhatsApp's preview fetcher, not an in-app browser that
/// names WhatsApp further on); `$` at its end, it must end it (`^viber$`:
/// Viber's fetcher sends only that word, its in-app browser much more);
/// `\b` at its end, no letter may follow (`bot\b` is in `UptimeRobot/2.0`
/// and `Pingdom.com_bot_`, not in `FBCR/OrangeBotswana`).
///
/// In-app browsers are people, not bots: tokens must not match Pinterest's
/// (`[Pinterest/iOS]`), Snapchat's (`Snapchat/12.33`), Viber's, Teams'
/// (`Teams/26106`), Slack's or any Electron app (`Slack/4.4.2`,
/// `Electron/7.2.1`), LINE's, WeChat's, Telegram's, X's, LinkedIn's,
/// Facebook's or Instagram's. `ingest/tests/bot_corpus.rs` checks them
/// against real User-Agents.
const BOT_PATTERNS: &[(BotFamily, &[&str])] = &[
    (
        BotFamily::LinkPreview,
        &[
            "linkedinbot",
            "facebookexternalhit",
            "meta-externalhit",
            "facebot",
            "twitterbot",
            "slackbot",
            "slack-imgproxy",
            "discordbot",
            "^whatsapp",
            "telegrambot",
            "skypeuripreview",
            "microsoftpreview",
            "redditbot",
            "embedly",
            "iframely",
            "pinterestbot",
            "^pinterest/0.",
            "snap url preview",
            "snapurlpreview",
            "snapchat-proxy",
            "^viber$",
            "vkshare",
            "(mastodon/",
            "bluesky cardyb",
            "blueskypreviewbot",
            "quora link preview",
            "quora-bot",
            "valve/steam http client",
            "discourse forum onebox",
            "bitlybot",
            "yahoo:linkexpander",
            "outbrain",
            "line-poker",
            "google-pagerenderer",
        ],
    ),
    (
        BotFamily::Search,
        &[
            "googlebot",
            "google-inspectiontool",
            "googleother",
            "google-extended",
            "storebot-google",
            "adsbot-google",
            "mediapartners-google",
            "google web preview",
            "bingbot",
            "bingpreview",
            "msnbot",
            "adidxbot",
            "yandex.com/bots",
            "^yandex/",
            "baiduspider",
            "duckduckbot",
            "duckduckgo-favicons-bot",
            "duckassistbot",
            "applebot",
            "^sogou ",
            "exabot",
            "seznambot",
            "petalbot",
            "aspiegelbot",
            "coccocbot",
            "mail.ru_bot",
            "yahoo! slurp",
            "ahrefsbot",
            "semrushbot",
            "siteauditbot",
            "mj12bot",
            "dotbot",
            "gptbot",
            "chatgpt-user",
            "oai-searchbot",
            "ccbot",
            "claudebot",
            "claude-user",
            "claude-searchbot",
            "anthropic-ai",
            "perplexitybot",
            "perplexity-user",
            "bytespider",
            "amazonbot",
            "meta-externalagent",
            "meta-externalfetcher",
            "meta-externalads",
            "meta-webindexer",
            "facebookbot",
            "facebookcatalog",
            "snapchatads",
            "linespider",
            "tiktokspider",
            "yeti/",
            "qwantify",
            "qwantbot",
            "mojeekbot",
            "kagibot",
        ],
    ),
    (
        BotFamily::Headless,
        &[
            "headlesschrome",
            "headless chrome",
            "phantomjs",
            "puppeteer",
            "playwright",
            "selenium",
            "webdriver",
            "cypress/",
            "gecko) splash ",
            "chrome-lighthouse",
            "slimerjs",
        ],
    ),
    (
        BotFamily::HttpLibrary,
        &[
            "^curl/",
            "^curl$",
            "^pycurl/",
            "^libcurl",
            "^wget/",
            "^wget2/",
            "python-requests",
            "python-urllib",
            "python-httpx",
            "aiohttp",
            "go-http-client",
            "package http",
            "go-resty",
            "^java/",
            "apache-httpclient",
            "jakarta commons-httpclient",
            "okhttp",
            "axios/",
            "node-fetch",
            "undici",
            "sindresorhus/got",
            "request-promise",
            "libwww-perl",
            "lwp::",
            "^lwp-trivial",
            "^php/",
            "guzzlehttp",
            "^rest-client/",
            "^ruby$",
            "postmanruntime",
            "^httpie/",
            "reqwest",
            "^ureq/",
            "hyper/",
            "restsharp",
            "powershell",
            "^winhttp",
            "scrapy",
            "^apachebench/",
            "^wrk",
        ],
    ),
    (
        BotFamily::Other,
        &[
            "uptimerobot",
            "uptimebot",
            "pingdom",
            "statuscake",
            "site24x7",
            "datadog agent",
            "datadogsynthetics",
            "newrelicpinger",
            "newrelicsynthetics",
            "catchpoint",
            "gtmetrix",
            "ptst/",
            "updown.io daemon",
            "hetrixtools",
            "amazon-route53-health-check",
            "ruxitsynthetic",
            "^monit/",
            "^check_http/",
            "^blackbox exporter/",
            "^prometheus/",
            "bot\\b",
            "crawl",
            "spider",
            "fetcher",
        ],
    ),
];

/// Words that contain a bot token but name no bot (the phone maker Cubot).
/// The automaton reports the longest of the matches starting leftmost and
/// none overlapping it, so one of these hides the tokens inside it (as
/// `twitterbot` hides `bot`).
const NOT_BOTS: &[&str] = &["cubot"];

/// A token's family, and where it must sit for its match to count (see
/// [`BOT_PATTERNS`]).
#[derive(Clone, Copy)]
struct Token {
    /// The family and its place in [`BOT_PATTERNS`]; `None` for [`NOT_BOTS`].
    family: Option<(usize, BotFamily)>,
    at_start: bool,
    at_end: bool,
    word_end: bool,
}

/// One case-insensitive automaton over every token, built once: a
/// User-Agent is scanned in a single pass on the pixel's hot path.
struct BotMatcher {
    automaton: aho_corasick::AhoCorasick,
    /// By pattern index.
    tokens: Vec<Token>,
}

fn bot_matcher() -> &'static BotMatcher {
    static MATCHER: std::sync::OnceLock<BotMatcher> = std::sync::OnceLock::new();
    MATCHER.get_or_init(|| {
        let bots = BOT_PATTERNS
            .iter()
            .enumerate()
            .flat_map(|(rank, (family, tokens))| {
                tokens.iter().map(move |t| (Some((rank, *family)), *t))
            });
        let not_bots = NOT_BOTS.iter().map(|t| (None, *t));
        let (tokens, needles): (Vec<Token>, Vec<&str>) = bots
            .chain(not_bots)
            .map(|(family, t)| {
                let (at_start, t) = t.strip_prefix('^').map_or((false, t), |t| (true, t));
                let (word_end, t) = t.strip_suffix("\\b").map_or((false, t), |t| (true, t));
                let (at_end, t) = t.strip_suffix('$').map_or((false, t), |t| (true, t));
                let token = Token {
                    family,
                    at_start,
                    at_end,
                    word_end,
                };
                (token, t)
            })
            .unzip();
        BotMatcher {
            automaton: aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(needles)
                .expect("bot patterns are valid"),
            tokens,
        }
    })
}

/// The bot family of a User-Agent, `None` for a browser. When tokens of
/// several families match, the family listed first in `BOT_PATTERNS` wins.
/// A missing or empty User-Agent is a bot of family `other`.
pub fn bot_family(user_agent: Option<&str>) -> Option<BotFamily> {
    let ua = match user_agent.map(str::trim) {
        None | Some("") => return Some(BotFamily::Other),
        Some(ua) => ua,
    };
    let m = bot_matcher();
    // Most User-Agents are browsers: a plain scan rules them out before
    // the slower search for every match and its place.
    if !m.automaton.is_match(ua) {
        return None;
    }
    m.automaton
        .find_iter(ua)
        .filter_map(|hit| {
            let t = m.tokens[hit.pattern().as_usize()];
            let placed = (!t.at_start || hit.start() == 0)
                && (!t.at_end || hit.end() == ua.len())
                && !(t.word_end
                    && ua
                        .as_bytes()
                        .get(hit.end())
                        .is_some_and(u8::is_ascii_alphabetic));
            t.family.filter(|_| placed)
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, family)| family)
}

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

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy, in which case `X-Forwarded-For` is walked from the right,
/// skipping further trusted proxies.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// `viewer_key` (SPEC §4): 64 bits of HMAC-SHA256 keyed by the daily salt
/// over (client IP, User-Agent, org). Never 0, which means "no key".
pub fn viewer_key(salt: &[u8], ip: IpAddr, user_agent: &str, org_id: &str) -> u64 {
    ViewerKeyer::new(salt).key(ip, user_agent, org_id)
}

/// [`viewer_key`] with the HMAC key schedule of one salt done once: a
/// pixel then costs only the hashing of its own input.
#[derive(Clone)]
pub struct ViewerKeyer(Hmac<Sha256>);

impl ViewerKeyer {
    pub fn new(salt: &[u8]) -> Self {
        ViewerKeyer(Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes keys of any length"))
    }

    /// The viewer key of (client IP, User-Agent, org) under this salt.
    pub fn key(&self, ip: IpAddr, user_agent: &str, org_id: &str) -> u64 {
        let mut m = self.0.clone();
        match ip {
            IpAddr::V4(v4) => m.update(&v4.octets()),
            IpAddr::V6(v6) => m.update(&v6.octets()),
        }
        m.update(b"\0");
        m.update(user_agent.as_bytes());
        m.update(b"\0");
        m.update(org_id.as_bytes());
        let out = m.finalize().into_bytes();
        let key = u64::from_be_bytes(out[..8].try_into().expect("8 bytes"));
        key.max(1)
    }
}

/// The rate limiter's key of a client: (IP, User-Agent) hashed with
/// `hasher`, a process-local random SipHash key. It never leaves the
/// process, so a fast keyed hash serves; no raw address is kept.
pub fn client_key(hasher: &std::hash::RandomState, ip: IpAddr, user_agent: &str) -> u64 {
    std::hash::BuildHasher::hash_one(hasher, (ip, user_agent))
}

/// Fixed-window per-client counter: at most `limit` beacons per client per
/// minute. Clients are keyed by a hash, never by a raw address; the table
/// is cleared every minute, so its size is bounded by one minute's clients
/// (and by `max_clients`, beyond which new clients are refused).
pub struct RateLimiter {
    limit: u32,
    max_clients: usize,
    minute: i64,
    counts: HashMap<u64, u32>,
}

impl RateLimiter {
    pub fn new(limit: u32, max_clients: usize) -> Self {
        RateLimiter {
            limit,
            max_clients,
            minute: i64::MIN,
            counts: HashMap::new(),
        }
    }

    /// Counts one beacon of `client` at unix time `now_secs`; false when over the limit.
    pub fn allow(&mut self, client: u64, now_secs: i64) -> bool {
        let minute = now_secs.div_euclid(60);
        if minute != self.minute {
            self.minute = minute;
            self.counts.clear();
        }
        if !self.counts.contains_key(&client) && self.counts.len() >= self.max_clients {
            return false;
        }
        let n = self.counts.entry(client).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let p = BeaconParams::from_query(
            "o=acme&i=iss&b=bc%2E1&a=as+1&kid=k1&sig=ab&src=email&c=x&zz=1",
        );
        assert_eq!(p.org_id, "acme");
        assert_eq!(p.badge_class_id, "bc.1");
        assert_eq!(p.assertion_id, "as 1");
        assert_eq!(p.src.as_deref(), Some("email"));
        assert_eq!(p.channel.as_deref(), Some("x"));
        assert_eq!(p.check_ids().unwrap_err().field, "a");
        assert_eq!(BeaconParams::from_query("o=%&i=%4").org_id, "%");
        assert_eq!(BeaconParams::from_query("o=%&i=%4").issuer_id, "%4");
        assert_eq!(BeaconParams::from_query("o=%e2%82%ac").org_id, "€");
        assert_eq!(BeaconParams::from_query("o=%€").org_id, "%€");
    }

    #[test]
    fn bot_families() {
        let cases = [
            ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", Some(BotFamily::LinkPreview)),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", Some(BotFamily::LinkPreview)),
            ("Twitterbot/1.0", Some(BotFamily::LinkPreview)),
            ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", Some(BotFamily::LinkPreview)),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Some(BotFamily::Search)),
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", Some(BotFamily::Search)),
            ("curl/8.5.0", Some(BotFamily::HttpLibrary)),
            ("python-requests/2.31.0", Some(BotFamily::HttpLibrary)),
            ("Go-http-client/1.1", Some(BotFamily::HttpLibrary)),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", Some(BotFamily::Headless)),
            ("SomeRandomCrawler/0.1", Some(BotFamily::Other)),
            ("", Some(BotFamily::Other)),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36", None),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", None),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:120.0) Gecko/20100101 Firefox/120.0", None),
        ];
        for (ua, want) in cases {
            assert_eq!(bot_family(Some(ua)), want, "{ua}");
        }
        assert_eq!(bot_family(None), Some(BotFamily::Other));
        assert_eq!(bot_family(Some("  ")), Some(BotFamily::Other));
    }

    /// In-app browsers are people; their apps' fetchers are bots. The
    /// User-Agents are real ones from `testdata/user_agents.tsv`.
    #[test]
    fn in_app_browsers_and_their_fetchers() {
        let browsers = [
            "Mozilla/5.0 (iPad; CPU OS 6_1_3 like Mac OS X) AppleWebKit/536.26 (KHTML, like Gecko) Mobile/10B329 [Pinterest/iOS]",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Snapchat/12.33.0.36 (like Safari/8614.1.25.0.31, panda)",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_4) AppleWebKit/537.36 (KHTML, like Gecko) QtWebEngine/5.6.0 Chrome/45.0.2454.101 Safari/537.36 Viber",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/147.0.0.0 Safari/537.36 Edg/147.0.0.0 Teams/26106.2110.4675.2592 (50)",
            "Mozilla/5.0 (Windows NT 10.0.18362; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Slack/4.4.2 Chrome/78.0.3904.130 Electron/7.2.1 Safari/537.36 WindowsStore/10.0.18362 Sonic Slack_SSB/4.4.2",
            "Mozilla/5.0 (Linux; Android 5.0; ASUS_Z00AD Build/LRX21V; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/51.0.2704.81 Mobile Safari/537.36 Line/6.5.1/IAB",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 12_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]",
            "Mozilla/5.0 (Linux; Android 15; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/144.0.7559.132 Safari/537.36 Telegram-Android/12.4.1 (Xiaomi 2405CRPFDG; Android 15; SDK 35; HIGH)",
            // `bot` inside a word: a carrier and a phone maker.
            "Mozilla/5.0 (iPhone; CPU iPhone OS 11_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15G77 [FBAN/FBIOS;FBAV/194.0.0.38.99;FBBV/127868476;FBDV/iPhone7,2;FBMD/iPhone;FBSN/iOS;FBSV/11.4.1;FBSS/2;FBCR/OrangeBotswana;FBID/phone;FBLC/en_GB;FBOP/5;FBRV/128807018]",
            "Mozilla/5.0 (Linux; Android 8.0.0; CUBOT_P20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.110 Mobile Safari/537.36",
            // `java/` not at the start: a feature phone's browser.
            "LG/KU990i/v10a Browser/Obigo-Q05A/3.6 MMS/LG-MMS-V1.0/1.2 Java/ASVM/1.0 Profile/MIDP-2.0 Configuration/CLDC-1.1",
            "Mozilla/5.0 (Linux; Android 13; 2201116SI Build/TKQ1.221114.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/125.0.6422.165 Mobile Safari/537.36 CamScanner/4.5.0.2305051722",
        ];
        for ua in browsers {
            assert_eq!(bot_family(Some(ua)), None, "{ua}");
        }
        let bots = [
            ("Pinterest/0.2 (+https://www.pinterest.com/bot.html)", BotFamily::LinkPreview),
            ("Mozilla/5.0 (compatible; Pinterestbot/1.0; +https://www.pinterest.com/bot.html)", BotFamily::LinkPreview),
            ("Mozilla/5.0 (compatible; SnapURLPreview/1.0; +https://www.snapchat.com)", BotFamily::LinkPreview),
            ("Viber", BotFamily::LinkPreview),
            ("WhatsApp/2.19.92 i", BotFamily::LinkPreview),
            ("MicrosoftPreview/2.0; +https://aka.ms/MicrosoftPreview", BotFamily::LinkPreview),
            ("mozilla/5.0 (windows nt 6.1; wow64) skypeuripreview preview/0.5 skype-url-preview@microsoft.com", BotFamily::LinkPreview),
            ("TelegramBot (like TwitterBot)", BotFamily::LinkPreview),
            ("Mozilla/5.0 (compatible; SnapchatAds/1.0; +https://businesshelp.snapchat.com/s/article/adsbot-crawler)", BotFamily::Search),
            ("curl", BotFamily::HttpLibrary),
            ("Java/1.8.0_121", BotFamily::HttpLibrary),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Cypress/3.3.2 Chrome/61.0.3163.100 Electron/2.0.18 Safari/537.36", BotFamily::Headless),
            ("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", BotFamily::Other),
            ("Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", BotFamily::Other),
        ];
        for (ua, want) in bots {
            assert_eq!(bot_family(Some(ua)), Some(want), "{ua}");
        }
    }

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

    #[test]
    fn trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(outside, Some("1.2.3.4"), &trusted), outside);
        assert_eq!(
            client_ip(peer, Some("198.51.100.1, 10.2.2.2"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, Some("6.6.6.6, 198.51.100.1"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
    }

    #[test]
    fn viewer_keys_depend_on_every_input() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let k = viewer_key(b"salt-a", ip, "UA", "acme");
        assert_eq!(k, viewer_key(b"salt-a", ip, "UA", "acme"));
        assert_ne!(k, viewer_key(b"salt-b", ip, "UA", "acme"));
        assert_ne!(
            k,
            viewer_key(b"salt-a", "198.51.100.8".parse().unwrap(), "UA", "acme")
        );
        assert_ne!(k, viewer_key(b"salt-a", ip, "UA2", "acme"));
        assert_ne!(k, viewer_key(b"salt-a", ip, "UA", "other"));
        assert_ne!(k, 0);
    }

    #[test]
    fn rate_limiter_windows() {
        let mut r = RateLimiter::new(2, 10);
        assert!(r.allow(1, 60));
        assert!(r.allow(1, 61));
        assert!(!r.allow(1, 62));
        assert!(r.allow(2, 62));
        assert!(r.allow(1, 120));
        let mut full = RateLimiter::new(5, 1);
        assert!(full.allow(1, 0));
        assert!(!full.allow(2, 0));
    }
}
