//! Writes a transaction holds back until it next reads, runs another statement or
//! commits; then they go out as multi-row INSERTs (on PostgreSQL all in one statement).
//! Intake takes in a batch of mails with a dozen statements instead of a dozen per mail:
//! each statement is a round trip to the database (a thread hop for SQLite, a network hop
//! for PostgreSQL), and those round trips, not the writing, were what limited intake.
//!
//! Rows that others refer to (tickets, items) get their ids when they are queued (see
//! [`Ids`]), so an item can name its ticket before either is written.
use std::collections::{BTreeMap, VecDeque};

use sqlx::AnyConnection;

use super::{Arg, Backend, Result, Sql};

/// The most placeholders one statement gets. Both backends allow far more, but sqlx looks
/// up each SQLite placeholder's name by its number, which SQLite answers by walking the
/// list of names: the cost grows with the square of the placeholders per statement.
const MAX_PARAMS: usize = 512;

/// Rows of one table waiting to be inserted, in column order.
pub(super) struct Rows {
    /// `INSERT INTO table (a, b, c)`
    head: &'static str,
    width: usize,
    /// What follows the VALUES list (`ON CONFLICT …`).
    tail: &'static str,
    args: Vec<Arg>,
}

impl Rows {
    const fn new(head: &'static str, width: usize, tail: &'static str) -> Rows {
        Rows {
            head,
            width,
            tail,
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, row: impl IntoIterator<Item = Arg>) {
        let before = self.args.len();
        self.args.extend(row);
        debug_assert_eq!(self.args.len() - before, self.width, "{}", self.head);
    }

    /// Moves up to `most` rows into `sql` as one INSERT; returns how many.
    fn take_into(&mut self, sql: &mut Sql, most: usize) -> usize {
        let rows = self.args.len().div_ceil(self.width).min(most);
        let end = (rows * self.width).min(self.args.len());
        let mut args = self.args.drain(..end);
        sql.push(self.head).push(" VALUES ");
        for r in 0..rows {
            sql.push(if r == 0 { "(" } else { ", (" });
            for c in 0..self.width {
                if c > 0 {
                    sql.push(", ");
                }
                sql.bind(args.next().unwrap_or(Arg::Null));
            }
            sql.push(")");
        }
        sql.push(self.tail);
        rows
    }
}

/// A ticket's new status (by key) and assignee, when they change.
#[derive(Default)]
pub(super) struct TicketSet {
    pub status: Option<String>,
    pub assignee: Option<Option<i64>>,
}

/// Everything a transaction has queued, flushed in foreign-key order.
pub(super) struct Pending {
    pub tickets: Rows,
    pub ticket_cc: Rows,
    pub ticket_watchers: Rows,
    pub items: Rows,
    pub attachments: Rows,
    pub message_ids: Rows,
    /// PostgreSQL: items whose full-text vector is still to be computed.
    pub search_pending: Rows,
    pub history: Rows,
    pub outbox: Rows,
    pub autoresponses: Rows,
    /// (queue, UIDL) → (state, time); the last mark of a message wins.
    pub pop3_marks: BTreeMap<(i64, String), (String, i64)>,
    /// Tickets that got an item: id → time of the newest.
    pub touched: BTreeMap<i64, i64>,
    /// Tickets whose status or assignee changed, written with their touch in one UPDATE.
    pub ticket_sets: BTreeMap<i64, TicketSet>,
    /// The ticket counter's new value, when tickets were numbered.
    pub ticket_counter: Option<i64>,
}

impl Pending {
    pub fn new() -> Pending {
        Pending {
            tickets: Rows::new(
                "INSERT INTO tickets (id, number, subject, queue_id, assignee_id, status_id, \
                 customer_id, creator_address, spoof_suspect, created_at, last_action_at, updated_at)",
                12,
                "",
            ),
            ticket_cc: Rows::new(
                "INSERT INTO ticket_cc (ticket_id, address)",
                2,
                " ON CONFLICT DO NOTHING",
            ),
            ticket_watchers: Rows::new(
                "INSERT INTO ticket_watchers (ticket_id, agent_id)",
                2,
                " ON CONFLICT DO NOTHING",
            ),
            items: Rows::new(
                "INSERT INTO items (id, ticket_id, kind, agent_id, from_address, from_name, to_addrs, \
                 cc_addrs, subject, date, received_at, message_id, text, html, raw, raw_sha256, problems, \
                 body_from_raw)",
                18,
                "",
            ),
            attachments: Rows::new(
                "INSERT INTO attachments (item_id, name, content_type, size, sha256, part_id, \
                 content_id, inline)",
                8,
                "",
            ),
            message_ids: Rows::new(
                "INSERT INTO message_ids (message_id, ticket_id)",
                2,
                " ON CONFLICT DO NOTHING",
            ),
            search_pending: Rows::new("INSERT INTO search_pending (item_id)", 1, ""),
            history: Rows::new(
                "INSERT INTO history (ticket_id, at, agent_id, actor, field, old_value, new_value)",
                7,
                "",
            ),
            outbox: Rows::new(
                "INSERT INTO outbox (queue_id, ticket_id, agent_id, kind, mail_from, rcpt_to, \
                 message_id, raw, item_id, next_attempt_at, created_at)",
                11,
                "",
            ),
            autoresponses: Rows::new(
                "INSERT INTO autoresponses (sender, queue_id, ticket_id, kind, agent_id, at)",
                6,
                "",
            ),
            pop3_marks: BTreeMap::new(),
            touched: BTreeMap::new(),
            ticket_sets: BTreeMap::new(),
            ticket_counter: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        [
            &self.tickets,
            &self.ticket_cc,
            &self.ticket_watchers,
            &self.items,
            &self.attachments,
            &self.message_ids,
            &self.search_pending,
            &self.history,
            &self.outbox,
            &self.autoresponses,
        ]
        .iter()
        .all(|r| r.args.is_empty())
            && self.pop3_marks.is_empty()
            && self.touched.is_empty()
            && self.ticket_sets.is_empty()
            && self.ticket_counter.is_none()
    }

    pub async fn flush(&mut self, conn: &mut AnyConnection, backend: Backend) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        // PostgreSQL: new tickets first, on their own. The other parts of the one
        // statement would not see them (all parts of a statement read the same snapshot):
        // an update of a new ticket would be lost.
        if backend == Backend::Postgres && !self.tickets.args.is_empty() {
            let mut first = Statements::each(backend);
            first.insert(&mut self.tickets);
            first.run(conn).await?;
        }
        let mut out = match backend {
            Backend::Sqlite => Statements::each(backend),
            Backend::Postgres => Statements::one(),
        };
        for rows in [
            &mut self.tickets,
            &mut self.ticket_cc,
            &mut self.ticket_watchers,
            &mut self.items,
            &mut self.attachments,
            &mut self.message_ids,
            &mut self.search_pending,
            &mut self.history,
            &mut self.outbox,
            &mut self.autoresponses,
        ] {
            out.insert(rows);
        }
        if !self.pop3_marks.is_empty() {
            let mut marks = Rows::new(
                "INSERT INTO pop3_uidls (queue_id, uidl, state, at)",
                4,
                " ON CONFLICT (queue_id, uidl) DO UPDATE SET state = excluded.state, at = excluded.at",
            );
            for ((queue_id, uidl), (state, at)) in std::mem::take(&mut self.pop3_marks) {
                marks.push([
                    Arg::Int(queue_id),
                    Arg::Text(uidl),
                    Arg::Text(state),
                    Arg::Int(at),
                ]);
            }
            out.insert(&mut marks);
        }
        if let Some(value) = self.ticket_counter.take() {
            out.start(1)
                .push("UPDATE counters SET value = ")
                .bind(Arg::Int(value))
                .push(" WHERE name = 'ticket'");
            out.end(1);
        }
        // A changed ticket: its changes and its touch in one UPDATE.
        for (id, set) in std::mem::take(&mut self.ticket_sets) {
            let at = self.touched.remove(&id);
            let sql = out.start(5);
            sql.push("UPDATE tickets SET updated_at = ")
                .bind(Arg::Int(super::now()));
            if let Some(at) = at {
                sql.push(", last_action_at = ").bind(Arg::Int(at));
            }
            if let Some(key) = set.status {
                sql.push(", status_id = (SELECT id FROM statuses WHERE key = ")
                    .bind(Arg::Text(key))
                    .push(")");
            }
            if let Some(assignee) = set.assignee {
                sql.push(", assignee_id = ").bind(Arg::OptInt(assignee));
            }
            sql.push(", version = version + 1, mailbox_uid = NULL WHERE id = ")
                .bind(Arg::Int(id));
            out.end(1);
        }
        // One UPDATE per distinct time; a batch's items mostly share one second.
        let mut by_time: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, at) in std::mem::take(&mut self.touched) {
            by_time.entry(at).or_default().push(id);
        }
        for (at, ids) in by_time {
            for chunk in ids.chunks(MAX_PARAMS - 2) {
                let sql = out.start(chunk.len() + 2);
                sql.push("UPDATE tickets SET last_action_at = ")
                    .bind(Arg::Int(at))
                    .push(", updated_at = ")
                    .bind(Arg::Int(at));
                sql.push(", version = version + 1, mailbox_uid = NULL WHERE id IN (");
                for (i, id) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.bind(Arg::Int(*id));
                }
                sql.push(")");
                out.end(chunk.len());
            }
        }
        out.run(conn).await
    }
}

