//! Agent submission (docs/ARCHITECTURE.md, "An agent's reply out"): what the SMTP
//! submission ports do with an authenticated agent's mail. It finds the ticket, checks the
//! agent may touch it, applies the agent's commands, and stores the reply (rewritten for
//! the customer, with its outgoing mail) or the internal comment — all in one transaction,
//! so the client's 250 means committed.
//! Anything wrong refuses the whole mail with a text the agent's client shows.
mod resolve;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::Config;
use crate::core::checks;
use crate::core::commands::{self, Changes, Command, CommandError, CommandLine};
use crate::core::compose;
use crate::core::mail::{self, IncomingMail};
use crate::core::model::{Agent, ItemKind, Queue, ReplyQuote, status_key};
use crate::core::quote;
use crate::core::reply::{self, QuoteEntry, ReplyPlan};
use crate::core::subject;
use crate::core::submission::{self as rules, Addressed, News};
use crate::core::texts::{self, Placeholders};
use crate::core::ticket_message;
use crate::login::{AgentSession, Logins};
use crate::protocol::login_guard::Checked;
use crate::protocol::smtp_server::{DeliverError, MailService, Unavailable};
use crate::store::{
    Actor, Content, ItemBrief, NewItem, NewOutbound, NewTicket, Store, StoreError, TicketRef, Tx,
};
use resolve::{Change, resolve};

pub struct Submission {
    store: Store,
    config: Arc<Config>,
    outbox_wake: Arc<Notify>,
    /// Shared with the mailbox ports: an agent's sessions count on every port.
    logins: Arc<Logins>,
}

/// Why a mail is refused; nothing of it was applied or sent.
enum Refusal {
    /// 550 5.7.1: who may send what (From, access, no ticket).
    Policy(String),
    /// 554 5.6.0: what the mail says (a command, a missing attachment, a collision).
    Content(String),
    /// 451: try again later (the state changed while the mail was worked out).
    Transient(String),
    /// The store refused or failed: see `From<Refusal> for DeliverError`.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

impl From<CommandError> for Refusal {
    fn from(e: CommandError) -> Self {
        Refusal::Content(format!(
            "{e}\nNothing was applied or sent; correct the line and send the mail again."
        ))
    }
}

impl From<Refusal> for DeliverError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Policy(text) => DeliverError::Refused {
                code: 550,
                esc: "5.7.1",
                text,
            },
            Refusal::Content(text) => DeliverError::Refused {
                code: 554,
                esc: "5.6.0",
                text,
            },
            Refusal::Transient(text) => DeliverError::Transient(text),
            // What the mail asked for does not exist or cannot be: the agent reads why, and
            // sending it again cannot help.
            Refusal::Store(
                StoreError::NotFound(text) | StoreError::Conflict(text) | StoreError::Invalid(text),
            ) => DeliverError::Refused {
                code: 554,
                esc: "5.6.0",
                text: format!("{text}\nNothing was applied or sent."),
            },
            // The database refused the mail's data: sending it again cannot help.
            Refusal::Store(e) if e.is_permanent() => DeliverError::Permanent(e.to_string()),
            // The store away, or a failure not understood: the client keeps the mail.
            Refusal::Store(e) => DeliverError::Transient(e.to_string()),
        }
    }
}

/// The found ticket and the item the agent answered (its version), when known.
struct Found {
    ticket: TicketRef,
    version: Option<i64>,
}

/// An agent's mail, read and checked before any ticket is looked at.
struct Mail<'a> {
    agent: Agent,
    actor: Actor,
    /// The SMTP envelope's recipients.
    rcpts: &'a [String],
    raw: &'a [u8],
    m: IncomingMail,
    queues: Vec<Queue>,
    /// The queue the mail is from (an index into `queues`), when it is from a queue address.
    from_queue: Option<usize>,
    is_comment: bool,
    lines: Vec<CommandLine>,
    /// The body after the command lines.
    rest: String,
    /// The agent's own words in `rest`: without the client's quote.
    own: String,
}

impl Mail<'_> {
    fn has(&self, command: Command) -> bool {
        self.lines.iter().any(|l| l.command == command)
    }

    fn sending_queue(&self) -> Option<&Queue> {
        self.from_queue.map(|i| &self.queues[i])
    }
}

