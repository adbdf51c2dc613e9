//! Timing-safety measurement (issue 8): how long the secret comparisons
//! take for inputs that are right, wrong early and wrong late.
//!
//! A comparison that stops at the first differing byte answers "wrong at
//! byte 0" faster than "wrong at the last byte", which lets an attacker
//! find a signature byte by byte. The pixel signature check
//! (`signing::verify`) and the lookup of API keys and platform tokens (SHA-256, then a
//! constant-time comparison with every configured hash) should take the
//! same time for every wrong input.
//!
//! Prints the median time per call of each case, measured interleaved in
//! rounds so that machine noise hits every case alike, and the ratio of the
//! slowest to the fastest wrong case. Run with `bench/timing.sh`.

use std::hint::black_box;
use std::time::Instant;

use badgepulse_contract::signing::{sign, verify, PixelIds};
use badgepulse_runtime::keys::{hash_key, parse_sha256, HashedKeys};

const ROUNDS: usize = 200;
const CALLS_PER_ROUND: usize = 2_000;

/// Median nanoseconds per call of each case.
fn measure(cases: &[(&str, &dyn Fn() -> bool)]) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter().enumerate() {
            let started = Instant::now();
            for _ in 0..CALLS_PER_ROUND {
                black_box(f());
            }
            samples[i].push(started.elapsed().as_nanos() as f64 / CALLS_PER_ROUND as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            s[s.len() / 2]
        })
        .collect()
}

/// Prints the medians; returns how far apart the wrong cases are, in ns.
fn report(what: &str, cases: &[(&str, &dyn Fn() -> bool)]) -> f64 {
    let medians = measure(cases);
    println!("{what}");
    for ((name, _), ns) in cases.iter().zip(&medians) {
        println!("  {name:<40} {ns:>8.1} ns/call");
    }
    let wrong: Vec<f64> = cases
        .iter()
        .zip(&medians)
        .filter(|((name, _), _)| name.starts_with("wrong"))
        .map(|(_, ns)| *ns)
        .collect();
    let max = wrong.iter().copied().fold(f64::MIN, f64::max);
    let min = wrong.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "  slowest / fastest wrong case: {:.3} ({:.1} ns apart)",
        max / min,
        max - min
    );
    max - min
}

fn main() {
    let key = b"timing-pixel-key-0123456789";
    let ids = PixelIds {
        org_id: "acme",
        issuer_id: "acme-issuer",
        badge_class_id: "rust-101",
        assertion_id: "a-0001",
    };
    let good = sign(key, &ids);
    let flip = |at: usize| {
        let mut b = good.clone().into_bytes();
        b[at] = if b[at] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let (first, last) = (flip(0), flip(good.len() - 1));
    let sig_gap = report(
        "pixel signature check (signing::verify)",
        &[
            ("right", &|| verify(key, &ids, &good)),
            ("wrong in the first hex digit", &|| {
                verify(key, &ids, &first)
            }),
            ("wrong in the last hex digit", &|| verify(key, &ids, &last)),
        ],
    );

    let api_key = "timing-api-key-0123456789abcdef";
    let keys = HashedKeys::new(vec![(parse_sha256(&hash_key(api_key)).unwrap(), "admin")]);
    let near = format!("{}X", &api_key[..api_key.len() - 1]);
    let key_gap = report(
        "API key and token lookup (badgepulse_runtime::keys::HashedKeys::lookup)",
        &[
            ("right", &|| keys.lookup(api_key).is_some()),
            ("wrong in the last character", &|| {
                keys.lookup(&near).is_some()
            }),
            ("wrong from the first character", &|| {
                keys.lookup("Ximing-api-key-0123456789abcdef").is_some()
            }),
        ],
    );
    println!(
        "\nThe wrong cases are {sig_gap:.1} ns (signature) and {key_gap:.1} ns (API key) apart. \
         The comparisons hash first (HMAC, SHA-256), then compare all bytes with \
         subtle::ConstantTimeEq; a byte-by-byte early exit would save its few ns in the first-digit \
         case every time, in the same direction."
    );
}
