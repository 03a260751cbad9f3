//! Ticket commands: list by filter, show, merge, assign, status, the seed's direct search,
//! statistics.
use anyhow::anyhow;

use super::output::{json, table, time};
use super::{SearchArgs, TicketCmd};
use crate::core::model::{TicketDetail, TicketSummary};
use crate::store::{Actor, Store, TicketChange, TicketQuery};

fn print_list(tickets: &[TicketSummary], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(tickets);
    }
    // The seed's list columns: number, priority, billable, customer (or creator address),
    // assignee, subject, e-mail, created, status, last action.
    let rows: Vec<Vec<String>> = tickets
        .iter()
        .map(|t| {
            vec![
                t.number.to_string(),
                match t.priority {
                    crate::core::model::Priority::Low => "",
                    crate::core::model::Priority::Medium => "medium",
                    crate::core::model::Priority::High => "HIGH",
                }
                .into(),
                if t.billable { "B" } else { "" }.into(),
                t.customer_number
                    .clone()
                    .unwrap_or_else(|| t.creator_address.clone()),
                t.assignee.clone().unwrap_or_default(),
                t.subject.chars().take(60).collect(),
                t.creator_address.clone(),
                time(t.created_at),
                t.status.clone(),
                time(t.last_action_at),
            ]
        })
        .collect();
    table(
        &[
            "NUMBER",
            "P",
            "B",
            "CUSTOMER",
            "AGENT",
            "SUBJECT",
            "E-MAIL",
            "CREATED",
            "STATUS",
            "LAST ACTION",
        ],
        &rows,
    );
    Ok(())
}

pub async fn ticket(store: &Store, cmd: TicketCmd) -> anyhow::Result<()> {
    match cmd {
        TicketCmd::List {
            filter,
            json: as_json,
        } => {
            let text = filter.join(" ");
            let f = crate::core::filter::parse(&text).map_err(|e| anyhow!("{e}"))?;
            let q = TicketQuery::from_filter(&f, crate::store::now(), None);
            print_list(&store.ticket_list(&q).await?, as_json)
        }
        TicketCmd::Show {
            number,
            json: as_json,
        } => {
            let t = store.ticket_show(number).await?;
            if as_json {
                return json(&t);
            }
            print_ticket(&t);
            Ok(())
        }
        TicketCmd::Merge { from, into } => {
            store.ticket_merge(from, into, &admin()).await?;
            println!("ticket #{from} merged into #{into}");
            Ok(())
        }
        TicketCmd::Assign {
            number,
            login,
            json: as_json,
        } => {
            let login = (!login.eq_ignore_ascii_case("none")).then_some(login.as_str());
            let change = store.ticket_assign(number, login, &admin()).await?;
            print_change(&change, as_json)
        }
        TicketCmd::Status {
            number,
            status,
            json: as_json,
        } => {
            let change = store.ticket_set_status(number, &status, &admin()).await?;
            print_change(&change, as_json)
        }
    }
}

/// `ticket show` for people: the ticket's fields, its items newest first, its history and
/// the customer's other tickets.
fn print_ticket(t: &TicketDetail) {
    print_fields(t);
    for i in t.items.iter().rev() {
        println!(
            "\n--- {} {} from {} ({})",
            i.kind,
            time(i.date),
            i.from,
            i.subject
        );
        println!("{}", i.text.trim_end());
        for a in &i.attachments {
            println!(
                "[attachment] {} ({} bytes, {})",
                a.name, a.size, a.content_type
            );
        }
    }
    println!("\nHistory:");
    for h in &t.history {
        println!(
            "  {} {} {}: {} -> {}",
            time(h.at),
            h.actor,
            h.field,
            h.old,
            h.new
        );
    }
    if !t.other_tickets.is_empty() {
        let others: Vec<String> = t.other_tickets.iter().map(|n| format!("#{n}")).collect();
        println!("\nOther tickets of the customer: {}", others.join(", "));
    }
}

/// The head of `ticket show`: one line per group of fields, optional ones only when set.
fn print_fields(t: &TicketDetail) {
    println!("Ticket #{}  {}", t.number, t.subject);
    println!(
        "Queue: {}   Status: {}   Priority: {}",
        t.queue, t.status, t.priority
    );
    println!(
        "Assignee: {}   Due: {}   Billable: {}",
        t.assignee.as_deref().unwrap_or("-"),
        t.due_date.as_deref().unwrap_or("-"),
        if t.billable { "yes" } else { "no" }
    );
    match &t.customer {
        Some(c) => {
            let block = if c.delivery_block {
                "  [DELIVERY BLOCK]"
            } else {
                ""
            };
            println!(
                "Customer: {} {} {}{block}",
                c.number, c.company1, c.last_name
            )
        }
        None => println!("Customer: -"),
    }
    println!("Creator: {}   CC: {}", t.creator_address, t.cc.join(", "));
    if t.spoof_suspect {
        println!("WARNING: the sender failed the DMARC check (spoofing suspect)");
    }
    if let Some(m) = t.merged_into {
        println!("Merged into #{m}");
    }
    if !t.tags.is_empty() {
        println!("Tags: {}", t.tags.join(", "));
    }
    if let Some(d) = &t.document {
        println!("Document: {} {} {}", d.number, d.kind, d.description);
    }
}

/// Who changes tickets from the command line, in their history.
fn admin() -> Actor {
    Actor {
        agent_id: None,
        name: "admin".into(),
    }
}

fn print_change(c: &TicketChange, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(c);
    }
    let show = |v: &str| if v.is_empty() { "none" } else { v }.to_string();
    if c.changed {
        println!(
            "ticket #{}: {} {} -> {}",
            c.number,
            c.field,
            show(&c.old),
            show(&c.new)
        );
    } else {
        println!(
            "ticket #{}: {} is {} already",
            c.number,
            c.field,
            show(&c.new)
        );
    }
    Ok(())
}

pub async fn search(store: &Store, a: SearchArgs) -> anyhow::Result<()> {
    let f = a.fields;
    let mut q = TicketQuery::default();
    if let Some(n) = f.ticket {
        q.numbers.push(n);
    }
    if let Some(c) = &f.customer {
        q.customers = c
            .split([',', ';'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if q.customers.is_empty() {
            return Err(anyhow!(
                "--customer wants customer numbers separated by comma or semicolon"
            ));
        }
    }
    q.subjects.extend(f.subject);
    q.text.extend(f.content);
    if let Some(e) = f.email {
        q.emails.push(e);
    }
    print_list(&store.ticket_list(&q).await?, a.json)
}

pub async fn stats(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let s = store.stats(crate::store::now()).await?;
    if as_json {
        return json(&s);
    }
    println!("Tickets: {}\n", s.total);
    let rows = |v: &[(String, i64)]| -> Vec<Vec<String>> {
        v.iter()
            .map(|(k, n)| vec![k.clone(), n.to_string()])
            .collect()
    };
    table(&["QUEUE", "TICKETS"], &rows(&s.per_queue));
    println!();
    table(&["STATUS", "TICKETS"], &rows(&s.per_status));
    println!();
    table(&["DAY", "OPENED"], &rows(&s.opened_per_day));
    Ok(())
}
