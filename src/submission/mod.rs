//! Agent submission (SPEC §4): what the SMTP submission ports do with an authenticated
//! agent's mail. It finds the ticket, checks the agent may touch it, applies the agent's
//! commands, and stores the reply (rewritten for the customer, with its outgoing mail) or
//! the internal comment — all in one transaction, so the client's 250 means committed.
//! Anything wrong refuses the whole mail with a text the agent's client shows.
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::Config;
use crate::core::checks;
use crate::core::commands::{self, Assignee, Changes, Command, CommandError, CommandLine};
use crate::core::compose;
use crate::core::mail::{self, IncomingMail};
use crate::core::model::{Agent, ItemKind, Queue, ReplyQuote, status_key};
use crate::core::password;
use crate::core::quote;
use crate::core::reply::{self, QuoteEntry, ReplyPlan};
use crate::core::subject;
use crate::core::submission::{self as rules, Addressed, News};
use crate::core::texts::{self, Placeholders};
use crate::net::smtp::{DeliverError, MailService};
use crate::store::{
    Actor, Arg, Field, ItemBrief, NewItem, NewOutbound, NewTicket, Store, StoreError, TicketRef, Tx,
};

pub struct Submission {
    store: Store,
    config: Arc<Config>,
    outbox_wake: Arc<Notify>,
    /// Verified when the login is unknown, so a wrong login costs as long as a wrong password
    /// (made on first use: hashing takes a while).
    dummy_hash: tokio::sync::OnceCell<String>,
}

/// Why a mail is refused; nothing of it was applied or sent.
enum Refusal {
    /// 550 5.7.1: who may send what (From, access, no ticket).
    Policy(String),
    /// 554 5.6.0: what the mail says (a command, a missing attachment, a collision).
    Content(String),
    /// 451: try again later.
    Transient(String),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Transient(e.to_string())
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
        }
    }
}

/// The found ticket and the item the agent answered (its version), when known.
struct Found {
    ticket: TicketRef,
    version: Option<i64>,
}

/// What the commands leave for the rest of the mail.
#[derive(Default)]
struct Applied {
    status_set: bool,
    assignee_set: bool,
    template: Option<String>,
    cc: Changes,
}

impl Submission {
    pub fn new(store: Store, config: Arc<Config>, outbox_wake: Arc<Notify>) -> Submission {
        Submission {
            store,
            config,
            outbox_wake,
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }

    async fn submit(&self, login: &str, rcpts: &[String], raw: &[u8]) -> Result<(), Refusal> {
        // Fresh: queue access and settings may have changed since the login.
        let agent = self.store.agent_by_login(login).await?;
        let raw = without_return_path(raw);
        let m = mail::parse(raw);
        let queues = self.store.queues().await?;
        let from = m
            .from
            .as_ref()
            .map(|a| a.address.to_ascii_lowercase())
            .unwrap_or_default();
        let from_queue = queues.iter().find(|q| q.address == from);
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

        // Committed without waiting for the disk; the sync before the answer covers it,
        // together with the replies other sessions committed meanwhile (one disk flush
        // for several replies).
        let mut tx = self.store.begin_deferred().await?;
        let actor = Actor {
            agent_id: Some(agent.id),
            name: agent.login.clone(),
        };
        let found = self.find_ticket(&mut tx, &m).await?;
        let (mut ticket, version, is_new) = match found {
            Some(f) => {
                check_access(&agent, &f.ticket.queue_name)?;
                (f.ticket, f.version, false)
            }
            None => {
                let t = self
                    .new_ticket(
                        &mut tx, &agent, &actor, &m, &lines, from_queue, is_comment, &queues,
                    )
                    .await?;
                (t, None, true)
            }
        };
        let fields = tx.ticket_fields(&ticket).await?;
        let items = tx.item_briefs(ticket.id).await?;
        let force = lines.iter().any(|l| l.command == Command::Force);
        if let Some(version) = version
            && !force
        {
            let news: Vec<&ItemBrief> = items
                .iter()
                .filter(|i| i.id > version && i.kind != ItemKind::Comment)
                .filter(|i| !(i.kind == ItemKind::Reply && i.agent_id == Some(agent.id)))
                .collect();
            if !news.is_empty() {
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
                return Err(Refusal::Content(rules::collision_text(
                    ticket.number,
                    &news,
                    fields.assignee.as_deref(),
                )));
            }
        }

        let words: Vec<&str> = self
            .config
            .submission
            .attachment_words
            .iter()
            .map(String::as_str)
            .collect();
        let has_attachment = m
            .attachments
            .iter()
            .any(|a| !(a.inline && a.content_id.is_some()));
        if agent.attachment_check
            && !lines.iter().any(|l| l.command == Command::NoAttachCheck)
            && !has_attachment
            && let Some(word) = checks::missing_attachment(&own, &words)
        {
            return Err(Refusal::Content(rules::missing_attachment_text(word)));
        }

        let applied = apply(
            &mut tx,
            &mut ticket,
            &fields,
            &lines,
            &agent,
            &actor,
            &queues,
        )
        .await?;

        // The conversation as it is now (a #merge brings in older items).
        let items = tx.item_briefs(ticket.id).await?;
        let now = chrono::Utc::now().timestamp();
        let sha = hex::encode(Sha256::digest(raw));
        if is_comment {
            let text = rest.trim_end().to_string();
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
                    text: &text,
                    html: None,
                    body_in_raw: false,
                    raw,
                    raw_sha256: &sha,
                    problems: &m.problems,
                    attachments: &m.attachments,
                },
                now,
            )
            .await?;
            if !is_new {
                tx.history(ticket.id, &actor, "item", "", "comment").await?;
            }
            tx.commit().await?;
            self.store.sync().await?;
            tracing::info!(ticket = ticket.number, agent = %agent.login, "comment");
            return Ok(());
        }

