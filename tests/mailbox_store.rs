//! The mailbox's bookkeeping against the real database (SQLite, or PostgreSQL with
//! `MTICKET_TEST_DB=postgres`): a changed ticket's message gets a new, higher UID, no UID
//! is given twice, folders list what their query selects in UID order, and the header
//! taken down at listing is that of the version listed.
#[path = "support/mod.rs"]
mod support;

use mticket::core::texts::Locale;
use mticket::mailbox::view::Mailbox;
use mticket::store::{Actor, ListedTicket, Listing, Store, TicketQuery};
use support::db::new_ticket;
use support::gateway::{Gateway, Options};

#[test]
fn a_changed_ticket_gets_a_new_higher_uid_and_no_uid_comes_twice() {
    let gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    gateway.add_queue("Sales", "sales@shop.test", None, None, &[]);
    let url = gateway.db_url.clone();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let mailbox = Mailbox::new(store.clone(), Locale::En, "gw.example.test");
        let support = store.queue_by_name("Support").await.unwrap();
        let sales = store.queue_by_name("Sales").await.unwrap();
        let validity = store.mailbox_uidvalidity().await.unwrap();
        assert!(validity > 1_600_000_000, "{validity}");

        let mut tx = store.begin().await.unwrap();
        let mut tickets = Vec::new();
        for i in 0..1000 {
            let (q, name) = if i % 2 == 0 {
                (support.id, "Support")
            } else {
                (sales.id, "Sales")
            };
            tickets.push(
                tx.create_ticket(&new_ticket(q, name, "Frage"), &Actor::system())
                    .await
                    .unwrap(),
            );
        }
        tx.commit().await.unwrap();
        // Unlisted tickets are in no folder yet.
        assert!(
            store
                .folder_tickets(&TicketQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
        let mut listed = 0;
        loop {
            match mailbox.list_changed(300).await.unwrap() {
                0 => break,
                n => listed += n,
            }
        }
        assert_eq!(listed, 1000);
        let all = store.folder_tickets(&TicketQuery::default()).await.unwrap();
        assert_eq!(all.len(), 1000);
        assert!(all.windows(2).all(|w| w[0].uid < w[1].uid));
        let only_sales = TicketQuery {
            visible_queues: Some(vec!["sales".into()]),
            ..TicketQuery::default()
        };
        assert_eq!(store.folder_tickets(&only_sales).await.unwrap().len(), 500);
        let nothing = TicketQuery {
            visible_queues: Some(vec![]),
            ..TicketQuery::default()
        };
        assert!(store.folder_tickets(&nothing).await.unwrap().is_empty());

        // A change: the message leaves the folder until it is listed again, with a UID above
        // every earlier one.
        let before_max = all.iter().map(|e| e.uid).max().unwrap();
        let changed = &tickets[10];
        let mut tx = store.begin().await.unwrap();
        let version_before = tx.ticket_version(changed.id).await.unwrap();
        tx.set_status(changed, "open", &Actor::system())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let after = store.folder_tickets(&TicketQuery::default()).await.unwrap();
        assert_eq!(after.len(), 999);
        // A header rendered from the version before the change is not taken down.
        let stale = Listing {
            ticket_id: changed.id,
            version: version_before,
            header: "Subject: old\r\n\r\n".into(),
            answered: false,
            tags: Vec::new(),
        };
        assert_eq!(store.list_tickets(&[stale]).await.unwrap(), 0);
        assert_eq!(mailbox.list_changed(300).await.unwrap(), 1);
        let after = store.folder_tickets(&TicketQuery::default()).await.unwrap();
        let last: &ListedTicket = after.last().unwrap();
        assert_eq!(last.ticket_id, changed.id);
        assert!(last.uid > before_max);
        assert_eq!(store.mailbox_last_uid().await.unwrap(), i64::from(last.uid));
        let header = &mailbox.headers(&[changed.id]).await.unwrap()[&changed.id];
        assert!(header.contains("X-Ticket-Status: Open\r\n"), "{header}");
        assert!(header.ends_with("\r\n\r\n"), "{header}");

        // Another form of header (here the locale) lists every ticket again, once.
        assert!(mailbox.relist_if_the_form_changed().await.unwrap());
        assert!(!mailbox.relist_if_the_form_changed().await.unwrap());
        let german = Mailbox::new(store.clone(), Locale::De, "gw.example.test");
        assert!(german.relist_if_the_form_changed().await.unwrap());
        assert!(
            store
                .folder_tickets(&TicketQuery::default())
                .await
                .unwrap()
                .is_empty()
        );
        while german.list_changed(2000).await.unwrap() > 0 {}
        let relisted = store.folder_tickets(&TicketQuery::default()).await.unwrap();
        assert_eq!(relisted.len(), 1000);
        assert!(relisted[0].uid > last.uid);
        let header = &german.headers(&[changed.id]).await.unwrap()[&changed.id];
        assert!(header.contains("Content-Language: de\r\n"), "{header}");
        let last = relisted.last().unwrap();

        // Stored messages draw from the same counter.
        let u = store
            .own_append(
                1,
                "sent",
                &["\\Seen".into()],
                1_700_000_000,
                b"Subject: x\r\n\r\nbody",
            )
            .await;
        // No agent 1 exists: the row cannot be written and nothing is taken.
        assert!(u.is_err());
        assert_eq!(store.mailbox_last_uid().await.unwrap(), i64::from(last.uid));
        store.close().await;
    });
}
