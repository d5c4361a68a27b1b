//! The chunked body reader on arbitrary bytes: no panic, never consumes
//! more than given, and the same answer whether the bytes come whole or
//! split at the point the first byte picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcserve::request_body::{Chunked, Fed};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    let whole = Chunked::new(1 << 20).feed(input);
    if let Ok(Fed::Done(n)) = whole {
        assert!(n <= input.len());
    }
    let cut = usize::from(cut).min(input.len());
    let mut c = Chunked::new(1 << 20);
    let split = match c.feed(&input[..cut]) {
        Ok(Fed::More) => match c.feed(&input[cut..]) {
            Ok(Fed::Done(n)) => Ok(Fed::Done(cut + n)),
            other => other,
        },
        other => other,
    };
    assert_eq!(whole, split);
});
