#!/usr/bin/env python3
"""Builds ingest/testdata/user_agents.tsv, the labelled User-Agent corpus of
the bot filter (ingest/tests/bot_corpus.rs), from public test data.

    scripts/user_agent_corpus.py SOURCES_DIR > ingest/testdata/user_agents.tsv

SOURCES_DIR holds git clones (bare or not) named OWNER/NAME for every
repository of SOURCES; files are read at the pinned commits with `git show`,
so the output depends only on those commits and on this file. Needs Python 3
with PyYAML. Only User-Agent strings are taken, never code.

What is selected, and why, is written out below: the rules are the corpus's
documentation, and the header of the TSV repeats them.
"""

import json
import re
import subprocess
import sys
from collections import OrderedDict

import yaml

# key -> (repository, commit, path, licence, what is taken)
SOURCES = OrderedDict(
    [
        (
            "isbot-browsers",
            (
                "omrilotan/isbot",
                "344052da664bde49579e21f1e62349280791efb3",
                "fixtures/browsers.yml",
                "Unlicense",
                "browser and in-app browser User-Agents",
            ),
        ),
        (
            "isbot-crawlers",
            (
                "omrilotan/isbot",
                "344052da664bde49579e21f1e62349280791efb3",
                "fixtures/crawlers.yml",
                "Unlicense",
                "bot User-Agents of the named bots",
            ),
        ),
        (
            "uap-js",
            (
                "faisalman/ua-parser-js",
                "90017c98d341788570435b7587ce1f0725022c7a",
                "test/browser-test.json",
                "MIT (branch 1.0.x, version 1.0.41; not the AGPL 2.x)",
                "browser User-Agents; its headless ones as bots",
            ),
        ),
        (
            "uap-core",
            (
                "ua-parser/uap-core",
                "e3c5e634bee0b14f1a129c991483910739ad9f6c",
                "tests/test_ua.yaml",
                "Apache-2.0",
                "in-app browsers and mail clients; the named bots",
            ),
        ),
        (
            "monperrus",
            (
                "monperrus/crawler-user-agents",
                "7c7f9f254f16fcbc7d0fcb60d0a188897c00b050",
                "crawler-user-agents.json",
                "MIT",
                "`instances` of the named bots",
            ),
        ),
        (
            "crawler-detect",
            (
                "JayBizzle/Crawler-Detect",
                "f7926d40cb01c8f2488467dc0b476fd12d0359a8",
                "tests/data/user_agent/crawlers.txt",
                "MIT",
                "User-Agents of the named bots",
            ),
        ),
    ]
)

BOT_FAMILIES = ("link_preview", "search", "http_library", "headless", "other")

# --- Browsers ---------------------------------------------------------------
#
# A browser is software that shows a page or a mail to a person: browsers,
# the in-app browsers (web views) of apps, desktop apps built on a browser
# engine (Electron, CEF, WebView2), mail clients. Left out, whatever the
# source calls them: the apps' own HTTP stacks (Dalvik, CFNetwork, "App/1.0
# (device)"), media players and TV apps, which never render a badge page;
# their requests are API calls, media or previews, and the corpus takes no
# position on them.

# isbot browsers.yml sections left out entirely, with the reason.
ISBOT_SKIPPED_SECTIONS = {
    "AAA App User Agent String Examples": "templates (ExampleApp/1), not real",
    "ZZZ Glitches and Misidentified Browsers": "injection strings and fragments (its two Meta in-app lines are kept)",
    "ZZZ Insignificat bots": "isbot itself files them as bots, and they are fragments",
    "ZZZ Miscellaneous Browsers": "an AI agent and a podcast app, not browsers",
    "NetworkingExtension (background network requests)": "background requests of the OS",
    "Apple TV": "app HTTP stacks",
    "Flutter": "an app HTTP stack",
    "Fubo TV": "media player",
    "Gog Galaxy": "game launcher API client",
    "Hulu": "media player",
    "Mozilla Android Components": "a browser's background fetcher",
    "QuickTime": "media player",
    "RadiosNet": "an app HTTP stack",
    "retweet": "an app HTTP stack",
    "Roku Ultra": "media player",
    "Sonos Player": "media player",
    "SpringBoard": "the iOS home screen",
    "Xumo Media Player": "media player",
    "Zip Recruiter (Job Search phone app)": "an app HTTP stack",
    '"ESPN: Sports News & Highlights App"': "an app HTTP stack",
    "ESPN: Sports News & Highlights App": "an app HTTP stack",
}

