//! Any key, ids and presented signature: verification never panics, and
//! only the signature made with the same key over the same ids verifies.
#![no_main]

use badgepulse_contract::signing::{sign, verify, PixelIds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // key | org | issuer | class | assertion | presented signature
    let text = String::from_utf8_lossy(data);
    let parts: Vec<&str> = text.splitn(6, '|').collect();
    let [key, org, issuer, class, assertion, presented] = parts[..] else {
        return;
    };
    let ids = PixelIds {
        org_id: org,
        issuer_id: issuer,
        badge_class_id: class,
        assertion_id: assertion,
    };
    let genuine = sign(key.as_bytes(), &ids);
    assert!(verify(key.as_bytes(), &ids, &genuine));
    // Hex of either case is the same signature.
    if presented.to_ascii_lowercase() != genuine {
        assert!(
            !verify(key.as_bytes(), &ids, presented),
            "a forged signature verified"
        );
    }
    let other_key = format!("{key}x");
    assert!(!verify(other_key.as_bytes(), &ids, &genuine), "verified under another key");
});
