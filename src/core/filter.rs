//! The one filter syntax (README, "Commands") used by the CLI and saved profiles:
//! `queue:Vertrieb status:open assignee:anna tag:Reklamation priority:high customer:4711 since:7d`.
//!
//! Rules: repeated keys are OR within the key, different keys are AND; values with spaces go
//! in double quotes (`queue:"Sales EU"`, `\"` and `\\` escape inside quotes); bare words and
//! `text:` are full-text terms (all must match). Relative times stay relative: the store
//! resolves them against its `now`. `Display` writes a canonical form that parses back equal.
//!
//! Keys: `queue`, `status` (`open` = any open-like, `closed` = any closed-like, `=name` or any
//! other name = that exact status), `assignee` (`me`, `none`, login), `tag`, `priority`
//! (`low|medium|high`), `customer` (customer number; `4711,4712` lists several), `number`,
//! `email`, `subject`, `text`, `since`/`until` (`24h`, `7d`, `2w` or `2026-11-01`),
//! `billable` (`yes|no`), `due` (`overdue|any|none`).

use chrono::{DateTime, Duration, NaiveDate, Utc};

pub use crate::core::model::Priority;
use std::fmt;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub queues: Vec<String>,
    pub statuses: Vec<StatusFilter>,
    pub assignees: Vec<AssigneeFilter>,
    pub tags: Vec<String>,
    pub priorities: Vec<Priority>,
    /// Customer numbers.
    pub customers: Vec<String>,
    pub numbers: Vec<i64>,
    /// Creator, customer or CC address (lower-cased).
    pub emails: Vec<String>,
    /// Words searched in the subject only (all must match).
    pub subjects: Vec<String>,
    /// Full-text words (all must match): `text:` terms and bare words.
    pub text: Vec<String>,
    pub since: Option<TimeBound>,
    pub until: Option<TimeBound>,
    pub billable: Option<bool>,
    pub due: Option<DueFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusFilter {
    /// `status:open`: every open-like status (`new`, `open`, `waiting`, admin open-likes).
    OpenLike,
    /// `status:closed`: every closed-like status (`closed`, `merged`, admin closed-likes).
    ClosedLike,
    /// One status by key or localized name (`status:=open` for exactly `open`).
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssigneeFilter {
    /// The agent running the query.
    Me,
    /// Unassigned tickets.
    Nobody,
    Login(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueFilter {
    /// Due date in the past and ticket still open-like.
    Overdue,
    /// Has a due date.
    Any,
    /// Has no due date.
    Unset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Hours,
    Days,
    Weeks,
}

/// A point in time as written: relative to "now" or a calendar day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    Ago { amount: u32, unit: TimeUnit },
    Date(NaiveDate),
}

impl TimeBound {
    /// Length of a relative bound.
    pub fn duration(&self) -> Option<Duration> {
        match *self {
            TimeBound::Ago { amount, unit } => Some(match unit {
                TimeUnit::Hours => Duration::hours(amount.into()),
                TimeUnit::Days => Duration::days(amount.into()),
                TimeUnit::Weeks => Duration::weeks(amount.into()),
            }),
            TimeBound::Date(_) => None,
        }
    }

    /// As a lower bound (`since:`): the instant itself, or the start of the day.
    pub fn start(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::Ago { .. } => now - self.duration().unwrap_or_default(),
            TimeBound::Date(d) => d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
        }
    }

    /// As an upper bound (`until:`, exclusive): the instant, or the end of the day, so
    /// `until:2026-11-01` includes that day.
    pub fn end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            TimeBound::Ago { .. } => self.start(now),
            TimeBound::Date(d) => d
                .succ_opt()
                .and_then(|n| n.and_hms_opt(0, 0, 0))
                .unwrap_or(NaiveDate::MAX.and_hms_opt(0, 0, 0).unwrap_or_default())
                .and_utc(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown filter key {key:?} at position {pos} (known: {KNOWN})")]
    UnknownKey { key: String, pos: usize },
    #[error("bad value {value:?} for {key}: at position {pos}: expected {expected}")]
    BadValue {
        key: String,
        value: String,
        pos: usize,
        expected: &'static str,
    },
    #[error("empty value for {key}: at position {pos}")]
    EmptyValue { key: String, pos: usize },
    #[error("unterminated quote starting at position {pos}")]
    UnterminatedQuote { pos: usize },
    #[error("{key}: given twice (second at position {pos}); it takes one value")]
    Repeated { key: String, pos: usize },
}

const KNOWN: &str = "queue status assignee tag priority customer number email subject text \
                     since until billable due";

impl FilterError {
    /// Byte position of the offending term in the input.
    pub fn position(&self) -> usize {
        match self {
            FilterError::UnknownKey { pos, .. }
            | FilterError::BadValue { pos, .. }
            | FilterError::EmptyValue { pos, .. }
            | FilterError::UnterminatedQuote { pos }
            | FilterError::Repeated { pos, .. } => *pos,
        }
    }
}

/// One term of the input: `key:value` or a bare word, with where it starts.
struct Term {
    key: Option<String>,
    value: String,
    pos: usize,
}

fn tokenize(input: &str) -> Result<Vec<Term>, FilterError> {
    let mut terms = Vec::new();
    let mut chars = input.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = None;
        let mut value = String::new();
        let mut quoted = false;
        while let Some(&(i, c)) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' {
                quoted = true;
                read_quoted(&mut chars, &mut value)
                    .ok_or(FilterError::UnterminatedQuote { pos: i })?;
            } else if c == ':' && key.is_none() && !quoted && !value.is_empty() {
                key = Some(std::mem::take(&mut value).to_ascii_lowercase());
            } else {
                value.push(c);
            }
        }
        terms.push(Term {
            key,
            value,
            pos: start,
        });
    }
    Ok(terms)
}

fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    value: &mut String,
) -> Option<()> {
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => return Some(()),
            '\\' => value.push(chars.next()?.1),
            _ => value.push(c),
        }
    }
    None
}

/// Parses a filter expression; an empty input is the filter that matches everything.
pub fn parse(input: &str) -> Result<Filter, FilterError> {
    let mut f = Filter::default();
    for Term { key, value, pos } in tokenize(input)? {
        let Some(key) = key else {
            if !value.is_empty() {
                f.text.push(value);
            }
            continue;
        };
        let bad = |expected: &'static str| FilterError::BadValue {
            key: key.clone(),
            value: value.clone(),
            pos,
            expected,
        };
        if value.trim().is_empty() {
            return Err(FilterError::EmptyValue { key, pos });
        }
        let once = |slot: bool| {
            if slot {
                Err(FilterError::Repeated {
                    key: key.clone(),
                    pos,
                })
            } else {
                Ok(())
            }
        };
        let v = value.trim();
        match key.as_str() {
            "queue" => f.queues.push(v.to_string()),
            "status" => f.statuses.push(match v.to_lowercase().as_str() {
                "open" => StatusFilter::OpenLike,
                "closed" => StatusFilter::ClosedLike,
                _ => StatusFilter::Named(v.strip_prefix('=').unwrap_or(v).trim().to_string()),
            }),
            "assignee" => f.assignees.push(match v.to_lowercase().as_str() {
                "me" => AssigneeFilter::Me,
                "none" => AssigneeFilter::Nobody,
                _ => AssigneeFilter::Login(v.strip_prefix('=').unwrap_or(v).to_string()),
            }),
            "tag" => f.tags.push(v.to_string()),
            "priority" => f
                .priorities
                .push(Priority::parse_any(v).ok_or_else(|| bad("low, medium or high"))?),
            "customer" => f.customers.extend(
                v.split([',', ';'])
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            ),
            "number" => {
                for n in v.split([',', ';']).map(str::trim).filter(|s| !s.is_empty()) {
                    let n = n.trim_start_matches('#');
                    f.numbers.push(
                        n.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("a ticket number"))?,
                    );
                }
            }
            "email" => f.emails.push(v.to_lowercase()),
            "subject" => f.subjects.push(v.to_string()),
            "text" => f.text.push(v.to_string()),
            "since" => {
                once(f.since.is_some())?;
                f.since = Some(parse_time(v).ok_or_else(|| bad("24h, 7d, 2w or YYYY-MM-DD"))?);
            }
            "until" => {
                once(f.until.is_some())?;
                f.until = Some(parse_time(v).ok_or_else(|| bad("24h, 7d, 2w or YYYY-MM-DD"))?);
            }
            "billable" => {
                once(f.billable.is_some())?;
                f.billable = Some(match v.to_lowercase().as_str() {
                    "yes" | "true" | "ja" | "1" => true,
                    "no" | "false" | "nein" | "0" => false,
                    _ => return Err(bad("yes or no")),
                });
            }
            "due" => {
                once(f.due.is_some())?;
                f.due = Some(match v.to_lowercase().as_str() {
                    "overdue" => DueFilter::Overdue,
                    "any" | "set" => DueFilter::Any,
                    "none" => DueFilter::Unset,
                    _ => return Err(bad("overdue, any or none")),
                });
            }
            _ => return Err(FilterError::UnknownKey { key, pos }),
        }
    }
    Ok(f)
}

