#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| claudemesh::fuzzing::json_requests(data));
