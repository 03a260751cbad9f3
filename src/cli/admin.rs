//! Admin commands for queues, agents, customers, documents, tags, statuses, templates
//! and profiles.
use std::io::Read;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone};

use super::output::{json, local_time, table, time};
use super::{
    AgentCmd, CustomerArgs, CustomerCmd, DocumentCmd, ProfileCmd, QueueArgs, QueueCmd, StatusCmd,
    TagCmd, TemplateCmd,
};
use crate::core::model::{Customer, Document, TlsMode};
use crate::core::password;
use crate::core::texts::Locale;
use crate::store::{AwaySettings, InstanceRow, LeaseRow, NewAgent, QueueSettings, Store};

fn host_port(s: &str, what: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--{what} wants HOST:PORT, got {s:?}"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow!("--{what}: {port:?} is not a port number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        bail!("--{what} wants HOST:PORT, got {s:?}");
    }
    Ok((host.to_string(), port))
}

fn settings(a: &QueueArgs, adding: bool) -> anyhow::Result<QueueSettings> {
    let mut s = QueueSettings {
        name: a.name.clone(),
        address: a.address.clone(),
        friendly_name: a.friendly.clone(),
        login: a.login.clone(),
        salutation: a.salutation.clone(),
        ..Default::default()
    };
    if let Some(addr) = a
        .address
        .as_ref()
        .filter(|a| !a.contains('@') || a.contains(char::is_whitespace))
    {
        bail!("--address {addr:?} is not an e-mail address");
    }
    upstreams(a, &mut s)?;
    credentials(a, &mut s)?;
    replies(a, &mut s)?;
    if a.disabled {
        s.enabled = Some(false);
    } else if a.enabled || adding {
        s.enabled = Some(true);
    }
    if adding && (s.name.is_none() || s.address.is_none()) {
        bail!("queue add needs --name and --address");
    }
    if adding && s.pop3.is_some() && s.login.is_none() {
        bail!("a queue polled by POP3 needs --login and --password-env");
    }
    Ok(s)
}

/// The queue's POP3 and SMTP servers; TLS follows the well-known implicit-TLS ports unless
/// given.
fn upstreams(a: &QueueArgs, s: &mut QueueSettings) -> anyhow::Result<()> {
    if let Some(p) = &a.pop3 {
        let (host, port) = host_port(p, "pop3")?;
        s.pop3_tls = Some(if port == 995 {
            TlsMode::Implicit
        } else {
            TlsMode::StartTls
        });
        s.pop3 = Some((host, port));
    }
    if let Some(p) = &a.smtp {
        let (host, port) = host_port(p, "smtp")?;
        s.smtp_tls = Some(if port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::StartTls
        });
        s.smtp = Some((host, port));
    }
    if let Some(t) = &a.pop3_tls {
        s.pop3_tls = Some(t.parse()?);
    }
    if let Some(t) = &a.smtp_tls {
        s.smtp_tls = Some(t.parse()?);
    }
    Ok(())
}

/// The upstream password (from the environment, never the command line) and trusted CAs.
fn credentials(a: &QueueArgs, s: &mut QueueSettings) -> anyhow::Result<()> {
    if let Some(var) = &a.password_env {
        let pw = std::env::var(var)
            .map_err(|_| anyhow!("--password-env: the environment variable {var} is not set"))?;
        s.password = Some(pw);
    }
    if let Some(path) = &a.tls_ca {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("--tls-ca: cannot read {}", path.display()))?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            bail!("--tls-ca: {} holds no PEM certificate", path.display());
        }
        s.tls_ca = Some(pem);
    }
    Ok(())
}

/// The autoresponder, how replies quote, and what a mail to a closed ticket does.
fn replies(a: &QueueArgs, s: &mut QueueSettings) -> anyhow::Result<()> {
    if let Some(path) = &a.autoresponder_text_file {
        s.autoresponder_text = Some(std::fs::read_to_string(path).with_context(|| {
            format!("--autoresponder-text-file: cannot read {}", path.display())
        })?);
        s.autoresponder = Some(true);
    }
    if a.autoresponder {
        s.autoresponder = Some(true);
    }
    if a.no_autoresponder {
        s.autoresponder = Some(false);
    }
    if let Some(q) = &a.reply_quote {
        s.reply_quote = Some(q.parse()?);
    }
    if let Some(q) = &a.on_closed {
        s.on_closed = Some(q.parse()?);
    }
    Ok(())
}