/// The statements a flush writes. SQLite: each on its own (a round trip there is a hop to
/// the connection's thread). PostgreSQL: as parts (data-modifying `WITH` queries) of one
/// statement, so a reply's writes are one network round trip instead of six; the foreign
/// keys are checked at the statement's end, when every part has run. A big batch takes
/// several such statements (see [`COMBINED_PARAMS`]).
struct Statements {
    backend: Backend,
    /// As parts of one statement.
    combine: bool,
    /// Each statement, with the most rows one of its parts writes.
    done: Vec<(Sql, usize)>,
    /// Parts in the last statement so far.
    parts: usize,
}

/// The most placeholders of a combined statement (PostgreSQL takes 65,535).
const COMBINED_PARAMS: usize = 16_384;

impl Statements {
    fn each(backend: Backend) -> Statements {
        Statements {
            backend,
            combine: false,
            done: Vec::new(),
            parts: 0,
        }
    }

    fn one() -> Statements {
        Statements {
            combine: true,
            ..Statements::each(Backend::Postgres)
        }
    }

    /// Where the next statement (or part) of `params` placeholders is written;
    /// [`Statements::end`] closes it.
    fn start(&mut self, params: usize) -> &mut Sql {
        let full = match self.done.last() {
            Some((sql, _)) => !self.combine || sql.placeholders() + params > COMBINED_PARAMS,
            None => true,
        };
        if full {
            let head = if self.combine { "WITH " } else { "" };
            self.done.push((Sql::for_backend(self.backend, head), 0));
            self.parts = 0;
        }
        let part = self.parts;
        self.parts += 1;
        let sql = &mut self.done.last_mut().expect("just pushed").0;
        match self.combine {
            false => sql,
            true if part > 0 => sql.push(&format!(", p{part} AS (")),
            true => sql.push(&format!("p{part} AS (")),
        }
    }

