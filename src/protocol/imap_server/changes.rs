//! What a client changes: STORE (flags and keywords become the ticket's priority, tags and
//! billable flag), COPY and MOVE (into a queue, status, tag, INBOX, Unassigned or Trash
//! folder they change the ticket; into Drafts/Sent/Trash they keep a copy), EXPUNGE.
//! Tickets are never deleted by a client.
use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{Tag, Vec1};
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_next::imap_types::mailbox::Mailbox as WireMailbox;
use imap_next::imap_types::response::{Code, Data};
use imap_next::imap_types::sequence::SequenceSet;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::fetch::select;
use super::folders::wire_flags;
use crate::core::model::{Agent, Priority};
use crate::mailbox::folder::{Folder, Own};
use crate::mailbox::view::{self, Flags, Source};
use crate::store::{Actor, TicketEdit};

fn actor(agent: &Agent) -> Actor {
    Actor {
        agent_id: Some(agent.id),
        name: agent.login.clone(),
    }
}

/// The ticket changes that turn a message's flags `old` into `new`. `tags` are the
/// defined tags (a keyword stands for the tag it is made from).
pub(super) fn edits_for(old: &Flags, new: &Flags, tags: &[String]) -> Vec<TicketEdit> {
    let has = |f: &Flags, k: &str| f.keywords.iter().any(|x| x.eq_ignore_ascii_case(k));
    let priority = |f: &Flags| {
        if f.flagged || has(f, view::KEYWORD_PRIORITY_HIGH) {
            Priority::High
        } else if has(f, view::KEYWORD_PRIORITY_MEDIUM) {
            Priority::Medium
        } else {
            Priority::Low
        }
    };
    let mut edits = Vec::new();
    // \Flagged and the priority keywords say the same; whichever the client changed counts.
    let flagged_changed = old.flagged != new.flagged;
    let new_priority = if flagged_changed {
        if new.flagged {
            Priority::High
        } else if has(new, view::KEYWORD_PRIORITY_MEDIUM) {
            Priority::Medium
        } else {
            Priority::Low
        }
    } else {
        let mut without_flag = new.clone();
        without_flag.flagged = false;
        priority(&without_flag)
    };
    if new_priority != priority(old) {
        edits.push(TicketEdit::Priority(new_priority));
    }
    if has(old, view::KEYWORD_BILLABLE) != has(new, view::KEYWORD_BILLABLE) {
        edits.push(TicketEdit::Billable(has(new, view::KEYWORD_BILLABLE)));
    }
    for tag in tags {
        let k = view::tag_keyword(tag);
        match (has(old, &k), has(new, &k)) {
            (false, true) => edits.push(TicketEdit::AddTag(tag.clone())),
            (true, false) => edits.push(TicketEdit::RemoveTag(tag.clone())),
            _ => {}
        }
    }
    edits
}

fn apply(kind: StoreType, current: &Flags, given: &Flags) -> Flags {
    match kind {
        StoreType::Replace => given.clone(),
        StoreType::Add => {
            let mut f = current.clone();
            f.seen |= given.seen;
            f.answered |= given.answered;
            f.flagged |= given.flagged;
            f.deleted |= given.deleted;
            f.draft |= given.draft;
            for k in &given.keywords {
                if !f.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)) {
                    f.keywords.push(k.clone());
                }
            }
            f
        }
        StoreType::Remove => {
            let mut f = current.clone();
            f.seen &= !given.seen;
            f.answered &= !given.answered;
            f.flagged &= !given.flagged;
            f.deleted &= !given.deleted;
            f.draft &= !given.draft;
            f.keywords
                .retain(|k| !given.keywords.iter().any(|x| x.eq_ignore_ascii_case(k)));
            f
        }
    }
}