pub async fn queue(store: &Store, cmd: QueueCmd) -> anyhow::Result<()> {
    match cmd {
        QueueCmd::Add(a) => {
            let q = store.queue_add(&settings(&a, true)?).await?;
            println!("queue {} <{}> added", q.name, q.address);
        }
        QueueCmd::Edit { queue, args } => {
            let q = store.queue_edit(&queue, &settings(&args, false)?).await?;
            println!("queue {} <{}> changed", q.name, q.address);
        }
        QueueCmd::Delete { name } => {
            store.queue_delete(&name).await?;
            println!("queue {name} deleted");
        }
        QueueCmd::List { json: as_json } => {
            let queues = store.queues().await?;
            if as_json {
                return json(&queues);
            }
            let rows: Vec<Vec<String>> = queues
                .iter()
                .map(|q| {
                    let server = |h: &str, p: u16, t: TlsMode| {
                        if h.is_empty() {
                            "-".to_string()
                        } else {
                            format!("{h}:{p} ({t})")
                        }
                    };
                    vec![
                        q.name.clone(),
                        q.address.clone(),
                        if q.enabled { "yes" } else { "no" }.into(),
                        server(&q.pop3_host, q.pop3_port, q.pop3_tls),
                        server(&q.smtp_host, q.smtp_port, q.smtp_tls),
                        if q.autoresponder { "on" } else { "off" }.into(),
                        match &q.last_poll {
                            Some(p) => format!(
                                "{} {}: {}",
                                time(p.at),
                                if p.ok { "ok" } else { "FAILED" },
                                p.message
                            ),
                            None => "-".into(),
                        },
                    ]
                })
                .collect();
            table(
                &[
                    "NAME",
                    "ADDRESS",
                    "ENABLED",
                    "POP3",
                    "SMTP",
                    "AUTORESPONDER",
                    "LAST POLL",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

pub async fn agent(store: &Store, cmd: AgentCmd) -> anyhow::Result<()> {
    match cmd {
        AgentCmd::Add {
            login,
            name,
            email,
            queues,
            admin,
            password_stdin: _,
        } => {
            let queues = queues.into_iter().filter(|q| !q.is_empty()).collect();
            agent_add(store, login, name, email, queues, admin).await
        }
        AgentCmd::Set {
            login,
            attachment_check,
        } => {
            if let Some(on) = attachment_check {
                store.agent_set_attachment_check(&login, on).await?;
                let word = if on { "on" } else { "off" };
                println!("agent {login}: attachment check {word}");
            }
            Ok(())
        }
        AgentCmd::List { json: as_json } => agent_list(store, as_json).await,
        AgentCmd::Away {
            login,
            from,
            until,
            text_file,
            substitute,
        } => {
            agent_away(
                store,
                &login,
                from,
                &until,
                &text_file,
                substitute.as_deref(),
            )
            .await
        }
        AgentCmd::Back { login } => {
            store.agent_back(&login).await?;
            println!("agent {login} is back");
            Ok(())
        }
    }
}

/// `agent add`: the password comes on stdin, so it stays out of the process list.
async fn agent_add(
    store: &Store,
    login: String,
    name: String,
    email: String,
    queues: Vec<String>,
    is_admin: bool,
) -> anyhow::Result<()> {
    let mut pw = String::new();
    std::io::stdin()
        .read_to_string(&mut pw)
        .context("cannot read the password from stdin")?;
    let pw = pw.trim_end_matches(['\r', '\n']);
    if pw.len() < 8 {
        bail!("the password must have at least 8 characters");
    }
    if !email.contains('@') {
        bail!("--email {email:?} is not an e-mail address");
    }
    let a = store
        .agent_add(&NewAgent {
            login,
            name,
            email,
            password_hash: password::hash(pw)?,
            is_admin,
            queues,
        })
        .await?;
    println!("agent {} added", a.login);
    Ok(())
}

async fn agent_list(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let agents = store.agents().await?;
    if as_json {
        return json(&agents);
    }
    let now = crate::store::now();
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.login.clone(),
                a.name.clone(),
                a.email.clone(),
                if a.is_admin {
                    "admin".into()
                } else {
                    a.queues.join(",")
                },
                a.away
                    .as_ref()
                    .filter(|w| w.until >= now)
                    .map(|w| away_text(w, now))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&["LOGIN", "NAME", "EMAIL", "QUEUES", "AWAY"], &rows);
    Ok(())
}

/// `agent away`: from now (or `from`) until `until`, in the local time zone.
async fn agent_away(
    store: &Store,
    login: &str,
    from: Option<String>,
    until: &str,
    text_file: &Path,
    substitute: Option<&str>,
) -> anyhow::Result<()> {
    let from = match from {
        Some(w) => parse_when(&w, false, &chrono::Local).context("--from")?,
        None => crate::store::now(),
    };
    let until = parse_when(until, true, &chrono::Local).context("--until")?;
    let text = std::fs::read_to_string(text_file)
        .with_context(|| format!("--text-file: cannot read {}", text_file.display()))?;
    let settings = AwaySettings {
        from,
        until,
        text: &text,
        substitute,
    };
    let a = store.agent_away(login, &settings).await?;
    if let Some(w) = &a.away {
        println!("agent {login}: {}", away_text(w, crate::store::now()));
    }
    Ok(())
}

/// `away until …` or `away from … until …`, with the substitute.
fn away_text(w: &crate::core::model::Away, now: i64) -> String {
    let mut text = if w.from <= now {
        format!("away until {}", local_time(w.until))
    } else {
        format!(
            "away from {} until {}",
            local_time(w.from),
            local_time(w.until)
        )
    };
    if let Some(s) = &w.substitute {
        text.push_str(&format!(" (substitute: {s})"));
    }
    text
}

/// A point in time of an out-of-office, in `tz`: `YYYY-MM-DD` (the first second of that
/// day, or with `end_of_day` its last) or `YYYY-MM-DDTHH:MM`; as Unix seconds.
fn parse_when<Tz: TimeZone>(s: &str, end_of_day: bool, tz: &Tz) -> anyhow::Result<i64> {
    let s = s.trim();
    let naive = match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(day) if end_of_day => day.and_hms_opt(23, 59, 59),
        Ok(day) => day.and_hms_opt(0, 0, 0),
        Err(_) => NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M"))
            .ok(),
    }
    .ok_or_else(|| anyhow!("{s:?} is neither YYYY-MM-DD nor YYYY-MM-DDTHH:MM"))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.timestamp()),
        // The hour a clock change repeats: the wider absence.
        LocalResult::Ambiguous(early, late) => {
            Ok(if end_of_day { late } else { early }.timestamp())
        }
        LocalResult::None => bail!("{s} does not exist in the server's local time (clock change)"),
    }
}

/// The customer CSV columns, in the documented order.
pub const CUSTOMER_HEADER: [&str; 13] = [
    "number",
    "company1",
    "company2",
    "salutation",
    "first_name",
    "last_name",
    "street",
    "house_no",
    "zip",
    "city",
    "letter_salutation",
    "emails",
    "delivery_block",
];
pub const DOCUMENT_HEADER: [&str; 5] = ["number", "kind", "date", "customer_number", "description"];

fn split_emails(s: &str) -> Vec<String> {
    s.split([';', ','])
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "no" | "nein" | "false" | "n" => Some(false),
        "1" | "yes" | "ja" | "true" | "y" | "j" => Some(true),
        _ => None,
    }
}

