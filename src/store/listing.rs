//! Ticket lists: the query a filter expression stands for and the SQL conditions it
//! becomes, shared by the admin's list and the mailbox's folders.
use sqlx::Row;

use super::search::{TextMatches, fts5_query};
use super::{Arg, Backend, Result, Sql, Store, flag};
use crate::core::filter::{AssigneeFilter, DueFilter, Filter, StatusFilter};
use crate::core::model::{Priority, TicketSummary};

/// A ticket list query: every field narrows (AND); values within one field are OR.
#[derive(Debug, Clone, Default)]
pub struct TicketQuery {
    pub numbers: Vec<i64>,
    pub queues: Vec<String>,
    pub statuses: Vec<StatusFilter>,
    pub assignees: Vec<AssigneeFilter>,
    /// The login `assignee:me` stands for; without one, `me` matches nothing.
    pub me: Option<String>,
    /// Every tag must be on the ticket.
    pub tags: Vec<String>,
    pub priorities: Vec<Priority>,
    pub customers: Vec<String>,
    /// Tickets of which any item, the creator, a CC or the customer has one of these addresses.
    pub emails: Vec<String>,
    /// Substrings that must all be in the subject, case-insensitive.
    pub subjects: Vec<String>,
    /// Full-text words over every item's subject and text, all must match.
    pub text: Vec<String>,
    pub billable: Option<bool>,
    pub due: Option<DueFilter>,
    pub created_since: Option<i64>,
    pub created_until: Option<i64>,
    pub limit: Option<i64>,
    /// Only tickets of these queues (an agent's access); `None` for every queue.
    pub visible_queues: Option<Vec<String>>,
    /// Only tickets assigned to or watched by this agent (id).
    pub mine_or_watched: Option<i64>,
}

impl TicketQuery {
    /// The query a filter expression stands for, relative times resolved against `now`.
    pub fn from_filter(f: &Filter, now: i64, me: Option<&str>) -> TicketQuery {
        let now_dt = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
        TicketQuery {
            numbers: f.numbers.clone(),
            queues: f.queues.clone(),
            statuses: f.statuses.clone(),
            assignees: f.assignees.clone(),
            me: me.map(str::to_string),
            tags: f.tags.clone(),
            priorities: f.priorities.clone(),
            customers: f.customers.clone(),
            emails: f.emails.clone(),
            subjects: f.subjects.clone(),
            text: f.text.clone(),
            billable: f.billable,
            due: f.due,
            created_since: f.since.map(|b| b.start(now_dt).timestamp()),
            created_until: f.until.map(|b| b.end(now_dt).timestamp()),
            ..TicketQuery::default()
        }
    }
}

impl Store {
    pub async fn ticket_list(&self, q: &TicketQuery) -> Result<Vec<TicketSummary>> {
        let text = self.text_matches(q).await?;
        let mut sql = Sql::new(
            "SELECT t.number, t.priority, t.billable, c.number AS customer_number, \
             t.creator_address, a.login AS assignee, t.subject, qu.name AS queue, s.key AS status, \
             t.created_at, t.last_action_at FROM tickets t \
             JOIN queues qu ON qu.id = t.queue_id JOIN statuses s ON s.id = t.status_id \
             LEFT JOIN customers c ON c.id = t.customer_id LEFT JOIN agents a ON a.id = t.assignee_id \
             WHERE 1 = 1",
        );
        self.push_conditions(&mut sql, q, &text);
        sql.push(" ORDER BY t.number DESC");
        if let Some(limit) = q.limit {
            sql.push(" LIMIT ").bind(Arg::Int(limit));
        }
        let rows = sql.query().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TicketSummary {
                    number: r.try_get("number")?,
                    priority: r
                        .try_get::<String, _>("priority")?
                        .parse()
                        .unwrap_or(Priority::Low),
                    billable: r.try_get::<i64, _>("billable")? != 0,
                    customer_number: r.try_get("customer_number")?,
                    creator_address: r.try_get("creator_address")?,
                    assignee: r.try_get("assignee")?,
                    subject: r.try_get("subject")?,
                    queue: r.try_get("queue")?,
                    status: r.try_get("status")?,
                    created_at: r.try_get("created_at")?,
                    last_action_at: r.try_get("last_action_at")?,
                })
            })
            .collect()
    }

    /// Appends the query's conditions (`AND …`) to a statement over `tickets t`, `queues
    /// qu`, `statuses s`, `customers c` and `agents a`, in the order of the fields.
    pub(super) fn push_conditions(&self, sql: &mut Sql, q: &TicketQuery, text: &TextMatches) {
        push_numbers_and_queues(sql, q);
        push_statuses(sql, &q.statuses);
        push_assignees(sql, &q.assignees, q.me.as_deref());
        push_tags_priorities_customers(sql, q);
        push_emails(sql, &q.emails);
        push_subjects(sql, &q.subjects);
        push_text(sql, self.backend, &q.text, text);
        push_due_billable_created(sql, q);
    }
}