/// Everything a mail writes, worked out from one view of the store. A write transaction
/// applies it as it is when the tickets it read still have the versions it read.
struct Plan {
    /// Each ticket read, with its version.
    read: Vec<(i64, i64)>,
    /// The ticket as the commands leave it.
    ticket: TicketRef,
    is_new: bool,
    changes: Vec<Change>,
    status_set: bool,
    assignee_set: bool,
    /// The rewritten reply; none for a comment.
    reply: Option<Box<Reply>>,
}

/// A reply as it goes to the customer.
struct Reply {
    queue: Queue,
    /// The ticket's CC list before the mail.
    cc_before: Vec<String>,
    recipients: rules::Recipients,
    subject: String,
    message_id: String,
    raw: Vec<u8>,
    parsed: IncomingMail,
    sha256: String,
}

impl Submission {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        outbox_wake: Arc<Notify>,
        logins: Arc<Logins>,
    ) -> Submission {
        Submission {
            logins,
            store,
            config,
            outbox_wake,
        }
    }

    async fn submit(&self, login: &str, rcpts: &[String], raw: &[u8]) -> Result<(), Refusal> {
        // Worked out on a read-only view, so SQLite's one writer is not kept waiting while
        // this session looks things up and rewrites the reply. PostgreSQL works it out in
        // the write transaction, which locks only the ticket's row.
        let (mail, early) = match self.store.writers_take_turns() {
            true => {
                let mut view = self.store.snapshot().await?;
                let mail = self.read(&mut view, login, rcpts, raw).await?;
                let early = match self.find_ticket(&mut view, &mail.m).await? {
                    Some(found) => Some(self.prepare(&mut view, &mail, found, false).await?),
                    None => None,
                };
                (Some(mail), early)
            }
            false => (None, None),
        };
        // Committed without waiting for the disk; the sync before the answer covers it,
        // together with the replies other sessions committed meanwhile (one disk flush
        // for several replies).
        let mut tx = self.store.begin_deferred().await?;
        let mail = match mail {
            Some(mail) => mail,
            None => self.read(&mut tx, login, rcpts, raw).await?,
        };
        let plan = match early {
            Some(plan) if unchanged(&mut tx, &plan.read).await? => plan,
            // A ticket changed since the view, or the mail opens one: worked out again
            // inside the transaction.
            early => {
                if early.is_some() {
                    tracing::debug!(agent = %mail.agent.login, "the ticket changed meanwhile: worked out again");
                }
                let (found, is_new) = match self.find_ticket(&mut tx, &mail.m).await? {
                    Some(found) => (found, false),
                    None => {
                        let ticket = self.new_ticket(&mut tx, &mail).await?;
                        let found = Found {
                            ticket,
                            version: None,
                        };
                        (found, true)
                    }
                };
                self.prepare(&mut tx, &mail, found, is_new).await?
            }
        };
        let number = plan.ticket.number;
        let message_id = plan.reply.as_ref().map(|r| r.message_id.clone());
        write(&mut tx, &mail, plan).await?;
        tx.commit().await?;
        self.store.note_mail();
        self.store.sync().await?;
        match message_id {
            Some(message_id) => {
                self.outbox_wake.notify_one();
                tracing::info!(ticket = number, agent = %mail.agent.login, %message_id, "reply");
            }
            None => tracing::info!(ticket = number, agent = %mail.agent.login, "comment"),
        }
        Ok(())
    }

    /// The mail and its sender's rights, before any ticket is looked at.
    async fn read<'a>(
        &self,
        tx: &mut Tx,
        login: &str,
        rcpts: &'a [String],
        raw: &'a [u8],
    ) -> Result<Mail<'a>, Refusal> {
        // Fresh: queue access and settings may have changed since the login.
        let agent = tx.agent_by_login(login).await?;
        let queues = tx.queues().await?;
        let raw = without_return_path(raw);
        let m = mail::parse(raw);
        let from = m
            .from
            .as_ref()
            .map(|a| a.address.to_ascii_lowercase())
            .unwrap_or_default();
        let from_queue = queues.iter().position(|q| q.address == from);
        if from != agent.email.to_ascii_lowercase() && from_queue.is_none() {
            return Err(Refusal::Policy(format!(
                "From <{from}> is neither a queue address nor your own address <{}>",
                agent.email
            )));
        }
        let comment_address = self.config.comment_address();
        let is_comment = rcpts
            .iter()
            .chain(m.to.iter().chain(&m.cc).map(|a| &a.address))
            .any(|r| r.eq_ignore_ascii_case(&comment_address));
        let body = agent_text(&m);
        let (lines, rest) = commands::split(&body)?;
        let own = quote::own_text(rest);
        let rest = rest.to_string();
        let actor = Actor {
            agent_id: Some(agent.id),
            name: agent.login.clone(),
        };
        Ok(Mail {
            agent,
            actor,
            rcpts,
            raw,
            m,
            queues,
            from_queue,
            is_comment,
            lines,
            rest,
            own,
        })
    }

    /// Checks the mail against its ticket, resolves its commands and rewrites the reply:
    /// everything but the writes, on `tx` (a read-only view or the write transaction).
    async fn prepare(
        &self,
        tx: &mut Tx,
        mail: &Mail<'_>,
        found: Found,
        is_new: bool,
    ) -> Result<Plan, Refusal> {
        let Found {
            mut ticket,
            version,
        } = found;
        let agent = &mail.agent;
        check_access(agent, &ticket.queue_name)?;
        let mut read = vec![(ticket.id, tx.ticket_version(ticket.id).await?)];
        let fields = tx.ticket_fields(&ticket).await?;
        let mut items = tx.item_briefs(ticket.id).await?;
        if let Some(version) = version
            && !mail.has(Command::Force)
        {
            check_collision(&items, version, agent, &ticket, &fields)?;
        }
        let words: Vec<&str> = self
            .config
            .submission
            .attachment_words
            .iter()
            .map(String::as_str)
            .collect();
        let has_attachment = mail
            .m
            .attachments
            .iter()
            .any(|a| !(a.inline && a.content_id.is_some()));
        if agent.attachment_check
            && !mail.has(Command::NoAttachCheck)
            && !has_attachment
            && let Some(word) = checks::missing_attachment(&mail.own, &words)
        {
            return Err(Refusal::Content(rules::missing_attachment_text(word)));
        }

        let resolved = resolve(tx, &mut ticket, &fields, mail).await?;
        // The conversation as it will be (a #merge brings in older items).
        for other in &resolved.merged {
            read.push((other.id, tx.ticket_version(other.id).await?));
            items.extend(tx.item_briefs(other.id).await?);
        }
        items.sort_by_key(|i| (i.date, i.id));
        let mut plan = Plan {
            read,
            ticket,
            is_new,
            changes: resolved.changes,
            status_set: resolved.status_set,
            assignee_set: resolved.assignee_set,
            reply: None,
        };
        if mail.is_comment {
            return Ok(plan);
        }
        let reply = self
            .rewrite(
                tx,
                mail,
                &plan.ticket,
                &items,
                fields.cc,
                resolved.template,
                &resolved.cc,
            )
            .await?;
        plan.reply = Some(Box::new(reply));
        Ok(plan)
    }

    /// Who gets the reply: the mail's To and Cc outside the gateway, the ticket's creator,
    /// and the CC list as `#cc` edits it.
    fn recipients(
        &self,
        mail: &Mail<'_>,
        ticket: &TicketRef,
        cc_edits: &Changes,
    ) -> Result<rules::Recipients, Refusal> {
        let comment_address = self.config.comment_address();
        let internal: Vec<&str> = mail
            .queues
            .iter()
            .map(|q| q.address.as_str())
            .chain([comment_address.as_str()])
            .collect();
        let is_internal = |a: &str| internal.iter().any(|i| i.eq_ignore_ascii_case(a));
        let m = &mail.m;
        let to: Vec<String> = m.to.iter().map(|a| a.address.clone()).collect();
        let cc: Vec<String> = m.cc.iter().map(|a| a.address.clone()).collect();
        let recipients = rules::recipients(
            &Addressed {
                to: &to,
                cc: &cc,
                envelope: mail.rcpts,
            },
            &mail.agent.email,
            cc_edits,
            &ticket.creator_address,
            &is_internal,
        );
        if recipients.envelope.is_empty() {
            return Err(Refusal::Policy(
                "the mail has no recipient outside the gateway".into(),
            ));
        }
        Ok(recipients)
    }

    /// The reply as the customer gets it (see the README, "Replies").
    #[allow(clippy::too_many_arguments)]
    async fn rewrite(
        &self,
        tx: &mut Tx,
        mail: &Mail<'_>,
        ticket: &TicketRef,
        items: &[ItemBrief],
        cc_before: Vec<String>,
        template: Option<String>,
        cc_edits: &Changes,
    ) -> Result<Reply, Refusal> {
        let queue = mail
            .queues
            .iter()
            .find(|q| q.id == ticket.queue_id)
            .ok_or_else(|| Refusal::Transient("the ticket's queue is gone".into()))?;
        let customer = match ticket.customer_id {
            Some(id) => tx.customers_by_ids(&[id]).await?.remove(&id),
            None => None,
        };
        let neutral = texts::queue_salutation(queue, self.config.locale);
        let placeholders = Placeholders {
            customer: customer.as_ref(),
            ticket_number: ticket.number,
            queue: &queue.name,
            neutral_salutation: neutral,
        };
        let recipients = self.recipients(mail, ticket, cc_edits)?;
        let subject = subject::reply_subject(
            &queue.name,
            ticket.number,
            &texts::fill(&mail.m.subject, &placeholders),
        );
        let customer_ids: Vec<String> = items
            .iter()
            .filter(|i| i.kind == ItemKind::Customer && !i.message_id.is_empty())
            .map(|i| i.message_id.clone())
            .collect();
        let references: Vec<String> = customer_ids.iter().rev().take(10).rev().cloned().collect();
        let quoted = quoted_items(tx, queue, items).await?;
        let message_id = compose::message_id(ticket.number, "re", &self.config.hostname);
        let template = template.as_deref().map(|t| texts::fill(t, &placeholders));
        let raw = reply::rewrite(
            mail.raw,
            &ReplyPlan {
                from_name: &queue.friendly_name,
                from_address: &queue.address,
                to: &recipients.to,
                cc: &recipients.cc,
                subject: &subject,
                message_id: &message_id,
                in_reply_to: customer_ids.last().map(String::as_str),
                references: &references,
                date: chrono::Utc::now().timestamp(),
                quote: reply::select(queue.reply_quote, &quoted),
                placeholders: &placeholders,
                template: template.as_deref(),
                locale: self.config.locale,
                utc_offset: chrono::Local::now().offset().local_minus_utc(),
                ticket_number: ticket.number,
            },
        )
        .map_err(|e| Refusal::Content(format!("the mail cannot be rewritten: {e}")))?;
        let parsed = mail::parse(&raw);
        let sha256 = hex::encode(Sha256::digest(&raw));
        Ok(Reply {
            queue: queue.clone(),
            cc_before,
            recipients,
            subject,
            message_id,
            raw,
            parsed,
            sha256,
        })
    }

    /// The ticket an agent's mail belongs to: an item it answers (which also gives the
    /// version), any Message-ID the ticket knows, then the subject tag.
    async fn find_ticket(&self, tx: &mut Tx, m: &IncomingMail) -> Result<Option<Found>, Refusal> {
        let refs: Vec<String> = m.in_reply_to.iter().chain(&m.references).cloned().collect();
        // A reply to a ticket's message in the agent's mailbox names the ticket and the
        // newest item the agent saw.
        for id in &m.in_reply_to {
            if let Some(v) = ticket_message::parse_message_id(id)
                && let Some(t) = tx.ticket_by_number(v.number).await?
            {
                let merged = t.merged_into_id.is_some();
                let ticket = tx.resolve_merged(t).await?;
                let version = (!merged && v.last_item_id > 0).then_some(v.last_item_id);
                return Ok(Some(Found { ticket, version }));
            }
        }
        for id in &m.in_reply_to {
            if let Some((t, item_id)) = tx.item_by_message_id(id).await? {
                let merged = t.merged_into_id.is_some();
                let ticket = tx.resolve_merged(t).await?;
                // Answering a merged ticket's mail answers no version of its target.
                let version = (!merged).then_some(item_id);
                return Ok(Some(Found { ticket, version }));
            }
        }
        if let Some(t) = tx.ticket_by_message_ids(&refs).await? {
            let ticket = tx.resolve_merged(t).await?;
            return Ok(Some(Found {
                ticket,
                version: None,
            }));
        }
        for tag in subject::find_tags(&m.subject) {
            if let Some(t) = tx.ticket_by_number(tag.number).await?
                && subject::same_queue(&tag.queue, &t.queue_name)
            {
                let ticket = tx.resolve_merged(t).await?;
                return Ok(Some(Found {
                    ticket,
                    version: None,
                }));
            }
        }
        Ok(None)
    }

    /// A mail without a ticket: a comment opens one in the `#queue` (or the agent's only
    /// queue); a mail from a queue address opens one in that queue for its recipient.
    async fn new_ticket(&self, tx: &mut Tx, mail: &Mail<'_>) -> Result<TicketRef, Refusal> {
        let (agent, m, queues, is_comment) = (&mail.agent, &mail.m, &mail.queues, mail.is_comment);
        let named_queue = mail.lines.iter().find_map(|l| match &l.command {
            Command::Queue(name) => Some((l, name)),
            _ => None,
        });
        let queue = match (is_comment, named_queue, mail.sending_queue()) {
            (true, Some((line, name)), _) => queues
                .iter()
                .find(|q| q.name.eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| line.error(format!("no queue named {name:?}")))?,
            (true, None, Some(q)) => q,
            (true, None, None) => {
                let mine: Vec<&Queue> = queues
                    .iter()
                    .filter(|q| agent.queues.contains(&q.name))
                    .collect();
                match mine.as_slice() {
                    [q] => *q,
                    _ => {
                        return Err(Refusal::Content(
                            "A comment without a ticket opens one: say in which queue with \
                             #queue NAME on the first line."
                                .into(),
                        ));
                    }
                }
            }
            (false, _, Some(q)) => q,
            (false, _, None) => {
                return Err(Refusal::Policy(
                    "This mail belongs to no ticket (no ticket mail in In-Reply-To or \
                     References, no ticket tag in the subject) and its From is not a queue \
                     address: the gateway sends only ticket mail."
                        .into(),
                ));
            }
        };
        check_access(agent, &queue.name)?;
        let internal = |a: &str| {
            a.eq_ignore_ascii_case(&self.config.comment_address())
                || queues.iter().any(|q| q.address.eq_ignore_ascii_case(a))
        };
        let recipients: Vec<String> =
            m.to.iter()
                .chain(&m.cc)
                .map(|a| a.address.to_ascii_lowercase())
                .filter(|a| !internal(a))
                .collect();
        let creator = match (is_comment, recipients.first()) {
            (false, Some(r)) => r.clone(),
            (false, None) => {
                return Err(Refusal::Policy(
                    "a new ticket by mail needs a recipient outside the gateway".into(),
                ));
            }
            (true, _) => agent.email.to_ascii_lowercase(),
        };
        let customer_id = if is_comment {
            None
        } else {
            let ids = self
                .store
                .customer_ids_by_emails(std::slice::from_ref(&creator))
                .await?;
            match ids.get(&creator).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            }
        };
        let subject_text = subject::ticket_subject(&m.subject);
        let cc: Vec<String> = if is_comment {
            Vec::new()
        } else {
            recipients.iter().skip(1).cloned().collect()
        };
        let t = tx
            .create_ticket(
                &NewTicket {
                    subject: subject_text,
                    queue_id: queue.id,
                    queue_name: &queue.name,
                    creator_address: &creator,
                    customer_id,
                    cc: &cc,
                    spoof_suspect: false,
                    first_number: self.config.tickets.first_number,
                    assignee_id: Some(agent.id),
                    at: chrono::Utc::now().timestamp(),
                },
                &mail.actor,
            )
            .await?;
        Ok(t)
    }
}