/// On a ticket's message a client changes none of these: `\Answered` follows the
/// conversation, `\Draft` is never set, the delivery block is the gateway's.
fn keep_conversation_flags(old: &Flags, new: &mut Flags) {
    new.answered = old.answered;
    new.draft = false;
    new.keywords.retain(|k| {
        !k.eq_ignore_ascii_case(view::KEYWORD_DELIVERY_BLOCK)
            || old.keywords.iter().any(|x| x.eq_ignore_ascii_case(k))
    });
}

/// Keywords that stand for nothing are not kept on a ticket's message.
fn keep_known_keywords(new: &mut Flags, tags: &[String]) {
    let known: HashSet<String> = tags
        .iter()
        .map(|t| view::tag_keyword(t).to_lowercase())
        .chain(
            [
                view::KEYWORD_PRIORITY_HIGH,
                view::KEYWORD_PRIORITY_MEDIUM,
                view::KEYWORD_BILLABLE,
                view::KEYWORD_DELIVERY_BLOCK,
            ]
            .map(str::to_string),
        )
        .collect();
    new.keywords.retain(|k| known.contains(&k.to_lowercase()));
}

/// What a STORE did to the messages it changed: `\Seen` set and cleared (index, ticket id
/// or 0, UID), the tickets it changed (id, seen), and the new flags to answer with.
#[derive(Default)]
struct Stored {
    seen: Vec<(usize, i64, u32)>,
    unseen: Vec<(usize, i64, u32)>,
    changed_tickets: Vec<(i64, bool)>,
    answers: Vec<(usize, u32, Flags)>,
}

impl Stored {
    fn note(&mut self, index: usize, m: &view::Message, new: Flags) {
        if new.seen != m.flags.seen {
            let ticket = match m.source {
                Source::Ticket(id) => id,
                _ => 0,
            };
            if new.seen {
                self.seen.push((index, ticket, m.uid));
            } else {
                self.unseen.push((index, ticket, m.uid));
            }
        }
        self.answers.push((index, m.uid, new));
    }
}

/// What a ticket's move or copy from `source` into `dest` changes; `None` where the
/// destination is no ticket folder (Drafts, Sent, Trash out of an own folder).
fn edits_for_folder(
    dest: &Folder,
    source: &Folder,
    agent: &Agent,
    is_move: bool,
) -> Option<Vec<TicketEdit>> {
    match dest {
        Folder::Inbox => Some(vec![TicketEdit::Assign(Some((
            agent.id,
            agent.login.clone(),
        )))]),
        Folder::Unassigned => Some(vec![TicketEdit::Assign(None)]),
        Folder::Queue(q) => Some(vec![TicketEdit::Queue(q.clone())]),
        Folder::Status(k) => Some(vec![TicketEdit::Status(k.clone())]),
        Folder::Tag(t) => {
            let mut e = vec![TicketEdit::AddTag(t.clone())];
            if is_move
                && let Folder::Tag(from) = source
                && from != t
            {
                e.push(TicketEdit::RemoveTag(from.clone()));
            }
            Some(e)
        }
        Folder::Own(Own::Trash) if source.shows_tickets() => Some(vec![TicketEdit::Status(
            crate::core::model::status_key::CLOSED.into(),
        )]),
        _ => None,
    }
}

/// A FETCH response carrying a message's flags (and its UID when the command named UIDs).
fn flags_fetch(index: usize, uid: Option<u32>, flags: &Flags) -> Data<'static> {
    let mut items = vec![MessageDataItem::Flags(
        wire_flags(flags).into_iter().map(FlagFetch::Flag).collect(),
    )];
    if let Some(uid) = uid {
        items.push(MessageDataItem::Uid(
            NonZeroU32::new(uid).expect("UIDs are not zero"),
        ));
    }
    Data::Fetch {
        seq: NonZeroU32::new(index as u32 + 1).expect("not zero"),
        items: Vec1::try_from(items).expect("not empty"),
    }
}

