//! The store's held-back writes against the real database (SQLite, or PostgreSQL with
//! `MTICKET_TEST_DB=postgres`): a transaction that queues more rows than one statement
//! takes, and changes to a ticket opened in the same transaction, commit whole.
#[path = "support/mod.rs"]
mod support;

use mticket::store::{Actor, NewTicket, Store};
use support::gateway::{Gateway, Options};

#[test]
fn a_transaction_bigger_than_one_statement_commits_whole() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    let number = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let queue = store.queue_by_name("Support").await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let ticket = tx
            .create_ticket(
                &NewTicket {
                    subject: "Viele Einträge",
                    queue_id: queue.id,
                    queue_name: &queue.name,
                    creator_address: "kunde@example.test",
                    customer_id: None,
                    cc: &[],
                    spoof_suspect: false,
                    first_number: 1,
                    assignee_id: None,
                    at: 1_700_000_000,
                },
                &Actor::system(),
            )
            .await
            .unwrap();
        // 7 placeholders a row: 70,000 in all, more than one PostgreSQL statement takes.
        for i in 0..10_000 {
            tx.history(ticket.id, &Actor::system(), "note", "", &format!("{i}"))
                .await
                .unwrap();
        }
        // A change to the ticket opened in this transaction.
        tx.set_status(&ticket, "open", &Actor::system())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        ticket.number
    });
    let t = gateway.ticket(number);
    assert_eq!(t["status"], "open", "{t}");
    let notes = t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["field"] == "note")
        .count();
    assert_eq!(notes, 10_000);
}
