//! Statements built at run time and the values they bind: numbered placeholders, 0/1
//! flags and Unix-second times (what sqlx's `Any` driver decodes), and the counters table.
use sqlx::{Any, AnyConnection};

use super::{Backend, Result};

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn millis_now() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Appends `$1, $2, …` bound to `values` (the inside of an `IN (…)` list).
pub(crate) fn push_list(sql: &mut Sql, values: impl IntoIterator<Item = Arg>) {
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
}

/// Numbered placeholders for SQL built at run time (`$1`, `$2`, … on both backends).
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
    /// `$N` (both backends) or a bare `?` (SQLite only; see [`Sql::for_backend`]).
    numbered: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    Text(String),
    OptInt(Option<i64>),
    OptText(Option<String>),
    Blob(Vec<u8>),
    Null,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
            numbered: true,
        }
    }
    /// For statements with many placeholders: SQLite looks up every named placeholder
    /// (`$N`, `?N`) among the names seen so far, once while parsing and once more when sqlx
    /// binds (quadratic: a 1,000-placeholder insert spent more time there than inserting);
    /// bare `?` are numbered in order at once.
    pub fn for_backend(backend: Backend, text: &str) -> Sql {
        let mut sql = Sql::new(text);
        sql.numbered = backend != Backend::Sqlite;
        sql
    }
    /// How many placeholders the statement has so far.
    pub fn placeholders(&self) -> usize {
        self.args.len()
    }
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }
    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        if self.numbered {
            self.text.push('$');
            self.text.push_str(&self.args.len().to_string());
        } else {
            self.text.push('?');
        }
        self
    }
    pub fn query(&self) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments> {
        Sql {
            text: self.text.clone(),
            args: self.args.clone(),
            numbered: self.numbered,
        }
        .into_query()
    }
    pub fn into_query(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.text));
        for a in self.args {
            q = match a {
                Arg::Int(i) => q.bind(i),
                Arg::Text(t) => q.bind(t),
                Arg::OptInt(i) => q.bind(i),
                Arg::OptText(t) => q.bind(t),
                Arg::Blob(b) => q.bind(b),
                Arg::Null => q.bind(None::<i64>),
            };
        }
        q
    }
}

/// Sets the counter `name` to `value`, creating it when missing.
pub(super) async fn set_counter(conn: &mut AnyConnection, name: &str, value: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO counters (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name.to_string())
    .bind(value)
    .execute(conn)
    .await?;
    Ok(())
}
