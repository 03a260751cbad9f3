//! The POP3 client that intake polls with, against a server that answers with the fuzz
//! input: the greeting, CAPA, USER/PASS, STAT, UIDL, LIST, RETR (one at a time and
//! pipelined), DELE, RSET, NOOP and QUIT, each going on after the one before failed.
//! Errors are expected; a panic or a hang is a bug.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mticket::protocol::pop3_client::Client;
use mticket_fuzz::{RUNTIME, Script, read_size};

/// Small enough that a few kilobytes of fuzz input reach the size limit.
const MAX_MESSAGE: usize = 512;

fuzz_target!(|data: &[u8]| {
    let (chunk, input) = read_size(data);
    RUNTIME.block_on(async {
        let stream = Script::new(input, chunk);
        let Ok(mut client) = Client::start(stream, Duration::from_secs(30)).await else {
            return;
        };
        let _ = client.greeting();
        let _ = client.capa().await;
        let _ = client.login("intake", "secret").await;
        let _ = client.stat().await;
        let _ = client.uidl_all().await;
        let _ = client.list_all().await;
        if let Ok(mail) = client.retr(1, MAX_MESSAGE).await {
            assert!(mail.len() <= MAX_MESSAGE, "RETR returned more than allowed");
        }
        let sent = client.send_retr(2).await.is_ok() && client.send_retr(3).await.is_ok();
        if sent {
            for n in [2, 3] {
                if let Ok(mail) = client.read_retr(n, MAX_MESSAGE).await {
                    assert!(mail.len() <= MAX_MESSAGE, "RETR returned more than allowed");
                }
            }
        }
        let _ = client.dele(1).await;
        let _ = client.dele_all(&[2, 3, 4], 2).await;
        let _ = client.rset().await;
        let _ = client.noop().await;
        let _ = client.quit().await;
    });
});
