//! Any bytes as a `POST /v1/events` event and as a NATS payload: no panic;
//! every event that validates survives the NATS wire format unchanged.
#![no_main]

use badgepulse_contract::event::{decode_payload, encode_payload, validate_platform_event};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The aggregator decodes whatever is in the stream.
    let _ = decode_payload(data);
    let Ok(raw) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap();
    if let Ok(event) = validate_platform_event(&raw, now) {
        let wire = encode_payload(std::slice::from_ref(&event));
        let back = decode_payload(&wire).expect("a valid event decodes");
        assert_eq!(back, vec![event]);
    }
});
