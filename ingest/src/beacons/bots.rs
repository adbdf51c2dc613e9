//! Bot families (SPEC §4): which User-Agents are link-preview fetchers,
//! search and AI crawlers, HTTP libraries, headless browsers or other
//! automation, and which are people. In-app browsers of the networks the
//! product measures are people. `ingest/tests/bot_corpus.rs` checks the
//! filter against a corpus of real User-Agents.
//!
//! Pure; runs on every pixel request, so it stays one automaton scan for a
//! browser.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
