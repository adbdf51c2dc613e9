//! The bot filter against a corpus of real User-Agents that nobody here
//! wrote (`testdata/user_agents.tsv`, built by
//! `scripts/user_agent_corpus.py` from public test data; its header names
//! every source and licence): no browser may be taken for a bot, and every
//! bot must be counted under its family.

use std::collections::{BTreeMap, HashSet};

use badgepulse_ingest::beacons::bots::{bot_family, BotFamily};

const CORPUS: &str = include_str!("../testdata/user_agents.tsv");

/// One labelled User-Agent; `expected` is `None` for a browser.
struct Row<'a> {
    line: usize,
    expected: Option<BotFamily>,
    label: &'a str,
    source: &'a str,
    user_agent: &'a str,
}

fn family(name: &str) -> Option<BotFamily> {
    BotFamily::ALL.into_iter().find(|f| f.as_str() == name)
}

/// The rows, after the `#` header and the column line; panics on a
/// malformed line, naming it.
fn rows() -> Vec<Row<'static>> {
    let mut lines = CORPUS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'));
    let (_, columns) = lines.next().expect("column line");
    assert_eq!(columns, "expected\tlabel\tsource\tuser_agent");
    lines
        .map(|(i, l)| {
            let fields: Vec<&str> = l.split('\t').collect();
            let [expected, label, source, user_agent] = fields[..] else {
                panic!("line {}: expected 4 tab-separated fields: {l:?}", i + 1);
            };
            let expected = match expected {
                "browser" => None,
                f => {
                    Some(family(f).unwrap_or_else(|| panic!("line {}: unknown class {f:?}", i + 1)))
                }
            };
            Row {
                line: i + 1,
                expected,
                label,
                source,
                user_agent,
            }
        })
        .collect()
}

fn class(f: Option<BotFamily>) -> &'static str {
    f.map_or("browser", BotFamily::as_str)
}

#[test]
fn corpus_is_well_formed() {
    let rows = rows();
    let sources: HashSet<&str> = CORPUS
        .lines()
        .filter_map(|l| l.strip_prefix("#   ")?.split_once(": github.com/"))
        .map(|(key, _)| key)
        .collect();
    let mut seen = HashSet::new();
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        assert!(
            sources.contains(r.source),
            "line {}: source {:?} is not in the header",
            r.line,
            r.source
        );
        assert!(!r.label.is_empty(), "line {}: no label", r.line);
        assert_eq!(
            r.user_agent,
            r.user_agent.trim(),
            "line {}: surrounding spaces",
            r.line
        );
        assert!(
            seen.insert(r.user_agent),
            "line {}: duplicate User-Agent",
            r.line
        );
        *per_class.entry(class(r.expected)).or_default() += 1;
    }
    // The floor: 500 browsers, 300 bots, every family present.
    assert!(per_class["browser"] >= 500, "{per_class:?}");
    assert!(
        rows.iter().filter(|r| r.expected.is_some()).count() >= 300,
        "{per_class:?}"
    );
    for f in BotFamily::ALL {
        assert!(
            per_class.get(f.as_str()).copied().unwrap_or(0) > 0,
            "no {} row",
            f.as_str()
        );
    }
}

#[test]
fn every_user_agent_of_the_corpus_is_classified_as_labelled() {
    let rows = rows();
    let (browsers, bots): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.expected.is_none());
    let wrong = |rs: &[&Row<'static>]| -> Vec<String> {
        rs.iter()
            .filter_map(|r| {
                let got = bot_family(Some(r.user_agent));
                (got != r.expected).then(|| {
                    format!(
                        "  line {} [{} {}] expected {}, got {}: {}",
                        r.line,
                        r.label,
                        r.source,
                        class(r.expected),
                        class(got),
                        r.user_agent
                    )
                })
            })
            .collect()
    };
    let (wrong_browsers, wrong_bots) = (wrong(&browsers), wrong(&bots));
    println!(
        "browsers misclassified: {} of {}; bots misclassified: {} of {}",
        wrong_browsers.len(),
        browsers.len(),
        wrong_bots.len(),
        bots.len()
    );
    for line in wrong_browsers.iter().chain(&wrong_bots) {
        println!("{line}");
    }
    assert!(
        wrong_browsers.is_empty() && wrong_bots.is_empty(),
        "{} browsers and {} bots misclassified (listed above)",
        wrong_browsers.len(),
        wrong_bots.len()
    );
}