/// Reads a CSV file with the given header; yields (line number, record) or a line error.
fn read_csv(
    path: &Path,
    header: &[&str],
) -> anyhow::Result<Vec<Result<(u64, csv::StringRecord), String>>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let found: Vec<String> = reader
        .headers()?
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if found != header {
        bail!(
            "{}: the header must be `{}` (found `{}`)",
            path.display(),
            header.join(","),
            found.join(",")
        );
    }
    let mut out = Vec::new();
    for record in reader.records() {
        out.push(match record {
            Ok(r) => {
                let line = r.position().map(|p| p.line()).unwrap_or(0);
                if r.len() != header.len() {
                    Err(format!(
                        "line {line}: {} fields, expected {}",
                        r.len(),
                        header.len()
                    ))
                } else {
                    Ok((line, r))
                }
            }
            Err(e) => Err(format!(
                "line {}: {e}",
                e.position().map(|p| p.line()).unwrap_or(0)
            )),
        });
    }
    Ok(out)
}

fn customer_from_record(line: u64, r: &csv::StringRecord) -> Result<Customer, String> {
    let f = |i: usize| r.get(i).unwrap_or("").trim().to_string();
    let number = f(0);
    if number.is_empty() {
        return Err(format!("line {line}: the customer number is empty"));
    }
    let emails = split_emails(&f(11));
    if let Some(bad) = emails.iter().find(|e| !e.contains('@')) {
        return Err(format!("line {line}: {bad:?} is not an e-mail address"));
    }
    let delivery_block = parse_bool(&f(12)).ok_or_else(|| {
        format!(
            "line {line}: delivery_block must be yes/no or 1/0, not {:?}",
            f(12)
        )
    })?;
    Ok(Customer {
        number,
        company1: f(1),
        company2: f(2),
        salutation: f(3),
        first_name: f(4),
        last_name: f(5),
        street: f(6),
        house_no: f(7),
        zip: f(8),
        city: f(9),
        letter_salutation: f(10),
        emails,
        delivery_block,
    })
}