/// `AND column IN (…)` over `values`.
fn any_of(sql: &mut Sql, column: &str, values: impl IntoIterator<Item = Arg>) {
    sql.push(" AND ").push(column).push(" IN (");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
    sql.push(")");
}

/// Ticket numbers, queues by name, the queues an agent may see, and an agent's own or
/// watched tickets.
fn push_numbers_and_queues(sql: &mut Sql, q: &TicketQuery) {
    if !q.numbers.is_empty() {
        any_of(sql, "t.number", q.numbers.iter().map(|n| Arg::Int(*n)));
    }
    if !q.queues.is_empty() {
        any_of(
            sql,
            "LOWER(qu.name)",
            q.queues.iter().map(|n| Arg::Text(n.to_lowercase())),
        );
    }
    if let Some(visible) = &q.visible_queues {
        if visible.is_empty() {
            sql.push(" AND 1 = 0");
        } else {
            any_of(
                sql,
                "LOWER(qu.name)",
                visible.iter().map(|n| Arg::Text(n.to_lowercase())),
            );
        }
    }
    if let Some(agent) = q.mine_or_watched {
        sql.push(" AND (t.assignee_id = ")
            .bind(Arg::Int(agent))
            .push(" OR t.id IN (SELECT ticket_id FROM ticket_watchers WHERE agent_id = ")
            .bind(Arg::Int(agent))
            .push("))");
    }
}

/// Any of the statuses: open-like, closed-like, or one by key or English or German name.
fn push_statuses(sql: &mut Sql, statuses: &[StatusFilter]) {
    if statuses.is_empty() {
        return;
    }
    sql.push(" AND (");
    for (i, st) in statuses.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        match st {
            StatusFilter::OpenLike => {
                sql.push("s.is_closed = 0");
            }
            StatusFilter::ClosedLike => {
                sql.push("s.is_closed = 1");
            }
            StatusFilter::Named(name) => {
                let n = name.to_lowercase();
                sql.push("(LOWER(s.key) = ").bind(Arg::Text(n.clone()));
                sql.push(" OR LOWER(s.name_en) = ")
                    .bind(Arg::Text(n.clone()));
                sql.push(" OR LOWER(s.name_de) = ")
                    .bind(Arg::Text(n))
                    .push(")");
            }
        }
    }
    sql.push(")");
}

/// Any of the assignees: by login, the login `me` stands for, or nobody.
fn push_assignees(sql: &mut Sql, assignees: &[AssigneeFilter], me: Option<&str>) {
    if assignees.is_empty() {
        return;
    }
    sql.push(" AND (");
    for (i, a) in assignees.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        match a {
            AssigneeFilter::Login(login) => {
                sql.push("a.login = ").bind(Arg::Text(login.clone()));
            }
            AssigneeFilter::Me => {
                let me = me.unwrap_or_default().to_string();
                sql.push("a.login = ").bind(Arg::Text(me));
            }
            AssigneeFilter::Nobody => {
                sql.push("t.assignee_id IS NULL");
            }
        }
    }
    sql.push(")");
}

/// Every tag, and any of the priorities and of the customers (by number).
fn push_tags_priorities_customers(sql: &mut Sql, q: &TicketQuery) {
    for tag in &q.tags {
        sql.push(" AND t.id IN (SELECT tt.ticket_id FROM ticket_tags tt JOIN tags g ON g.id = tt.tag_id WHERE LOWER(g.name) = ")
            .bind(Arg::Text(tag.to_lowercase()))
            .push(")");
    }
    if !q.priorities.is_empty() {
        any_of(
            sql,
            "t.priority",
            q.priorities.iter().map(|p| Arg::Text(p.to_string())),
        );
    }
    if !q.customers.is_empty() {
        any_of(
            sql,
            "c.number",
            q.customers.iter().map(|n| Arg::Text(n.clone())),
        );
    }
}

