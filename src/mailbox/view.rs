//! What an agent's mail client sees, whatever the protocol: the folders, the messages of a
//! folder with their flags, and each message's bytes. IMAP and POP3 both read through here.
use std::collections::HashMap;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox as Address, Message as Mail};
use sha2::{Digest, Sha256};

use crate::core::model::{Agent, Priority, Stats};
use crate::core::statistics;
use crate::core::texts::Locale;
use crate::core::ticket_message;
use crate::mailbox::folder::{Catalog, Folder, StatusName};
use crate::store::{ListedTicket, Listing, Store, StoreError};

/// Where a message's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ticket(i64),
    /// Stored by the client in one of the agent's own folders.
    Own,
    /// A reply template (its id).
    Template(i64),
    /// The statistics as of this time (Unix seconds).
    Statistics(i64),
}

/// The flags of a message as the client sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    pub seen: bool,
    pub answered: bool,
    pub flagged: bool,
    pub deleted: bool,
    pub draft: bool,
    pub keywords: Vec<String>,
}

impl Flags {
    /// From the words stored with an own-folder message (`\Seen $Forwarded …`).
    pub fn from_words(words: &[String]) -> Flags {
        let mut f = Flags::default();
        for w in words {
            match w.to_ascii_lowercase().as_str() {
                "\\seen" => f.seen = true,
                "\\answered" => f.answered = true,
                "\\flagged" => f.flagged = true,
                "\\deleted" => f.deleted = true,
                "\\draft" => f.draft = true,
                _ if !w.starts_with('\\') => f.keywords.push(w.clone()),
                _ => {}
            }
        }
        f
    }

    pub fn to_words(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (on, word) in [
            (self.seen, "\\Seen"),
            (self.answered, "\\Answered"),
            (self.flagged, "\\Flagged"),
            (self.deleted, "\\Deleted"),
            (self.draft, "\\Draft"),
        ] {
            if on {
                out.push(word.to_string());
            }
        }
        out.extend(self.keywords.iter().cloned());
        out
    }
}

/// One message of an open folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub uid: u32,
    pub source: Source,
    pub flags: Flags,
    /// Octets, when known without rendering.
    pub size: Option<u64>,
    /// Unix seconds.
    pub internal_date: i64,
}

/// The keyword a ticket's tag shows as: an IMAP atom (RFC 3501 `flag-keyword`).
pub fn tag_keyword(tag: &str) -> String {
    let k: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && !"(){%*\"\\]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if k.is_empty() { "_".into() } else { k }
}

/// Keywords that stand for ticket fields rather than tags.
pub const KEYWORD_PRIORITY_HIGH: &str = "priority-high";
pub const KEYWORD_PRIORITY_MEDIUM: &str = "priority-medium";
pub const KEYWORD_BILLABLE: &str = "billable";
pub const KEYWORD_DELIVERY_BLOCK: &str = "delivery-block";

/// The flags of a ticket's message for an agent who has seen `seen_uid` of it.
pub fn ticket_flags(t: &ListedTicket, seen_uid: Option<u32>) -> Flags {
    let mut keywords: Vec<String> = Vec::new();
    match t.priority {
        Priority::High => keywords.push(KEYWORD_PRIORITY_HIGH.into()),
        Priority::Medium => keywords.push(KEYWORD_PRIORITY_MEDIUM.into()),
        Priority::Low => {}
    }
    if t.billable {
        keywords.push(KEYWORD_BILLABLE.into());
    }
    if t.delivery_block {
        keywords.push(KEYWORD_DELIVERY_BLOCK.into());
    }
    keywords.extend(t.tags.iter().map(|t| tag_keyword(t)));
    Flags {
        seen: seen_uid == Some(t.uid),
        answered: t.answered,
        flagged: t.priority == Priority::High,
        deleted: false,
        draft: false,
        keywords,
    }
}

#[derive(Clone)]
pub struct Mailbox {
    store: Store,
    locale: Locale,
    hostname: String,
}