# An app's own HTTP stack, whatever the section.
NATIVE_STACK = re.compile(r"CFNetwork/|Dalvik/|^PS4Application |^\[FBAN/", re.I)

# uap-core families that are browsers in the sense above (in-app browsers,
# desktop apps on a browser engine, mail clients). Other uap-core families
# are not taken as browsers.
UAP_CORE_BROWSER_FAMILIES = {
    "Facebook", "Facebook Messenger", "Instagram", "Pinterest", "LINE",
    "Slack Desktop Client", "HipChat Desktop Client", "Microsoft Teams",
    "Telegram", "Snapchat", "Twitter", "WeChat Browser", "Weibo", "KakaoTalk",
    "TikTok", "Flipboard", "Google", "Spotify", "Steam Client", "Electron",
    "Chrome Mobile WebView", "Mobile Safari UI/WKWebView",
    "Outlook", "Outlook-iOS", "Outlook-iOS-Android", "MacOutlook",
    "Apple Mail", "Windows Live Mail", "Thunderbird", "Postbox", "kmail2",
    "Lotus Notes", "Airmail", "Evolution", "The Bat!", "Superhuman",
    "GmailImageProxy", "YahooMailProxy",
}
# Mail clients and webmail image proxies load a mail's images when a person
# opens it: people, even without a browser engine in the User-Agent.
UAP_CORE_MAIL_FAMILIES = {
    "Outlook", "Outlook-iOS", "Outlook-iOS-Android", "MacOutlook",
    "Apple Mail", "Windows Live Mail", "Thunderbird", "Postbox", "kmail2",
    "Lotus Notes", "Airmail", "Evolution", "The Bat!", "Superhuman",
    "GmailImageProxy", "YahooMailProxy",
}

# ua-parser-js browser tests that are bots (label, family).
UAP_JS_BOTS = {"Chrome Headless": ("headlesschrome", "headless"), "PhantomJS": ("phantomjs", "headless")}

# Webmail image proxies fetch a mail's images when a person opens it.
WEBMAIL_PROXY = r"GoogleImageProxy|YahooMailProxy|RamblerMail/.*ImageProxy|SeznamEmailProxy|mail\.ukr\.net proxy"

# Browser labels: the in-app browser a token names, else the source's name.
IN_APP_LABELS = [
    (r"\[LinkedInApp\]", "linkedin-app"),
    (r"FBAN/Messenger|FB_IAB/MESSENGER|FBAN/MessengerLite", "messenger-app"),
    (r"FBAN/|FB_IAB/|FBAV/|MetaIAB", "facebook-app"),
    (r"Instagram", "instagram-app"),
    (r"\[Pinterest/", "pinterest-app"),
    (r"Snapchat/", "snapchat-app"),
    (r"Twitter for |TwitterAndroid", "x-app"),
    (r"Telegram-Android", "telegram-app"),
    (r"Viber", "viber-app"),
    (r"[ ;]Line/[0-9]", "line-app"),
    (r"MicroMessenger|WindowsWechat|MacWechat", "wechat-app"),
    (r"Teams/", "teams-app"),
    (r"Slack", "slack-desktop"),
    (r"discord/", "discord-desktop"),
    (r"KAKAOTALK", "kakaotalk-app"),
    (r"musical_ly|trill_|BytedanceWebview", "tiktok-app"),
    (r"Electron/", "electron-app"),
    (WEBMAIL_PROXY, "webmail-image-proxy"),
]

