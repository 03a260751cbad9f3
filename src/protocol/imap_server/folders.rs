//! Folder commands: LIST/LSUB, STATUS, SELECT/EXAMINE, APPEND, CLOSE, and keeping an open
//! folder current (new messages, replaced tickets) for NOOP and IDLE.
use std::collections::HashSet;
use std::num::NonZeroU32;

use imap_next::imap_types::core::{Atom, IString, QuotedChar, Tag};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_next::imap_types::extensions::namespace::Namespace;
use imap_next::imap_types::fetch::MessageDataItem;
use imap_next::imap_types::flag::{Flag, FlagNameAttribute, FlagPerm};
use imap_next::imap_types::mailbox::{ListMailbox, Mailbox as WireMailbox};
use imap_next::imap_types::response::{Code, Data};
use imap_next::imap_types::status::{StatusDataItem, StatusDataItemName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::mailbox::folder::{Catalog, DELIMITER, Folder, Own, utf7};
use crate::mailbox::view::{self, Flags, Message};
use crate::store::StoreError;

/// The open folder.
pub(super) struct Selected {
    pub folder: Folder,
    pub read_only: bool,
    /// In sequence order (sequence number = index + 1), UIDs ascending.
    pub messages: Vec<Message>,
    /// The mailbox's last UID when `messages` were read: while it stays, nothing changed.
    pub last_uid: i64,
}

impl Selected {
    pub fn max_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }
}

pub(super) fn namespace() -> Data<'static> {
    Data::Namespace {
        personal: vec![Namespace {
            prefix: IString::try_from("").expect("valid"),
            delimiter: Some(QuotedChar::try_from(DELIMITER).expect("valid")),
            extensions: Vec::new(),
        }],
        other: Vec::new(),
        shared: Vec::new(),
    }
}

/// The folder name a client sent (modified UTF-7 on the wire).
pub(super) fn wire_name(m: &WireMailbox<'_>) -> Option<String> {
    match m {
        WireMailbox::Inbox => Some("INBOX".into()),
        WireMailbox::Other(o) => utf7::decode(std::str::from_utf8(o.as_ref()).ok()?),
    }
}

fn to_wire(name: &str) -> WireMailbox<'static> {
    WireMailbox::try_from(utf7::encode(name)).unwrap_or(WireMailbox::Inbox)
}

/// RFC 3501 LIST wildcards: `*` matches anything, `%` anything but the delimiter. Row by
/// row over the pattern (O(pattern × name)), so no pattern makes it slow.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // No folder name is this long; a longer pattern matches nothing.
    if pattern.len() > 1024 {
        return false;
    }
    // can[j]: the pattern so far matches name[..j].
    let mut can = vec![false; name.len() + 1];
    can[0] = true;
    for &p in pattern {
        let mut next = vec![false; name.len() + 1];
        match p {
            b'*' | b'%' => {
                let mut reach = false;
                for j in 0..=name.len() {
                    if j > 0 && p == b'%' && name[j - 1] == DELIMITER as u8 {
                        reach = false;
                    }
                    reach |= can[j];
                    next[j] = reach;
                }
            }
            c => {
                for j in 1..=name.len() {
                    next[j] = can[j - 1] && name[j - 1] == c;
                }
            }
        }
        can = next;
    }
    can[name.len()]
}

fn atom(name: &str) -> Atom<'static> {
    Atom::try_from(name.to_string()).expect("valid atom")
}

/// The flags as FETCH and STORE answers show them.
pub(super) fn wire_flags(f: &Flags) -> Vec<Flag<'static>> {
    let mut out = Vec::new();
    for (on, flag) in [
        (f.seen, Flag::Seen),
        (f.answered, Flag::Answered),
        (f.flagged, Flag::Flagged),
        (f.deleted, Flag::Deleted),
        (f.draft, Flag::Draft),
    ] {
        if on {
            out.push(flag);
        }
    }
    for k in &f.keywords {
        if let Ok(a) = Atom::try_from(k.clone()) {
            out.push(Flag::Keyword(a));
        }
    }
    out
}