/// A store failure with what it stopped, for the client's NO.
type Failed = (&'static str, crate::store::StoreError);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn store_flags(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'static>],
        uid: bool,
    ) {
        let (Some(sel), Some(agent)) = (self.selected.as_ref(), self.agent.clone()) else {
            return;
        };
        if sel.read_only {
            return self.no(tag, "this folder is read-only");
        }
        let indices = select(&sel.messages, set, uid);
        let words: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let given = Flags::from_words(&words);
        let tags = match self.mailbox.store().tags().await {
            Ok(t) => t,
            Err(e) => return self.refuse(tag, "cannot change flags", &e),
        };
        let mut stored = Stored::default();
        for index in indices {
            let Some(m) = self
                .selected
                .as_ref()
                .and_then(|s| s.messages.get(index))
                .cloned()
            else {
                continue;
            };
            let new = apply(kind, &m.flags, &given);
            let new = match self.store_one(&agent, &m, new, &tags, &mut stored).await {
                Ok(Some(new)) => new,
                Ok(None) => continue,
                Err((action, e)) => return self.refuse(tag, action, &e),
            };
            if let Some(sel) = self.selected.as_mut()
                && let Some(slot) = sel.messages.get_mut(index)
            {
                slot.flags = new.clone();
            }
            stored.note(index, &m, new);
        }
        self.remember_seen(&stored.seen, true).await;
        self.remember_seen(&stored.unseen, false).await;
        if response == StoreResponse::Answer {
            for (index, message_uid, flags) in &stored.answers {
                let data = flags_fetch(*index, uid.then_some(*message_uid), flags);
                self.server.enqueue_data(data);
            }
        }
        self.relist(&stored.changed_tickets).await;
        self.ok(tag, "STORE completed");
    }

    /// Stores `new` as a message's flags: an own message keeps them, a ticket's become
    /// ticket changes. The flags the message shows now; `None` for a message that has none
    /// of its own (a template, the statistics).
    async fn store_one(
        &self,
        agent: &Agent,
        m: &view::Message,
        mut new: Flags,
        tags: &[String],
        stored: &mut Stored,
    ) -> Result<Option<Flags>, Failed> {
        let store = self.mailbox.store();
        match m.source {
            Source::Own => store
                .own_set_flags(agent.id, m.uid, &new.to_words())
                .await
                .map_err(|e| ("cannot change flags", e))?,
            Source::Ticket(id) => {
                keep_conversation_flags(&m.flags, &mut new);
                let edits = edits_for(&m.flags, &new, tags);
                if !edits.is_empty() {
                    store
                        .mailbox_edit(id, &edits, &actor(agent))
                        .await
                        .map_err(|e| ("cannot change the ticket", e))?;
                    stored.changed_tickets.push((id, new.seen));
                }
                keep_known_keywords(&mut new, tags);
            }
            Source::Template(_) | Source::Statistics(_) => return Ok(None),
        }
        Ok(Some(new))
    }

    /// Gives the tickets this session changed their new UIDs at once, and keeps `\Seen` on
    /// the new message where the agent had seen the old one: their own change is no news.
    async fn relist(&mut self, changed: &[(i64, bool)]) {
        if changed.is_empty() {
            return;
        }
        while let Ok(n) = self.mailbox.list_changed(2000).await {
            if n == 0 {
                break;
            }
        }
        let seen: Vec<i64> = changed
            .iter()
            .filter(|(_, s)| *s)
            .map(|(id, _)| *id)
            .collect();
        if seen.is_empty() {
            return;
        }
        let Some(agent_id) = self.agent.as_ref().map(|a| a.id) else {
            return;
        };
        let store = self.mailbox.store();
        match store.ticket_uids(&seen).await {
            Ok(uids) => {
                let pairs: Vec<(i64, u32)> = uids.into_iter().collect();
                if let Err(e) = store.mailbox_set_seen(agent_id, &pairs, true).await {
                    tracing::warn!(error = %e, "IMAP: cannot keep \\Seen");
                }
            }
            Err(e) => tracing::warn!(error = %e, "IMAP: cannot read new UIDs"),
        }
    }

    pub(super) async fn copy(
        &mut self,
        tag: Tag<'static>,
        set: &SequenceSet,
        mailbox: &WireMailbox<'static>,
        uid: bool,
        is_move: bool,
    ) {
        let (Some(sel), Some(agent)) = (self.selected.as_ref(), self.agent.clone()) else {
            return;
        };
        if is_move && sel.read_only {
            return self.no(tag, "this folder is read-only");
        }
        let source = sel.folder.clone();
        let indices = select(&sel.messages, set, uid);
        let messages: Vec<(usize, view::Message)> = indices
            .iter()
            .filter_map(|&i| sel.messages.get(i).map(|m| (i, m.clone())))
            .collect();
        let Some(name) = super::folders::wire_name(mailbox) else {
            return self.no_code(tag, Some(Code::TryCreate), "no such folder");
        };
        let catalog = match self.catalog().await {
            Ok(c) => c,
            Err(e) => return self.refuse(tag, "cannot read the folders", &e),
        };
        let Some(dest) = catalog.find(&name) else {
            return self.no_code(tag, Some(Code::TryCreate), "no such folder");
        };
        let tickets_in_source = source.shows_tickets();
        if let Some(edits) = edits_for_folder(&dest, &source, &agent, is_move) {
            if !tickets_in_source {
                return self.no(tag, "only tickets can go into this folder");
            }
            if let Err(e) = self.change_tickets(&agent, &messages, &edits).await {
                return self.refuse(tag, "cannot change the ticket", &e);
            }
        } else {
            let Folder::Own(own) = dest else {
                return self.no(tag, "messages cannot go into this folder");
            };
            if is_move && tickets_in_source {
                return self.no(tag, "tickets stay in the helpdesk: copy them instead");
            }
            if let Err((action, e)) = self.keep_copies(&agent, own, &messages, is_move).await {
                return self.refuse(tag, action, &e);
            }
        }
        if is_move {
            self.expunge_moved(&messages);
        }
        self.ok(
            tag,
            if is_move {
                "MOVE completed"
            } else {
                "COPY completed"
            },
        );
    }

    /// Applies `edits` to the tickets among `messages`, then relists the changed ones.
    async fn change_tickets(
        &mut self,
        agent: &Agent,
        messages: &[(usize, view::Message)],
        edits: &[TicketEdit],
    ) -> Result<(), crate::store::StoreError> {
        let mut changed = Vec::new();
        for (_, m) in messages {
            if let Source::Ticket(id) = m.source {
                self.mailbox
                    .store()
                    .mailbox_edit(id, edits, &actor(agent))
                    .await?;
                changed.push((id, m.flags.seen));
            }
        }
        self.relist(&changed).await;
        Ok(())
    }

    /// Keeps copies of `messages` in the agent's own folder; a move removes the originals.
    async fn keep_copies(
        &mut self,
        agent: &Agent,
        own: Own,
        messages: &[(usize, view::Message)],
        is_move: bool,
    ) -> Result<(), Failed> {
        let store = self.mailbox.store().clone();
        for (_, m) in messages {
            let bytes = match self.mailbox.bytes(agent, m).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => return Err(("cannot read a message to copy", e)),
            };
            let mut flags = m.flags.clone();
            flags.deleted = false;
            store
                .own_append(
                    agent.id,
                    own.as_str(),
                    &flags.to_words(),
                    m.internal_date,
                    &bytes,
                )
                .await
                .map_err(|e| ("cannot copy", e))?;
        }
        if is_move {
            let uids: Vec<u32> = messages.iter().map(|(_, m)| m.uid).collect();
            store
                .own_delete(agent.id, &uids)
                .await
                .map_err(|e| ("cannot remove the moved messages", e))?;
        }
        Ok(())
    }

    /// The moved messages leave this folder (a changed ticket comes back with a new UID when
    /// it still belongs here).
    fn expunge_moved(&mut self, messages: &[(usize, view::Message)]) {
        for (index, _) in messages.iter().rev() {
            if let Some(sel) = self.selected.as_mut()
                && *index < sel.messages.len()
            {
                sel.messages.remove(*index);
                self.server.enqueue_data(Data::Expunge(
                    NonZeroU32::new(*index as u32 + 1).expect("not zero"),
                ));
            }
        }
    }

    /// EXPUNGE (and UID EXPUNGE): removes messages marked `\Deleted` from an own folder. In a
    /// ticket folder nothing is removed (tickets are never deleted: move one to Trash to close
    /// it); the marks are taken back.
    pub(super) async fn expunge(&mut self, tag: Tag<'static>, uids: Option<&SequenceSet>) {
        let (Some(sel), Some(agent)) = (self.selected.as_ref(), self.agent.clone()) else {
            return;
        };
        if sel.read_only {
            return self.no(tag, "this folder is read-only");
        }
        let max = sel.max_uid();
        let marked: Vec<usize> = sel
            .messages
            .iter()
            .enumerate()
            .filter(|(_, m)| m.flags.deleted)
            .filter(|(_, m)| uids.is_none_or(|set| super::fetch::contains(set, m.uid, max)))
            .map(|(i, _)| i)
            .collect();
        if let Folder::Own(_) = sel.folder {
            let gone: Vec<u32> = marked.iter().map(|&i| sel.messages[i].uid).collect();
            if let Err(e) = self.mailbox.store().own_delete(agent.id, &gone).await {
                return self.refuse(tag, "cannot expunge", &e);
            }
            for &i in marked.iter().rev() {
                if let Some(sel) = self.selected.as_mut() {
                    sel.messages.remove(i);
                }
                self.server.enqueue_data(Data::Expunge(
                    NonZeroU32::new(i as u32 + 1).expect("not zero"),
                ));
            }
            self.ok(tag, "EXPUNGE completed");
            return;
        }
        for &i in &marked {
            if let Some(m) = self.selected.as_mut().and_then(|s| s.messages.get_mut(i)) {
                m.flags.deleted = false;
                let items = vec![
                    MessageDataItem::Uid(NonZeroU32::new(m.uid).expect("UIDs are not zero")),
                    MessageDataItem::Flags(
                        wire_flags(&m.flags)
                            .into_iter()
                            .map(FlagFetch::Flag)
                            .collect(),
                    ),
                ];
                self.server.enqueue_data(Data::Fetch {
                    seq: NonZeroU32::new(i as u32 + 1).expect("not zero"),
                    items: Vec1::try_from(items).expect("not empty"),
                });
            }
        }
        self.ok(
            tag,
            "EXPUNGE completed: tickets are not deleted (move one to Trash to close it)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(words: &[&str]) -> Flags {
        Flags::from_words(&words.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_keywords_become_ticket_changes() {
        let tags = vec!["vip".to_string(), "Rückruf".to_string()];
        assert_eq!(
            edits_for(&flags(&[]), &flags(&["\\Flagged"]), &tags),
            vec![TicketEdit::Priority(Priority::High)]
        );
        assert_eq!(
            edits_for(
                &flags(&["\\Flagged", "priority-high"]),
                &flags(&["priority-high"]),
                &tags
            ),
            vec![TicketEdit::Priority(Priority::Low)]
        );
        assert_eq!(
            edits_for(&flags(&[]), &flags(&["priority-medium"]), &tags),
            vec![TicketEdit::Priority(Priority::Medium)]
        );
        assert_eq!(
            edits_for(
                &flags(&["\\Seen"]),
                &flags(&["\\Seen", "VIP", "R_ckruf", "billable"]),
                &tags
            ),
            vec![
                TicketEdit::Billable(true),
                TicketEdit::AddTag("vip".into()),
                TicketEdit::AddTag("Rückruf".into())
            ]
        );
        assert_eq!(
            edits_for(&flags(&["vip"]), &flags(&["$Forwarded", "NonJunk"]), &tags),
            vec![TicketEdit::RemoveTag("vip".into())]
        );
        assert!(edits_for(&flags(&[]), &flags(&["\\Seen", "\\Deleted"]), &tags).is_empty());
    }
}