    /// Closes the statement (or part) begun last, which writes `rows` rows.
    fn end(&mut self, rows: usize) {
        if let Some((sql, most)) = self.done.last_mut() {
            if self.combine {
                sql.push(")");
            }
            *most = (*most).max(rows);
        }
    }

    /// Queues `rows` as INSERTs of at most [`MAX_PARAMS`] placeholders each, or as parts
    /// of combined statements.
    fn insert(&mut self, rows: &mut Rows) {
        let limit = if self.combine {
            COMBINED_PARAMS
        } else {
            MAX_PARAMS
        };
        let most = (limit / rows.width).max(1);
        while !rows.args.is_empty() {
            let n = rows.args.len().div_ceil(rows.width).min(most);
            let written = rows.take_into(self.start(n * rows.width), n);
            self.end(written);
        }
    }

    async fn run(self, conn: &mut AnyConnection) -> Result<()> {
        for (mut sql, rows) in self.done {
            if self.combine {
                sql.push(" SELECT 1");
            }
            // Statements of a few rows are the common ones (one mail, one reply): kept
            // prepared. Longer ones differ in length from batch to batch and would crowd
            // the cache.
            let common = if self.combine { rows <= 4 } else { rows == 1 };
            sql.into_query()
                .persistent(common)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Ids for rows queued before they are written. SQLite: the transaction holds the write
/// lock from its start (`BEGIN IMMEDIATE`), so the ids after the table's largest are ours.
/// PostgreSQL: drawn from the table's sequence, so several instances never collide; drawn
/// in growing blocks (2, 4, … 64) so a single mail wastes at most one.
#[derive(Default)]
pub(super) struct Ids {
    free: BTreeMap<&'static str, VecDeque<i64>>,
    block: BTreeMap<&'static str, i64>,
    /// SQLite: the largest id reserved so far in this transaction.
    last: BTreeMap<&'static str, i64>,
}

impl Ids {
    pub async fn next(
        &mut self,
        conn: &mut AnyConnection,
        backend: Backend,
        table: &'static str,
    ) -> Result<i64> {
        let free = self.free.entry(table).or_default();
        if let Some(id) = free.pop_front() {
            return Ok(id);
        }
        let block = self.block.entry(table).or_insert(1);
        *block = (*block * 2).min(64);
        match backend {
            Backend::Sqlite => {
                let last = match self.last.get(table) {
                    Some(l) => *l,
                    None => {
                        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {table}");
                        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                            .fetch_one(&mut *conn)
                            .await?
                    }
                };
                free.extend(last + 1..=last + *block);
                self.last.insert(table, last + *block);
            }
            Backend::Postgres => {
                let sql = format!("SELECT nextval('{table}_id_seq') FROM generate_series(1, $1)");
                let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(*block)
                    .fetch_all(&mut *conn)
                    .await?;
                free.extend(ids);
            }
        }
        free.pop_front()
            .ok_or_else(|| super::StoreError::Invalid(format!("no id drawn for {table}")))
    }
}

#[cfg(test)]
mod tests {
    use crate::core::model::ItemKind;
    use crate::store::{Actor, NewItem, NewTicket, QueueSettings, Store, TicketQuery};

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn queued_rows_are_seen_by_reads_split_into_statements_and_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let queue = store
            .queue_add(&QueueSettings {
                name: Some("Support".into()),
                address: Some("support@example.test".into()),
                ..QueueSettings::default()
            })
            .await
            .unwrap();
        let raw = vec![b'x'; 100];
        let new_ticket = |n: usize| NewTicket {
            subject: if n.is_multiple_of(2) { "even" } else { "odd" },
            queue_id: queue.id,
            queue_name: "Support",
            creator_address: "c@example.org",
            customer_id: None,
            cc: &[],
            spoof_suspect: false,
            first_number: 1,
            assignee_id: None,
            at: 1_700_000_000,
        };
        let item = |sha: &'static str| NewItem {
            kind: ItemKind::Customer,
            agent_id: None,
            from_address: "c@example.org",
            from_name: "",
            to: &[],
            cc: &[],
            subject: "s",
            date: 0,
            message_id: "",
            text: "t",
            html: None,
            body_in_raw: false,
            raw: &raw,
            raw_sha256: sha,
            problems: &[],
            attachments: &[],
        };
        let actor = Actor::customer("c@example.org");

        // 1,000 items are 17,000 placeholders: many statements.
        let mut tx = store.begin().await.unwrap();
        for n in 0..1000 {
            let t = tx.create_ticket(&new_ticket(n), &actor).await.unwrap();
            assert_eq!(t.number, n as i64 + 1, "numbers without gaps");
            tx.add_item(t.id, &item("same"), 1_700_000_001)
                .await
                .unwrap();
        }
        let t = tx
            .ticket_by_number(500)
            .await
            .unwrap()
            .expect("read sees queued rows");
        assert_eq!(t.subject, "odd");
        tx.commit().await.unwrap();
        assert_eq!(
            store
                .ticket_list(&TicketQuery::default())
                .await
                .unwrap()
                .len(),
            1000
        );
        // Nothing indexed the items yet (`serve` does that in the background); a full-text
        // search catches up first and finds every one.
        let by_text = TicketQuery {
            text: vec!["t".into()],
            ..TicketQuery::default()
        };
        assert_eq!(store.ticket_list(&by_text).await.unwrap().len(), 1000);
        assert_eq!(store.index_for_search(64, true).await.unwrap(), 0);

        // A rolled-back transaction gives its numbers back.
        let mut tx = store.begin().await.unwrap();
        tx.create_ticket(&new_ticket(0), &actor).await.unwrap();
        drop(tx);
        let mut tx = store.begin().await.unwrap();
        let t = tx.create_ticket(&new_ticket(0), &actor).await.unwrap();
        assert_eq!(t.number, 1001);
        tx.add_item(t.id, &item("other"), 1_700_000_002)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let shown = store.ticket_show(1001).await.unwrap();
        assert_eq!(shown.items.len(), 1);
    }
}
