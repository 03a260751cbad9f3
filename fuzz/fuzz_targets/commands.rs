//! The agent command parser (`#status open`, `#assign me`, … at the top of a reply):
//! any text, no panic; what is left after the commands is the end of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mticket::core::commands::split;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((commands, rest)) = split(text) {
        assert!(text.ends_with(rest), "the rest is not the input's tail");
        let mut last = 0;
        for c in &commands {
            assert!(c.line > last, "command lines out of order");
            last = c.line;
        }
    }
});