fn parse_time(v: &str) -> Option<TimeBound> {
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(TimeBound::Date(d));
    }
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let amount: u32 = v[..split].parse().ok()?;
    let unit = match &v[split..] {
        "h" => TimeUnit::Hours,
        "d" => TimeUnit::Days,
        "w" => TimeUnit::Weeks,
        _ => return None,
    };
    // chrono durations overflow far beyond any sensible bound.
    (amount <= 100_000).then_some(TimeBound::Ago { amount, unit })
}

impl fmt::Display for TimeBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeBound::Ago { amount, unit } => {
                let u = match unit {
                    TimeUnit::Hours => 'h',
                    TimeUnit::Days => 'd',
                    TimeUnit::Weeks => 'w',
                };
                write!(f, "{amount}{u}")
            }
            TimeBound::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
        }
    }
}

/// Quotes a value when it would not survive tokenizing bare.
fn quote(v: &str, bare_word: bool) -> String {
    let needs = v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        || (bare_word && v.contains(':'));
    if !needs {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut terms: Vec<String> = Vec::new();
        let mut kv = |k: &str, v: &str| terms.push(format!("{k}:{}", quote(v, false)));
        self.queues.iter().for_each(|q| kv("queue", q));
        for s in &self.statuses {
            match s {
                StatusFilter::OpenLike => kv("status", "open"),
                StatusFilter::ClosedLike => kv("status", "closed"),
                StatusFilter::Named(n) => kv("status", &format!("={n}")),
            }
        }
        for a in &self.assignees {
            match a {
                AssigneeFilter::Me => kv("assignee", "me"),
                AssigneeFilter::Nobody => kv("assignee", "none"),
                AssigneeFilter::Login(l) => kv("assignee", &format!("={l}")),
            }
        }
        self.tags.iter().for_each(|t| kv("tag", t));
        self.priorities
            .iter()
            .for_each(|p| kv("priority", p.as_str()));
        self.customers.iter().for_each(|c| kv("customer", c));
        self.numbers
            .iter()
            .for_each(|n| kv("number", &n.to_string()));
        self.emails.iter().for_each(|e| kv("email", e));
        self.subjects.iter().for_each(|s| kv("subject", s));
        if let Some(s) = &self.since {
            kv("since", &s.to_string());
        }
        if let Some(u) = &self.until {
            kv("until", &u.to_string());
        }
        if let Some(b) = self.billable {
            kv("billable", if b { "yes" } else { "no" });
        }
        if let Some(d) = self.due {
            kv(
                "due",
                match d {
                    DueFilter::Overdue => "overdue",
                    DueFilter::Any => "any",
                    DueFilter::Unset => "none",
                },
            );
        }
        for t in &self.text {
            terms.push(quote(t, true));
        }
        f.write_str(&terms.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        let f = parse(
            "queue:Vertrieb status:open assignee:anna tag:Reklamation priority:high \
             customer:4711 since:7d",
        )
        .unwrap();
        assert_eq!(f.queues, vec!["Vertrieb"]);
        assert_eq!(f.statuses, vec![StatusFilter::OpenLike]);
        assert_eq!(f.assignees, vec![AssigneeFilter::Login("anna".into())]);
        assert_eq!(f.tags, vec!["Reklamation"]);
        assert_eq!(f.priorities, vec![Priority::High]);
        assert_eq!(f.customers, vec!["4711"]);
        assert_eq!(
            f.since,
            Some(TimeBound::Ago {
                amount: 7,
                unit: TimeUnit::Days
            })
        );
    }

    #[test]
    fn values_and_keys() {
        let f = parse(
            r#"queue:"Sales EU" queue:Support status:Geschlossen status:=open assignee:me
               assignee:NONE customer:4711,4712;4713 number:#12 email:K@X.example
               billable:nein due:overdue until:2026-11-01 "two words" Drucker text:toner
               subject:"Rechnung März" priority:mittel"#,
        )
        .unwrap();
        assert_eq!(f.queues, vec!["Sales EU", "Support"]);
        assert_eq!(
            f.statuses,
            vec![
                StatusFilter::Named("Geschlossen".into()),
                StatusFilter::Named("open".into())
            ]
        );
        assert_eq!(
            f.assignees,
            vec![AssigneeFilter::Me, AssigneeFilter::Nobody]
        );
        assert_eq!(f.customers, vec!["4711", "4712", "4713"]);
        assert_eq!(f.numbers, vec![12]);
        assert_eq!(f.emails, vec!["k@x.example"]);
        assert_eq!(f.billable, Some(false));
        assert_eq!(f.due, Some(DueFilter::Overdue));
        assert_eq!(
            f.until,
            Some(TimeBound::Date(
                NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
            ))
        );
        assert_eq!(f.text, vec!["two words", "Drucker", "toner"]);
        assert_eq!(f.subjects, vec!["Rechnung März"]);
        assert_eq!(f.priorities, vec![Priority::Medium]);
        assert_eq!(parse("").unwrap(), Filter::default());
        assert_eq!(parse("   ").unwrap(), Filter::default());
    }

    #[test]
    fn errors_name_term_and_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("queue:x colour:red", 8, "colour"),
            ("priority:urgent", 0, "urgent"),
            ("since:7y", 0, "7y"),
            ("since:2026-13-01", 0, "2026-13-01"),
            ("a queue:\"open", 8, "quote"),
            ("number:abc", 0, "abc"),
            ("number:0", 0, "number"),
            ("since:1d since:2d", 9, "twice"),
            ("billable:maybe", 0, "maybe"),
            ("tag:", 0, "empty"),
            ("tag:\"\"", 0, "empty"),
            ("due:soon", 0, "soon"),
        ];
        for (input, pos, word) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.position(), *pos, "{input}: {e}");
            assert!(e.to_string().contains(word), "{input}: {e}");
        }
    }

    #[test]
    fn round_trip() {
        let examples = [
            "queue:Vertrieb status:open assignee:anna tag:Reklamation priority:high customer:4711 since:7d",
            r#"queue:"Sales EU" status:"In Arbeit" assignee:=me tag:"a \"b\" c\\" text:"x:y""#,
            "assignee:none assignee:me status:closed status:=closed number:3 number:4",
            "since:24h until:2w billable:yes due:none email:a@b.example subject:Drucker",
            "since:2026-11-01 until:2026-11-30 due:any billable:no Drucker Toner",
            r#""eins zwei" drei:vier" "#,
            "customer:1,2 priority:low priority:medium",
            "tag:Ümlaut queue:Vertrieb\u{a0}Süd",
            "",
        ];
        for input in examples {
            let Ok(f) = parse(input) else {
                continue;
            };
            let shown = f.to_string();
            assert_eq!(parse(&shown).as_ref(), Ok(&f), "{input} -> {shown}");
            // Canonical form is a fixed point.
            assert_eq!(parse(&shown).unwrap().to_string(), shown);
        }
    }

    #[test]
    fn round_trip_generated() {
        // Deterministic pseudo-random filters built from awkward pieces.
        let pieces = [
            "a",
            "Sales EU",
            "x:y",
            "\"q\"",
            "back\\slash",
            "ü ö",
            "=eq",
            "-",
            "#1",
            "tab\there",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..500 {
            let mut f = Filter::default();
            for _ in 0..next(4) {
                f.queues.push(pieces[next(pieces.len())].into());
                f.tags.push(pieces[next(pieces.len())].into());
                f.text.push(pieces[next(pieces.len())].into());
                f.statuses
                    .push(StatusFilter::Named(pieces[next(pieces.len())].into()));
                f.assignees
                    .push(AssigneeFilter::Login(pieces[next(pieces.len())].into()));
                f.numbers.push(next(1000) as i64 + 1);
            }
            if next(2) == 0 {
                f.since = Some(TimeBound::Ago {
                    amount: next(100) as u32,
                    unit: TimeUnit::Weeks,
                });
            }
            // Values the parser normalises cannot appear in a parsed filter; mirror that.
            let normalise = |s: &String| s.trim().to_string();
            f.queues = f.queues.iter().map(normalise).collect();
            f.tags = f.tags.iter().map(normalise).collect();
            for s in &mut f.statuses {
                if let StatusFilter::Named(n) = s {
                    *n = n.trim_start_matches('=').trim().to_string();
                }
            }
            for a in &mut f.assignees {
                if let AssigneeFilter::Login(l) = a {
                    *l = l.trim_start_matches('=').trim().to_string();
                }
            }
            let shown = f.to_string();
            assert_eq!(parse(&shown), Ok(f), "{shown}");
        }
    }

    #[test]
    fn resolves_times() {
        let now = DateTime::parse_from_rfc3339("2026-11-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let f = parse("since:7d until:2026-11-01").unwrap();
        assert_eq!(
            f.since.unwrap().start(now).to_rfc3339(),
            "2026-11-03T12:00:00+00:00"
        );
        assert_eq!(
            f.until.unwrap().end(now).to_rfc3339(),
            "2026-11-02T00:00:00+00:00"
        );
    }
}