# --- Bots -------------------------------------------------------------------
#
# Every User-Agent of the bot sources that one of these names matches (the
# first that does), whatever the filter makes of it: the link-preview
# fetchers of social networks and chat apps, the crawlers of search engines,
# SEO tools and AI companies, HTTP libraries and tools, headless and
# automated browsers, uptime and synthetic monitoring. User-Agents of the
# bot sources that no name matches are not in the corpus.
#
# Families (SPEC §4, docs/decisions.md):
# - link_preview: fetches a page because someone shared or sent its link, to
#   show a card (the fetchers of the apps the product measures among them).
# - search: search engines, SEO tools, ad-landing-page checkers and AI
#   crawlers, user-triggered AI fetches included (ChatGPT-User).
# - http_library: HTTP client libraries, command-line and load tools,
#   scraping frameworks.
# - headless: headless and automated browsers and their frameworks.
# - other: uptime and synthetic monitoring, and any other bot.
BOT_LABELS = [
    # link_preview
    ("facebookexternalhit", "link_preview", r"facebookexternalhit|Meta-ExternalHit"),
    ("facebot", "link_preview", r"Facebot"),
    ("linkedinbot", "link_preview", r"LinkedInBot"),
    ("telegrambot", "link_preview", r"TelegramBot"),
    ("twitterbot", "link_preview", r"Twitterbot"),
    ("slackbot", "link_preview", r"Slackbot|Slack-ImgProxy"),
    ("discordbot", "link_preview", r"Discordbot"),
    ("whatsapp", "link_preview", r"^WhatsApp"),
    ("skypeuripreview", "link_preview", r"SkypeUriPreview"),
    ("microsoftpreview", "link_preview", r"MicrosoftPreview"),
    ("pinterestbot", "link_preview", r"Pinterestbot|^Pinterest/0\."),
    ("snapchat-preview", "link_preview", r"Snap URL Preview|SnapURLPreview|snapchat-proxy"),
    ("viber", "link_preview", r"^Viber$"),
    ("redditbot", "link_preview", r"redditbot"),
    ("embedly", "link_preview", r"Embedly"),
    ("iframely", "link_preview", r"Iframely"),
    ("vkshare", "link_preview", r"vkShare"),
    ("mastodon", "link_preview", r"\(Mastodon/"),
    ("bluesky", "link_preview", r"Bluesky Cardyb|BlueskyPreviewBot"),
    ("quora-link-preview", "link_preview", r"Quora Link Preview|Quora-Bot"),
    ("steam-chat", "link_preview", r"Valve/Steam HTTP Client"),
    ("discourse-onebox", "link_preview", r"Discourse Forum Onebox"),
    ("bitlybot", "link_preview", r"bitlybot"),
    ("yahoo-linkexpander", "link_preview", r"Yahoo:LinkExpander"),
    ("google-pagerenderer", "link_preview", r"Google-PageRenderer"),
    # search (search engines, SEO, ads checkers, AI)
    ("googlebot", "search", r"Googlebot"),
    ("google-inspectiontool", "search", r"Google-InspectionTool"),
    ("adsbot-google", "search", r"AdsBot-Google"),
    ("mediapartners-google", "search", r"Mediapartners-Google"),
    ("googleother", "search", r"GoogleOther"),
    ("google-extended", "search", r"Google-Extended"),
    ("storebot-google", "search", r"Storebot-Google"),
    ("google-web-preview", "search", r"Google Web Preview"),
    ("bingbot", "search", r"bingbot|msnbot|BingPreview|adidxbot"),
    ("applebot", "search", r"Applebot"),
    ("yandexbot", "search", r"Yandex[A-Za-z]*/"),
    ("baiduspider", "search", r"Baiduspider"),
    ("duckduckbot", "search", r"DuckDuckBot|DuckDuckGo-Favicons-Bot|DuckAssistBot"),
    ("sogou-spider", "search", r"Sogou [A-Za-z]* ?spider"),
    ("seznambot", "search", r"SeznamBot"),
    ("yeti", "search", r"\bYeti/"),
    ("petalbot", "search", r"PetalBot|AspiegelBot"),
    ("coccocbot", "search", r"coccocbot"),
    ("mail-ru-bot", "search", r"Mail\.RU_Bot"),
    ("qwant", "search", r"Qwantify|Qwantbot"),
    ("mojeekbot", "search", r"MojeekBot"),
    ("kagibot", "search", r"Kagibot"),
    ("exabot", "search", r"\bExabot"),
    ("yahoo-slurp", "search", r"Yahoo! Slurp"),
    ("ahrefsbot", "search", r"AhrefsBot"),
    ("semrushbot", "search", r"SemrushBot|SiteAuditBot"),
    ("mj12bot", "search", r"MJ12bot"),
    ("dotbot", "search", r"\bDotBot\b"),
    ("gptbot", "search", r"GPTBot"),
    ("chatgpt-user", "search", r"ChatGPT-User"),
    ("oai-searchbot", "search", r"OAI-SearchBot"),
    ("claudebot", "search", r"ClaudeBot|anthropic-ai|Claude-User|Claude-SearchBot"),
    ("perplexitybot", "search", r"PerplexityBot|Perplexity-User"),
    ("ccbot", "search", r"CCBot"),
    ("bytespider", "search", r"Bytespider"),
    ("amazonbot", "search", r"Amazonbot"),
    ("meta-crawler", "search", r"meta-externalagent|meta-externalfetcher|meta-externalads|meta-webindexer|FacebookBot|facebookcatalog"),
    ("snapchatads", "search", r"SnapchatAds"),
    ("linespider", "search", r"Linespider"),
    ("tiktokspider", "search", r"TikTokSpider"),
    # headless
    ("headlesschrome", "headless", r"HeadlessChrome|Headless Chrome"),
    ("phantomjs", "headless", r"PhantomJS"),
    ("puppeteer", "headless", r"Puppeteer"),
    ("playwright", "headless", r"Playwright"),
    ("selenium", "headless", r"Selenium"),
    ("cypress", "headless", r"Cypress/"),
    ("splash", "headless", r"Gecko\) splash "),
    ("lighthouse", "headless", r"Chrome-Lighthouse"),
    ("slimerjs", "headless", r"SlimerJS"),
    # http_library
    ("curl", "http_library", r"^curl\b|^PycURL/|^libcurl-agent/"),
    ("wget", "http_library", r"^Wget/|^wget2/"),
    ("python-requests", "http_library", r"python-requests"),
    ("python-urllib", "http_library", r"Python-urllib"),
    ("aiohttp", "http_library", r"aiohttp"),
    ("httpx", "http_library", r"python-httpx"),
    ("go-http-client", "http_library", r"Go-http-client|^Go [0-9.]+ package http|go-resty"),
    ("java", "http_library", r"^Java/"),
    ("apache-httpclient", "http_library", r"Apache-HttpClient|Jakarta Commons-HttpClient"),
    ("okhttp", "http_library", r"^okhttp/"),
    ("axios", "http_library", r"^axios/"),
    ("node-fetch", "http_library", r"^node-fetch"),
    ("undici", "http_library", r"^undici"),
    ("got", "http_library", r"sindresorhus/got"),
    ("request-promise", "http_library", r"^Request-Promise"),
    ("libwww-perl", "http_library", r"libwww-perl|^lwp-trivial"),
    ("php", "http_library", r"^PHP/"),
    ("guzzlehttp", "http_library", r"GuzzleHttp"),
    ("rest-client", "http_library", r"^rest-client/"),
    ("postmanruntime", "http_library", r"PostmanRuntime"),
    ("httpie", "http_library", r"^HTTPie/"),
    ("reqwest", "http_library", r"^reqwest/"),
    ("ureq", "http_library", r"^ureq/"),
    ("restsharp", "http_library", r"^RestSharp/"),
    ("winhttp", "http_library", r"^WinHTTP"),
    ("powershell", "http_library", r"WindowsPowerShell/"),
    ("scrapy", "http_library", r"Scrapy/"),
    ("apachebench", "http_library", r"^ApacheBench/"),
    # other: uptime and synthetic monitoring
    ("uptimerobot", "other", r"UptimeRobot"),
    ("pingdom", "other", r"Pingdom"),
    ("statuscake", "other", r"StatusCake"),
    ("site24x7", "other", r"Site24x7"),
    ("datadog", "other", r"Datadog Agent|DatadogSynthetics"),
    ("newrelic", "other", r"NewRelicPinger|NewRelicSynthetics"),
    ("catchpoint", "other", r"Catchpoint"),
    ("gtmetrix", "other", r"GTmetrix"),
    ("webpagetest", "other", r"PTST/"),
    ("uptimebot", "other", r"Uptimebot"),
    ("updown-io", "other", r"updown\.io daemon"),
    ("freshping", "other", r"FreshpingBot"),
    ("hetrixtools", "other", r"HetrixTools"),
    ("route53-health-check", "other", r"Amazon-Route53-Health-Check-Service"),
    ("monit", "other", r"^Monit/"),
    ("nagios", "other", r"^check_http/"),
    ("prometheus-blackbox", "other", r"^Blackbox Exporter/|^prometheus/"),
    ("ruxit", "other", r"RuxitSynthetic|Ruxit Synthetic"),
]