/// Any of the addresses, as the creator's, a CC, an item's sender or the customer's.
fn push_emails(sql: &mut Sql, emails: &[String]) {
    if emails.is_empty() {
        return;
    }
    sql.push(" AND (");
    for (i, e) in emails.iter().enumerate() {
        if i > 0 {
            sql.push(" OR ");
        }
        let e = e.trim().to_ascii_lowercase();
        sql.push("t.creator_address = ").bind(Arg::Text(e.clone()));
        sql.push(" OR t.id IN (SELECT ticket_id FROM ticket_cc WHERE address = ")
            .bind(Arg::Text(e.clone()))
            .push(")");
        sql.push(" OR t.id IN (SELECT ticket_id FROM items WHERE from_address = ")
            .bind(Arg::Text(e.clone()))
            .push(")");
        sql.push(" OR t.customer_id IN (SELECT customer_id FROM customer_emails WHERE address = ")
            .bind(Arg::Text(e))
            .push(")");
    }
    sql.push(")");
}

/// Every substring in the subject, case-insensitive.
fn push_subjects(sql: &mut Sql, subjects: &[String]) {
    for s in subjects {
        let pattern = format!("%{}%", like_escape(&s.to_lowercase()));
        sql.push(" AND LOWER(t.subject) LIKE ")
            .bind(Arg::Text(pattern))
            .push(" ESCAPE '\\'");
    }
}

/// Every full-text word, as [`Store::text_matches`] readied them.
fn push_text(sql: &mut Sql, backend: Backend, words: &[String], text: &TextMatches) {
    if words.is_empty() {
        return;
    }
    let words = words.join(" ");
    match (backend, text) {
        (_, TextMatches::Tickets(ids)) => {
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            // As a set the planner cannot count, it takes it for a short list and
            // looks each ticket up by id: the plan for at most FEW_ITEMS tickets.
            // (`= ANY` of the array, counted, had it read the tickets newest first,
            // comparing each with the whole list: 2.9 s for 1,136 ids.)
            sql.push(" AND t.id IN (SELECT unnest(CAST(")
                .bind(Arg::Text(format!("{{{}}}", ids.join(","))))
                .push(" AS BIGINT[])))");
        }
        (Backend::Sqlite, TextMatches::Condition) => {
            sql.push(" AND t.id IN (SELECT i.ticket_id FROM items_fts f JOIN items i ON i.id = f.rowid WHERE items_fts MATCH ")
                .bind(Arg::Text(fts5_query(&words)))
                .push(")");
        }
        (Backend::Postgres, TextMatches::Condition) => {
            sql.push(" AND t.id IN (SELECT ticket_id FROM items WHERE search @@ plainto_tsquery('simple', ")
                .bind(Arg::Text(words))
                .push("))");
        }
    }
}

/// The due date (set, unset, overdue), billable, and the creation time's range.
fn push_due_billable_created(sql: &mut Sql, q: &TicketQuery) {
    match q.due {
        Some(DueFilter::Any) => {
            sql.push(" AND t.due_date IS NOT NULL");
        }
        Some(DueFilter::Unset) => {
            sql.push(" AND t.due_date IS NULL");
        }
        Some(DueFilter::Overdue) => {
            let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
            sql.push(" AND s.is_closed = 0 AND t.due_date < ")
                .bind(Arg::Text(today));
        }
        None => {}
    }
    if let Some(b) = q.billable {
        sql.push(" AND t.billable = ").bind(Arg::Int(flag(b)));
    }
    if let Some(since) = q.created_since {
        sql.push(" AND t.created_at >= ").bind(Arg::Int(since));
    }
    if let Some(until) = q.created_until {
        sql.push(" AND t.created_at < ").bind(Arg::Int(until));
    }
}

/// `LIKE` pattern escaping with `\`.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_their_wildcards() {
        assert_eq!(like_escape("50%_a\\"), "50\\%\\_a\\\\");
    }
}
