//! The intake pipeline: one customer mail for one queue becomes ticket state. POP3 polling
//! and the inbound listener both feed it; it commits everything a mail causes (ticket,
//! item, history, customer, autoresponse or out-of-office note in the outbox, POP3 UIDL)
//! in one transaction, so the caller may acknowledge upstream right after `take_in`
//! returns (after [`Store::sync`] when it committed with [`Durability::Deferred`]).
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::config::Config;
use crate::core::compose::{self, AutoReply};
use crate::core::loops::{self, LoopContext};
use crate::core::mail::{self, IncomingMail};
use crate::core::model::{Customer, ItemKind, OnClosed, Queue, status_key};
use crate::core::subject;
use crate::core::texts::{self, Placeholders};
use crate::intake::authcheck::AuthChecker;
use crate::protocol::login_guard::Checked;
use crate::protocol::smtp_server::{DeliverError, MailService, Unavailable};
use crate::store::{
    Actor, AgentAway, Content, Lease, NewItem, NewOutbound, NewTicket, Store, StoreError,
    TicketRef, Tx,
};

/// One mail as it arrived.
pub struct Arrival {
    pub raw: Vec<u8>,
    /// The POP3 UIDL it had upstream, recorded with the commit.
    pub uidl: Option<String>,
}

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before `commit` returns: the caller acknowledges right after (SMTP 250).
    Synced,
    /// With the next [`Store::sync`], which the caller runs before it acknowledges
    /// (POP3 DELE); see [`Store::begin_deferred`].
    Deferred,
}

/// What became of a mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    NewTicket(i64),
    FollowUp(i64),
    /// The same bytes were taken in before (a redelivery after a crash).
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mail parser failed: {0}")]
    Parser(String),
}

impl IntakeError {
    /// Retrying the same batch later may work (the store was away).
    pub fn is_transient(&self) -> bool {
        match self {
            IntakeError::Store(e) => e.is_transient(),
            IntakeError::Parser(_) => false,
        }
    }

    /// The mail itself can never be taken: the parser failed on it, or the database refused
    /// what it carries. A failure that is neither this nor transient is not understood, and
    /// the mail is kept to try again.
    pub fn is_permanent(&self) -> bool {
        match self {
            IntakeError::Store(e) => e.is_permanent(),
            IntakeError::Parser(_) => true,
        }
    }
}

pub struct Pipeline {
    store: Store,
    config: Arc<Config>,
    auth: AuthChecker,
    outbox_wake: Arc<Notify>,
}

/// What is worked out about a mail before the transaction opens (parsing, DNS).
pub struct Prepared {
    mail: IncomingMail,
    stored_raw: Vec<u8>,
    /// Parsing `stored_raw` gives the same text and HTML as `mail` (see `NewItem::body_in_raw`).
    body_in_raw: bool,
    sha256: String,
    /// `Some(summary)` when the sender's domain fails DMARC: no customer is assigned.
    spoof: Option<String>,
    /// The one customer with the From address, unless spoofed or ambiguous.
    customer_id: Option<i64>,
}

/// What a batch's mails need to know from the store, asked for all of them at once before
/// the first write and kept up to date as the batch goes on: per-mail questions would each
/// cost a round trip and send the queued writes (see `store::pending`).
struct Batch {
    /// Lower-case addresses of every queue, enabled or not.
    queue_addresses: Vec<String>,
    /// Mails (sha256 of the stored bytes) already taken in for this queue.
    seen: HashSet<String>,
    /// Message-IDs of the batch's references that tickets know, and those added since.
    message_ids: HashSet<String>,
    /// Automatic answers per recipient in the last 24 hours.
    autoresponses: HashMap<String, i64>,
    /// The customers the new tickets may get, for the autoresponder's placeholders; others
    /// are added when an answer needs them.
    customers: HashMap<i64, Customer>,
    /// Agents out of the office now, by id.
    away: HashMap<i64, AgentAway>,
    /// (ticket, agent): the ticket got the away agent's note during this absence.
    away_noted: HashSet<(i64, i64)>,
    /// (ticket, agent): a substitute of an away agent watches the ticket.
    watching: HashSet<(i64, i64)>,
}

