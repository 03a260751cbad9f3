//! SEARCH on the store: in a folder of tickets the seed's direct-search fields become a
//! ticket query (ticket number by `HEADER X-Ticket-Number`, customer numbers by `HEADER
//! X-Ticket-Customer` as a comma or semicolon list, SUBJECT, BODY/TEXT through the full-text
//! index, FROM/TO by e-mail address); flags, keywords, dates, sizes and sets are read from
//! the open folder. Other folders are searched in their messages' bytes.
use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{AString, Tag, Vec1};
use imap_next::imap_types::response::Data;
use imap_next::imap_types::search::SearchKey;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::fetch::contains;
use crate::core::ticket_message;
use crate::mailbox::message::header_fields;
use crate::mailbox::view::{Message, Source};
use crate::store::TicketQuery;

fn text(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).into_owned()
}

/// Keys answered from the messages' content (one store query or scan each).
fn is_content(key: &SearchKey<'_>) -> bool {
    matches!(
        key,
        SearchKey::Bcc(_)
            | SearchKey::Body(_)
            | SearchKey::Cc(_)
            | SearchKey::From(_)
            | SearchKey::Header(..)
            | SearchKey::Subject(_)
            | SearchKey::Text(_)
            | SearchKey::To(_)
    )
}

fn content_keys<'k, 'a>(key: &'k SearchKey<'a>, out: &mut Vec<&'k SearchKey<'a>>) {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().for_each(|k| content_keys(k, out)),
        SearchKey::Not(k) => content_keys(k, out),
        SearchKey::Or(a, b) => {
            content_keys(a, out);
            content_keys(b, out);
        }
        k if is_content(k) => out.push(k),
        _ => {}
    }
}

/// Splits a list as agents type it: commas, semicolons or spaces.
fn list(s: &str) -> Vec<String> {
    s.split([',', ';', ' '])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The ticket query a content key stands for, on top of the folder's; `None` when it is
/// answered by scanning the messages' headers instead.
fn ticket_query(key: &SearchKey<'_>, folder: &TicketQuery) -> Option<TicketQuery> {
    let mut q = folder.clone();
    match key {
        SearchKey::Header(name, value) => {
            let name = text(name).to_ascii_lowercase();
            let value = text(value);
            match name.as_str() {
                "x-ticket-number" => {
                    // A number that does not parse matches nothing (never every ticket).
                    q.numbers = list(&value)
                        .iter()
                        .map(|n| n.trim_start_matches('#').parse().unwrap_or(-1))
                        .collect();
                    if q.numbers.is_empty() {
                        q.numbers = vec![-1];
                    }
                }
                "x-ticket-customer" => {
                    q.customers = list(&value);
                    if q.customers.is_empty() {
                        return None;
                    }
                }
                "message-id" => {
                    let v = ticket_message::parse_message_id(value.trim())?;
                    q.numbers = vec![v.number];
                }
                _ => return None,
            }
        }
        SearchKey::Subject(s) => q.subjects.push(text(s)),
        SearchKey::Body(s) | SearchKey::Text(s) => {
            let words: Vec<String> = text(s).split_whitespace().map(str::to_string).collect();
            if words.is_empty() {
                return Some(q);
            }
            q.text.extend(words);
        }
        SearchKey::From(s) if text(s).contains('@') => q.emails.push(text(s)),
        _ => return None,
    }
    Some(q)
}

/// Whether the header has the field `name` with `needle` in its value (any case).
fn header_has(header: &[u8], name: &str, needle: &str) -> bool {
    let lines = header_fields(header, &[name.as_bytes()], false);
    let value = String::from_utf8_lossy(&lines).to_lowercase();
    let value = value
        .split_once(':')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    !lines.is_empty() && value.contains(&needle.to_lowercase())
}

fn header_key(key: &SearchKey<'_>) -> Option<(String, String)> {
    Some(match key {
        SearchKey::Bcc(s) => ("Bcc".into(), text(s)),
        SearchKey::Cc(s) => ("Cc".into(), text(s)),
        SearchKey::From(s) => ("From".into(), text(s)),
        SearchKey::To(s) => ("To".into(), text(s)),
        SearchKey::Subject(s) => ("Subject".into(), text(s)),
        SearchKey::Header(n, v) => (text(n), text(v)),
        _ => return None,
    })
}

fn day(d: &imap_next::imap_types::datetime::NaiveDate) -> i64 {
    d.as_ref()
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp())
}