/// Prints the bad rows and a summary; fails (exit code) when any row was bad.
fn import_summary(
    what: &str,
    inserted: usize,
    updated: usize,
    errors: &[String],
) -> anyhow::Result<()> {
    for e in errors {
        eprintln!("{e}");
    }
    println!(
        "{what}: {inserted} added, {updated} updated, {} rejected",
        errors.len()
    );
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{} row(s) rejected", errors.len()))
    }
}

pub async fn customer(store: &Store, cmd: CustomerCmd) -> anyhow::Result<()> {
    match cmd {
        CustomerCmd::Import { file } => customer_import(store, &file).await,
        CustomerCmd::Add(a) => {
            let c = customer_from_args(a)?;
            let inserted = store.customer_upsert(&c).await?;
            println!(
                "customer {} {}",
                c.number,
                if inserted { "added" } else { "updated" }
            );
            Ok(())
        }
        CustomerCmd::List { json: as_json } => customer_list(store, as_json).await,
        CustomerCmd::Show {
            number,
            json: as_json,
        } => {
            let c = store
                .customer(&number)
                .await?
                .ok_or_else(|| anyhow!("no customer {number}"))?;
            if as_json {
                return json(&c);
            }
            print_customer(&c);
            Ok(())
        }
    }
}

/// `customer import`: every good row is added or updated; bad rows are reported together.
async fn customer_import(store: &Store, file: &Path) -> anyhow::Result<()> {
    let (mut inserted, mut updated, mut errors) = (0, 0, Vec::new());
    for row in read_csv(file, &CUSTOMER_HEADER)? {
        match row.and_then(|(line, r)| customer_from_record(line, &r)) {
            Ok(c) => {
                if store.customer_upsert(&c).await? {
                    inserted += 1;
                } else {
                    updated += 1;
                }
            }
            Err(e) => errors.push(e),
        }
    }
    import_summary("customers", inserted, updated, &errors)
}

