//! The folders an agent sees (README, "The agents' mailbox"), their names in the gateway's
//! locale, and which tickets each shows. Pure: the caller reads queues, statuses, tags and
//! profiles from the store and gives them here.
use crate::core::filter::{self, AssigneeFilter, StatusFilter};
use crate::core::model::Agent;
use crate::core::texts::Locale;
use crate::store::TicketQuery;

/// The hierarchy delimiter of folder names.
pub const DELIMITER: char = '/';

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// My tickets: assigned to me or watched by me, not closed.
    Inbox,
    /// Open tickets of my queues that nobody has.
    Unassigned,
    /// Open tickets of one queue (its name).
    Queue(String),
    /// Tickets with one status (its key).
    Status(String),
    /// Tickets with one tag.
    Tag(String),
    /// Tickets a saved filter selects (the profile's name).
    Profile(String),
    /// The reply templates, one message each; read-only.
    Templates,
    /// One message with the statistics.
    Statistics,
    /// The agent's own folders, which keep what the client stores.
    Own(Own),
    /// `Queues`, `Status`, `Tags`, `Profiles`: only there to hold the folders below them.
    Parent(Parent),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Own {
    Drafts,
    Sent,
    Trash,
}

impl Own {
    /// How the store names the folder.
    pub fn as_str(self) -> &'static str {
        match self {
            Own::Drafts => "drafts",
            Own::Sent => "sent",
            Own::Trash => "trash",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent {
    Queues,
    Statuses,
    Tags,
    Profiles,
}

impl Folder {
    /// Folders that show tickets (one message per ticket).
    pub fn shows_tickets(&self) -> bool {
        matches!(
            self,
            Folder::Inbox
                | Folder::Unassigned
                | Folder::Queue(_)
                | Folder::Status(_)
                | Folder::Tag(_)
                | Folder::Profile(_)
        )
    }

    pub fn selectable(&self) -> bool {
        !matches!(self, Folder::Parent(_))
    }
}

/// A status as a folder shows it.
#[derive(Debug, Clone)]
pub struct StatusName {
    pub key: String,
    pub name_en: String,
    pub name_de: String,
}

/// What exists, as the agent may see it: the input for names and lookups.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub locale: Locale,
    /// The queues the agent has access to (every queue for an admin).
    pub queues: Vec<String>,
    pub statuses: Vec<StatusName>,
    pub tags: Vec<String>,
    /// (name, filter expression)
    pub profiles: Vec<(String, String)>,
}

struct Words {
    unassigned: &'static str,
    queues: &'static str,
    statuses: &'static str,
    tags: &'static str,
    profiles: &'static str,
    templates: &'static str,
    statistics: &'static str,
    drafts: &'static str,
    sent: &'static str,
    trash: &'static str,
}

fn words(locale: Locale) -> Words {
    match locale {
        Locale::En => Words {
            unassigned: "Unassigned",
            queues: "Queues",
            statuses: "Status",
            tags: "Tags",
            profiles: "Profiles",
            templates: "Templates",
            statistics: "Statistics",
            drafts: "Drafts",
            sent: "Sent",
            trash: "Trash",
        },
        Locale::De => Words {
            unassigned: "Nicht zugewiesen",
            queues: "Warteschlangen",
            statuses: "Status",
            tags: "Schlagworte",
            profiles: "Profile",
            templates: "Vorlagen",
            statistics: "Statistik",
            drafts: "Entwürfe",
            sent: "Gesendet",
            trash: "Papierkorb",
        },
    }
}

/// A name as one level of a folder path: the delimiter cannot be part of it.
fn leaf(name: &str) -> String {
    name.replace(DELIMITER, "-")
}

impl Catalog {
    /// Every folder with its name, parents before their children.
    pub fn folders(&self) -> Vec<(String, Folder)> {
        let w = words(self.locale);
        let mut out = vec![
            ("INBOX".to_string(), Folder::Inbox),
            (w.unassigned.to_string(), Folder::Unassigned),
            (w.queues.to_string(), Folder::Parent(Parent::Queues)),
        ];
        for q in &self.queues {
            out.push((
                format!("{}{DELIMITER}{}", w.queues, leaf(q)),
                Folder::Queue(q.clone()),
            ));
        }
        out.push((w.statuses.to_string(), Folder::Parent(Parent::Statuses)));
        for s in &self.statuses {
            out.push((
                format!("{}{DELIMITER}{}", w.statuses, leaf(self.status_name(s))),
                Folder::Status(s.key.clone()),
            ));
        }
        out.push((w.tags.to_string(), Folder::Parent(Parent::Tags)));
        for t in &self.tags {
            out.push((
                format!("{}{DELIMITER}{}", w.tags, leaf(t)),
                Folder::Tag(t.clone()),
            ));
        }
        out.push((w.profiles.to_string(), Folder::Parent(Parent::Profiles)));
        for (p, _) in &self.profiles {
            out.push((
                format!("{}{DELIMITER}{}", w.profiles, leaf(p)),
                Folder::Profile(p.clone()),
            ));
        }
        out.extend([
            (w.templates.to_string(), Folder::Templates),
            (w.statistics.to_string(), Folder::Statistics),
            (w.drafts.to_string(), Folder::Own(Own::Drafts)),
            (w.sent.to_string(), Folder::Own(Own::Sent)),
            (w.trash.to_string(), Folder::Own(Own::Trash)),
        ]);
        out
    }

