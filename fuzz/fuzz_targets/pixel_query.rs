//! Any pixel query string: parsing and id checks never panic; ids that
//! pass the checks sign and verify, and a signature for other ids fails.
#![no_main]

use badgepulse_contract::pixel::PixelQuery;
use badgepulse_contract::signing::{sign, verify, PixelIds};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-pixel-key-0123456789";

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let p = PixelQuery::parse(&query);
    let ids = p.ids();
    // Whatever `sig` says, checking it must not panic.
    let _ = verify(KEY, &ids, &p.sig);
    if p.check_ids().is_ok() {
        let sig = sign(KEY, &ids);
        assert!(verify(KEY, &ids, &sig));
        let other = PixelIds {
            assertion_id: "someone-else",
            ..ids
        };
        if other.assertion_id != ids.assertion_id {
            assert!(!verify(KEY, &other, &sig), "a signature moved to other ids");
        }
    }
});
