//! Real peers for the integration tests and benchmarks: each starts a private instance on
//! loopback and fails with a clear message naming the install step when the peer is
//! missing. `load` and `procstat` are the benchmarks' measuring tools.
#![allow(dead_code)]
pub mod corpus;
pub mod db;
pub mod discard;
pub mod dovecot;
pub mod gateway;
pub mod helpdesk;
pub mod link;
pub mod load;
pub mod procstat;
pub mod rt;
pub mod sink;
pub mod submit;

/// The header `name` of a raw mail, unfolded.
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.split("\r\n") {
        if let Some(v) = value.as_mut()
            && (line.starts_with(' ') || line.starts_with('\t'))
        {
            v.push_str(line);
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

/// Prints a test's summary and, when the test command asked for them (`TEST_SUMMARY_FILE`),
/// adds it to the summaries it prints at its end.
pub fn summary(text: &str) {
    eprintln!("{text}");
    if let Ok(path) = std::env::var("TEST_SUMMARY_FILE") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("summary file");
        file.write_all(format!("{text}\n").as_bytes())
            .expect("write summary");
    }
}