pub(super) fn internal_date(at: i64) -> DateTime {
    let utc = chrono::DateTime::from_timestamp(at.max(0), 0).unwrap_or_default();
    DateTime::try_from(utc.fixed_offset())
        .unwrap_or_else(|_| DateTime::unvalidated(chrono::DateTime::UNIX_EPOCH.fixed_offset()))
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The agent's folders now. Only commands after login ask.
    pub(super) async fn catalog(&self) -> Result<Catalog, StoreError> {
        match self.agent.as_ref() {
            Some(agent) => self.mailbox.catalog(agent).await,
            None => Err(StoreError::NotFound("no agent logged in".into())),
        }
    }

    pub(super) async fn list(
        &mut self,
        tag: Tag<'static>,
        reference: &WireMailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
    ) {
        let pattern: &[u8] = match pattern {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(s) => s.as_ref(),
        };
        let reference: Vec<u8> = match reference {
            WireMailbox::Inbox => b"INBOX".to_vec(),
            WireMailbox::Other(o) => o.as_ref().to_vec(),
        };
        let delimiter = Some(QuotedChar::try_from(DELIMITER).expect("valid"));
        if pattern.is_empty() && !lsub {
            // The hierarchy delimiter and root (RFC 3501 §6.3.8).
            self.server.enqueue_data(Data::List {
                items: vec![FlagNameAttribute::Noselect],
                delimiter,
                mailbox: WireMailbox::try_from("").unwrap_or(WireMailbox::Inbox),
            });
            self.ok(tag, "LIST completed");
            return;
        }
        let catalog = match self.catalog().await {
            Ok(c) => c,
            Err(e) => return self.refuse(tag, "cannot read the folders", &e),
        };
        let mut full = reference;
        full.extend_from_slice(pattern);
        let folders = catalog.folders();
        let parents: HashSet<String> = folders
            .iter()
            .filter_map(|(n, _)| n.rsplit_once(DELIMITER).map(|(p, _)| p.to_string()))
            .collect();
        for (name, folder) in &folders {
            let wire = utf7::encode(name);
            let hit = matches(&full, wire.as_bytes())
                || (folder == &Folder::Inbox && matches(&full.to_ascii_uppercase(), b"INBOX"));
            if !hit {
                continue;
            }
            let mut items = Vec::new();
            if let Folder::Parent(_) = folder {
                items.push(FlagNameAttribute::Noselect);
            }
            items.push(FlagNameAttribute::from(atom(if parents.contains(name) {
                "HasChildren"
            } else {
                "HasNoChildren"
            })));
            let special = match folder {
                Folder::Own(Own::Drafts) => Some("Drafts"),
                Folder::Own(Own::Sent) => Some("Sent"),
                Folder::Own(Own::Trash) => Some("Trash"),
                _ => None,
            };
            if let Some(s) = special {
                items.push(FlagNameAttribute::from(atom(s)));
            }
            let mailbox = to_wire(name);
            let data = if lsub {
                Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter,
                    mailbox,
                }
            };
            self.server.enqueue_data(data);
        }
        self.ok(
            tag,
            if lsub {
                "LSUB completed"
            } else {
                "LIST completed"
            },
        );
    }

    /// The folder a client named, if the agent may see it (`None`: no such folder).
    async fn find_folder(
        &self,
        mailbox: &WireMailbox<'_>,
    ) -> Result<Option<(Catalog, Folder)>, StoreError> {
        let Some(name) = wire_name(mailbox) else {
            return Ok(None);
        };
        let catalog = self.catalog().await?;
        Ok(catalog.find(&name).map(|folder| (catalog, folder)))
    }

    async fn messages_of(
        &self,
        catalog: &Catalog,
        folder: &Folder,
    ) -> Result<Vec<Message>, StoreError> {
        match self.agent.as_ref() {
            Some(agent) => self.mailbox.messages(agent, catalog, folder).await,
            None => Err(StoreError::NotFound("no agent logged in".into())),
        }
    }

    async fn uid_validity_next(&self) -> Result<(NonZeroU32, NonZeroU32), StoreError> {
        let store = self.mailbox.store();
        let validity = store.mailbox_uidvalidity().await?;
        let last = store.mailbox_last_uid().await?;
        let next = u32::try_from(last + 1).ok().and_then(NonZeroU32::new);
        match (NonZeroU32::new(validity), next) {
            (Some(validity), Some(next)) => Ok((validity, next)),
            _ => Err(StoreError::Invalid(format!(
                "UIDVALIDITY {validity} or last UID {last} out of range"
            ))),
        }
    }

    /// What STATUS and SELECT report on a folder: the folder, the agent's folders, its
    /// messages, UIDVALIDITY and the next UID. `None` once the client has its NO.
    async fn open_folder(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &WireMailbox<'static>,
    ) -> Option<(Catalog, Folder, Vec<Message>, NonZeroU32, NonZeroU32)> {
        let (catalog, folder) = match self.find_folder(mailbox).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.no(tag.clone(), "no such folder");
                return None;
            }
            Err(e) => {
                self.refuse(tag.clone(), "cannot read the folders", &e);
                return None;
            }
        };
        if !folder.selectable() {
            self.no(tag.clone(), "this folder only holds other folders");
            return None;
        }
        // Read before the messages: a change in between shows at the next refresh.
        let read = match self.uid_validity_next().await {
            Ok((validity, next)) => self
                .messages_of(&catalog, &folder)
                .await
                .map(|messages| (messages, validity, next)),
            Err(e) => Err(e),
        };
        match read {
            Ok((messages, validity, next)) => Some((catalog, folder, messages, validity, next)),
            Err(e) => {
                self.refuse(tag.clone(), "cannot read the folder", &e);
                None
            }
        }
    }

    pub(super) async fn status(
        &mut self,
        tag: Tag<'static>,
        mailbox: &WireMailbox<'static>,
        names: &[StatusDataItemName],
    ) {
        let Some((_, _, messages, validity, next)) = self.open_folder(&tag, mailbox).await else {
            return;
        };
        let items: Vec<StatusDataItem> = names
            .iter()
            .filter_map(|n| match n {
                StatusDataItemName::Messages => {
                    Some(StatusDataItem::Messages(messages.len() as u32))
                }
                StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
                StatusDataItemName::UidNext => Some(StatusDataItem::UidNext(next)),
                StatusDataItemName::UidValidity => Some(StatusDataItem::UidValidity(validity)),
                StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(
                    messages.iter().filter(|m| !m.flags.seen).count() as u32,
                )),
                _ => None,
            })
            .collect();
        self.server.enqueue_data(Data::Status {
            mailbox: mailbox.clone(),
            items: items.into(),
        });
        self.ok(tag, "STATUS completed");
    }

    pub(super) async fn select(
        &mut self,
        tag: Tag<'static>,
        mailbox: &WireMailbox<'static>,
        examine: bool,
    ) {
        // A failed SELECT leaves no folder open (RFC 3501 §6.3.1).
        self.selected = None;
        let Some((catalog, folder, messages, validity, next)) =
            self.open_folder(&tag, mailbox).await
        else {
            return;
        };
        let read_only = examine || matches!(folder, Folder::Templates | Folder::Statistics);
        let own = matches!(folder, Folder::Own(_));
        // Keywords in use: those of the messages, and the tags (which a client may set).
        let mut keywords: Vec<String> = vec![
            view::KEYWORD_PRIORITY_HIGH.into(),
            view::KEYWORD_PRIORITY_MEDIUM.into(),
            view::KEYWORD_BILLABLE.into(),
            view::KEYWORD_DELIVERY_BLOCK.into(),
        ];
        keywords.extend(catalog.tags.iter().map(|t| view::tag_keyword(t)));
        for m in &messages {
            for k in &m.flags.keywords {
                if !keywords.contains(k) {
                    keywords.push(k.clone());
                }
            }
        }
        let mut flags = vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ];
        flags.extend(
            keywords
                .iter()
                .filter_map(|k| Atom::try_from(k.clone()).ok().map(Flag::Keyword)),
        );
        let permanent: Vec<FlagPerm<'static>> = if read_only {
            Vec::new()
        } else if own {
            let mut p: Vec<FlagPerm> = flags.iter().cloned().map(FlagPerm::Flag).collect();
            p.push(FlagPerm::Asterisk);
            p
        } else {
            let mut p = vec![
                FlagPerm::Flag(Flag::Seen),
                FlagPerm::Flag(Flag::Flagged),
                FlagPerm::Flag(Flag::Deleted),
            ];
            p.extend(
                [
                    view::KEYWORD_PRIORITY_HIGH,
                    view::KEYWORD_PRIORITY_MEDIUM,
                    view::KEYWORD_BILLABLE,
                ]
                .iter()
                .map(|k| FlagPerm::Flag(Flag::Keyword(atom(k)))),
            );
            p.extend(catalog.tags.iter().filter_map(|t| {
                Atom::try_from(view::tag_keyword(t))
                    .ok()
                    .map(|a| FlagPerm::Flag(Flag::Keyword(a)))
            }));
            p
        };
        self.server.enqueue_data(Data::Flags(flags));
        self.server
            .enqueue_data(Data::Exists(messages.len() as u32));
        self.server.enqueue_data(Data::Recent(0));
        let untagged_ok = |code: Code<'static>, text: &'static str| {
            imap_next::imap_types::response::Status::ok(None, Some(code), text).expect("valid")
        };
        if let Some(first) = messages.iter().position(|m| !m.flags.seen) {
            let seq = NonZeroU32::new(first as u32 + 1).expect("not zero");
            self.server
                .enqueue_status(untagged_ok(Code::Unseen(seq), "first unseen"));
        }
        self.server
            .enqueue_status(untagged_ok(Code::PermanentFlags(permanent), "flags"));
        self.server
            .enqueue_status(untagged_ok(Code::UidValidity(validity), "UIDs valid"));
        self.server
            .enqueue_status(untagged_ok(Code::UidNext(next), "predicted next UID"));
        self.selected = Some(Selected {
            folder,
            read_only,
            messages,
            last_uid: i64::from(next.get()) - 1,
        });
        let (code, text) = if read_only {
            (Code::ReadOnly, "EXAMINE completed")
        } else {
            (Code::ReadWrite, "SELECT completed")
        };
        self.ok_code(tag, Some(code), text);
    }

    pub(super) async fn append(
        &mut self,
        tag: Tag<'static>,
        mailbox: &WireMailbox<'static>,
        flags: &[Flag<'static>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'static>,
    ) {
        let folder = match self.find_folder(mailbox).await {
            Ok(Some((_, folder))) => folder,
            Ok(None) => return self.no_code(tag, Some(Code::TryCreate), "no such folder"),
            Err(e) => return self.refuse(tag, "cannot read the folders", &e),
        };
        let Folder::Own(own) = folder else {
            return self.no(
                tag,
                "only Drafts, Sent and Trash keep messages from the client; tickets come by mail",
            );
        };
        let bytes: &[u8] = match &message {
            LiteralOrLiteral8::Literal(l) => l.as_ref(),
            LiteralOrLiteral8::Literal8(l) => &l.data,
        };
        let words: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let at = date.map_or_else(crate::store::now, |d| d.as_ref().timestamp());
        let agent_id = self.agent.as_ref().map_or(0, |a| a.id);
        let store = self.mailbox.store().clone();
        match store
            .own_append(agent_id, own.as_str(), &words, at, bytes)
            .await
        {
            Ok(uid) => {
                let validity = store
                    .mailbox_uidvalidity()
                    .await
                    .ok()
                    .and_then(NonZeroU32::new);
                let code = validity
                    .zip(NonZeroU32::new(uid))
                    .map(|(v, u)| Code::AppendUid {
                        uid_validity: v,
                        uid: u,
                    });
                if self
                    .selected
                    .as_ref()
                    .is_some_and(|s| s.folder == Folder::Own(own))
                {
                    self.refresh(false).await;
                }
                self.ok_code(tag, code, "APPEND completed");
            }
            Err(e) => self.refuse(tag, "cannot store the message", &e),
        }
    }

    /// Brings the open folder up to date: messages gone are expunged (only when
    /// `expunges`, i.e. where RFC 3501 allows it), new ones announced with EXISTS, changed
    /// flags sent. A message whose UID is below the highest known waits for the next SELECT
    /// (sequence numbers must keep UIDs ascending).
    pub(super) async fn refresh(&mut self, expunges: bool) {
        let Some(sel) = self.selected.as_ref() else {
            return;
        };
        // Every change of a ticket or an own folder takes a new UID: while the last UID
        // stays, the folder is as it was (one cheap read per IDLE poll).
        let Ok(last_uid) = self.mailbox.store().mailbox_last_uid().await else {
            return;
        };
        if last_uid == sel.last_uid {
            return;
        }
        let folder = sel.folder.clone();
        let fresh = match self.catalog().await {
            Ok(catalog) => self.messages_of(&catalog, &folder).await,
            Err(e) => Err(e),
        };
        let fresh = match fresh {
            Ok(fresh) => fresh,
            Err(e) => {
                // The next NOOP or IDLE news tries again.
                tracing::warn!(error = %e, "IMAP: cannot read the open folder");
                return;
            }
        };
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        if expunges {
            // Without expunges the folder is not fully current yet.
            sel.last_uid = last_uid;
        }
        let fresh_uids: HashSet<u32> = fresh.iter().map(|m| m.uid).collect();
        if expunges {
            for i in (0..sel.messages.len()).rev() {
                if !fresh_uids.contains(&sel.messages[i].uid) {
                    sel.messages.remove(i);
                    let seq = NonZeroU32::new(i as u32 + 1).expect("not zero");
                    self.server.enqueue_data(Data::Expunge(seq));
                }
            }
        }
        let by_uid: std::collections::HashMap<u32, &Message> =
            fresh.iter().map(|m| (m.uid, m)).collect();
        for (i, m) in sel.messages.iter_mut().enumerate() {
            if let Some(f) = by_uid.get(&m.uid) {
                let mut flags = f.flags.clone();
                flags.deleted |= m.flags.deleted;
                if flags != m.flags {
                    m.flags = flags;
                    let seq = NonZeroU32::new(i as u32 + 1).expect("not zero");
                    let items = vec![
                        MessageDataItem::Uid(NonZeroU32::new(m.uid).expect("UIDs are not zero")),
                        MessageDataItem::Flags(
                            wire_flags(&m.flags)
                                .into_iter()
                                .map(imap_next::imap_types::flag::FlagFetch::Flag)
                                .collect(),
                        ),
                    ];
                    self.server.enqueue_data(Data::Fetch {
                        seq,
                        items: items.try_into().expect("not empty"),
                    });
                }
            }
        }
        let max = sel.max_uid();
        let before = sel.messages.len();
        sel.messages
            .extend(fresh.into_iter().filter(|m| m.uid > max));
        if sel.messages.len() != before {
            self.server
                .enqueue_data(Data::Exists(sel.messages.len() as u32));
        }
    }

    /// CLOSE: removes what is marked `\Deleted` from an own folder, silently.
    pub(super) async fn close(&mut self) {
        if let Some(sel) = self.selected.take()
            && !sel.read_only
            && let Folder::Own(_) = sel.folder
        {
            let uids: Vec<u32> = sel
                .messages
                .iter()
                .filter(|m| m.flags.deleted)
                .map(|m| m.uid)
                .collect();
            let agent_id = self.agent.as_ref().map_or(0, |a| a.id);
            if let Err(e) = self.mailbox.store().own_delete(agent_id, &uids).await {
                tracing::warn!(error = %e, "IMAP CLOSE could not expunge");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_wildcards() {
        assert!(matches(b"*", b"Queues/Support"));
        assert!(matches(b"%", b"Queues"));
        assert!(!matches(b"%", b"Queues/Support"));
        assert!(matches(b"Queues/%", b"Queues/Support"));
        assert!(matches(b"Q*t", b"Queues/Support"));
        assert!(!matches(b"Tags/*", b"Queues/Support"));
        assert!(matches(b"%/%", b"Queues/Support"));
        assert!(!matches(b"%t", b"Queues/Support"));
        assert!(matches(b"", b""));
        let stars = vec![b'*'; 1000];
        assert!(!matches(&[&stars[..], b"x"].concat(), &[b'a'; 1000]));
    }
}
