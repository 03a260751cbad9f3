//! The agent's POP3 maildrop over the store (README, "The agents' mailbox"): the agent's
//! INBOX, one message per ticket, without the tickets the agent deleted over POP3 before.
//! DELE hides a ticket from that agent's POP3 view only; the ticket, its IMAP message and
//! everyone else's views stay.
//!
//! A message's UIDL is `t<ticket id>.<message UID>`. The UID changes whenever the ticket
//! changes (see `store::mailbox`), so a changed ticket is a new message to a client that
//! keeps what it fetched, and an unchanged one keeps its UIDL across sessions.
use std::collections::HashSet;

use crate::core::model::Agent;
use crate::mailbox::folder::Folder;
use crate::mailbox::view::{Flags, Mailbox, Message, Source};
use crate::protocol::pop3_server::{DropEntry, Maildrop, MaildropError};
use crate::store::StoreError;

/// The POP3 view of the agents' mailboxes.
#[derive(Clone)]
pub struct TicketMaildrop {
    mailbox: Mailbox,
}

impl TicketMaildrop {
    pub fn new(mailbox: Mailbox) -> TicketMaildrop {
        TicketMaildrop { mailbox }
    }

    /// The ticket's message under `uid`, rendered now; `None` when the ticket is gone or
    /// its message has another UID by the time it is rendered (the ticket changed).
    async fn render(&self, agent: &Agent, ticket_id: i64, uid: u32) -> Result<Option<Vec<u8>>> {
        let message = Message {
            uid,
            source: Source::Ticket(ticket_id),
            flags: Flags::default(),
            size: None,
            internal_date: 0,
        };
        let Some(bytes) = self.mailbox.bytes(agent, &message).await? else {
            return Ok(None);
        };
        // UIDs are never given twice and every change of a ticket takes its UID away, so the
        // same UID after rendering means nothing changed since the listing: the bytes are
        // those of that message.
        let now = self.mailbox.store().ticket_uids(&[ticket_id]).await?;
        Ok((now.get(&ticket_id) == Some(&uid)).then_some(bytes))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

fn unavailable(e: StoreError) -> MaildropError {
    match e.is_permanent() {
        true => MaildropError::Failed(e.to_string()),
        false => MaildropError::Unavailable(e.to_string()),
    }
}

/// The UIDL of a ticket's message.
pub fn uidl(ticket_id: i64, uid: u32) -> String {
    format!("t{ticket_id}.{uid}")
}

/// The ticket id and message UID a UIDL names.
pub fn parse_uidl(uidl: &str) -> Option<(i64, u32)> {
    let (id, uid) = uidl.strip_prefix('t')?.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(id) || !digits(uid) {
        return None;
    }
    Some((id.parse().ok()?, uid.parse().ok()?))
}

/// The octets of `bytes` as RETR sends them: every line ended by CRLF (a bare LF becomes
/// CRLF, a last line without an end gets one), before dot-stuffing.
pub fn wire_size(bytes: &[u8]) -> u64 {
    let mut size = 0u64;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &[][..]),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        size += line.len() as u64 + 2;
        rest = next;
    }
    size
}

impl Maildrop for TicketMaildrop {
    /// The INBOX in UID order without the messages the agent deleted over POP3. A size the
    /// store does not know yet is found by rendering the message (which remembers it).
    async fn open(&self, agent: &Agent) -> std::result::Result<Vec<DropEntry>, MaildropError> {
        let catalog = self.mailbox.catalog(agent).await.map_err(unavailable)?;
        let messages = self
            .mailbox
            .messages(agent, &catalog, &Folder::Inbox)
            .await
            .map_err(unavailable)?;
        let fetched = self
            .mailbox
            .store()
            .pop3_fetched(agent.id)
            .await
            .map_err(unavailable)?;
        let mut entries = Vec::with_capacity(messages.len());
        for m in messages {
            let Source::Ticket(ticket_id) = m.source else {
                continue;
            };
            if fetched.get(&ticket_id) == Some(&m.uid) {
                continue;
            }
            let size = match m.size {
                // Ticket messages are rendered with CRLF line ends throughout: the stored
                // length is what RETR sends.
                Some(size) => size,
                None => match self.render(agent, ticket_id, m.uid).await {
                    Ok(Some(bytes)) => wire_size(&bytes),
                    // Changed or gone since the listing: its new message is the next
                    // session's.
                    Ok(None) => continue,
                    Err(e) => return Err(unavailable(e)),
                },
            };
            entries.push(DropEntry {
                uidl: uidl(ticket_id, m.uid),
                size,
            });
        }
        Ok(entries)
    }