# Where a source's own label disagrees with SPEC §4 semantics, the SPEC wins.
# User-Agent -> (expected, label, note). Every entry is listed in the header.
OVERRIDES = {
    "Mozilla/5.0 (Linux; Android 16; Pixel 10 Pro XL Build/CP1A.260305.018; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/146.0.7680.174 Mobile Safari/537.36 MetaIAB Facebook": (
        "browser",
        "facebook-app",
        "monperrus files it as a Facebook link-preview fetcher; isbot as a browser: it is Facebook's in-app browser (IAB) in an Android web view",
    ),
}


# Test strings of a parser's own making, not User-Agents anyone sent.
NOT_REAL = {"YandexSomething/1.0"}


def git_show(root, repo, commit, path):
    return subprocess.run(
        ["git", "-C", f"{root}/{repo}", "show", f"{commit}:{path}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def clean(ua):
    ua = ua.strip()
    if not ua or ua in NOT_REAL or "\t" in ua or "\n" in ua or "\r" in ua:
        return None
    return ua


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def browser_label(ua, fallback):
    for pattern, label in IN_APP_LABELS:
        if re.search(pattern, ua, re.I):
            return label
    return slug(fallback)


def bot_label(ua):
    for label, family, pattern in BOT_LABELS:
        if re.search(pattern, ua, re.I):
            return label, family
    return None


def main():
    root = sys.argv[1]
    text = {k: git_show(root, *v[:3]) for k, v in SOURCES.items()}

    browsers = []  # (ua, label, source)
    bots = []  # (ua, label, family, source)
    skipped = {}
    webmail_proxies_from_bot_lists = []

    def skip(reason):
        skipped[reason] = skipped.get(reason, 0) + 1

    # isbot browsers.yml
    for section, uas in yaml.safe_load(text["isbot-browsers"]).items():
        reason = next((r for s, r in ISBOT_SKIPPED_SECTIONS.items() if section.startswith(s)), None)
        for ua in uas or []:
            ua = clean(str(ua))
            if ua is None:
                continue
            if reason and not (section.startswith("ZZZ Glitches") and re.search(r"Instagram|MetaIAB", ua)):
                skip(f"isbot-browsers, section {section.split(' - ')[0]!r}: {reason}")
            elif NATIVE_STACK.search(ua):
                skip("an app's own HTTP stack (Dalvik, CFNetwork, bare [FBAN/...])")
            else:
                browsers.append((ua, browser_label(ua, section.strip('"')), "isbot-browsers"))

    # ua-parser-js 1.0.x browser tests
    for case in json.loads(text["uap-js"]):
        ua = clean(case["ua"])
        if ua is None:
            continue
        if case["desc"] in UAP_JS_BOTS:
            label, family = UAP_JS_BOTS[case["desc"]]
            bots.append((ua, label, family, "uap-js"))
        else:
            browsers.append((ua, browser_label(ua, case["expect"].get("name") or case["desc"]), "uap-js"))

    # uap-core: chosen browser families; every other case is a bot candidate.
    for case in yaml.safe_load(text["uap-core"])["test_cases"]:
        ua = clean(case["user_agent_string"])
        if ua is None:
            continue
        family = case["family"]
        native = family not in UAP_CORE_MAIL_FAMILIES and (NATIVE_STACK.search(ua) or "Mozilla/" not in ua)
        if family in UAP_CORE_BROWSER_FAMILIES and not native:
            browsers.append((ua, browser_label(ua, family), "uap-core"))
        elif hit := bot_label(ua):
            # uap-core files Pinterest's crawler (Pinterest/0.1) under the app.
            bots.append((ua, *hit, "uap-core"))
        elif family in UAP_CORE_BROWSER_FAMILIES:
            skip("an app's own HTTP stack (uap-core, no browser engine)")

    # Bot lists. Webmail image proxies fetch a mail's images when a person
    # opens it: people, though these lists file them as bots.
    bot_lists = [
        ("isbot-crawlers", (ua for uas in yaml.safe_load(text["isbot-crawlers"]).values() for ua in uas or [])),
        ("monperrus", (ua for entry in json.loads(text["monperrus"]) for ua in entry.get("instances", []))),
        ("crawler-detect", text["crawler-detect"].splitlines()),
    ]
    for source, uas in bot_lists:
        for ua in uas:
            ua = clean(str(ua))
            if ua is None:
                continue
            if re.search(WEBMAIL_PROXY, ua):
                browsers.append((ua, "webmail-image-proxy", source))
                webmail_proxies_from_bot_lists.append(ua)
            elif hit := bot_label(ua):
                bots.append((ua, *hit, source))

    # One row per User-Agent (the first source that has it), overrides last.
    rows = OrderedDict()
    conflicts = []
    for ua, label, source in browsers:
        rows.setdefault(ua, ("browser", label, source))
    for ua, label, family, source in bots:
        if ua in rows and rows[ua][0] == "browser" and ua not in OVERRIDES:
            conflicts.append(ua)
        rows.setdefault(ua, (family, label, source))
    for ua, (expected, label, _) in OVERRIDES.items():
        if ua in rows:
            rows[ua] = (expected, label, rows[ua][2])
    if conflicts:
        sys.exit("browser in one source, bot in another, no override:\n" + "\n".join(conflicts))

    out = sys.stdout
    w = out.write
    w("# Labelled User-Agents for the bot filter of badgepulse-ingest\n")
    w("# (ingest/src/beacon.rs bot_family; test: ingest/tests/bot_corpus.rs).\n")
    w("# Generated by scripts/user_agent_corpus.py, which holds the selection rules.\n")
    w("#\n# Sources (only User-Agent strings are taken; each row names its source):\n")
    for key, (repo, commit, path, licence, what) in SOURCES.items():
        w(f"#   {key}: github.com/{repo} {path} at {commit}, {licence}; {what}\n")
    w("#\n")
    w("# expected: `browser` (a person: browsers, in-app browsers, desktop apps on a\n")
    w("# browser engine, mail clients and webmail image proxies) or the bot family\n")
    w("# (link_preview, search, http_library, headless, other; see docs/decisions.md).\n")
    w("# Bots: every User-Agent of the sources matched by one of the bot names of the\n")
    w("# script (the label), whatever the filter makes of it.\n")
    w("# Left out: apps' own HTTP stacks (Dalvik, CFNetwork...), media players, and\n")
    w("# isbot sections that are templates, fragments or injection strings:\n")
    for reason, n in sorted(skipped.items()):
        w(f"#   {n:3} {reason}\n")
    w("# Where a source's label disagrees with SPEC §4, the SPEC wins:\n")
    for ua, (expected, label, note) in OVERRIDES.items():
        w(f"#   {label} -> {expected}: {note}\n")
    w(f"#   webmail-image-proxy -> browser: {len(set(webmail_proxies_from_bot_lists))} User-Agents of proxies (Gmail's GoogleImageProxy,\n")
    w("#   Yahoo, Rambler, Seznam, ukr.net) that the bot lists file as bots fetch a mail's\n")
    w("#   images when a person opens it\n")
    w("expected\tlabel\tsource\tuser_agent\n")
    order = {"browser": 0, **{f: i + 1 for i, f in enumerate(BOT_FAMILIES)}}
    for ua, (expected, label, source) in sorted(rows.items(), key=lambda r: (order[r[1][0]], r[1][1], r[0])):
        w(f"{expected}\t{label}\t{source}\t{ua}\n")


if __name__ == "__main__":
    main()
