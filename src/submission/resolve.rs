//! The agent's commands worked out, in order, on the ticket as each leaves it: one function
//! per command. Nothing is written here; a command that names nothing known, or that the
//! agent may not apply, refuses the whole mail.
use crate::core::commands::{Assignee, Changes, Command, CommandLine};
use crate::core::model::{Agent, status_key};
use crate::store::{Arg, Field, StoreError, TicketFields, TicketRef, Tx, mergeable};

use super::{Mail, Refusal};

/// What one command changes, worked out before anything is written.
pub(super) enum Change {
    Status {
        before: TicketRef,
        key: String,
    },
    Assignee {
        before: TicketRef,
        to: Option<(i64, String)>,
    },
    Field {
        field: Field,
        value: Arg,
        old: String,
        new: String,
    },
    Tag {
        id: i64,
        name: String,
        on: bool,
    },
    Watch(bool),
    Merge {
        from: TicketRef,
        into: TicketRef,
    },
}

/// What the commands do, and what they leave for the rest of the mail.
#[derive(Default)]
pub(super) struct Resolved {
    pub changes: Vec<Change>,
    pub status_set: bool,
    pub assignee_set: bool,
    pub template: Option<String>,
    pub cc: Changes,
    /// The tickets `#merge` brings in.
    pub merged: Vec<TicketRef>,
}

/// Works out the agent's commands in order on `ticket`, which each command leaves as the
/// next one sees it.
pub(super) async fn resolve(
    tx: &mut Tx,
    ticket: &mut TicketRef,
    fields: &TicketFields,
    mail: &Mail<'_>,
) -> Result<Resolved, Refusal> {
    let agent = &mail.agent;
    let mut r = Resolved::default();
    for line in &mail.lines {
        match &line.command {
            Command::Status(name) => status(tx, ticket, line, name, &mut r).await?,
            Command::Priority(p) => r.changes.push(field(
                Field::Priority,
                Arg::Text(p.as_str().into()),
                fields.priority.as_str(),
                p.as_str(),
            )),
            Command::Assign(who) => assign(tx, ticket, agent, line, who, &mut r).await?,
            Command::Queue(name) => r.changes.push(queue(ticket, mail, line, name)?),
            Command::Tags(changes) => r.changes.extend(tags(tx, line, changes).await?),
            Command::Due(date) => {
                let new = date.map(|d| d.format("%Y-%m-%d").to_string());
                let old = fields.due_date.clone().unwrap_or_default();
                let value = Arg::OptText(new.clone());
                r.changes
                    .push(field(Field::Due, value, &old, &new.unwrap_or_default()));
            }
            Command::Billable(b) => {
                let word = |b: bool| if b { "yes" } else { "no" };
                let value = Arg::Int(i64::from(*b));
                r.changes.push(field(
                    Field::Billable,
                    value,
                    word(fields.billable),
                    word(*b),
                ));
            }
            Command::Watch => r.changes.push(Change::Watch(true)),
            Command::Unwatch => r.changes.push(Change::Watch(false)),
            Command::Merge(number) => merge(tx, ticket, agent, line, *number, &mut r).await?,
            Command::Link(number) => r.changes.push(link(tx, fields, line, number).await?),
            Command::Customer(number) => r
                .changes
                .push(customer(tx, ticket, fields, line, number).await?),
            Command::Cc(changes) => {
                r.cc.add.extend(changes.add.iter().cloned());
                r.cc.remove.extend(changes.remove.iter().cloned());
            }
            Command::Template(name) => r.template = Some(template(tx, line, name).await?),
            // Read before anything is applied: they switch checks off.
            Command::Force | Command::NoAttachCheck => {}
        }
    }
    Ok(r)
}

fn field(field: Field, value: Arg, old: &str, new: &str) -> Change {
    Change::Field {
        field,
        value,
        old: old.into(),
        new: new.into(),
    }
}

/// `#status NAME`: any status but merged, which only `#merge` sets.
async fn status(
    tx: &mut Tx,
    ticket: &mut TicketRef,
    line: &CommandLine,
    name: &str,
    r: &mut Resolved,
) -> Result<(), Refusal> {
    let key = match tx.status_key_by_name(name).await {
        Ok(key) => key,
        Err(StoreError::NotFound(why)) => return Err(line.error(why).into()),
        Err(e) => return Err(e.into()),
    };
    if key == status_key::MERGED {
        return Err(line.error("a ticket becomes merged only by #merge").into());
    }
    r.changes.push(Change::Status {
        before: ticket.clone(),
        key: key.clone(),
    });
    ticket.status_key = key;
    r.status_set = true;
    Ok(())
}

