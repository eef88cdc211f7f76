//! The gateway config: `GatewayConfig::from_toml` (TOML parse, then
//! validation) never panics on any text, and a config it accepts builds a
//! gateway (routes, backend tables, engines) without error or panic:
//! validation must catch everything the build would refuse.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sticky_gateway::{Gateway, GatewayConfig};
use tower_sticky::token::{Key, KeyRing};

fn keys() -> &'static KeyRing {
    static K: OnceLock<KeyRing> = OnceLock::new();
    K.get_or_init(|| KeyRing::new(Key::from_bytes([3; 32])))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = GatewayConfig::from_toml(text) else {
        return;
    };
    if let Err(e) = Gateway::new(config, keys(), None) {
        panic!("a validated config did not build: {e}\n{text}");
    }
});
