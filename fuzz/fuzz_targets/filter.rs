//! The filter syntax (`queue:Vertrieb status:open since:7d …`): any text, no panic, and a
//! filter that parses writes (`Display`) a canonical form that parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mticket::core::filter::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = parse(input) {
        let canonical = filter.to_string();
        match parse(&canonical) {
            Ok(again) => assert_eq!(
                again, filter,
                "{input:?} was written as {canonical:?}, which parses differently"
            ),
            Err(e) => panic!("{input:?} was written as {canonical:?}, which does not parse: {e}"),
        }
    }
});
