//! The frame decoder on arbitrary bytes: see `wsgate::fuzzing::decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wsgate::fuzzing::decode(data);
});