    /// The message as it was listed, or `None` when its ticket changed since. Sending the
    /// ticket's current message instead would break what LIST and UIDL told the client:
    /// the octet count (clients check it) and the UIDL, under which the client would keep
    /// content that is not that message's. After `None` the client sees the message as
    /// unavailable; its next session lists the ticket's new message under a new UIDL.
    async fn retrieve(
        &self,
        agent: &Agent,
        uidl: &str,
    ) -> std::result::Result<Option<Vec<u8>>, MaildropError> {
        let Some((ticket_id, uid)) = parse_uidl(uidl) else {
            return Ok(None);
        };
        self.render(agent, ticket_id, uid)
            .await
            .map_err(unavailable)
    }

    /// Marks the ticket messages behind `uidls` fetched for this agent, in one transaction.
    async fn delete(
        &self,
        agent: &Agent,
        uidls: &[String],
    ) -> std::result::Result<(), MaildropError> {
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(uidls.len());
        for u in uidls {
            let Some((ticket_id, uid)) = parse_uidl(u) else {
                return Err(MaildropError::Failed(format!("not a message here: {u}")));
            };
            if seen.insert(ticket_id) {
                ids.push((ticket_id, uid));
            }
        }
        self.mailbox
            .store()
            .pop3_mark_fetched(agent.id, &ids)
            .await
            .map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::texts::Locale;
    use crate::store::{Actor, NewAgent, NewTicket, QueueSettings, Store, TicketRef};

    #[test]
    fn uidls_round_trip_and_strangers_are_refused() {
        assert_eq!(uidl(12, 345), "t12.345");
        assert_eq!(parse_uidl("t12.345"), Some((12, 345)));
        for bad in [
            "", "t", "t12", "t.3", "t12.", "12.345", "t1a.2", "t1.-2", "t+1.2",
        ] {
            assert_eq!(parse_uidl(bad), None, "{bad}");
        }
        // RFC 1939 §7: 1 to 70 characters from 0x21 to 0x7E.
        let longest = uidl(i64::MAX, u32::MAX);
        assert!(longest.len() <= 70 && longest.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }

    #[test]
    fn wire_size_counts_crlf_line_ends() {
        assert_eq!(wire_size(b""), 0);
        assert_eq!(wire_size(b"a\r\nb\r\n"), 6);
        assert_eq!(wire_size(b"a\nb\n"), 6);
        assert_eq!(wire_size(b"a\r\nb"), 6);
        assert_eq!(wire_size(b"\r\n\r\n"), 4);
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        mailbox: Mailbox,
        drop: TicketMaildrop,
        anna: Agent,
        ben: Agent,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
            .queue_add(&QueueSettings {
                name: Some("Support".into()),
                address: Some("support@shop.test".into()),
                ..QueueSettings::default()
            })
            .await
            .unwrap();
        let mut agents = Vec::new();
        for login in ["anna", "ben"] {
            agents.push(
                store
                    .agent_add(&NewAgent {
                        login: login.into(),
                        name: login.into(),
                        email: format!("{login}@shop.test"),
                        password_hash: String::new(),
                        is_admin: false,
                        queues: vec!["Support".into()],
                    })
                    .await
                    .unwrap(),
            );
        }
        let ben = agents.pop().unwrap();
        let anna = agents.pop().unwrap();
        let mailbox = Mailbox::new(store.clone(), Locale::En, "gateway.example.test");
        Fixture {
            _dir: dir,
            drop: TicketMaildrop::new(mailbox.clone()),
            mailbox,
            store,
            anna,
            ben,
        }
    }

    /// Tickets assigned to `agent`, listed (given their message UIDs).
    async fn tickets_for(store: &Store, agent: &Agent, subjects: &[&str]) -> Vec<TicketRef> {
        let queue = store.queue_by_name("Support").await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let mut ids = Vec::new();
        for subject in subjects {
            let t = tx
                .create_ticket(
                    &NewTicket {
                        subject,
                        queue_id: queue.id,
                        queue_name: "Support",
                        creator_address: "kunde@example.test",
                        customer_id: None,
                        cc: &[],
                        spoof_suspect: false,
                        first_number: 1,
                        assignee_id: Some(agent.id),
                        at: 1_700_000_000,
                    },
                    &Actor::system(),
                )
                .await
                .unwrap();
            ids.push(t);
        }
        tx.commit().await.unwrap();
        let mailbox = Mailbox::new(store.clone(), Locale::En, "gateway.example.test");
        while mailbox.list_changed(100).await.unwrap() > 0 {}
        ids
    }

    #[tokio::test]
    async fn the_maildrop_is_the_inbox_with_sizes_as_sent_and_stable_uidls() {
        let f = fixture().await;
        let tickets = tickets_for(&f.store, &f.anna, &["Paket", "Rechnung"]).await;
        tickets_for(&f.store, &f.ben, &["Nicht für Anna"]).await;

        let first = f.drop.open(&f.anna).await.unwrap();
        assert_eq!(first.len(), 2, "{first:?}");
        for (entry, t) in first.iter().zip(&tickets) {
            let (ticket, _) = parse_uidl(&entry.uidl).unwrap();
            assert_eq!(ticket, t.id);
            let bytes = f
                .drop
                .retrieve(&f.anna, &entry.uidl)
                .await
                .unwrap()
                .unwrap();
            // Rendered with CRLF throughout: the stored length is what RETR sends.
            assert_eq!(wire_size(&bytes), bytes.len() as u64);
            assert_eq!(entry.size, bytes.len() as u64);
        }
        // The second time the sizes come from the store, and nothing moved.
        assert_eq!(f.drop.open(&f.anna).await.unwrap(), first);
    }

    #[tokio::test]
    async fn a_changed_ticket_is_a_new_message_and_the_old_one_is_gone() {
        let f = fixture().await;
        let tickets = tickets_for(&f.store, &f.anna, &["Paket"]).await;
        let before = f.drop.open(&f.anna).await.unwrap();

        let mut tx = f.store.begin().await.unwrap();
        tx.set_status(&tickets[0], "open", &Actor::system())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        // Not yet given its new UID: neither the old message nor a new one.
        assert_eq!(
            f.drop.retrieve(&f.anna, &before[0].uidl).await.unwrap(),
            None
        );
        assert!(f.drop.open(&f.anna).await.unwrap().is_empty());

        while f.mailbox.list_changed(100).await.unwrap() > 0 {}
        let after = f.drop.open(&f.anna).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_ne!(after[0].uidl, before[0].uidl);
        assert_eq!(
            f.drop.retrieve(&f.anna, &before[0].uidl).await.unwrap(),
            None
        );
        assert!(
            f.drop
                .retrieve(&f.anna, &after[0].uidl)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn delete_hides_tickets_from_that_agent_only() {
        let f = fixture().await;
        let tickets = tickets_for(&f.store, &f.anna, &["Paket", "Rechnung"]).await;
        // ben watches the first ticket: it is in both INBOXes.
        let mut tx = f.store.begin().await.unwrap();
        tx.add_watcher(tickets[0].id, f.ben.id);
        tx.commit().await.unwrap();
        while f.mailbox.list_changed(100).await.unwrap() > 0 {}

        let anna = f.drop.open(&f.anna).await.unwrap();
        let ben = f.drop.open(&f.ben).await.unwrap();
        assert_eq!((anna.len(), ben.len()), (2, 1));
        assert_eq!(ben[0].uidl, anna[0].uidl);

        // A UIDL that names no message of this maildrop: nothing is deleted.
        let mixed = vec![anna[0].uidl.clone(), "nonsense".to_string()];
        assert!(matches!(
            f.drop.delete(&f.anna, &mixed).await,
            Err(MaildropError::Failed(_))
        ));
        assert_eq!(f.drop.open(&f.anna).await.unwrap(), anna);

        f.drop
            .delete(&f.anna, &[anna[0].uidl.clone()])
            .await
            .unwrap();
        assert_eq!(f.drop.open(&f.anna).await.unwrap(), anna[1..].to_vec());
        assert_eq!(f.drop.open(&f.ben).await.unwrap(), ben);
        // Deleting again is harmless.
        f.drop
            .delete(&f.anna, &[anna[0].uidl.clone()])
            .await
            .unwrap();
    }
}
