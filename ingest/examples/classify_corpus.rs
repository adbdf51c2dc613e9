//! Classifies the User-Agents of the bot-filter corpus
//! (`ingest/testdata/user_agents.tsv`) `ROUNDS` times, for counting the
//! instructions one classification costs (docs/benchmarks.md):
//!
//!     classify_corpus ROUNDS [browser|bot|all]
//!
//! Under `valgrind --tool=callgrind`, the difference between two values of
//! `ROUNDS`, divided by the extra classifications, is the cost of one
//! `bot_family` call with start-up and file parsing taken out. `browser`
//! keeps only the corpus's browsers (the pixel's common case), `bot` only
//! its bots.

use std::hint::black_box;

use badgepulse_ingest::beacons::bots::bot_family;

const CORPUS: &str = include_str!("../testdata/user_agents.tsv");

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: classify_corpus ROUNDS [browser|bot|all]");
    let class = args.next().unwrap_or_else(|| "all".to_owned());
    let user_agents: Vec<&str> = CORPUS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("expected\t"))
        .filter_map(|l| {
            let mut f = l.splitn(4, '\t');
            let expected = f.next()?;
            let keep = match class.as_str() {
                "browser" => expected == "browser",
                "bot" => expected != "browser",
                _ => true,
            };
            keep.then(|| f.nth(2)).flatten()
        })
        .collect();
    // Builds the automaton outside the measured rounds.
    black_box(bot_family(Some("")));
    let mut bots = 0u64;
    for _ in 0..rounds {
        for ua in &user_agents {
            bots += u64::from(bot_family(black_box(Some(ua))).is_some());
        }
    }
    let per_round = bots.checked_div(rounds).unwrap_or(0);
    println!(
        "{} User-Agents ({class}), {rounds} rounds, {per_round} classified as bots per round",
        user_agents.len()
    );
}