    fn status_name<'a>(&self, s: &'a StatusName) -> &'a str {
        match self.locale {
            Locale::En => &s.name_en,
            Locale::De => &s.name_de,
        }
    }

    /// The folder a (decoded) name stands for. INBOX in any case (RFC 3501); other names
    /// as listed, or in another case when that is unambiguous.
    pub fn find(&self, name: &str) -> Option<Folder> {
        if name.eq_ignore_ascii_case("INBOX") {
            return Some(Folder::Inbox);
        }
        let all = self.folders();
        if let Some((_, f)) = all.iter().find(|(n, _)| n == name) {
            return Some(f.clone());
        }
        let mut folded = all
            .into_iter()
            .filter(|(n, _)| n.to_lowercase() == name.to_lowercase());
        match (folded.next(), folded.next()) {
            (Some((_, f)), None) => Some(f),
            _ => None,
        }
    }

    /// The folder's name.
    pub fn name(&self, folder: &Folder) -> Option<String> {
        self.folders()
            .into_iter()
            .find(|(_, f)| f == folder)
            .map(|(n, _)| n)
    }

    /// Which tickets a folder of tickets shows the agent; `None` for other folders or a
    /// profile whose filter no longer parses.
    pub fn ticket_query(&self, folder: &Folder, agent: &Agent, now: i64) -> Option<TicketQuery> {
        let mut q = match folder {
            Folder::Inbox => TicketQuery {
                mine_or_watched: Some(agent.id),
                statuses: vec![StatusFilter::OpenLike],
                ..TicketQuery::default()
            },
            Folder::Unassigned => TicketQuery {
                assignees: vec![AssigneeFilter::Nobody],
                statuses: vec![StatusFilter::OpenLike],
                ..TicketQuery::default()
            },
            Folder::Queue(name) => TicketQuery {
                queues: vec![name.clone()],
                statuses: vec![StatusFilter::OpenLike],
                ..TicketQuery::default()
            },
            Folder::Status(key) => TicketQuery {
                statuses: vec![StatusFilter::Named(key.clone())],
                ..TicketQuery::default()
            },
            Folder::Tag(tag) => TicketQuery {
                tags: vec![tag.clone()],
                ..TicketQuery::default()
            },
            Folder::Profile(name) => {
                let (_, expr) = self.profiles.iter().find(|(n, _)| n == name)?;
                let f = filter::parse(expr).ok()?;
                TicketQuery::from_filter(&f, now, Some(&agent.login))
            }
            _ => return None,
        };
        if !agent.is_admin {
            q.visible_queues = Some(self.queues.clone());
        }
        Some(q)
    }
}

/// Folder names on the wire are modified UTF-7 (RFC 3501 §5.1.3). Written here because it
/// is thirty lines and the crates that do it are unmaintained.
pub mod utf7 {
    use base64::Engine;
    use base64::alphabet::Alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