        let queue = queues
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
        let internal: Vec<String> = queues
            .iter()
            .map(|q| q.address.clone())
            .chain([comment_address.clone()])
            .collect();
        let is_internal = |a: &str| internal.iter().any(|i| i.eq_ignore_ascii_case(a));
        let to: Vec<String> = m.to.iter().map(|a| a.address.clone()).collect();
        let cc: Vec<String> = m.cc.iter().map(|a| a.address.clone()).collect();
        let recipients = rules::recipients(
            &Addressed {
                to: &to,
                cc: &cc,
                envelope: rcpts,
            },
            &agent.email,
            &applied.cc,
            &ticket.creator_address,
            &is_internal,
        );
        if recipients.envelope.is_empty() {
            return Err(Refusal::Policy(
                "the mail has no recipient outside the gateway".into(),
            ));
        }
        tx.set_cc(ticket.id, &fields.cc, &recipients.cc, &actor)
            .await?;

        let subject = subject::reply_subject(
            &queue.name,
            ticket.number,
            &texts::fill(&m.subject, &placeholders),
        );
        let customer_ids: Vec<String> = items
            .iter()
            .filter(|i| i.kind == ItemKind::Customer && !i.message_id.is_empty())
            .map(|i| i.message_id.clone())
            .collect();
        let references: Vec<String> = customer_ids.iter().rev().take(10).rev().cloned().collect();
        // The queue's policy picks the newest customer mails and replies; only their
        // bodies are read.
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
        let quoted: Vec<QuoteEntry> = picked
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
                    // Each item's own words: the quotes inside them would nest otherwise.
                    text: quote::own_text(&text),
                    html: html.as_deref().map(quote::strip_html_quote),
                }
            })
            .collect();
        let message_id = compose::message_id(ticket.number, "re", &self.config.hostname);
        let template = applied
            .template
            .as_deref()
            .map(|t| texts::fill(t, &placeholders));
        let rewritten = reply::rewrite(
            raw,
            &ReplyPlan {
                from_name: &queue.friendly_name,
                from_address: &queue.address,
                to: &recipients.to,
                cc: &recipients.cc,
                subject: &subject,
                message_id: &message_id,
                in_reply_to: customer_ids.last().map(String::as_str),
                references: &references,
                date: now,
                quote: reply::select(queue.reply_quote, &quoted),
                placeholders: &placeholders,
                template: template.as_deref(),
                locale: self.config.locale,
                utc_offset: chrono::Local::now().offset().local_minus_utc(),
                ticket_number: ticket.number,
            },
        )
        .map_err(|e| Refusal::Content(format!("the mail cannot be rewritten: {e}")))?;
        let sent = mail::parse(&rewritten);
        let sent_sha = hex::encode(Sha256::digest(&rewritten));
        tx.add_item(
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
                text: &sent.text,
                html: sent.html.as_deref(),
                body_in_raw: true,
                raw: &rewritten,
                raw_sha256: &sent_sha,
                problems: &sent.problems,
                attachments: &sent.attachments,
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
            raw: &rewritten,
        });
        tx.history(
            ticket.id,
            &actor,
            "reply",
            "",
            &format!("to {}", recipients.envelope.join(", ")),
        )
        .await?;
        if !applied.status_set {
            tx.set_status(&ticket, status_key::WAITING, &actor).await?;
        }
        if !applied.assignee_set && ticket.assignee_id.is_none() {
            tx.set_assignee(&ticket, Some((agent.id, &agent.login)), &actor)
                .await?;
        }
        tx.commit().await?;
        self.store.sync().await?;
        self.outbox_wake.notify_one();
        tracing::info!(ticket = ticket.number, agent = %agent.login, message_id = %message_id, "reply");
        Ok(())
    }

    /// The ticket an agent's mail belongs to: an item it answers (which also gives the
    /// version), any Message-ID the ticket knows, then the subject tag.
    async fn find_ticket(&self, tx: &mut Tx, m: &IncomingMail) -> Result<Option<Found>, Refusal> {
        let refs: Vec<String> = m.in_reply_to.iter().chain(&m.references).cloned().collect();
        for id in &m.in_reply_to {
            if let Some((ticket_id, item_id)) = tx.item_by_message_id(id).await? {
                let t = tx.ticket_by_id(ticket_id).await?;
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
    #[allow(clippy::too_many_arguments)]
    async fn new_ticket(
        &self,
        tx: &mut Tx,
        agent: &Agent,
        actor: &Actor,
        m: &IncomingMail,
        lines: &[CommandLine],
        from_queue: Option<&Queue>,
        is_comment: bool,
        queues: &[Queue],
    ) -> Result<TicketRef, Refusal> {
        let named_queue = lines.iter().find_map(|l| match &l.command {
            Command::Queue(name) => Some((l, name)),
            _ => None,
        });
        let queue = match (is_comment, named_queue, from_queue) {
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
                actor,
            )
            .await?;
        Ok(t)
    }
}

/// Applies the agent's commands in order, each a history entry; the first one the store
/// cannot apply refuses the mail (the transaction is dropped, so nothing stays applied).
async fn apply(
    tx: &mut Tx,
    ticket: &mut TicketRef,
    fields: &crate::store::TicketFields,
    lines: &[CommandLine],
    agent: &Agent,
    actor: &Actor,
    queues: &[Queue],
) -> Result<Applied, Refusal> {
    let mut applied = Applied::default();
    for line in lines {
        match &line.command {
            Command::Status(name) => {
                let key = match tx.status_key_by_name(name).await {
                    Ok(key) => key,
                    Err(StoreError::NotFound(why)) => return Err(line.error(why).into()),
                    Err(e) => return Err(e.into()),
                };
                if key == status_key::MERGED {
                    return Err(line.error("a ticket becomes merged only by #merge").into());
                }
                tx.set_status(ticket, &key, actor).await?;
                ticket.status_key = key;
                applied.status_set = true;
            }
            Command::Priority(p) => {
                tx.set_field(
                    ticket.id,
                    Field::Priority,
                    Arg::Text(p.as_str().into()),
                    (fields.priority.as_str(), p.as_str()),
                    actor,
                )
                .await?;
            }
            Command::Assign(who) => {
                let target = match who {
                    Assignee::Me => Some((agent.id, agent.login.clone())),
                    Assignee::Nobody => None,
                    Assignee::Login(login) => Some(
                        tx.agent_id_by_login(login)
                            .await?
                            .ok_or_else(|| line.error(format!("no agent with login {login:?}")))?,
                    ),
                };
                tx.set_assignee(
                    ticket,
                    target.as_ref().map(|(id, l)| (*id, l.as_str())),
                    actor,
                )
                .await?;
                ticket.assignee_id = target.as_ref().map(|(id, _)| *id);
                applied.assignee_set = true;
            }
            Command::Queue(name) => {
                let q = queues
                    .iter()
                    .find(|q| q.name.eq_ignore_ascii_case(name.trim()))
                    .ok_or_else(|| line.error(format!("no queue named {name:?}")))?;
                if !agent.is_admin && !agent.queues.contains(&q.name) {
                    return Err(line
                        .error(format!("you have no access to queue {}", q.name))
                        .into());
                }
                tx.set_field(
                    ticket.id,
                    Field::Queue,
                    Arg::Int(q.id),
                    (&ticket.queue_name, &q.name),
                    actor,
                )
                .await?;
                ticket.queue_id = q.id;
                ticket.queue_name = q.name.clone();
            }
            Command::Tags(changes) => {
                let names: Vec<String> =
                    changes.add.iter().chain(&changes.remove).cloned().collect();
                let known = tx.tags_by_names(&names).await?;
                for name in &names {
                    if !known.contains_key(&name.to_lowercase()) {
                        return Err(line
                            .error(format!("no tag named {name:?} (an admin defines tags)"))
                            .into());
                    }
                }
                for name in &changes.add {
                    let (id, n) = &known[&name.to_lowercase()];
                    tx.add_tag(ticket.id, (*id, n), actor).await?;
                }
                for name in &changes.remove {
                    let (id, n) = &known[&name.to_lowercase()];
                    tx.remove_tag(ticket.id, (*id, n), actor).await?;
                }
            }
            Command::Due(date) => {
                let new = date.map(|d| d.format("%Y-%m-%d").to_string());
                tx.set_field(
                    ticket.id,
                    Field::Due,
                    Arg::OptText(new.clone()),
                    (
                        fields.due_date.as_deref().unwrap_or(""),
                        new.as_deref().unwrap_or(""),
                    ),
                    actor,
                )
                .await?;
            }
            Command::Billable(b) => {
                let word = |b: bool| if b { "yes" } else { "no" };
                tx.set_field(
                    ticket.id,
                    Field::Billable,
                    Arg::Int(i64::from(*b)),
                    (word(fields.billable), word(*b)),
                    actor,
                )
                .await?;
            }
            Command::Watch | Command::Unwatch => {
                let on = matches!(line.command, Command::Watch);
                tx.set_watcher(ticket.id, (agent.id, &agent.login), on, actor)
                    .await?;
            }
            Command::Merge(number) => {
                let other = tx
                    .ticket_by_number(*number)
                    .await?
                    .ok_or_else(|| line.error(format!("no ticket #{number}")))?;
                if !agent.is_admin && !agent.queues.contains(&other.queue_name) {
                    return Err(line
                        .error(format!("you have no access to ticket #{number}"))
                        .into());
                }
                match tx.merge(&other, ticket, actor).await {
                    Ok(()) => {}
                    Err(StoreError::Invalid(why)) => return Err(line.error(why).into()),
                    Err(e) => return Err(e.into()),
                }
            }
            Command::Link(number) => {
                let id = tx
                    .document_id_by_number(number)
                    .await?
                    .ok_or_else(|| line.error(format!("no document {number:?}")))?;
                tx.set_field(
                    ticket.id,
                    Field::Document,
                    Arg::OptInt(Some(id)),
                    (fields.document.as_deref().unwrap_or(""), number),
                    actor,
                )
                .await?;
            }
            Command::Customer(number) => {
                let id = tx
                    .customer_id_by_number(number)
                    .await?
                    .ok_or_else(|| line.error(format!("no customer {number:?}")))?;
                tx.set_field(
                    ticket.id,
                    Field::Customer,
                    Arg::OptInt(Some(id)),
                    (fields.customer_number.as_deref().unwrap_or(""), number),
                    actor,
                )
                .await?;
                ticket.customer_id = Some(id);
            }
            Command::Cc(changes) => {
                applied.cc.add.extend(changes.add.iter().cloned());
                applied.cc.remove.extend(changes.remove.iter().cloned());
            }
            Command::Template(name) => {
                let body = tx
                    .template_body(name)
                    .await?
                    .ok_or_else(|| line.error(format!("no template named {name:?}")))?;
                applied.template = Some(body);
            }
            // Read before anything is applied: they switch checks off.
            Command::Force | Command::NoAttachCheck => {}
        }
    }
    Ok(applied)
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
    type Agent = Agent;

    async fn authenticate(&self, login: &str, password: &str) -> Result<Option<Agent>, String> {
        let agent = match self.store.agent_by_login(login).await {
            Ok(a) => Some(a),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.to_string()),
        };
        let hash = match &agent {
            Some(a) => a.password_hash.clone(),
            None => self
                .dummy_hash
                .get_or_init(|| async {
                    tokio::task::spawn_blocking(|| password::hash("no such login"))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .unwrap_or_default()
                })
                .await
                .clone(),
        };
        let password = password.to_string();
        // argon2 takes tens of milliseconds of CPU: not on the async threads.
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .map_err(|e| e.to_string())?;
        Ok(agent.filter(|_| ok))
    }

    async fn accepts(&self, agent: Option<&Agent>, _rcpt: &str) -> bool {
        agent.is_some()
    }

    async fn deliver(
        &self,
        agent: Option<&Agent>,
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
            Some(agent) => self.submit(&agent.login, rcpts, raw).await.map_err(|r| {
                if let Refusal::Transient(e) = &r {
                    tracing::error!(agent = %agent.login, error = %e, "submission: cannot commit");
                }
                DeliverError::from(r)
            }),
        };
        rcpts.iter().map(|_| result.clone()).collect()
    }
}
