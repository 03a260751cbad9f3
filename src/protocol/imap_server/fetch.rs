//! FETCH: answered in batches, so a `1:*` over 100,000 tickets streams out with bounded
//! memory while commands the client sent ahead wait their turn. A ticket's header comes from
//! the ticket row alone; the whole message is rendered only for items that need its body.
use std::collections::HashMap;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{NString, Tag, Vec1};
use imap_next::imap_types::fetch::{
    Macro, MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::response::Data;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::folders::{internal_date, wire_flags};
use crate::core::model::Agent;
use crate::mailbox::message::{Anatomy, header_envelope, header_fields, istring, partial};
use crate::mailbox::view::{Flags, Message, Source};
use crate::store::StoreError;

/// Messages answered per turn of the session loop.
const BATCH: usize = 200;

pub(super) struct Job {
    tag: Tag<'static>,
    /// Indices into the open folder's messages, in order.
    indices: Vec<usize>,
    next: usize,
    items: Vec<MessageDataItemName<'static>>,
}

/// Whether `value` is in the set, `*` standing for `largest`.
pub(super) fn contains(set: &SequenceSet, value: u32, largest: u32) -> bool {
    let expand = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(x) => expand(x) == value,
        Sequence::Range(a, b) => {
            let (a, b) = (expand(a), expand(b));
            a.min(b) <= value && value <= a.max(b)
        }
    })
}

/// The indices of the messages a sequence set (or UID set) names, in order.
pub(super) fn select(messages: &[Message], set: &SequenceSet, uid: bool) -> Vec<usize> {
    let Some(last) = messages.last() else {
        return Vec::new();
    };
    if uid {
        messages
            .iter()
            .enumerate()
            .filter(|(_, m)| contains(set, m.uid, last.uid))
            .map(|(i, _)| i)
            .collect()
    } else {
        let n = messages.len() as u32;
        (0..messages.len())
            .filter(|&i| contains(set, i as u32 + 1, n))
            .collect()
    }
}

fn expand(names: MacroOrMessageDataItemNames<'static>) -> Vec<MessageDataItemName<'static>> {
    use MessageDataItemName as N;
    match names {
        MacroOrMessageDataItemNames::Macro(m) => match m {
            Macro::Fast => vec![N::Flags, N::InternalDate, N::Rfc822Size],
            Macro::All => vec![N::Flags, N::InternalDate, N::Rfc822Size, N::Envelope],
            Macro::Full => vec![
                N::Flags,
                N::InternalDate,
                N::Rfc822Size,
                N::Envelope,
                N::Body,
            ],
            _ => vec![N::Flags, N::InternalDate, N::Rfc822Size],
        },
        MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
    }
}

/// A section answered from the header alone.
fn header_only(section: &Option<Section<'_>>) -> bool {
    matches!(
        section,
        Some(
            Section::Header(None)
                | Section::HeaderFields(None, _)
                | Section::HeaderFieldsNot(None, _)
        )
    )
}

/// What answering the items takes: (the header, the whole message).
fn needs(items: &[MessageDataItemName<'_>], size_known: bool) -> (bool, bool) {
    use MessageDataItemName as N;
    let mut header = false;
    let mut full = false;
    for i in items {
        match i {
            N::Envelope | N::Rfc822Header => header = true,
            N::BodyExt { section, .. } if header_only(section) => header = true,
            N::Body | N::BodyStructure | N::Rfc822 | N::Rfc822Text | N::BodyExt { .. } => {
                full = true
            }
            N::Rfc822Size if !size_known => full = true,
            _ => {}
        }
    }
    (header, full)
}

/// Items that mark the message `\Seen` (RFC 3501: BODY[…] without PEEK, RFC822, RFC822.TEXT).
fn sets_seen(items: &[MessageDataItemName<'_>]) -> bool {
    items.iter().any(|i| {
        matches!(
            i,
            MessageDataItemName::BodyExt { peek: false, .. }
                | MessageDataItemName::Rfc822
                | MessageDataItemName::Rfc822Text
        )
    })
}

/// A header-only section (see [`header_only`]) from the header block alone.
fn header_section(header: &[u8], section: &Option<Section<'_>>) -> Vec<u8> {
    let names = |n: &Vec1<imap_next::imap_types::core::AString<'_>>| -> Vec<Vec<u8>> {
        n.as_ref().iter().map(|a| a.as_ref().to_vec()).collect()
    };
    match section {
        Some(Section::HeaderFields(None, n)) | Some(Section::HeaderFieldsNot(None, n)) => {
            let owned = names(n);
            let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
            header_fields(header, &refs, not)
        }
        _ => header.to_vec(),
    }
}

fn body(bytes: &[u8]) -> NString<'static> {
    NString(Some(istring(bytes)))
}

/// One message of a FETCH with what was read for it: the answer's items come from here.
struct Fetched<'a> {
    message: &'a Message,
    /// The flags after this FETCH (it may set `\Seen`).
    flags: Flags,
    /// The header block (empty when no item needs it).
    header: Vec<u8>,
    /// The whole message, when an item needs its body.
    full: Option<&'a [u8]>,
    full_anatomy: Option<Anatomy<'a>>,
}

