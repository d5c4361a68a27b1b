//! The request-head parser on arbitrary bytes: no panic; a whole head is
//! never longer than the input or 16 KiB, parses the same alone, and every
//! strict prefix of it needs more bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcserve::request_head::{MAX_HEAD, Parsed, parse};

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete(_, n)) => {
            assert!(n > 0 && n <= data.len() && n <= MAX_HEAD);
            assert!(matches!(parse(&data[..n]), Ok(Parsed::Complete(_, m)) if m == n));
            assert!(matches!(parse(&data[..n - 1]), Ok(Parsed::Partial)));
        }
        Ok(Parsed::Partial) => assert!(data.len() < MAX_HEAD),
        Err(r) => assert!(!r.reason.is_empty()),
    }
});