    fn engine() -> GeneralPurpose {
        let alphabet =
            Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
                .expect("valid alphabet");
        GeneralPurpose::new(
            &alphabet,
            GeneralPurposeConfig::new()
                .with_encode_padding(false)
                .with_decode_padding_mode(DecodePaddingMode::RequireNone),
        )
    }

    pub fn encode(name: &str) -> String {
        let mut out = String::new();
        let mut run: Vec<u16> = Vec::new();
        let flush = |run: &mut Vec<u16>, out: &mut String| {
            if !run.is_empty() {
                let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
                out.push('&');
                out.push_str(&engine().encode(bytes));
                out.push('-');
                run.clear();
            }
        };
        for c in name.chars() {
            if (' '..='~').contains(&c) {
                flush(&mut run, &mut out);
                out.push(c);
                if c == '&' {
                    out.push('-');
                }
            } else {
                let mut buf = [0u16; 2];
                run.extend_from_slice(c.encode_utf16(&mut buf));
            }
        }
        flush(&mut run, &mut out);
        out
    }

    /// `None` for a name that is not valid modified UTF-7.
    pub fn decode(wire: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = wire;
        while let Some(at) = rest.find('&') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let end = after.find('-')?;
            if end == 0 {
                out.push('&');
            } else {
                let bytes = engine().decode(&after[..end]).ok()?;
                if bytes.len() % 2 != 0 {
                    return None;
                }
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                out.push_str(&String::from_utf16(&units).ok()?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(locale: Locale) -> Catalog {
        Catalog {
            locale,
            queues: vec!["Support".into(), "Sales/EU".into()],
            statuses: vec![StatusName {
                key: "merged".into(),
                name_en: "Merged".into(),
                name_de: "Zusammengeführt".into(),
            }],
            tags: vec!["vip".into()],
            profiles: vec![("Overdue".into(), "due:overdue".into())],
        }
    }

    #[test]
    fn folder_names_follow_the_locale() {
        let en: Vec<String> = catalog(Locale::En)
            .folders()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(en.contains(&"Queues/Support".to_string()), "{en:?}");
        assert!(en.contains(&"Queues/Sales-EU".to_string()), "{en:?}");
        assert!(en.contains(&"Status/Merged".to_string()), "{en:?}");
        let de = catalog(Locale::De);
        assert_eq!(de.find("Entwürfe"), Some(Folder::Own(Own::Drafts)));
        assert_eq!(
            de.find("Status/Zusammengeführt"),
            Some(Folder::Status("merged".into()))
        );
        assert_eq!(de.find("inbox"), Some(Folder::Inbox));
        assert_eq!(de.find("schlagworte/VIP"), Some(Folder::Tag("vip".into())));
        assert_eq!(de.find("Queues/Support"), None);
    }

    #[test]
    fn modified_utf7_round_trips() {
        for (plain, wire) in [
            ("Entwürfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("Status/Zusammengeführt", "Status/Zusammengef&APw-hrt"),
            ("日本語", "&ZeVnLIqe-"),
            ("INBOX", "INBOX"),
        ] {
            assert_eq!(utf7::encode(plain), wire);
            assert_eq!(utf7::decode(wire).as_deref(), Some(plain));
        }
        assert_eq!(utf7::decode("&AP"), None);
        assert_eq!(utf7::decode("&A-"), None);
    }

    #[test]
    fn agents_see_only_their_queues_and_admins_all() {
        let c = catalog(Locale::En);
        let mut agent = Agent {
            id: 7,
            login: "anna".into(),
            name: "Anna".into(),
            email: "anna@x".into(),
            password_hash: String::new(),
            is_admin: false,
            attachment_check: true,
            queues: vec!["Support".into()],
            away: None,
        };
        let q = c.ticket_query(&Folder::Inbox, &agent, 0).unwrap();
        assert_eq!(q.mine_or_watched, Some(7));
        assert!(q.visible_queues.is_some());
        agent.is_admin = true;
        let q = c
            .ticket_query(&Folder::Profile("Overdue".into()), &agent, 0)
            .unwrap();
        assert!(q.visible_queues.is_none());
        assert!(q.due.is_some());
        assert!(c.ticket_query(&Folder::Templates, &agent, 0).is_none());
    }
}
