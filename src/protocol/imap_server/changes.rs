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
            Err(e) => {
                tracing::warn!(error = %e, "IMAP STORE: cannot read tags");
                return self.no(tag, "cannot change flags right now");
            }
        };
        let store = self.mailbox.store().clone();
        let mut seen_changes: Vec<(usize, i64, u32)> = Vec::new();
        let mut unseen_changes: Vec<(usize, i64, u32)> = Vec::new();
        let mut changed_tickets: Vec<(i64, bool)> = Vec::new();
        let mut answers = Vec::new();
        for index in indices {
            let Some(m) = self
                .selected
                .as_ref()
                .and_then(|s| s.messages.get(index))
                .cloned()
            else {
                continue;
            };
            let mut new = apply(kind, &m.flags, &given);
            match m.source {
                Source::Own => {
                    if let Err(e) = store.own_set_flags(agent.id, m.uid, &new.to_words()).await {
                        tracing::warn!(error = %e, "IMAP STORE failed");
                        return self.no(tag, "cannot change flags right now");
                    }
                }
                Source::Ticket(id) => {
                    // \Answered and \Draft follow the conversation; the rest is the ticket's.
                    new.answered = m.flags.answered;
                    new.draft = false;
                    new.keywords.retain(|k| {
                        !k.eq_ignore_ascii_case(view::KEYWORD_DELIVERY_BLOCK)
                            || m.flags.keywords.iter().any(|x| x.eq_ignore_ascii_case(k))
                    });
                    let edits = edits_for(&m.flags, &new, &tags);
                    if !edits.is_empty() {
                        if let Err(e) = store.mailbox_edit(id, &edits, &actor(&agent)).await {
                            tracing::warn!(error = %e, "IMAP STORE could not change a ticket");
                            return self.no(tag, format!("cannot change the ticket: {e}"));
                        }
                        changed_tickets.push((id, new.seen));
                    }
                    // Keywords that stand for nothing are not kept.
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
                Source::Template(_) | Source::Statistics(_) => continue,
            }
            if new.seen != m.flags.seen {
                let ticket = match m.source {
                    Source::Ticket(id) => id,
                    _ => 0,
                };
                if new.seen {
                    seen_changes.push((index, ticket, m.uid));
                } else {
                    unseen_changes.push((index, ticket, m.uid));
                }
            }
            if let Some(sel) = self.selected.as_mut()
                && let Some(slot) = sel.messages.get_mut(index)
            {
                slot.flags = new.clone();
            }
            answers.push((index, m.uid, new));
        }
        self.remember_seen(&seen_changes, true).await;
        self.remember_seen(&unseen_changes, false).await;
        if response == StoreResponse::Answer {
            for (index, message_uid, flags) in answers {
                let mut items = vec![MessageDataItem::Flags(
                    wire_flags(&flags)
                        .into_iter()
                        .map(FlagFetch::Flag)
                        .collect(),
                )];
                if uid {
                    items.push(MessageDataItem::Uid(
                        NonZeroU32::new(message_uid).expect("UIDs are not zero"),
                    ));
                }
                self.server.enqueue_data(Data::Fetch {
                    seq: NonZeroU32::new(index as u32 + 1).expect("not zero"),
                    items: Vec1::try_from(items).expect("not empty"),
                });
            }
        }
        self.relist(&changed_tickets).await;
        self.ok(tag, "STORE completed");
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
        let Some(catalog) = self.catalog().await else {
            return self.no(tag, "folders not available right now");
        };
        let Some(dest) = catalog.find(&name) else {
            return self.no_code(tag, Some(Code::TryCreate), "no such folder");
        };
        let store = self.mailbox.store().clone();
        let tickets_in_source = source.shows_tickets();
        // What a ticket's move or copy into `dest` changes.
        let edits: Option<Vec<TicketEdit>> = match &dest {
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
                    && let Folder::Tag(from) = &source
                    && from != t
                {
                    e.push(TicketEdit::RemoveTag(from.clone()));
                }
                Some(e)
            }
            Folder::Own(Own::Trash) if tickets_in_source => Some(vec![TicketEdit::Status(
                crate::core::model::status_key::CLOSED.into(),
            )]),
            _ => None,
        };
        if let Some(edits) = edits {
            if !tickets_in_source {
                return self.no(tag, "only tickets can go into this folder");
            }
            let mut changed = Vec::new();
            for (_, m) in &messages {
                if let Source::Ticket(id) = m.source {
                    if let Err(e) = store.mailbox_edit(id, &edits, &actor(&agent)).await {
                        tracing::warn!(error = %e, "IMAP MOVE could not change a ticket");
                        return self.no(tag, format!("cannot change the ticket: {e}"));
                    }
                    changed.push((id, m.flags.seen));
                }
            }
            self.relist(&changed).await;
        } else {
            let Folder::Own(own) = dest else {
                return self.no(tag, "messages cannot go into this folder");
            };
            if is_move && tickets_in_source {
                return self.no(tag, "tickets stay in the helpdesk: copy them instead");
            }
            for (_, m) in &messages {
                let bytes = match self.mailbox.bytes(&agent, m).await {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "IMAP COPY could not read a message");
                        return self.no(tag, "cannot copy right now");
                    }
                };
                let mut flags = m.flags.clone();
                flags.deleted = false;
                if let Err(e) = store
                    .own_append(
                        agent.id,
                        own.as_str(),
                        &flags.to_words(),
                        m.internal_date,
                        &bytes,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "IMAP COPY failed");
                    return self.no(tag, "cannot copy right now");
                }
            }
            if is_move {
                let uids: Vec<u32> = messages.iter().map(|(_, m)| m.uid).collect();
                if let Err(e) = store.own_delete(agent.id, &uids).await {
                    tracing::warn!(error = %e, "IMAP MOVE could not remove the originals");
                    return self.no(tag, "cannot move right now");
                }
            }
        }
        if is_move {
            // The moved messages leave this folder (a changed ticket comes back with a new UID
            // when it still belongs here).
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
        self.ok(
            tag,
            if is_move {
                "MOVE completed"
            } else {
                "COPY completed"
            },
        );
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
                tracing::warn!(error = %e, "IMAP EXPUNGE failed");
                return self.no(tag, "cannot expunge right now");
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