/// `#assign me|nobody|LOGIN`.
async fn assign(
    tx: &mut Tx,
    ticket: &mut TicketRef,
    agent: &Agent,
    line: &CommandLine,
    who: &Assignee,
    r: &mut Resolved,
) -> Result<(), Refusal> {
    let to = match who {
        Assignee::Me => Some((agent.id, agent.login.clone())),
        Assignee::Nobody => None,
        Assignee::Login(login) => Some(
            tx.agent_id_by_login(login)
                .await?
                .ok_or_else(|| line.error(format!("no agent with login {login:?}")))?,
        ),
    };
    let assignee_id = to.as_ref().map(|(id, _)| *id);
    r.changes.push(Change::Assignee {
        before: ticket.clone(),
        to,
    });
    ticket.assignee_id = assignee_id;
    r.assignee_set = true;
    Ok(())
}

/// `#queue NAME`: only into a queue the agent may work in.
fn queue(
    ticket: &mut TicketRef,
    mail: &Mail<'_>,
    line: &CommandLine,
    name: &str,
) -> Result<Change, Refusal> {
    let q = mail
        .queues
        .iter()
        .find(|q| q.name.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| line.error(format!("no queue named {name:?}")))?;
    if !mail.agent.is_admin && !mail.agent.queues.contains(&q.name) {
        return Err(line
            .error(format!("you have no access to queue {}", q.name))
            .into());
    }
    let change = field(Field::Queue, Arg::Int(q.id), &ticket.queue_name, &q.name);
    ticket.queue_id = q.id;
    ticket.queue_name = q.name.clone();
    Ok(change)
}

/// `#tags +a -b`: only tags an admin defined.
async fn tags(tx: &mut Tx, line: &CommandLine, changes: &Changes) -> Result<Vec<Change>, Refusal> {
    let names: Vec<String> = changes.add.iter().chain(&changes.remove).cloned().collect();
    let known = tx.tags_by_names(&names).await?;
    if let Some(name) = names
        .iter()
        .find(|n| !known.contains_key(&n.to_lowercase()))
    {
        return Err(line
            .error(format!("no tag named {name:?} (an admin defines tags)"))
            .into());
    }
    let edits = [(&changes.add, true), (&changes.remove, false)];
    Ok(edits
        .into_iter()
        .flat_map(|(names, on)| names.iter().map(move |name| (name, on)))
        .map(|(name, on)| {
            let (id, name) = &known[&name.to_lowercase()];
            Change::Tag {
                id: *id,
                name: name.clone(),
                on,
            }
        })
        .collect())
}

/// `#merge N`: ticket N, which the agent may see, goes into this one.
async fn merge(
    tx: &mut Tx,
    ticket: &TicketRef,
    agent: &Agent,
    line: &CommandLine,
    number: i64,
    r: &mut Resolved,
) -> Result<(), Refusal> {
    let other = tx
        .ticket_by_number(number)
        .await?
        .ok_or_else(|| line.error(format!("no ticket #{number}")))?;
    if !agent.is_admin && !agent.queues.contains(&other.queue_name) {
        return Err(line
            .error(format!("you have no access to ticket #{number}"))
            .into());
    }
    mergeable(&other, ticket).map_err(|why| line.error(why))?;
    r.changes.push(Change::Merge {
        from: other.clone(),
        into: ticket.clone(),
    });
    r.merged.push(other);
    Ok(())
}

/// `#link DOCUMENT`.
async fn link(
    tx: &mut Tx,
    fields: &TicketFields,
    line: &CommandLine,
    number: &str,
) -> Result<Change, Refusal> {
    let id = tx
        .document_id_by_number(number)
        .await?
        .ok_or_else(|| line.error(format!("no document {number:?}")))?;
    let old = fields.document.clone().unwrap_or_default();
    Ok(field(Field::Document, Arg::OptInt(Some(id)), &old, number))
}

/// `#customer NUMBER`.
async fn customer(
    tx: &mut Tx,
    ticket: &mut TicketRef,
    fields: &TicketFields,
    line: &CommandLine,
    number: &str,
) -> Result<Change, Refusal> {
    let id = tx
        .customer_id_by_number(number)
        .await?
        .ok_or_else(|| line.error(format!("no customer {number:?}")))?;
    ticket.customer_id = Some(id);
    let old = fields.customer_number.clone().unwrap_or_default();
    Ok(field(Field::Customer, Arg::OptInt(Some(id)), &old, number))
}

/// `#template NAME`: its text becomes the reply's body.
async fn template(tx: &mut Tx, line: &CommandLine, name: &str) -> Result<String, Refusal> {
    let body = tx
        .template_body(name)
        .await?
        .ok_or_else(|| line.error(format!("no template named {name:?}")))?;
    Ok(body)
}
