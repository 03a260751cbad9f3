//! The domain vocabulary as plain data: queues, tickets, items, agents,
//! customers, statuses. The store reads and writes these; the rules reason about them.
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Declares a closed set of words stored as text (in the database, on the command line).
macro_rules! word_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                let lower = s.trim().to_ascii_lowercase();
                $(if lower == $word { return Ok($name::$variant); })+
                Err(UnknownWord {
                    what: stringify!($name),
                    given: s.to_string(),
                    expected: &[$($word),+],
                })
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of: {}", expected.join(", "))]
pub struct UnknownWord {
    pub what: &'static str,
    pub given: String,
    pub expected: &'static [&'static str],
}

word_enum!(
    /// Who wrote an item of a ticket's communication.
    ItemKind { Customer = "customer", Reply = "reply", Comment = "comment" }
);
word_enum!(
    /// low = no flag, medium = yellow flag, high = red flag (seed).
    Priority { Low = "low", Medium = "medium", High = "high" }
);
impl Priority {
    /// The English keys and the German names of the seed (niedrig, mittel, hoch).
    pub fn parse_any(s: &str) -> Option<Priority> {
        match s.trim().to_lowercase().as_str() {
            "niedrig" => Some(Priority::Low),
            "mittel" => Some(Priority::Medium),
            "hoch" => Some(Priority::High),
            other => other.parse().ok(),
        }
    }
}
word_enum!(
    /// "Ticket Antwortverhalten": which earlier mails a reply quotes.
    ReplyQuote { None = "none", Last = "last", Last3 = "last3", All = "all" }
);
word_enum!(
    /// What a customer follow-up on a closed ticket does.
    OnClosed { Reopen = "reopen", NewTicket = "new_ticket" }
);
word_enum!(
    /// How a queue's upstream server is reached.
    TlsMode { Implicit = "implicit", StartTls = "starttls", None = "none" }
);

/// A queue (Warteschlange): a mailbox the gateway serves.
#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub friendly_name: String,
    /// Empty when the queue has no upstream SMTP server.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_tls: TlsMode,
    /// Empty when the queue is fed only by the inbound listener.
    pub pop3_host: String,
    pub pop3_port: u16,
    pub pop3_tls: TlsMode,
    pub login: String,
    #[serde(skip)]
    pub password: String,
    #[serde(skip)]
    pub tls_ca: String,
    pub autoresponder: bool,
    pub autoresponder_text: String,
    pub enabled: bool,
    pub reply_quote: ReplyQuote,
    pub on_closed: OnClosed,
    pub salutation: String,
    pub last_poll: Option<PollResult>,
}

impl Queue {
    pub fn polls(&self) -> bool {
        self.enabled && !self.pop3_host.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PollResult {
    pub at: i64,
    pub ok: bool,
    pub message: String,
}

/// A ticket status; the five system ones cannot be renamed or deleted.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: i64,
    pub key: String,
    pub name_en: String,
    pub name_de: String,
    pub is_closed: bool,
    pub is_system: bool,
}

/// The keys of the system statuses.
pub mod status_key {
    pub const NEW: &str = "new";
    pub const OPEN: &str = "open";
    pub const WAITING: &str = "waiting";
    pub const CLOSED: &str = "closed";
    pub const MERGED: &str = "merged";
}

#[derive(Debug, Clone, Serialize)]
pub struct Agent {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub email: String,
    #[serde(skip)]
    pub password_hash: String,
    pub is_admin: bool,
    pub attachment_check: bool,
    pub queues: Vec<String>,
    pub away: Option<Away>,
}

/// Out-of-office (Abwesenheitsnotiz).
#[derive(Debug, Clone, Serialize)]
pub struct Away {
    /// Unix seconds; away from `from` through `until`, both included.
    pub from: i64,
    pub until: i64,
    pub text: String,
    pub substitute: Option<String>,
}

impl Away {
    pub fn covers(&self, at: i64) -> bool {
        self.from <= at && at <= self.until
    }
}

/// A customer (Kunde) from the ERP's address book.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Customer {
    pub number: String,
    pub company1: String,
    pub company2: String,
    pub salutation: String,
    pub first_name: String,
    pub last_name: String,
    pub street: String,
    pub house_no: String,
    pub zip: String,
    pub city: String,
    pub letter_salutation: String,
    pub emails: Vec<String>,
    pub delivery_block: bool,
}

/// A document (Beleg) from the ERP.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Document {
    pub number: String,
    pub kind: String,
    pub date: String,
    pub customer_number: String,
    pub description: String,
}

/// One row of a ticket list: the seed's list columns.
#[derive(Debug, Clone, Serialize)]
pub struct TicketSummary {
    pub number: i64,
    pub priority: Priority,
    pub billable: bool,
    pub customer_number: Option<String>,
    pub creator_address: String,
    pub assignee: Option<String>,
    pub subject: String,
    pub queue: String,
    pub status: String,
    pub created_at: i64,
    pub last_action_at: i64,
}

/// A ticket with everything `ticket show` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    pub number: i64,
    pub subject: String,
    pub queue: String,
    pub assignee: Option<String>,
    pub status: String,
    pub priority: Priority,
    pub due_date: Option<String>,
    pub billable: bool,
    pub customer: Option<Customer>,
    pub creator_address: String,
    pub cc: Vec<String>,
    pub tags: Vec<String>,
    pub watchers: Vec<String>,
    pub document: Option<Document>,
    pub spoof_suspect: bool,
    pub merged_into: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub last_action_at: i64,
    pub items: Vec<ItemDetail>,
    pub history: Vec<HistoryEntry>,
    pub other_tickets: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ItemDetail {
    pub id: i64,
    pub kind: ItemKind,
    pub agent: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date: i64,
    pub message_id: String,
    pub text: String,
    pub attachments: Vec<AttachmentInfo>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentInfo {
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub at: i64,
    pub actor: String,
    pub field: String,
    pub old: String,
    pub new: String,
}

/// The seed's statistics: tickets per queue and per status, tickets opened per day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// (queue name, tickets), by name.
    pub per_queue: Vec<(String, i64)>,
    /// (status key, tickets), in the statuses' order.
    pub per_status: Vec<(String, i64)>,
    /// (day `YYYY-MM-DD` in UTC, tickets opened), the last 7 days, oldest first.
    pub opened_per_day: Vec<(String, i64)>,
    pub total: i64,
}