impl Fetched<'_> {
    /// The answer to `names`, in their order; the flags added when this FETCH changed them
    /// and the client did not ask for them.
    fn items(&self, names: &[MessageDataItemName<'static>]) -> Vec<MessageDataItem<'static>> {
        let mut out: Vec<MessageDataItem<'static>> =
            names.iter().filter_map(|n| self.item(n)).collect();
        if self.flags != self.message.flags && !names.contains(&MessageDataItemName::Flags) {
            out.push(self.flags_item());
        }
        out
    }

    fn flags_item(&self) -> MessageDataItem<'static> {
        MessageDataItem::Flags(
            wire_flags(&self.flags)
                .into_iter()
                .map(FlagFetch::Flag)
                .collect(),
        )
    }

    fn item(&self, name: &MessageDataItemName<'static>) -> Option<MessageDataItem<'static>> {
        use MessageDataItemName as N;
        let m = self.message;
        Some(match name {
            N::Uid => MessageDataItem::Uid(NonZeroU32::new(m.uid).expect("UIDs are not zero")),
            N::Flags => self.flags_item(),
            N::InternalDate => MessageDataItem::InternalDate(internal_date(m.internal_date)),
            N::Rfc822Size => {
                let size = m
                    .size
                    .or_else(|| self.full.map(|f| f.len() as u64))
                    .unwrap_or(0);
                MessageDataItem::Rfc822Size(size.min(u32::MAX as u64) as u32)
            }
            N::Envelope => MessageDataItem::Envelope(header_envelope(&self.header)),
            N::Body => MessageDataItem::Body(self.structure(false)),
            N::BodyStructure => MessageDataItem::BodyStructure(self.structure(true)),
            N::BodyExt {
                section,
                partial: range,
                ..
            } => MessageDataItem::BodyExt {
                section: section.clone(),
                origin: range.map(|(o, _)| o),
                data: body(&self.section(section, *range)),
            },
            N::Rfc822 => MessageDataItem::Rfc822(body(self.full.unwrap_or(&[]))),
            N::Rfc822Header => MessageDataItem::Rfc822Header(body(&self.header)),
            N::Rfc822Text => {
                let text = self
                    .full_anatomy
                    .as_ref()
                    .map(|a| a.section(Some(&Section::Text(None))).into_owned())
                    .unwrap_or_default();
                MessageDataItem::Rfc822Text(body(&text))
            }
            // Not announced (no BINARY capability): left out.
            _ => return None,
        })
    }

    /// BODY or BODYSTRUCTURE: from the whole message, or from the header alone (only for
    /// the rare items a header answers beyond ENVELOPE).
    fn structure(&self, extended: bool) -> imap_next::imap_types::body::BodyStructure<'static> {
        match &self.full_anatomy {
            Some(a) => a.body_structure(extended),
            None => Anatomy::parse(&self.header).body_structure(extended),
        }
    }

    /// BODY[section]<origin.length>.
    fn section(
        &self,
        section: &Option<Section<'static>>,
        range: Option<(u32, NonZeroU32)>,
    ) -> Vec<u8> {
        let data = match (&self.full_anatomy, header_only(section)) {
            (Some(a), _) => a.section(section.as_ref()).into_owned(),
            (None, true) => header_section(&self.header, section),
            (None, false) => Vec::new(),
        };
        match range {
            Some((origin, len)) => partial(&data, origin, Some(len.get())).to_vec(),
            None => data,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn fetch(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        let indices = select(&sel.messages, set, uid);
        let mut items = expand(names);
        if uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        self.job = Some(Job {
            tag,
            indices,
            next: 0,
            items,
        });
        self.fetch_batch().await;
    }

    /// Answers the next batch of the FETCH in progress; the tagged OK after the last.
    pub(super) async fn fetch_batch(&mut self) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        let (Some(sel), Some(agent)) = (self.selected.as_ref(), self.agent.clone()) else {
            return;
        };
        let end = (job.next + BATCH).min(job.indices.len());
        let batch: Vec<(usize, Message)> = job.indices[job.next..end]
            .iter()
            .filter_map(|&i| sel.messages.get(i).map(|m| (i, m.clone())))
            .collect();
        let mark_seen = sets_seen(&job.items) && !sel.read_only;
        let (want_header, _) = needs(&job.items, true);
        let mut headers = match self.ticket_headers(&batch, want_header).await {
            Ok(h) => h,
            Err(e) => return self.refuse(job.tag, "cannot read the messages", &e),
        };
        let mut newly_seen: Vec<(usize, i64, u32)> = Vec::new();
        for (index, m) in batch {
            let full = match self
                .whole_message(&agent, &m, &job.items, want_header)
                .await
            {
                Ok(full) => full,
                Err(e) => return self.refuse(job.tag, "cannot read a message", &e),
            };
            let mut flags = m.flags.clone();
            if mark_seen && !flags.seen {
                flags.seen = true;
                let ticket = match m.source {
                    Source::Ticket(id) => id,
                    _ => 0,
                };
                newly_seen.push((index, ticket, m.uid));
            }
            let header = match (&m.source, &full) {
                (Source::Ticket(id), None) => headers.remove(id).map(String::into_bytes),
                (_, Some(f)) => Some(
                    Anatomy::parse(f)
                        .section(Some(&Section::Header(None)))
                        .into_owned(),
                ),
                _ => None,
            };
            let fetched = Fetched {
                message: &m,
                flags,
                header: header.unwrap_or_default(),
                full_anatomy: full.as_deref().map(Anatomy::parse),
                full: full.as_deref(),
            };
            if let Ok(items) = Vec1::try_from(fetched.items(&job.items)) {
                let seq = NonZeroU32::new(index as u32 + 1).expect("not zero");
                self.server.enqueue_data(Data::Fetch { seq, items });
            }
        }
        if !newly_seen.is_empty() {
            self.remember_seen(&newly_seen, true).await;
        }
        job.next = end;
        if job.next >= job.indices.len() {
            self.ok(job.tag, "FETCH completed");
        } else {
            self.job = Some(job);
        }
    }

    /// The header blocks of the batch's tickets, read together from their rows, when an
    /// item needs the header.
    async fn ticket_headers(
        &self,
        batch: &[(usize, Message)],
        want_header: bool,
    ) -> Result<HashMap<i64, String>, StoreError> {
        let tickets: Vec<i64> = batch
            .iter()
            .filter_map(|(_, m)| match m.source {
                Source::Ticket(id) => Some(id),
                _ => None,
            })
            .collect();
        if want_header && !tickets.is_empty() {
            self.mailbox.headers(&tickets).await
        } else {
            Ok(HashMap::new())
        }
    }

    /// The whole message, when an item needs its body (or its header, which only a
    /// ticket has without the body).
    async fn whole_message(
        &self,
        agent: &Agent,
        m: &Message,
        items: &[MessageDataItemName<'static>],
        want_header: bool,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (_, need_full) = needs(items, m.size.is_some());
        if need_full || (want_header && !matches!(m.source, Source::Ticket(_))) {
            Ok(Some(
                self.mailbox.bytes(agent, m).await?.unwrap_or_default(),
            ))
        } else {
            Ok(None)
        }
    }

    /// Records `\Seen` set or cleared (index, ticket id or 0, UID) in the open folder and in the
    /// store: per agent for tickets, in the stored flags for own messages.
    pub(super) async fn remember_seen(&mut self, changed: &[(usize, i64, u32)], seen: bool) {
        let Some(agent_id) = self.agent.as_ref().map(|a| a.id) else {
            return;
        };
        let store = self.mailbox.store().clone();
        let mut tickets = Vec::new();
        for &(index, ticket, uid) in changed {
            let Some(m) = self
                .selected
                .as_mut()
                .and_then(|s| s.messages.get_mut(index))
            else {
                continue;
            };
            m.flags.seen = seen;
            if ticket != 0 {
                tickets.push((ticket, uid));
            } else if let Err(e) = store
                .own_set_flags(agent_id, uid, &m.flags.to_words())
                .await
            {
                tracing::warn!(error = %e, "IMAP: cannot store flags");
            }
        }
        if let Err(e) = store.mailbox_set_seen(agent_id, &tickets, seen).await {
            tracing::warn!(error = %e, "IMAP: cannot store \\Seen");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_ranges() {
        let set = SequenceSet::try_from("1:3,7,10:*").unwrap();
        assert!(contains(&set, 2, 20));
        assert!(!contains(&set, 5, 20));
        assert!(contains(&set, 7, 20));
        assert!(contains(&set, 15, 20));
        // n:* with n above the largest still names the largest (RFC 3501 §6.4.8).
        let set = SequenceSet::try_from("30:*").unwrap();
        assert!(contains(&set, 20, 20));
        assert!(!contains(&set, 19, 20));
    }
}