/// The ticket's items the queue's policy quotes, newest first: the newest customer mails
/// and replies, each with its own words only (the quotes inside them would nest otherwise).
async fn quoted_items(
    tx: &mut Tx,
    queue: &Queue,
    items: &[ItemBrief],
) -> Result<Vec<QuoteEntry>, Refusal> {
    let wanted = match queue.reply_quote {
        ReplyQuote::None => 0,
        ReplyQuote::Last => 1,
        ReplyQuote::Last3 => 3,
        ReplyQuote::All => usize::MAX,
    };
    let picked: Vec<&ItemBrief> = items
        .iter()
        .rev()
        .filter(|i| i.kind != ItemKind::Comment)
        .take(wanted)
        .collect();
    let ids: Vec<i64> = picked.iter().map(|i| i.id).collect();
    let mut bodies = tx.item_bodies(&ids).await?;
    Ok(picked
        .iter()
        .map(|i| {
            let (text, html) = bodies.remove(&i.id).unwrap_or_default();
            QuoteEntry {
                kind: i.kind,
                from: if i.from_name.is_empty() {
                    i.from_address.clone()
                } else {
                    format!("{} <{}>", i.from_name, i.from_address)
                },
                date: i.date,
                text: quote::own_text(&text),
                html: html.as_deref().map(quote::strip_html_quote),
            }
        })
        .collect())
}