impl Batch {
    async fn look_up(tx: &mut Tx, queue: &Queue, mails: &[Prepared]) -> Result<Batch, IntakeError> {
        let shas: Vec<String> = mails.iter().map(|p| p.sha256.clone()).collect();
        let refs: Vec<String> = mails
            .iter()
            .flat_map(|p| p.mail.in_reply_to.iter().chain(&p.mail.references))
            .cloned()
            .collect();
        let recipients: Vec<String> = mails
            .iter()
            .filter_map(|p| p.mail.sender())
            .map(|a| a.address.clone())
            .collect();
        let customer_ids: Vec<i64> = mails.iter().filter_map(|p| p.customer_id).collect();
        let now = chrono::Utc::now().timestamp();
        let queue_addresses = tx.queue_addresses().await?;
        let seen = tx.seen_mails(queue.id, &shas).await?;
        let message_ids = tx.known_message_ids(&refs).await?;
        let autoresponses = tx.autoresponse_counts(&recipients, now - 86_400).await?;
        let customers = tx.customers_by_ids(&customer_ids).await?;
        let away = tx.agents_away(now).await?;
        let (away_noted, watching) = if away.is_empty() {
            Default::default()
        } else {
            let substitutes: Vec<i64> = away
                .values()
                .filter_map(|a| a.substitute.as_ref().map(|(id, _)| *id))
                .collect();
            (
                tx.away_notes_sent(&away).await?,
                tx.watched_by(&substitutes).await?,
            )
        };
        Ok(Batch {
            queue_addresses,
            seen,
            message_ids,
            autoresponses,
            customers,
            away,
            away_noted,
            watching,
        })
    }
}