/// Evaluates a key for one message; `content` holds the UIDs each content key matched,
/// in the order `content_keys` lists them.
fn eval(
    key: &SearchKey<'_>,
    m: &Message,
    seq: u32,
    last: (u32, u32),
    content: &mut std::slice::Iter<'_, HashSet<u32>>,
) -> bool {
    use SearchKey as K;
    let date = m.internal_date;
    match key {
        K::And(keys) => {
            // Every key is evaluated so `content` stays in step.
            let results: Vec<bool> = keys
                .as_ref()
                .iter()
                .map(|k| eval(k, m, seq, last, content))
                .collect();
            results.into_iter().all(|b| b)
        }
        K::Or(a, b) => {
            let a = eval(a, m, seq, last, content);
            let b = eval(b, m, seq, last, content);
            a || b
        }
        K::Not(k) => !eval(k, m, seq, last, content),
        k if is_content(k) => content.next().is_some_and(|set| set.contains(&m.uid)),
        K::SequenceSet(set) => contains(set, seq, last.0),
        K::Uid(set) => contains(set, m.uid, last.1),
        K::All => true,
        K::Answered => m.flags.answered,
        K::Unanswered => !m.flags.answered,
        K::Deleted => m.flags.deleted,
        K::Undeleted => !m.flags.deleted,
        K::Draft => m.flags.draft,
        K::Undraft => !m.flags.draft,
        K::Flagged => m.flags.flagged,
        K::Unflagged => !m.flags.flagged,
        K::Seen | K::Old => m.flags.seen || matches!(key, K::Old),
        K::Unseen => !m.flags.seen,
        K::New | K::Recent => false,
        K::Keyword(k) => m
            .flags
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        K::Unkeyword(k) => !m
            .flags
            .keywords
            .iter()
            .any(|x| x.eq_ignore_ascii_case(k.as_ref())),
        K::Before(d) | K::SentBefore(d) => date < day(d),
        K::On(d) | K::SentOn(d) => (day(d)..day(d) + 86_400).contains(&date),
        K::Since(d) | K::SentSince(d) => date >= day(d),
        K::Larger(n) => m.size.is_some_and(|s| s > u64::from(*n)),
        K::Smaller(n) => m.size.is_some_and(|s| s < u64::from(*n)),
        _ => false,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn search(
        &mut self,
        tag: Tag<'static>,
        criteria: Vec1<SearchKey<'static>>,
        uid: bool,
    ) {
        let (Some(sel), Some(agent)) = (self.selected.as_ref(), self.agent.clone()) else {
            return;
        };
        let messages = sel.messages.clone();
        let folder = sel.folder.clone();
        let key = match criteria.as_ref() {
            [one] => one.clone(),
            _ => SearchKey::And(criteria),
        };
        let mut leaves = Vec::new();
        content_keys(&key, &mut leaves);
        let catalog = match self.catalog().await {
            Ok(c) => c,
            Err(e) => return self.refuse(tag, "cannot search", &e),
        };
        let folder_query = catalog.ticket_query(&folder, &agent, crate::store::now());
        let mut results: Vec<HashSet<u32>> = Vec::with_capacity(leaves.len());
        // Headers of the folder's messages, read once if a key needs them.
        let mut headers: Option<Vec<(u32, Vec<u8>)>> = None;
        for leaf in &leaves {
            if let Some(q) = folder_query.as_ref().and_then(|fq| ticket_query(leaf, fq)) {
                match self.mailbox.store().folder_tickets(&q).await {
                    Ok(found) => results.push(found.iter().map(|t| t.uid).collect()),
                    Err(e) => return self.refuse(tag, "cannot search", &e),
                }
                continue;
            }
            if headers.is_none() {
                match self.message_headers(&agent, &messages).await {
                    Ok(h) => headers = Some(h),
                    Err(e) => return self.refuse(tag, "cannot search", &e),
                }
            }
            let scanned = headers.as_deref().unwrap_or_default();
            let set = match (header_key(leaf), leaf) {
                (Some((name, needle)), _) => scanned
                    .iter()
                    .filter(|(_, h)| header_has(h, &name, &needle))
                    .map(|(u, _)| *u)
                    .collect(),
                // BODY/TEXT outside ticket folders: the message's bytes.
                (None, SearchKey::Body(s) | SearchKey::Text(s)) => {
                    let needle = text(s).to_lowercase();
                    let mut set = HashSet::new();
                    for m in &messages {
                        if let Ok(Some(b)) = self.mailbox.bytes(&agent, m).await
                            && String::from_utf8_lossy(&b).to_lowercase().contains(&needle)
                        {
                            set.insert(m.uid);
                        }
                    }
                    set
                }
                _ => HashSet::new(),
            };
            results.push(set);
        }
        let last = (messages.len() as u32, messages.last().map_or(0, |m| m.uid));
        let mut found = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let mut content = results.iter();
            if eval(&key, m, i as u32 + 1, last, &mut content) {
                let n = if uid { m.uid } else { i as u32 + 1 };
                found.extend(NonZeroU32::new(n));
            }
        }
        self.server.enqueue_data(Data::Search(found));
        self.ok(tag, "SEARCH completed");
    }

    /// (UID, header block) of each message: tickets' from their rows, others from their bytes.
    async fn message_headers(
        &mut self,
        agent: &crate::core::model::Agent,
        messages: &[Message],
    ) -> Result<Vec<(u32, Vec<u8>)>, crate::store::StoreError> {
        let tickets: Vec<i64> = messages
            .iter()
            .filter_map(|m| match m.source {
                Source::Ticket(id) => Some(id),
                _ => None,
            })
            .collect();
        let mut headers = self.mailbox.headers(&tickets).await?;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let header = match m.source {
                Source::Ticket(id) => headers
                    .remove(&id)
                    .map(String::into_bytes)
                    .unwrap_or_default(),
                _ => match self.mailbox.bytes(agent, m).await {
                    Ok(Some(b)) => {
                        let end = b
                            .windows(4)
                            .position(|w| w == b"\r\n\r\n")
                            .map_or(b.len(), |p| p + 4);
                        b[..end].to_vec()
                    }
                    _ => Vec::new(),
                },
            };
            out.push((m.uid, header));
        }
        Ok(out)
    }
}
