//! The config loader on arbitrary bytes: see `wsgate::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wsgate::fuzzing::config(data);
});