impl Pipeline {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        auth: AuthChecker,
        outbox_wake: Arc<Notify>,
    ) -> Self {
        Pipeline {
            store,
            config,
            auth,
            outbox_wake,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes in a batch of mails for one queue in one transaction, durable when it returns.
    /// `lease`: see [`Pipeline::commit`].
    pub async fn take_in(
        &self,
        queue: &Queue,
        arrivals: &[Arrival],
        lease: Option<&Lease>,
    ) -> Result<Vec<Outcome>, IntakeError> {
        let prepared = self.prepare(arrivals).await?;
        self.commit(queue, arrivals, &prepared, Durability::Synced, lease)
            .await
    }

    /// Commits mails made ready by [`Pipeline::prepare`]: one transaction for all of them.
    /// With a `lease` (the queue's polling lease), nothing is committed unless this instance
    /// still holds it: an instance that took the queue over may be taking the same mails.
    pub async fn commit(
        &self,
        queue: &Queue,
        arrivals: &[Arrival],
        prepared: &[Prepared],
        durability: Durability,
        lease: Option<&Lease>,
    ) -> Result<Vec<Outcome>, IntakeError> {
        let mut tx = match durability {
            Durability::Synced => self.store.begin().await?,
            Durability::Deferred => self.store.begin_deferred().await?,
        };
        if let Some(lease) = lease {
            tx.hold(lease).await?;
        }
        let mut batch = Batch::look_up(&mut tx, queue, prepared).await?;
        let mut outcomes = Vec::with_capacity(arrivals.len());
        let mut autoresponded = false;
        for (a, p) in arrivals.iter().zip(prepared) {
            let (outcome, sent) = self.take_one(&mut tx, &mut batch, queue, p).await?;
            autoresponded |= sent;
            if let Some(uidl) = &a.uidl {
                tx.pop3_mark(queue.id, uidl, "taken");
            }
            outcomes.push(outcome);
        }
        tx.commit().await?;
        self.store.note_mail();
        if autoresponded {
            self.outbox_wake.notify_one();
        }
        for (o, p) in outcomes.iter().zip(prepared) {
            let id = p.mail.message_id.as_deref().unwrap_or("-");
            match o {
                Outcome::NewTicket(n) => {
                    tracing::info!(queue = %queue.name, ticket = n, message_id = id, "new ticket")
                }
                Outcome::FollowUp(n) => {
                    tracing::info!(queue = %queue.name, ticket = n, message_id = id, "follow-up")
                }
                Outcome::Duplicate => {
                    tracing::info!(queue = %queue.name, message_id = id, "duplicate delivery ignored")
                }
            }
        }
        Ok(outcomes)
    }

    /// Parses the mails and decides who is a customer, before the transaction opens (DNS
    /// for DMARC may take a while). Parsing runs on a blocking thread, so a poller can
    /// prepare the next batch while the last one commits.
    pub async fn prepare(&self, arrivals: &[Arrival]) -> Result<Vec<Prepared>, IntakeError> {
        let raws: Vec<Vec<u8>> = arrivals.iter().map(|a| a.raw.clone()).collect();
        let parsed = tokio::task::spawn_blocking(move || {
            raws.iter()
                .map(|raw| {
                    let stored_raw = mail::strip_gateway_headers(raw);
                    let sha256 = hex::encode(Sha256::digest(&stored_raw));
                    let mail = mail::parse(raw);
                    // Headers were taken out: check the body reads the same without them.
                    let body_in_raw = stored_raw.len() == raw.len() || {
                        let stored = mail::parse(&stored_raw);
                        stored.text == mail.text && stored.html == mail.html
                    };
                    (mail, stored_raw, body_in_raw, sha256)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| IntakeError::Parser(e.to_string()))?;
        let mails: Vec<&IncomingMail> = parsed.iter().map(|(m, ..)| m).collect();
        let senders: Vec<String> = mails
            .iter()
            .filter_map(|m| m.from.as_ref().or(m.reply_to.as_ref()))
            .map(|a| a.address.clone())
            .collect();
        let customers = self.store.customer_ids_by_emails(&senders).await?;
        let mut prepared = Vec::with_capacity(arrivals.len());
        for (a, (mail, stored_raw, body_in_raw, sha256)) in arrivals.iter().zip(parsed) {
            // DNS is asked only when the sender would get a customer: that is all it decides.
            let mut spoof = None;
            let mut customer_id = None;
            let sender = mail.from.as_ref().or(mail.reply_to.as_ref());
            let ids = sender
                .and_then(|s| customers.get(&s.address.trim().to_ascii_lowercase()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if !ids.is_empty() {
                let verdict = self.auth.check(&a.raw, None).await;
                if verdict.suspect {
                    spoof = Some(verdict.summary);
                } else if ids.len() == 1 {
                    customer_id = Some(ids[0]);
                }
            }
            prepared.push(Prepared {
                mail,
                stored_raw,
                body_in_raw,
                sha256,
                spoof,
                customer_id,
            });
        }
        Ok(prepared)
    }

    async fn take_one(
        &self,
        tx: &mut Tx,
        batch: &mut Batch,
        queue: &Queue,
        p: &Prepared,
    ) -> Result<(Outcome, bool), IntakeError> {
        if !batch.seen.insert(p.sha256.clone()) {
            return Ok((Outcome::Duplicate, false));
        }
        let m = &p.mail;
        let now = chrono::Utc::now().timestamp();
        let sender = Sender::of(m);
        let (creator, author, actor) = (&sender.creator, &sender.author, &sender.actor);
        let (existing, referenced) = self.find_ticket(tx, batch, m, author).await?;
        let mut note_for_new =
            referenced.map(|n| format!("referenced #{n} but the sender is no participant"));
        let target = match existing {
            Some(t)
                if t.status_closed
                    && closed_policy(queue, &t, tx).await? == OnClosed::NewTicket =>
            {
                note_for_new = Some(format!("follow-up of closed ticket #{}", t.number));
                None
            }
            other => other,
        };

        let (ticket, outcome, is_new) = match target {
            Some(t) => {
                if t.status_closed || t.status_key == status_key::WAITING {
                    tx.set_status(&t, status_key::OPEN, actor).await?;
                }
                (t.clone(), Outcome::FollowUp(t.number), false)
            }
            None => {
                let t = self
                    .open_ticket(tx, batch, queue, p, &sender, note_for_new, now)
                    .await?;
                (t.clone(), Outcome::NewTicket(t.number), true)
            }
        };
        add_customer_item(tx, batch, &ticket, p, &sender, is_new, now).await?;
        let sent = if is_new {
            self.autorespond(tx, batch, queue, &ticket, m, creator)
                .await?
        } else {
            self.away_note(tx, batch, queue, &ticket, m, creator)
                .await?
        };
        Ok((outcome, sent))
    }

    /// A new ticket for the mail: its CC list is every other address the customer wrote to
    /// outside the gateway; why it is new (and a spoof suspicion) goes into its history.
    #[allow(clippy::too_many_arguments)]
    async fn open_ticket(
        &self,
        tx: &mut Tx,
        batch: &Batch,
        queue: &Queue,
        p: &Prepared,
        sender: &Sender,
        note: Option<String>,
        now: i64,
    ) -> Result<TicketRef, IntakeError> {
        let (m, creator) = (&p.mail, sender.creator.as_str());
        let comment = self.config.comment_address();
        let mut cc: Vec<String> = Vec::new();
        for a in m.to.iter().chain(&m.cc) {
            let addr = &a.address;
            if addr != creator
                && addr != &comment
                && !batch.queue_addresses.contains(addr)
                && !cc.contains(addr)
            {
                cc.push(addr.clone());
            }
        }
        let t = tx
            .create_ticket(
                &NewTicket {
                    subject: subject::ticket_subject(&m.subject),
                    queue_id: queue.id,
                    queue_name: &queue.name,
                    creator_address: creator,
                    customer_id: p.customer_id,
                    cc: &cc,
                    spoof_suspect: p.spoof.is_some(),
                    first_number: self.config.tickets.first_number,
                    assignee_id: None,
                    at: now,
                },
                &sender.actor,
            )
            .await?;
        if let Some(note) = &note {
            tx.history(t.id, &Actor::system(), "note", "", note).await?;
        }
        if let Some(summary) = &p.spoof {
            tx.history(t.id, &Actor::system(), "spoof_suspect", "", summary)
                .await?;
        }
        Ok(t)
    }

    /// The ticket a mail follows up, by Message-ID references first, then by subject tag
    /// from a participant. Returns the ticket and, when a tag was not trusted, its number.
    async fn find_ticket(
        &self,
        tx: &mut Tx,
        batch: &Batch,
        m: &IncomingMail,
        author: &str,
    ) -> Result<(Option<TicketRef>, Option<i64>), IntakeError> {
        let refs: Vec<String> = m.in_reply_to.iter().chain(&m.references).cloned().collect();
        // Asked only when a reference is known: most new mail has none or only foreign ones.
        if refs.iter().any(|r| batch.message_ids.contains(r))
            && let Some(t) = tx.ticket_by_message_ids(&refs).await?
        {
            return Ok((Some(tx.resolve_merged(t).await?), None));
        }
        let mut referenced = None;
        for tag in subject::find_tags(&m.subject) {
            let Some(t) = tx.ticket_by_number(tag.number).await? else {
                continue;
            };
            // Ticket numbers are guessable: a tag alone counts only from a participant.
            let t = tx.resolve_merged(t).await?;
            if !author.is_empty() && tx.is_participant(&t, author).await? {
                return Ok((Some(t), None));
            }
            referenced.get_or_insert(tag.number);
        }
        Ok((None, referenced))
    }

    /// Sends the queue's autoresponse to a new ticket's creator unless a loop rule or the
    /// per-sender cap says no; either way the history says what happened.
    async fn autorespond(
        &self,
        tx: &mut Tx,
        batch: &mut Batch,
        queue: &Queue,
        ticket: &TicketRef,
        m: &IncomingMail,
        recipient: &str,
    ) -> Result<bool, IntakeError> {
        if !queue.autoresponder {
            return Ok(false);
        }
        let text = if queue.autoresponder_text.trim().is_empty() {
            texts::default_autoresponder_text(self.config.locale).to_string()
        } else {
            queue.autoresponder_text.clone()
        };
        let answer = Answer {
            kind: "autoresponse",
            id_kind: "ar",
            field: "autoresponse",
            agent_id: None,
            subject: subject::autoresponse_subject(&queue.name, ticket.number, &m.subject),
            text: &text,
        };
        self.answer(tx, batch, queue, ticket, m, recipient, &answer)
            .await
    }

    /// A follow-up on a ticket whose assignee is out of the office: the substitute starts
    /// watching the ticket, and the sender gets the agent's note once per ticket and
    /// absence, under the autoresponder's rules.
    async fn away_note(
        &self,
        tx: &mut Tx,
        batch: &mut Batch,
        queue: &Queue,
        ticket: &TicketRef,
        m: &IncomingMail,
        recipient: &str,
    ) -> Result<bool, IntakeError> {
        let Some(away) = ticket
            .assignee_id
            .and_then(|id| batch.away.get(&id))
            .cloned()
        else {
            return Ok(false);
        };
        if let Some((substitute, login)) = &away.substitute
            && batch.watching.insert((ticket.id, *substitute))
        {
            tx.add_watcher(ticket.id, *substitute);
            let note = format!("{login} (substitute while {} is away)", away.login);
            tx.history(ticket.id, &Actor::system(), "watcher", "", &note)
                .await?;
        }
        if batch.away_noted.contains(&(ticket.id, away.agent_id)) {
            let note = format!(
                "not sent: the ticket got {}'s note during this absence already",
                away.login
            );
            tx.history(ticket.id, &Actor::system(), "away_note", "", &note)
                .await?;
            return Ok(false);
        }
        let answer = Answer {
            kind: "away",
            id_kind: "away",
            field: "away_note",
            agent_id: Some(away.agent_id),
            // An answer in the conversation: `Re:` even when the customer's subject had none.
            subject: subject::reply_subject(
                &ticket.queue_name,
                ticket.number,
                &format!("Re: {}", m.subject),
            ),
            text: &away.text,
        };
        let sent = self
            .answer(tx, batch, queue, ticket, m, recipient, &answer)
            .await?;
        if sent {
            batch.away_noted.insert((ticket.id, away.agent_id));
        }
        Ok(sent)
    }

    /// Queues an automatic answer to `recipient` in the outbox unless a loop rule or the
    /// per-sender cap says no; either way the history says what happened.
    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        tx: &mut Tx,
        batch: &mut Batch,
        queue: &Queue,
        ticket: &TicketRef,
        m: &IncomingMail,
        recipient: &str,
        answer: &Answer<'_>,
    ) -> Result<bool, IntakeError> {
        let field = answer.field;
        let marker = self.config.loop_marker();
        let is_queue_address = |a: &str| batch.queue_addresses.iter().any(|q| q == a);
        let ctx = LoopContext {
            x_loop_marker: &marker,
            is_queue_address: &is_queue_address,
            recipient: (!recipient.is_empty()).then_some(recipient),
        };
        if let Some(reason) = loops::autoresponse_block(m, &ctx) {
            let note = format!("not sent: {}", reason.reason());
            tx.history(ticket.id, &Actor::system(), field, "", &note)
                .await?;
            return Ok(false);
        }
        let cap = i64::from(self.config.autoresponder.max_per_sender_per_day);
        let sent_before = batch.autoresponses.get(&recipient.to_ascii_lowercase());
        if sent_before.copied().unwrap_or(0) >= cap {
            let note =
                format!("not sent: {recipient} got {cap} automatic answers in the last 24 hours");
            tx.history(ticket.id, &Actor::system(), field, "", &note)
                .await?;
            return Ok(false);
        }
        if let Some(id) = ticket.customer_id
            && !batch.customers.contains_key(&id)
        {
            // A follow-up's ticket may have a customer other than the batch's senders.
            batch.customers.extend(tx.customers_by_ids(&[id]).await?);
        }
        let neutral = texts::queue_salutation(queue, self.config.locale);
        let placeholders = Placeholders {
            customer: ticket.customer_id.and_then(|id| batch.customers.get(&id)),
            ticket_number: ticket.number,
            queue: &ticket.queue_name,
            neutral_salutation: neutral,
        };
        let message_id = compose::message_id(ticket.number, answer.id_kind, &self.config.hostname);
        let raw = match compose::auto_reply(&AutoReply {
            from_name: &queue.friendly_name,
            from_address: &queue.address,
            to: recipient,
            subject: &answer.subject,
            text: &texts::fill(answer.text, &placeholders),
            ticket_number: ticket.number,
            in_reply_to: m.message_id.as_deref(),
            message_id: &message_id,
            loop_marker: &marker,
        }) {
            Ok(raw) => raw,
            Err(e) => {
                tx.history(
                    ticket.id,
                    &Actor::system(),
                    field,
                    "",
                    &format!("not sent: {e}"),
                )
                .await?;
                return Ok(false);
            }
        };
        tx.outbox_add(&NewOutbound {
            queue_id: queue.id,
            ticket_id: Some(ticket.id),
            agent_id: answer.agent_id,
            kind: answer.kind,
            mail_from: &queue.address,
            rcpt_to: &[recipient.to_string()],
            message_id: &message_id,
            content: Content::Bytes(&raw),
        });
        tx.record_autoresponse(recipient, queue.id, ticket.id, answer.kind, answer.agent_id);
        *batch
            .autoresponses
            .entry(recipient.to_ascii_lowercase())
            .or_default() += 1;
        batch.message_ids.insert(message_id.clone());
        tx.history(
            ticket.id,
            &Actor::system(),
            field,
            "",
            &format!("sent to {recipient}"),
        )
        .await?;
        Ok(true)
    }
}

/// An automatic answer to a customer mail: the autoresponse to a new ticket, or an agent's
/// out-of-office note on a follow-up.
struct Answer<'a> {
    /// Outbox and autoresponse-log kind: `autoresponse` or `away`.
    kind: &'static str,
    /// Names the kind in the Message-ID.
    id_kind: &'static str,
    /// The history field that says what happened.
    field: &'static str,
    /// The away agent whose note it is.
    agent_id: Option<i64>,
    subject: String,
    /// With placeholders.
    text: &'a str,
}

/// The closed-ticket policy of the queue the ticket is in now.
async fn closed_policy(
    arrived_in: &Queue,
    t: &TicketRef,
    tx: &mut Tx,
) -> Result<OnClosed, IntakeError> {
    if t.queue_id == arrived_in.id {
        return Ok(arrived_in.on_closed);
    }
    Ok(tx.queue_on_closed(t.queue_id).await?)
}

/// Who a customer mail is from.
struct Sender {
    /// Where answers go: Reply-To wins.
    creator: String,
    /// Who wrote it (From), whom the participant check asks about.
    author: String,
    actor: Actor,
}

impl Sender {
    fn of(m: &IncomingMail) -> Sender {
        let creator = m.sender().map(|a| a.address.clone()).unwrap_or_default();
        let author = m
            .from
            .as_ref()
            .or(m.reply_to.as_ref())
            .map(|a| a.address.clone())
            .unwrap_or_default();
        let actor = Actor::customer(if author.is_empty() {
            "unknown sender"
        } else {
            &author
        });
        Sender {
            creator,
            author,
            actor,
        }
    }
}

/// The customer's mail as an item of `ticket`, with its history entries.
async fn add_customer_item(
    tx: &mut Tx,
    batch: &mut Batch,
    ticket: &TicketRef,
    p: &Prepared,
    sender: &Sender,
    is_new: bool,
    now: i64,
) -> Result<(), IntakeError> {
    let (m, author, actor) = (&p.mail, sender.author.as_str(), &sender.actor);
    let from_name = m
        .from
        .as_ref()
        .and_then(|a| a.name.clone())
        .unwrap_or_default();
    let to: Vec<String> = m.to.iter().map(|a| a.address.clone()).collect();
    let cc: Vec<String> = m.cc.iter().map(|a| a.address.clone()).collect();
    tx.add_item(
        ticket.id,
        &NewItem {
            kind: ItemKind::Customer,
            agent_id: None,
            from_address: author,
            from_name: &from_name,
            to: &to,
            cc: &cc,
            subject: &m.subject,
            date: m.date.unwrap_or(now),
            message_id: m.message_id.as_deref().unwrap_or(""),
            text: &m.text,
            html: m.html.as_deref(),
            body_in_raw: p.body_in_raw,
            raw: &p.stored_raw,
            raw_sha256: &p.sha256,
            problems: &m.problems,
            attachments: &m.attachments,
        },
        now,
    )
    .await?;
    if let Some(id) = &m.message_id {
        batch.message_ids.insert(id.clone());
    }
    if !is_new {
        tx.history(ticket.id, actor, "item", "", "customer mail")
            .await?;
    }
    if !m.problems.is_empty() {
        tx.history(
            ticket.id,
            &Actor::system(),
            "parse_problem",
            "",
            &m.problems.join("; "),
        )
        .await?;
    }
    Ok(())
}

/// The inbound SMTP/LMTP listener delivers through the same pipeline, one commit per
/// recipient queue. A failure that may pass (the store away) is temporary for the sender
/// (451), so an MTA retries instead of bouncing; one the mail itself causes is permanent.
impl MailService for Pipeline {
    type Agent = ();

    async fn authenticate(
        &self,
        _login: &str,
        _password: &str,
    ) -> Result<Checked<()>, Unavailable> {
        Ok(Checked::Wrong)
    }

    async fn accepts(&self, _agent: Option<&()>, rcpt: &str) -> Result<bool, Unavailable> {
        match self.store.enabled_queue_by_address(rcpt).await {
            Ok(q) => Ok(q.is_some()),
            Err(e) => Err(Unavailable::new(e)),
        }
    }

    async fn deliver(
        &self,
        _agent: Option<&()>,
        _mail_from: &str,
        rcpts: &[String],
        raw: &[u8],
    ) -> Vec<Result<(), DeliverError>> {
        let mut results = Vec::with_capacity(rcpts.len());
        for rcpt in rcpts {
            let queue = match self.store.enabled_queue_by_address(rcpt).await {
                Ok(Some(queue)) => queue,
                Ok(None) => {
                    results.push(Err(DeliverError::NoSuchRecipient));
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "inbound: cannot look up the recipient");
                    results.push(Err(DeliverError::from(IntakeError::from(e))));
                    continue;
                }
            };
            let arrival = Arrival {
                raw: raw.to_vec(),
                uidl: None,
            };
            let taken = self
                .take_in(&queue, std::slice::from_ref(&arrival), None)
                .await;
            results.push(taken.map(|_| ()).map_err(|e| {
                tracing::error!(queue = %queue.name, error = %e, "inbound: cannot commit mail");
                DeliverError::from(e)
            }));
        }
        results
    }
}

/// A mail the pipeline can never take bounces (554); anything else may pass, and the
/// sender keeps the mail and tries again (451): nothing is lost to a failure not understood.
impl From<IntakeError> for DeliverError {
    fn from(e: IntakeError) -> Self {
        match e.is_permanent() {
            true => DeliverError::Permanent(e.to_string()),
            false => DeliverError::Transient(e.to_string()),
        }
    }
}