/// True when every ticket still has the version read (and, on PostgreSQL, is locked now).
async fn unchanged(tx: &mut Tx, read: &[(i64, i64)]) -> Result<bool, Refusal> {
    for &(id, version) in read {
        if tx.ticket_version(id).await? != version {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Refuses a reply to `version` when the ticket has news since: a customer's mail or
/// another agent's reply the agent has not seen.
fn check_collision(
    items: &[ItemBrief],
    version: i64,
    agent: &Agent,
    ticket: &TicketRef,
    fields: &crate::store::TicketFields,
) -> Result<(), Refusal> {
    let news: Vec<&ItemBrief> = items
        .iter()
        .filter(|i| i.id > version && i.kind != ItemKind::Comment)
        .filter(|i| !(i.kind == ItemKind::Reply && i.agent_id == Some(agent.id)))
        .collect();
    if news.is_empty() {
        return Ok(());
    }
    let dates: Vec<String> = news.iter().map(|i| format_date(i.date)).collect();
    let news: Vec<News<'_>> = news
        .iter()
        .zip(&dates)
        .map(|(i, date)| News {
            kind: i.kind,
            who: match i.kind {
                ItemKind::Customer => &i.from_address,
                _ => i.agent.as_deref().unwrap_or(&i.from_address),
            },
            date,
        })
        .collect();
    Err(Refusal::Content(rules::collision_text(
        ticket.number,
        &news,
        fields.assignee.as_deref(),
    )))
}

/// Writes what `plan` worked out: the commands' changes, each with its history entry, then
/// the comment or the reply with its outgoing mail.
async fn write(tx: &mut Tx, mail: &Mail<'_>, plan: Plan) -> Result<(), Refusal> {
    for change in plan.changes {
        apply(tx, mail, &plan.ticket, change).await?;
    }
    let now = chrono::Utc::now().timestamp();
    match plan.reply {
        None => write_comment(tx, mail, &plan.ticket, plan.is_new, now).await,
        Some(reply) => {
            write_reply(tx, mail, &plan.ticket, *reply, now).await?;
            let (agent, actor) = (&mail.agent, &mail.actor);
            if !plan.status_set {
                tx.set_status(&plan.ticket, status_key::WAITING, actor)
                    .await?;
            }
            if !plan.assignee_set && plan.ticket.assignee_id.is_none() {
                tx.set_assignee(&plan.ticket, Some((agent.id, &agent.login)), actor)
                    .await?;
            }
            Ok(())
        }
    }
}

/// One command's change, with its history entry.
async fn apply(
    tx: &mut Tx,
    mail: &Mail<'_>,
    ticket: &TicketRef,
    change: Change,
) -> Result<(), Refusal> {
    let (agent, actor) = (&mail.agent, &mail.actor);
    match change {
        Change::Status { before, key } => tx.set_status(&before, &key, actor).await?,
        Change::Assignee { before, to } => {
            let to = to.as_ref().map(|(id, login)| (*id, login.as_str()));
            tx.set_assignee(&before, to, actor).await?;
        }
        Change::Field {
            field,
            value,
            old,
            new,
        } => {
            tx.set_field(ticket.id, field, value, (&old, &new), actor)
                .await?
        }
        Change::Tag { id, name, on } => match on {
            true => tx.add_tag(ticket.id, (id, &name), actor).await?,
            false => tx.remove_tag(ticket.id, (id, &name), actor).await?,
        },
        Change::Watch(on) => {
            tx.set_watcher(ticket.id, (agent.id, &agent.login), on, actor)
                .await?
        }
        Change::Merge { from, into } => match tx.merge(&from, &into, actor).await {
            Ok(()) => {}
            Err(StoreError::Invalid(why)) => return Err(Refusal::Content(why)),
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// An internal comment: the agent's text after the command lines, kept on the ticket.
async fn write_comment(
    tx: &mut Tx,
    mail: &Mail<'_>,
    ticket: &TicketRef,
    is_new: bool,
    now: i64,
) -> Result<(), Refusal> {
    let (agent, m) = (&mail.agent, &mail.m);
    let sha = hex::encode(Sha256::digest(mail.raw));
    tx.add_item(
        ticket.id,
        &NewItem {
            kind: ItemKind::Comment,
            agent_id: Some(agent.id),
            from_address: &agent.email,
            from_name: &agent.name,
            to: &[],
            cc: &[],
            subject: &m.subject,
            date: now,
            message_id: m.message_id.as_deref().unwrap_or(""),
            text: mail.rest.trim_end(),
            html: None,
            body_in_raw: false,
            raw: mail.raw,
            raw_sha256: &sha,
            problems: &m.problems,
            attachments: &m.attachments,
        },
        now,
    )
    .await?;
    if !is_new {
        tx.history(ticket.id, &mail.actor, "item", "", "comment")
            .await?;
    }
    Ok(())
}

/// The rewritten reply: the ticket's item, its CC list, and its outgoing mail.
async fn write_reply(
    tx: &mut Tx,
    mail: &Mail<'_>,
    ticket: &TicketRef,
    reply: Reply,
    now: i64,
) -> Result<(), Refusal> {
    let (agent, actor) = (&mail.agent, &mail.actor);
    let Reply {
        queue,
        cc_before,
        recipients,
        subject,
        message_id,
        raw,
        parsed,
        sha256,
    } = reply;
    tx.set_cc(ticket.id, &cc_before, &recipients.cc, actor)
        .await?;
    let item_id = tx
        .add_item(
            ticket.id,
            &NewItem {
                kind: ItemKind::Reply,
                agent_id: Some(agent.id),
                from_address: &queue.address,
                from_name: &queue.friendly_name,
                to: &recipients.to,
                cc: &recipients.cc,
                subject: &subject,
                date: now,
                message_id: &message_id,
                text: &parsed.text,
                html: parsed.html.as_deref(),
                body_in_raw: true,
                raw: &raw,
                raw_sha256: &sha256,
                problems: &parsed.problems,
                attachments: &parsed.attachments,
            },
            now,
        )
        .await?;
    tx.outbox_add(&NewOutbound {
        queue_id: queue.id,
        ticket_id: Some(ticket.id),
        agent_id: Some(agent.id),
        kind: "reply",
        mail_from: &queue.address,
        rcpt_to: &recipients.envelope,
        message_id: &message_id,
        content: Content::Item(item_id),
    });
    let to = format!("to {}", recipients.envelope.join(", "));
    tx.history(ticket.id, actor, "reply", "", &to).await?;
    Ok(())
}

fn check_access(agent: &Agent, queue: &str) -> Result<(), Refusal> {
    if agent.is_admin || agent.queues.iter().any(|q| q == queue) {
        Ok(())
    } else {
        Err(Refusal::Policy(format!(
            "you ({}) have no access to queue {queue}",
            agent.login
        )))
    }
}

/// The agent's text: the text part, or the HTML part's text when there is none.
fn agent_text(m: &IncomingMail) -> String {
    match &m.html {
        Some(html) if m.text.trim().is_empty() => mail::html_to_text(html),
        _ => m.text.clone(),
    }
}

/// The submitted bytes without the `Return-Path:` line the SMTP server put in front.
fn without_return_path(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"Return-Path:")
        && let Some(lf) = raw.iter().position(|&b| b == b'\n')
    {
        return &raw[lf + 1..];
    }
    raw
}

fn format_date(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

impl MailService for Submission {
    type Agent = AgentSession;

    async fn authenticate(
        &self,
        login: &str,
        password: &str,
    ) -> Result<Checked<AgentSession>, Unavailable> {
        self.logins
            .open(login, password)
            .await
            .map_err(Unavailable::new)
    }

    async fn accepts(
        &self,
        agent: Option<&AgentSession>,
        _rcpt: &str,
    ) -> Result<bool, Unavailable> {
        Ok(agent.is_some())
    }

    async fn deliver(
        &self,
        agent: Option<&AgentSession>,
        _mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Vec<Result<(), DeliverError>> {
        let result = match agent {
            None => Err(DeliverError::Refused {
                code: 530,
                esc: "5.7.0",
                text: "authentication required".into(),
            }),
            Some(AgentSession { agent, .. }) => {
                self.submit(&agent.login, rcpts, raw).await.map_err(|r| {
                    let refused = DeliverError::from(r);
                    if let DeliverError::Transient(e) | DeliverError::Permanent(e) = &refused {
                        tracing::error!(agent = %agent.login, error = %e, "submission: cannot commit");
                    }
                    refused
                })
            }
        };
        rcpts.iter().map(|_| result.clone()).collect()
    }
}