impl Mailbox {
    pub fn new(store: Store, locale: Locale, hostname: &str) -> Mailbox {
        Mailbox {
            store,
            locale,
            hostname: hostname.to_string(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn locale(&self) -> Locale {
        self.locale
    }

    /// The folders the agent may see: only their queues, every queue for an admin.
    pub async fn catalog(&self, agent: &Agent) -> Result<Catalog, StoreError> {
        let queues = if agent.is_admin {
            self.store
                .queues()
                .await?
                .into_iter()
                .map(|q| q.name)
                .collect()
        } else {
            agent.queues.clone()
        };
        let statuses = self
            .store
            .statuses()
            .await?
            .into_iter()
            .map(|s| StatusName {
                key: s.key,
                name_en: s.name_en,
                name_de: s.name_de,
            })
            .collect();
        Ok(Catalog {
            locale: self.locale,
            queues,
            statuses,
            tags: self.store.tags().await?,
            profiles: self.store.profiles().await?,
        })
    }

    /// The messages of a folder in UID order, as the agent sees them now.
    pub async fn messages(
        &self,
        agent: &Agent,
        catalog: &Catalog,
        folder: &Folder,
    ) -> Result<Vec<Message>, StoreError> {
        if let Some(q) = catalog.ticket_query(folder, agent, crate::store::now()) {
            let listed = self.store.folder_tickets(&q).await?;
            let seen = self.store.mailbox_seen(agent.id).await?;
            return Ok(listed
                .iter()
                .map(|t| Message {
                    uid: t.uid,
                    source: Source::Ticket(t.ticket_id),
                    flags: ticket_flags(t, seen.get(&t.ticket_id).copied()),
                    size: t.size.map(|s| s as u64),
                    internal_date: t.last_action_at,
                })
                .collect());
        }
        Ok(match folder {
            Folder::Own(own) => self
                .store
                .own_messages(agent.id, own.as_str())
                .await?
                .into_iter()
                .map(|m| Message {
                    uid: m.uid,
                    source: Source::Own,
                    flags: Flags::from_words(&m.flags),
                    size: Some(m.size as u64),
                    internal_date: m.internal_date,
                })
                .collect(),
            Folder::Templates => self
                .store
                .templates_with_ids()
                .await?
                .into_iter()
                .filter_map(|(id, _, _)| {
                    Some(Message {
                        uid: u32::try_from(id).ok().filter(|&u| u > 0)?,
                        source: Source::Template(id),
                        flags: Flags {
                            seen: true,
                            ..Flags::default()
                        },
                        size: None,
                        internal_date: 0,
                    })
                })
                .collect(),
            Folder::Statistics => {
                let (_, digest) = self.statistics(agent, catalog).await?;
                let (uid, at) = self
                    .store
                    .statistics_uid(agent.id, digest, crate::store::now())
                    .await?;
                vec![Message {
                    uid,
                    source: Source::Statistics(at),
                    flags: Flags {
                        seen: true,
                        ..Flags::default()
                    },
                    size: None,
                    internal_date: at,
                }]
            }
            _ => Vec::new(),
        })
    }

    /// The statistics over the agent's queues (all for an admin), status names in the
    /// locale, and a digest of what they show.
    async fn statistics(
        &self,
        agent: &Agent,
        catalog: &Catalog,
    ) -> Result<(Stats, i64), StoreError> {
        let queues = (!agent.is_admin).then_some(catalog.queues.as_slice());
        let mut stats = self.store.stats_in(crate::store::now(), queues).await?;
        for (key, _) in &mut stats.per_status {
            if let Some(s) = catalog.statuses.iter().find(|s| s.key == *key) {
                *key = match self.locale {
                    Locale::En => s.name_en.clone(),
                    Locale::De => s.name_de.clone(),
                };
            }
        }
        let id = statistics::message_id(&stats, &self.hostname, self.locale);
        let hash = Sha256::digest(id.as_bytes());
        let digest = i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        Ok((stats, digest))
    }

    /// The header blocks of listed tickets' messages (ticket id → header), as listed.
    pub async fn headers(&self, ticket_ids: &[i64]) -> Result<HashMap<i64, String>, StoreError> {
        self.store.mailbox_headers(ticket_ids).await
    }

    /// Lists every ticket again when the form of the header it renders (its layout, the
    /// locale, the host name) is not the one the tickets were listed with.
    pub async fn relist_if_the_form_changed(&self) -> Result<bool, StoreError> {
        let form = format!(
            "{} {} {}",
            ticket_message::HEADER_LAYOUT,
            ticket_message::language(self.locale),
            self.hostname
        );
        let hash = Sha256::digest(form.as_bytes());
        let form = i64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
        self.store.relist_unless(form).await
    }

    /// Gives up to `batch` changed tickets their message's new UID, its header rendered
    /// then; returns how many.
    pub async fn list_changed(&self, batch: i64) -> Result<usize, StoreError> {
        let ids = self.store.unlisted_tickets(batch).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut heads = self.store.ticket_heads(&ids, self.locale).await?;
        let listings: Vec<Listing> = ids
            .iter()
            .filter_map(|id| {
                let head = heads.remove(id)?;
                Some(Listing {
                    ticket_id: *id,
                    version: head.version,
                    header: ticket_message::header(&head, &self.hostname, self.locale),
                    answered: head.answered,
                    tags: head.tags,
                })
            })
            .collect();
        self.store.list_tickets(&listings).await
    }

    /// A message's bytes; `None` when it is gone.
    pub async fn bytes(&self, agent: &Agent, m: &Message) -> Result<Option<Vec<u8>>, StoreError> {
        match m.source {
            Source::Ticket(id) => self.ticket_message(id, m.uid).await,
            Source::Own => self.store.own_message_raw(agent.id, m.uid).await,
            Source::Template(id) => Ok(self
                .store
                .templates_with_ids()
                .await?
                .into_iter()
                .find(|(t, _, _)| *t == id)
                .map(|(_, name, body)| self.template_message(id, &name, &body))),
            Source::Statistics(at) => {
                let catalog = self.catalog(agent).await?;
                let (stats, _) = self.statistics(agent, &catalog).await?;
                Ok(Some(statistics::message(
                    &stats,
                    at,
                    &self.hostname,
                    self.locale,
                )))
            }
        }
    }

    /// A ticket's whole message, and its size remembered for listings.
    async fn ticket_message(
        &self,
        ticket_id: i64,
        uid: u32,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let heads = self.store.ticket_heads(&[ticket_id], self.locale).await?;
        let Some(head) = heads.get(&ticket_id) else {
            return Ok(None);
        };
        let (detail, attachments) = match self.store.ticket_message_input(ticket_id).await {
            Ok(x) => x,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes =
            ticket_message::message(head, &detail, &attachments, &self.hostname, self.locale);
        self.store
            .mailbox_set_size(ticket_id, uid, bytes.len() as i64)
            .await?;
        Ok(Some(bytes))
    }

    fn template_message(&self, id: i64, name: &str, body: &str) -> Vec<u8> {
        let gateway: Address = format!("mticket@{}", self.hostname)
            .parse()
            .unwrap_or_else(|_| "mticket@localhost".parse().expect("valid address"));
        Mail::builder()
            .from(gateway.clone())
            .to(gateway)
            .subject(name)
            .date(std::time::UNIX_EPOCH)
            .message_id(Some(format!("<template.{id}@{}>", self.hostname)))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map(|m| m.formatted())
            .unwrap_or_default()
    }
}
