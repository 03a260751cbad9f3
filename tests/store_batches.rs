//! The store's held-back writes against the real database (SQLite, or PostgreSQL with
//! `MTICKET_TEST_DB=postgres`): a transaction that queues more rows than one statement
//! takes, and changes to a ticket opened in the same transaction, commit whole; a search
//! after a bulk of new items indexes them all first and tidies the index queue; the
//! database's errors are told transient or permanent by their codes.
#[path = "support/mod.rs"]
mod support;

use mticket::core::model::ItemKind;
use mticket::store::{Actor, Backend, NewItem, Store, StoreError, TicketQuery, TicketRef, Tx};
use sqlx::Connection;
use support::db;
use support::gateway::{Gateway, Options};

/// A new ticket in the queue "Support", in `tx`.
async fn new_ticket(store: &Store, tx: &mut Tx) -> TicketRef {
    let queue = store.queue_by_name("Support").await.unwrap();
    tx.create_ticket(
        &db::new_ticket(queue.id, &queue.name, "Viele Einträge"),
        &Actor::system(),
    )
    .await
    .unwrap()
}

#[test]
fn a_transaction_bigger_than_one_statement_commits_whole() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    let number = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let ticket = new_ticket(&store, &mut tx).await;
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

#[test]
fn a_search_after_a_bulk_of_items_finds_them_all_and_tidies_the_index_queue() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let ticket = new_ticket(&store, &mut tx).await;
        // More than TIDY_SEARCH_QUEUE_AFTER items, none indexed yet (no `serve` runs).
        let items = mticket::store::TIDY_SEARCH_QUEUE_AFTER + 1;
        for i in 0..items {
            let text = format!("Bestellung {i} kam nicht an");
            let item = NewItem {
                kind: ItemKind::Customer,
                agent_id: None,
                from_address: "kunde@example.test",
                from_name: "",
                to: &[],
                cc: &[],
                subject: "Lieferung",
                date: 1_700_000_000,
                message_id: "",
                text: &text,
                html: None,
                body_in_raw: false,
                raw: b"",
                raw_sha256: "",
                problems: &[],
                attachments: &[],
            };
            tx.add_item(ticket.id, &item, 1_700_000_000).await.unwrap();
        }
        tx.commit().await.unwrap();
        let search = |word: &str| TicketQuery {
            text: vec![word.into()],
            ..TicketQuery::default()
        };
        // The first, a middle and the last item are all found.
        for word in ["0", "5000", "10000"] {
            let found = store.ticket_list(&search(word)).await.unwrap();
            assert_eq!(found.len(), 1, "item {word} is indexed before the search");
            assert_eq!(found[0].number, ticket.number);
        }
        assert_eq!(store.index_for_search(64, true).await.unwrap(), 0);
        if store.backend() == Backend::Postgres {
            // The index queue holds no rows any more. (Whether VACUUM also gave its pages
            // back depends on what else the cluster runs: not asserted.)
            let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM search_pending")
                .fetch_one(&mut sqlx::AnyConnection::connect(&url).await.unwrap())
                .await
                .unwrap();
            assert_eq!(
                queued, 0,
                "search_pending still holds rows after the search"
            );
        }
        // Nothing left to index: the next search finds the same ticket, here through a
        // word in more items than PostgreSQL looks up before their tickets.
        assert_eq!(store.ticket_list(&search("kam")).await.unwrap().len(), 1);
        store.close().await;
    });
}

#[test]
fn a_lock_held_by_another_connection_is_transient_and_a_bad_statement_is_not() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let mut holder = sqlx::AnyConnection::connect(&url).await.unwrap();
        let mut waiter = sqlx::AnyConnection::connect(&url).await.unwrap();
        let refused = match store.backend() {
            Backend::Sqlite => {
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut holder)
                    .await
                    .unwrap();
                sqlx::query("PRAGMA busy_timeout = 0")
                    .execute(&mut waiter)
                    .await
                    .unwrap();
                sqlx::query("BEGIN IMMEDIATE").execute(&mut waiter).await
            }
            Backend::Postgres => {
                sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
                sqlx::query("SELECT id FROM queues FOR UPDATE")
                    .execute(&mut holder)
                    .await
                    .unwrap();
                sqlx::query("SELECT id FROM queues FOR UPDATE NOWAIT")
                    .execute(&mut waiter)
                    .await
            }
        };
        let locked = StoreError::from(refused.expect_err("the lock is held"));
        assert!(locked.is_transient(), "{locked}");
        let bad = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut waiter)
            .await
            .expect_err("no such table");
        let bad = StoreError::from(bad);
        assert!(!bad.is_transient(), "{bad}");
        holder.close().await.unwrap();
        waiter.close().await.unwrap();
        store.close().await;
    });
}
