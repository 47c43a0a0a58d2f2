#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| triforce_net::fuzzing::translation_anthropic(data));