async fn customer_list(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let customers = store.customers().await?;
    if as_json {
        return json(&customers);
    }
    let rows: Vec<Vec<String>> = customers
        .iter()
        .map(|c| {
            vec![
                c.number.clone(),
                c.company1.clone(),
                format!("{} {}", c.first_name, c.last_name)
                    .trim()
                    .to_string(),
                c.city.clone(),
                c.emails.join(";"),
                if c.delivery_block {
                    "BLOCKED".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &["NUMBER", "COMPANY", "NAME", "CITY", "EMAILS", "DELIVERY"],
        &rows,
    );
    Ok(())
}

/// `customer show` for people: one field a line.
fn print_customer(c: &Customer) {
    for (k, v) in [
        ("Number", c.number.as_str()),
        ("Company 1", &c.company1),
        ("Company 2", &c.company2),
        ("Salutation", &c.salutation),
        ("First name", &c.first_name),
        ("Last name", &c.last_name),
        ("Street", &c.street),
        ("House no.", &c.house_no),
        ("ZIP", &c.zip),
        ("City", &c.city),
        ("Letter salutation", &c.letter_salutation),
    ] {
        println!("{k:<18} {v}");
    }
    println!("{:<18} {}", "E-mail", c.emails.join(", "));
    println!(
        "{:<18} {}",
        "Delivery block",
        if c.delivery_block { "yes" } else { "no" }
    );
}

fn customer_from_args(a: CustomerArgs) -> anyhow::Result<Customer> {
    if a.number.trim().is_empty() {
        bail!("--number must not be empty");
    }
    let emails = split_emails(&a.emails);
    if let Some(bad) = emails.iter().find(|e| !e.contains('@')) {
        bail!("{bad:?} is not an e-mail address");
    }
    Ok(Customer {
        number: a.number.trim().to_string(),
        company1: a.company1,
        company2: a.company2,
        salutation: a.salutation,
        first_name: a.first_name,
        last_name: a.last_name,
        street: a.street,
        house_no: a.house_no,
        zip: a.zip,
        city: a.city,
        letter_salutation: a.letter_salutation,
        emails,
        delivery_block: a.delivery_block,
    })
}

pub async fn document(store: &Store, cmd: DocumentCmd) -> anyhow::Result<()> {
    match cmd {
        DocumentCmd::Import { file } => {
            let (mut inserted, mut updated, mut errors) = (0, 0, Vec::new());
            for row in read_csv(&file, &DOCUMENT_HEADER)? {
                let doc = row.and_then(|(line, r)| {
                    let f = |i: usize| r.get(i).unwrap_or("").trim().to_string();
                    if f(0).is_empty() {
                        return Err(format!("line {line}: the document number is empty"));
                    }
                    Ok(Document {
                        number: f(0),
                        kind: f(1),
                        date: f(2),
                        customer_number: f(3),
                        description: f(4),
                    })
                });
                match doc {
                    Ok(d) => {
                        if store.document_upsert(&d).await? {
                            inserted += 1;
                        } else {
                            updated += 1;
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            import_summary("documents", inserted, updated, &errors)
        }
        DocumentCmd::List { json: as_json } => {
            let docs = store.documents().await?;
            if as_json {
                return json(&docs);
            }
            let rows: Vec<Vec<String>> = docs
                .iter()
                .map(|d| {
                    vec![
                        d.number.clone(),
                        d.kind.clone(),
                        d.date.clone(),
                        d.customer_number.clone(),
                        d.description.clone(),
                    ]
                })
                .collect();
            table(
                &["NUMBER", "KIND", "DATE", "CUSTOMER", "DESCRIPTION"],
                &rows,
            );
            Ok(())
        }
    }
}

pub async fn tag(store: &Store, cmd: TagCmd) -> anyhow::Result<()> {
    match cmd {
        TagCmd::Add { name } => {
            store.tag_add(&name).await?;
            println!("tag {name} added");
        }
        TagCmd::Delete { name } => {
            store.tag_delete(&name).await?;
            println!("tag {name} deleted");
        }
        TagCmd::List { json: as_json } => {
            let tags = store.tags().await?;
            if as_json {
                return json(&tags);
            }
            for t in tags {
                println!("{t}");
            }
        }
    }
    Ok(())
}

pub async fn status(store: &Store, cmd: StatusCmd, locale: Locale) -> anyhow::Result<()> {
    match cmd {
        StatusCmd::Add {
            name,
            open: _,
            closed,
        } => {
            store.status_add(&name, closed).await?;
            println!(
                "status {name} added ({})",
                if closed { "closed" } else { "open" }
            );
        }
        StatusCmd::List { json: as_json } => {
            let statuses = store.statuses().await?;
            if as_json {
                return json(&statuses);
            }
            let rows: Vec<Vec<String>> = statuses
                .iter()
                .map(|s| {
                    vec![
                        s.key.clone(),
                        match locale {
                            Locale::En => s.name_en.clone(),
                            Locale::De => s.name_de.clone(),
                        },
                        if s.is_closed { "closed" } else { "open" }.into(),
                        if s.is_system { "system" } else { "" }.into(),
                    ]
                })
                .collect();
            table(&["KEY", "NAME", "KIND", ""], &rows);
        }
    }
    Ok(())
}

pub async fn template(store: &Store, cmd: TemplateCmd) -> anyhow::Result<()> {
    match cmd {
        TemplateCmd::Add { name, file } => {
            let body = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            store.template_add(&name, &body).await?;
            println!("template {name} saved");
        }
        TemplateCmd::List { json: as_json } => {
            let templates = store.templates().await?;
            if as_json {
                return json(&templates);
            }
            for (name, body) in templates {
                println!("{name}: {}", body.lines().next().unwrap_or(""));
            }
        }
    }
    Ok(())
}

pub async fn profile(store: &Store, cmd: ProfileCmd) -> anyhow::Result<()> {
    match cmd {
        ProfileCmd::Add { name, filter } => {
            crate::core::filter::parse(&filter).map_err(|e| anyhow!("{e}"))?;
            store.profile_add(&name, &filter).await?;
            println!("profile {name} saved");
        }
        ProfileCmd::List { json: as_json } => {
            let profiles = store.profiles().await?;
            if as_json {
                return json(&profiles);
            }
            for (name, filter) in profiles {
                println!("{name}: {filter}");
            }
        }
    }
    Ok(())
}

pub async fn instances(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let report = store.instances_report().await?;
    if as_json {
        return json(&report);
    }
    let rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|i| {
            vec![
                i.id.clone(),
                format!("{} (pid {})", i.host, i.pid),
                time(i.started_at / 1000),
                if i.alive { "alive" } else { "gone" }.to_string(),
            ]
        })
        .collect();
    table(&["INSTANCE", "HOST", "STARTED", "STATE"], &rows);
    println!();
    print_tasks(&report.instances);
    println!();
    print_leases(store, &report.leases).await?;
    println!();
    let o = &report.outbox;
    println!(
        "Outbox: {} pending, {} sent, {} failed; {} taken over from instances that died while sending",
        o.pending, o.sent, o.failed, o.taken_over
    );
    println!(
        "Mailbox: {} changed tickets waiting for their new message",
        report.mailbox_waiting
    );
    Ok(())
}

/// Each instance's background tasks and listeners: state, restarts, why it last failed.
fn print_tasks(instances: &[InstanceRow]) {
    let rows: Vec<Vec<String>> = instances
        .iter()
        .flat_map(|i| {
            i.tasks.iter().map(|t| {
                vec![
                    i.id.clone(),
                    t.name.clone(),
                    t.state.as_str().to_string(),
                    t.restarts.to_string(),
                    // One line per task, whatever the panic said.
                    t.last_failure
                        .as_deref()
                        .unwrap_or_default()
                        .replace('\n', " "),
                ]
            })
        })
        .collect();
    table(
        &["INSTANCE", "TASK", "STATE", "RESTARTS", "LAST FAILURE"],
        &rows,
    );
}

/// Which instance does which work held under a lease, queues by name.
async fn print_leases(store: &Store, leases: &[LeaseRow]) -> anyhow::Result<()> {
    let queues: std::collections::HashMap<String, String> = store
        .queues()
        .await?
        .into_iter()
        .map(|q| (format!("poll:{}", q.id), q.name))
        .collect();
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            let work = match queues.get(&l.name) {
                Some(queue) => format!("polls queue {queue}"),
                None if l.name.starts_with("poll:") => {
                    format!("polls a removed queue ({})", l.name)
                }
                None => l.name.clone(),
            };
            vec![work, l.holder.clone()]
        })
        .collect();
    table(&["WORK", "INSTANCE"], &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    #[test]
    fn away_times() {
        let utc = FixedOffset::east_opt(0).unwrap();
        let berlin = FixedOffset::east_opt(3600).unwrap();
        let at = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp()
        };
        assert_eq!(
            parse_when("2026-12-24", false, &utc).unwrap(),
            at("2026-12-24 00:00:00")
        );
        assert_eq!(
            parse_when("2026-12-24", true, &utc).unwrap(),
            at("2026-12-24 23:59:59")
        );
        assert_eq!(
            parse_when("2026-12-24T17:30", true, &berlin).unwrap(),
            at("2026-12-24 16:30:00")
        );
        assert_eq!(
            parse_when(" 2026-12-24 08:00", false, &utc).unwrap(),
            at("2026-12-24 08:00:00")
        );
        for bad in ["24.12.2026", "2026-12-24T25:00", "tomorrow", ""] {
            assert!(parse_when(bad, false, &utc).is_err(), "{bad}");
        }
    }
}
