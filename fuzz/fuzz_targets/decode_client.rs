//! Fuzzes the signaling decoder: any frame must decode or be refused with an error code,
//! never panic; and whatever decodes must encode back to something that decodes the same.
#![no_main]

use hearth::signal::protocol::{decode_client, ClientMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match decode_client(text, 64 * 1024) {
        Ok(msg) => {
            let again = serde_json::to_string(&msg).expect("a decoded message encodes");
            let back: ClientMessage = serde_json::from_str(&again).expect("an encoded message decodes");
            assert_eq!(back, msg);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
