//! A ticket as one mail message (README, "The agents' mailbox"): the bytes an agent's mail
//! client receives for a ticket in every folder that shows it, and the Message-ID that
//! names one version of it.
//!
//! The header block depends on [`TicketHead`] alone, so a folder of many tickets can be
//! listed (ENVELOPE, HEADER.FIELDS) without reading items; the full [`message`] starts with
//! exactly those bytes. Everything here is a pure function of its input: no clock, no
//! randomness, so the same ticket version always has the same bytes and size.
//!
//! What the message says is decided here; [`crate::core::mime`] writes it: 7-bit clean with
//! CRLF line ends, header words outside ASCII as RFC 2047 encoded words, the text parts
//! quoted-printable, attachments base64.

use crate::core::html::escape;
use crate::core::mime::{
    Header, attachment_part, file_name, mailbox, one_line, rfc5322_date, split_words, text_part,
    unstructured,
};
use crate::core::model::{ItemDetail, ItemKind, Priority, TicketDetail};
use crate::core::subject;
use crate::core::texts::Locale;

/// What the message header needs: the ticket row alone (no items), so a folder of 100,000
/// tickets can be listed (ENVELOPE, HEADER.FIELDS) without reading any item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketHead {
    pub number: i64,
    /// Bumped on every change of the ticket.
    pub version: i64,
    /// Id of the newest item, 0 when none.
    pub last_item_id: i64,
    /// The newest item is a reply (the message is `\Answered`).
    pub answered: bool,
    /// Ticket subject without tag.
    pub subject: String,
    /// Queue name.
    pub queue: String,
    pub queue_address: String,
    /// Display name for From ("" when unknown).
    pub customer_name: String,
    /// The ticket's creator / customer address.
    pub from_address: String,
    /// Status display name, already in the locale.
    pub status: String,
    pub priority: Priority,
    /// Login.
    pub assignee: Option<String>,
    pub tags: Vec<String>,
    /// YYYY-MM-DD.
    pub due_date: Option<String>,
    pub billable: bool,
    pub customer_number: Option<String>,
    pub delivery_block: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the Date header.
    pub last_action_at: i64,
}

/// The ticket version a Message-ID of [`message_id`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TicketVersion {
    pub number: i64,
    pub version: i64,
    pub last_item_id: i64,
}

/// The Message-ID (without `< >`) of one version of a ticket's message:
/// `mt.<number>.v<version>.i<last_item_id>@<hostname>`. The `v`/`i` markers keep it apart
/// from [`crate::core::compose::message_id`], whose third part is a hex nonce.
pub fn message_id(number: i64, version: i64, last_item_id: i64, hostname: &str) -> String {
    format!(
        "mt.{number}.v{version}.i{last_item_id}@{}",
        host_name(hostname)
    )
}

/// The ticket version named by a Message-ID of [`message_id`], with or without `< >`, from
/// any host. None for every other id, for negative numbers and for numbers beyond `i64`.
pub fn parse_message_id(id: &str) -> Option<TicketVersion> {
    let id = id.trim();
    let id = match id.strip_prefix('<') {
        Some(inner) => inner.strip_suffix('>')?,
        None => id,
    };
    let (local, host) = id.rsplit_once('@')?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>@()[]\\\",;:".contains(&b));
    if !host_ok {
        return None;
    }
    let mut parts = local.strip_prefix("mt.")?.split('.');
    let number = decimal(parts.next()?)?;
    let version = decimal(parts.next()?.strip_prefix('v')?)?;
    let last_item_id = decimal(parts.next()?.strip_prefix('i')?)?;
    if parts.next().is_some() || number == 0 {
        return None;
    }
    Some(TicketVersion {
        number,
        version,
        last_item_id,
    })
}

/// A non-negative decimal as [`message_id`] writes it: digits only, no leading zero, so
/// one version has exactly one id.
fn decimal(s: &str) -> Option<i64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// The host part of ids: letters, digits, dots and dashes of `hostname`, else `localhost`.
pub(crate) fn host_name(hostname: &str) -> String {
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    if host.is_empty() {
        "localhost".into()
    } else {
        host
    }
}

/// The boundaries of the multipart/mixed and multipart/alternative bodies. They start with
/// `=_`, which quoted-printable (always escapes `=`) and base64 (`=` only as final padding)
/// never produce, and neither is a prefix of the other.
fn boundaries(head: &TicketHead) -> (String, String) {
    let base = format!("=_mt.{}.{}", head.number, head.version);
    (format!("{base}.m"), format!("{base}.a"))
}

/// The form of [`header`]'s and [`message`]'s output: count it up when either writes other
/// bytes for the same ticket version, so that every ticket is listed anew (a new UID, its
/// header rendered again) and no client keeps a size or a cached copy that no longer holds.
/// 2: RFC 2231 file-name sections no longer cut a character in two.
pub const HEADER_LAYOUT: u32 = 2;

/// The header block of the ticket's message, through the empty line that ends it. The
/// locale only names the body's language (`Content-Language`); the `X-Ticket-…` values are
/// the head's own (the status already in the locale, priority as its key).
pub fn header(head: &TicketHead, hostname: &str, locale: Locale) -> String {
    let mut h = Header::default();
    h.field("Date", split_words(&rfc5322_date(head.last_action_at)));
    h.field("From", mailbox(&head.customer_name, &head.from_address));
    h.field("To", mailbox("", &head.queue_address));
    let tag = subject::tag(&one_line(&head.queue), head.number);
    let title = one_line(&format!("{tag} {}", one_line(&head.subject)));
    h.field("Subject", unstructured(&title));
    let id = message_id(head.number, head.version, head.last_item_id, hostname);
    h.field("Message-ID", vec![format!("<{id}>")]);
    h.field("MIME-Version", vec!["1.0".into()]);
    let (mixed, _) = boundaries(head);
    h.field(
        "Content-Type",
        vec!["multipart/mixed;".into(), format!("boundary=\"{mixed}\"")],
    );
    h.field("Content-Language", vec![language(locale).into()]);
    match head.priority {
        Priority::High => h.field("X-Priority", split_words("1 (Highest)")),
        Priority::Medium => h.field("X-Priority", split_words("3 (Normal)")),
        Priority::Low => {}
    }
    ticket_fields(&mut h, head);
    h.finish()
}

/// The `X-Ticket-…` fields; optional ones only when they have a value.
fn ticket_fields(h: &mut Header, head: &TicketHead) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let tags: Vec<String> = head.tags.iter().map(|t| one_line(t)).collect();
    h.field("X-Ticket-Number", vec![head.number.to_string()]);
    h.field("X-Ticket-Queue", unstructured(&head.queue));
    h.field("X-Ticket-Status", unstructured(&head.status));
    h.field("X-Ticket-Priority", vec![head.priority.as_str().into()]);
    h.optional("X-Ticket-Assignee", head.assignee.as_deref().unwrap_or(""));
    h.optional("X-Ticket-Tags", &tags.join(", "));
    h.optional("X-Ticket-Due", head.due_date.as_deref().unwrap_or(""));
    h.field("X-Ticket-Billable", vec![yes_no(head.billable).into()]);
    h.optional(
        "X-Ticket-Customer",
        head.customer_number.as_deref().unwrap_or(""),
    );
    h.field(
        "X-Ticket-Delivery-Block",
        vec![yes_no(head.delivery_block).into()],
    );
    h.field("X-Ticket-Version", vec![head.version.to_string()]);
}

pub(crate) fn language(locale: Locale) -> &'static str {
    match locale {
        Locale::En => "en",
        Locale::De => "de",
    }
}

/// The ticket's whole message: [`header`], then text and HTML views of the ticket and the
/// items' attachments. `attachments[i][j]` are the bytes of `detail.items[i].attachments[j]`;
/// an attachment without bytes is left out.
pub fn message(
    head: &TicketHead,
    detail: &TicketDetail,
    attachments: &[Vec<Vec<u8>>],
    hostname: &str,
    locale: Locale,
) -> Vec<u8> {
    let mut out = header(head, hostname, locale);
    let (mixed, alt) = boundaries(head);
    let view = View::new(head, detail, locale);
    out.push_str(&format!("--{mixed}\r\n"));
    out.push_str(&format!(
        "Content-Type: multipart/alternative;\r\n boundary=\"{alt}\"\r\n\r\n"
    ));
    out.push_str(&format!("--{alt}\r\n"));
    text_part(&mut out, "text/plain", &view.text());
    out.push_str(&format!("\r\n--{alt}\r\n"));
    text_part(&mut out, "text/html", &view.html());
    out.push_str(&format!("\r\n--{alt}--\r\n"));
    for (i, item) in detail.items.iter().enumerate() {
        for (j, info) in item.attachments.iter().enumerate() {
            if let Some(bytes) = attachments.get(i).and_then(|a| a.get(j)) {
                out.push_str(&format!("\r\n--{mixed}\r\n"));
                attachment_part(&mut out, &info.name, &info.content_type, bytes);
            }
        }
    }
    out.push_str(&format!("\r\n--{mixed}--\r\n"));
    out.into_bytes()
}

/// The words of the ticket views, per locale.
struct Labels {
    status: &'static str,
    priority: &'static str,
    assignee: &'static str,
    due: &'static str,
    billable: &'static str,
    created: &'static str,
    customer: &'static str,
    tags: &'static str,
    document: &'static str,
    cc: &'static str,
    watchers: &'static str,
    newest: &'static str,
    earlier: &'static str,
    no_items: &'static str,
    history: &'static str,
    other_tickets: &'static str,
    customer_item: &'static str,
    reply_item: &'static str,
    comment_item: &'static str,
    from: &'static str,
    to: &'static str,
    agent: &'static str,
    date: &'static str,
    subject: &'static str,
    attachments: &'static str,
    yes: &'static str,
    no: &'static str,
    low: &'static str,
    medium: &'static str,
    high: &'static str,
    blocked_marker: &'static str,
    blocked_note: &'static str,
    spoof_note: &'static str,
    merged_note: &'static str,
}

const EN: Labels = Labels {
    status: "Status",
    priority: "Priority",
    assignee: "Assignee",
    due: "Due",
    billable: "Billable",
    created: "Created",
    customer: "Customer",
    tags: "Tags",
    document: "Document",
    cc: "CC",
    watchers: "Watchers",
    newest: "Newest item",
    earlier: "Earlier items",
    no_items: "No items.",
    history: "History",
    other_tickets: "Other tickets of the customer",
    customer_item: "Customer",
    reply_item: "Reply",
    comment_item: "Comment",
    from: "From",
    to: "To",
    agent: "Agent",
    date: "Date",
    subject: "Subject",
    attachments: "Attachments",
    yes: "yes",
    no: "no",
    low: "low",
    medium: "medium",
    high: "high",
    blocked_marker: "[DELIVERY BLOCK]",
    blocked_note: "Delivery block: this customer is blocked from delivery.",
    spoof_note: "Caution: the sender of this ticket may be forged (spoof suspect).",
    merged_note: "This ticket was merged into ticket",
};

const DE: Labels = Labels {
    status: "Status",
    priority: "Priorität",
    assignee: "Bearbeiter",
    due: "Bearbeitung bis",
    billable: "Berechnen",
    created: "Erstellt",
    customer: "Kunde",
    tags: "Schlagworte",
    document: "Beleg",
    cc: "CC",
    watchers: "Beobachter",
    newest: "Neuester Eintrag",
    earlier: "Frühere Einträge",
    no_items: "Keine Einträge.",
    history: "Verlauf",
    other_tickets: "weitere Tickets des Kunden",
    customer_item: "Kunde",
    reply_item: "Antwort",
    comment_item: "Kommentar",
    from: "Von",
    to: "An",
    agent: "Bearbeiter",
    date: "Datum",
    subject: "Betreff",
    attachments: "Anhänge",
    yes: "ja",
    no: "nein",
    low: "niedrig",
    medium: "mittel",
    high: "hoch",
    blocked_marker: "[LIEFERSPERRE]",
    blocked_note: "Liefersperre: Für diesen Kunden besteht eine Liefersperre.",
    spoof_note: "Achtung: Der Absender dieses Tickets ist möglicherweise gefälscht.",
    merged_note: "Dieses Ticket wurde zusammengeführt in Ticket",
};

fn labels(locale: Locale) -> &'static Labels {
    match locale {
        Locale::En => &EN,
        Locale::De => &DE,
    }
}

/// One labelled line of the overview or of an item's head.
struct Row {
    label: &'static str,
    value: String,
    /// Shown after the value, highlighted (the delivery-block marker).
    marker: Option<&'static str>,
}

fn row(label: &'static str, value: impl Into<String>) -> Row {
    Row {
        label,
        value: value.into(),
        marker: None,
    }
}

/// One item of the conversation, ready for both views.
struct ItemView {
    kind: ItemKind,
    heading: String,
    rows: Vec<Row>,
    text: String,
}

/// What both the text and the HTML part show, gathered once so they cannot disagree.
struct View {
    labels: &'static Labels,
    title: String,
    alerts: Vec<String>,
    overview: Vec<Row>,
    /// Newest first.
    items: Vec<ItemView>,
    history: Vec<[String; 3]>,
    other_tickets: String,
}

impl View {
    fn new(head: &TicketHead, detail: &TicketDetail, locale: Locale) -> View {
        let l = labels(locale);
        let tag = subject::tag(&one_line(&head.queue), head.number);
        let mut order: Vec<&ItemDetail> = detail.items.iter().collect();
        order.sort_by_key(|i| std::cmp::Reverse((i.date, i.id)));
        View {
            labels: l,
            title: one_line(&format!("{tag} {}", head.subject)),
            alerts: alerts(head, detail, l),
            overview: overview(head, detail, l),
            items: order.into_iter().map(|i| item_view(i, l)).collect(),
            history: detail
                .history
                .iter()
                .map(|h| {
                    let change = format!("{}: {} → {}", h.field, h.old, h.new);
                    [display_time(h.at), one_line(&h.actor), one_line(&change)]
                })
                .collect(),
            other_tickets: detail
                .other_tickets
                .iter()
                .map(|n| format!("#{n}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

fn alerts(head: &TicketHead, detail: &TicketDetail, l: &Labels) -> Vec<String> {
    let mut alerts = Vec::new();
    if let Some(n) = detail.merged_into {
        alerts.push(format!("{} #{n}.", l.merged_note));
    }
    if detail.spoof_suspect {
        alerts.push(l.spoof_note.into());
    }
    if blocked(head, detail) {
        alerts.push(l.blocked_note.into());
    }
    alerts
}

fn blocked(head: &TicketHead, detail: &TicketDetail) -> bool {
    head.delivery_block || detail.customer.as_ref().is_some_and(|c| c.delivery_block)
}

/// The overview block: the ticket's fields, always status, priority, assignee and billable,
/// the others when they have a value.
fn overview(head: &TicketHead, detail: &TicketDetail, l: &Labels) -> Vec<Row> {
    let priority = match head.priority {
        Priority::Low => l.low,
        Priority::Medium => l.medium,
        Priority::High => l.high,
    };
    let mut rows = vec![
        row(l.status, one_line(&head.status)),
        row(l.priority, priority),
        row(
            l.assignee,
            head.assignee.as_deref().map_or("–".into(), one_line),
        ),
        row(l.billable, if head.billable { l.yes } else { l.no }),
        row(l.created, display_time(head.created_at)),
    ];
    if let Some(due) = &head.due_date {
        rows.push(row(l.due, one_line(due)));
    }
    let customer = customer_line(head, detail);
    if !customer.is_empty() || blocked(head, detail) {
        let mut r = row(l.customer, customer);
        r.marker = blocked(head, detail).then_some(l.blocked_marker);
        rows.push(r);
    }
    let optional = [
        (l.tags, list(&head.tags)),
        (l.document, document_line(detail)),
        (l.cc, list(&detail.cc)),
        (l.watchers, list(&detail.watchers)),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(label, v)| row(label, v)),
    );
    rows
}

fn list(values: &[String]) -> String {
    let values: Vec<String> = values.iter().map(|v| one_line(v)).collect();
    values
        .into_iter()
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Customer number, name and company, as far as known.
fn customer_line(head: &TicketHead, detail: &TicketDetail) -> String {
    let parts = match &detail.customer {
        Some(c) => vec![
            c.number.clone(),
            format!("{} {}", c.first_name, c.last_name),
            c.company1.clone(),
            c.company2.clone(),
        ],
        None => vec![
            head.customer_number.clone().unwrap_or_default(),
            head.customer_name.clone(),
        ],
    };
    list(&parts)
}

/// `number (kind, date): description` of the linked document.
fn document_line(detail: &TicketDetail) -> String {
    let Some(d) = &detail.document else {
        return String::new();
    };
    let about = list(&[d.kind.clone(), d.date.clone()]);
    let mut line = one_line(&d.number);
    if !about.is_empty() {
        line.push_str(&format!(" ({about})"));
    }
    let description = one_line(&d.description);
    if !description.is_empty() {
        line.push_str(&format!(": {description}"));
    }
    line
}

fn item_view(item: &ItemDetail, l: &Labels) -> ItemView {
    let kind = match item.kind {
        ItemKind::Customer => l.customer_item,
        ItemKind::Reply => l.reply_item,
        ItemKind::Comment => l.comment_item,
    };
    let date = display_time(item.date);
    let mut rows = vec![row(l.from, one_line(&item.from))];
    if let (ItemKind::Reply | ItemKind::Comment, Some(agent)) = (item.kind, &item.agent) {
        rows.push(row(l.agent, one_line(agent)));
    }
    rows.push(row(l.to, list(&item.to)));
    rows.push(row(l.cc, list(&item.cc)));
    rows.push(row(l.date, date.clone()));
    rows.push(row(l.subject, one_line(&item.subject)));
    let names: Vec<String> = item
        .attachments
        .iter()
        .map(|a| file_name(&a.name))
        .collect();
    rows.push(row(l.attachments, list(&names)));
    rows.retain(|r| !r.value.is_empty() || r.label == l.from);
    ItemView {
        kind: item.kind,
        heading: format!("{kind} · {date}"),
        rows,
        text: body_text(&item.text),
    }
}

/// An instant for people: `YYYY-MM-DD HH:MM UTC`.
fn display_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| secs.to_string())
}

/// Item text for the views: LF line ends, no control characters but tabs.
fn body_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect::<String>()
        .trim_end()
        .to_string()
}

impl View {
    /// The text/plain part.
    fn text(&self) -> String {
        let l = self.labels;
        let mut t = format!("{}\n\n", self.title);
        for alert in &self.alerts {
            t.push_str(&format!("!! {alert}\n"));
        }
        if !self.alerts.is_empty() {
            t.push('\n');
        }
        rows_text(&self.overview, &mut t);
        let mut items = self.items.iter();
        text_section(&mut t, l.newest);
        match items.next() {
            Some(first) => item_text(first, &mut t),
            None => t.push_str(&format!("{}\n", l.no_items)),
        }
        if self.items.len() > 1 {
            text_section(&mut t, l.earlier);
            items.for_each(|item| item_text(item, &mut t));
        }
        if !self.history.is_empty() {
            text_section(&mut t, l.history);
            for [at, actor, change] in &self.history {
                t.push_str(&format!("{at}  {actor}  {change}\n"));
            }
        }
        if !self.other_tickets.is_empty() {
            text_section(&mut t, l.other_tickets);
            t.push_str(&format!("{}\n", self.other_tickets));
        }
        t
    }
}

fn text_section(t: &mut String, title: &str) {
    // No `=` here: quoted-printable would triple it.
    t.push_str(&format!("\n## {title}\n\n"));
}

/// `Label:   value` lines, values aligned.
fn rows_text(rows: &[Row], t: &mut String) {
    let width = rows
        .iter()
        .map(|r| r.label.chars().count())
        .max()
        .unwrap_or(0);
    for r in rows {
        let pad = " ".repeat(width - r.label.chars().count());
        t.push_str(&format!("{}:{pad} {}", r.label, r.value));
        if let Some(marker) = r.marker {
            t.push_str(&format!(" {marker}"));
        }
        t.push('\n');
    }
}

fn item_text(item: &ItemView, t: &mut String) {
    t.push_str(&format!("---- {} ----\n", item.heading));
    rows_text(&item.rows, t);
    t.push('\n');
    t.push_str(&item.text);
    t.push_str("\n\n");
}

/// Border and background of an item, in the seed's colours.
fn colours(kind: ItemKind) -> (&'static str, &'static str) {
    match kind {
        ItemKind::Customer => ("#d32f2f", "#fdecea"),
        ItemKind::Reply => ("#388e3c", "#e8f5e9"),
        ItemKind::Comment => ("#f9a825", "#fff8e1"),
    }
}

impl View {
    /// The text/html part: inline styles only, every text escaped.
    fn html(&self) -> String {
        let l = self.labels;
        let mut h = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
             <body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">\n",
        );
        h.push_str(&format!(
            "<h2 style=\"margin:0 0 8px\">{}</h2>\n",
            escape(&self.title)
        ));
        for alert in &self.alerts {
            h.push_str(&format!(
                "<p style=\"border:2px solid #b71c1c;background:#fdecea;color:#b71c1c;\
                 font-weight:bold;padding:6px 10px\">{}</p>\n",
                escape(alert)
            ));
        }
        rows_html(&self.overview, &mut h);
        html_section(&mut h, l.newest);
        let mut items = self.items.iter();
        match items.next() {
            Some(first) => item_html(first, &mut h),
            None => h.push_str(&format!("<p>{}</p>\n", escape(l.no_items))),
        }
        if self.items.len() > 1 {
            html_section(&mut h, l.earlier);
            items.for_each(|item| item_html(item, &mut h));
        }
        if !self.history.is_empty() {
            html_section(&mut h, l.history);
            h.push_str("<table style=\"border-collapse:collapse;font-size:13px\">\n");
            for cells in &self.history {
                h.push_str("<tr>");
                for cell in cells {
                    h.push_str(&format!(
                        "<td style=\"padding:1px 12px 1px 0;vertical-align:top\">{}</td>",
                        escape(cell)
                    ));
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        if !self.other_tickets.is_empty() {
            html_section(&mut h, l.other_tickets);
            h.push_str(&format!("<p>{}</p>\n", escape(&self.other_tickets)));
        }
        h.push_str("</body></html>\n");
        h
    }
}

fn html_section(h: &mut String, title: &str) {
    h.push_str(&format!(
        "<h3 style=\"margin:16px 0 6px\">{}</h3>\n",
        escape(title)
    ));
}

fn rows_html(rows: &[Row], h: &mut String) {
    h.push_str("<table style=\"border-collapse:collapse\">\n");
    for r in rows {
        h.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:1px 12px 1px 0;vertical-align:top\">\
             {}</th><td>{}",
            escape(r.label),
            escape(&r.value)
        ));
        if let Some(marker) = r.marker {
            h.push_str(&format!(
                " <strong style=\"color:#b71c1c\">{}</strong>",
                escape(marker)
            ));
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n");
}

fn item_html(item: &ItemView, h: &mut String) {
    let (border, background) = colours(item.kind);
    h.push_str(&format!(
        "<div style=\"border-left:6px solid {border};background:{background};\
         padding:8px 12px;margin:8px 0\">\n<div style=\"font-weight:bold\">{}</div>\n",
        escape(&item.heading)
    ));
    rows_html(&item.rows, h);
    h.push_str("<div style=\"margin-top:8px\">");
    for (n, line) in item.text.split('\n').enumerate() {
        if n > 0 {
            h.push_str("<br>\n");
        }
        // Keeps indentation visible where HTML would collapse runs of spaces.
        h.push_str(&escape(line).replace("  ", " &nbsp;"));
    }
    h.push_str("</div>\n</div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{AttachmentInfo, Customer, Document, HistoryEntry};
    use mail_parser::{MessageParser, MimeHeaders};

    fn head() -> TicketHead {
        TicketHead {
            number: 42,
            version: 7,
            last_item_id: 103,
            answered: false,
            subject: "Drucker druckt nicht".into(),
            queue: "Support".into(),
            queue_address: "support@example.test".into(),
            customer_name: "Hans Mueller".into(),
            from_address: "hans@kunde.example".into(),
            status: "Open".into(),
            priority: Priority::High,
            assignee: Some("anna".into()),
            tags: vec!["printer".into(), "urgent".into()],
            due_date: Some("2024-05-01".into()),
            billable: true,
            customer_number: Some("10023".into()),
            delivery_block: true,
            created_at: 1_700_000_000,
            last_action_at: 1_700_086_400,
        }
    }

    fn item(id: i64, kind: ItemKind, date: i64, text: &str) -> ItemDetail {
        ItemDetail {
            id,
            kind,
            agent: (kind != ItemKind::Customer).then(|| "anna".to_string()),
            from: if kind == ItemKind::Customer {
                "hans@kunde.example".into()
            } else {
                "support@example.test".into()
            },
            to: vec!["support@example.test".into()],
            cc: vec![],
            subject: format!("item {id}"),
            date,
            message_id: format!("m{id}@example.test"),
            text: text.into(),
            attachments: vec![],
            problems: vec![],
        }
    }

    fn attachment(name: &str, content_type: &str) -> AttachmentInfo {
        AttachmentInfo {
            name: name.into(),
            content_type: content_type.into(),
            size: 0,
            sha256: String::new(),
        }
    }

    fn detail() -> TicketDetail {
        let mut first = item(
            101,
            ItemKind::Customer,
            1_700_000_000,
            "The printer is broken.",
        );
        first.attachments = vec![
            attachment("photo.png", "image/png"),
            attachment("Übersicht März.pdf", "application/pdf"),
        ];
        let reply = item(102, ItemKind::Reply, 1_700_003_600, "Please restart it.");
        let mut comment = item(103, ItemKind::Comment, 1_700_007_200, "Customer called.");
        comment.attachments = vec![attachment("notes.txt", "text/plain")];
        TicketDetail {
            number: 42,
            subject: "Drucker druckt nicht".into(),
            queue: "Support".into(),
            assignee: Some("anna".into()),
            status: "open".into(),
            priority: Priority::High,
            due_date: Some("2024-05-01".into()),
            billable: true,
            customer: Some(Customer {
                number: "10023".into(),
                first_name: "Hans".into(),
                last_name: "Mueller".into(),
                company1: "Mueller GmbH".into(),
                delivery_block: true,
                ..Default::default()
            }),
            creator_address: "hans@kunde.example".into(),
            cc: vec!["chef@kunde.example".into()],
            tags: vec!["printer".into(), "urgent".into()],
            watchers: vec!["bob".into()],
            document: Some(Document {
                number: "R-2024-17".into(),
                kind: "invoice".into(),
                date: "2024-01-02".into(),
                customer_number: "10023".into(),
                description: "Toner cartridges".into(),
            }),
            spoof_suspect: false,
            merged_into: None,
            version: 7,
            created_at: 1_700_000_000,
            last_action_at: 1_700_086_400,
            items: vec![first, reply, comment],
            history: vec![HistoryEntry {
                at: 1_700_003_600,
                actor: "anna".into(),
                field: "status".into(),
                old: "new".into(),
                new: "open".into(),
            }],
            other_tickets: vec![17, 23],
        }
    }

    /// Bytes of every attachment in `detail()`, binary ones included.
    fn files() -> Vec<Vec<Vec<u8>>> {
        let png: Vec<u8> = (0..=255u8).chain([0, 13, 10, 61, 95]).collect();
        vec![
            vec![png, b"%PDF-1.4 =_mt.42.7.m\r\n".to_vec()],
            vec![],
            vec![b"line one\nline two\n".to_vec()],
        ]
    }

    fn render(head: &TicketHead, detail: &TicketDetail, locale: Locale) -> Vec<u8> {
        message(head, detail, &files(), "gw.example.test", locale)
    }

    /// Every line ends in CRLF, none is longer than 998 bytes, every byte is 7-bit.
    fn assert_wire_safe(bytes: &[u8]) {
        assert_lines_within(bytes, 998);
    }

    fn assert_lines_within(bytes: &[u8], limit: usize) {
        assert!(bytes.is_ascii(), "8-bit byte in the output");
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(text.ends_with("\r\n"));
        for line in text.split("\r\n") {
            assert!(
                !line.contains('\r') && !line.contains('\n'),
                "bare line end"
            );
            assert!(line.len() <= limit, "line of {} bytes: {line}", line.len());
        }
    }

    #[test]
    fn deterministic_and_header_is_prefix() {
        let (h, d) = (head(), detail());
        let a = render(&h, &d, Locale::En);
        assert_eq!(a, render(&h, &d, Locale::En));
        assert_lines_within(&a, 78);
        let header = header(&h, "gw.example.test", Locale::En);
        assert!(header.ends_with("\r\n\r\n"));
        assert!(a.starts_with(header.as_bytes()));
        assert_eq!(header.matches("\r\n\r\n").count(), 1);
        assert_wire_safe(&a);
    }

    #[test]
    fn header_fields() {
        let h = header(&head(), "gw.example.test", Locale::En);
        for line in h.split("\r\n") {
            assert!(line.len() < 78, "{line:?}");
        }
        for want in [
            "Date: Wed, 15 Nov 2023 22:13:20 +0000\r\n",
            "From: Hans Mueller <hans@kunde.example>\r\n",
            "To: support@example.test\r\n",
            "Subject: [Support #42] Drucker druckt nicht\r\n",
            "Message-ID: <mt.42.v7.i103@gw.example.test>\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=\"=_mt.42.7.m\"\r\n",
            "X-Priority: 1 (Highest)\r\n",
            "X-Ticket-Number: 42\r\n",
            "X-Ticket-Queue: Support\r\n",
            "X-Ticket-Status: Open\r\n",
            "X-Ticket-Priority: high\r\n",
            "X-Ticket-Assignee: anna\r\n",
            "X-Ticket-Tags: printer, urgent\r\n",
            "X-Ticket-Due: 2024-05-01\r\n",
            "X-Ticket-Billable: yes\r\n",
            "X-Ticket-Customer: 10023\r\n",
            "X-Ticket-Delivery-Block: yes\r\n",
            "X-Ticket-Version: 7\r\n",
        ] {
            assert!(h.contains(want), "{want:?} missing:\n{h}");
        }
    }

    #[test]
    fn optional_headers_left_out() {
        let mut hd = head();
        hd.priority = Priority::Low;
        hd.assignee = None;
        hd.tags = vec![];
        hd.due_date = None;
        hd.customer_number = None;
        hd.customer_name = String::new();
        hd.billable = false;
        hd.delivery_block = false;
        let h = header(&hd, "gw.example.test", Locale::En);
        for gone in [
            "X-Priority",
            "X-Ticket-Assignee",
            "X-Ticket-Tags",
            "X-Ticket-Due",
            "X-Ticket-Customer:",
        ] {
            assert!(!h.contains(gone), "{gone} present:\n{h}");
        }
        assert!(h.contains("From: hans@kunde.example\r\n"), "{h}");
        assert!(h.contains("X-Ticket-Billable: no\r\n"));
        assert!(h.contains("X-Ticket-Delivery-Block: no\r\n"));
        assert!(h.contains("X-Ticket-Priority: low\r\n"));
        hd.priority = Priority::Medium;
        let h = header(&hd, "gw.example.test", Locale::En);
        assert!(h.contains("X-Priority: 3 (Normal)\r\n"));
    }

    #[test]
    fn parser_reads_headers_and_subject_tag() {
        let raw = render(&head(), &detail(), Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        let subject = m.subject().unwrap();
        assert_eq!(subject, "[Support #42] Drucker druckt nicht");
        let tags = subject::find_tags(subject);
        assert_eq!(tags.len(), 1);
        assert_eq!((tags[0].queue.as_str(), tags[0].number), ("Support", 42));
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Hans Mueller"));
        assert_eq!(from.address(), Some("hans@kunde.example"));
        assert_eq!(m.message_id(), Some("mt.42.v7.i103@gw.example.test"));
        assert_eq!(
            m.to().unwrap().first().unwrap().address(),
            Some("support@example.test")
        );
        assert_eq!(m.date().unwrap().to_timestamp(), 1_700_086_400);
    }

    #[test]
    fn parser_reads_bodies() {
        let raw = render(&head(), &detail(), Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        let text = m.body_text(0).unwrap();
        let html = m.body_html(0).unwrap();
        for body in [&text, &html] {
            for want in [
                "The printer is broken.",
                "Please restart it.",
                "Customer called.",
                "Open",
                "anna",
                "2024-05-01",
                "10023",
                "Mueller GmbH",
                "[DELIVERY BLOCK]",
                "R-2024-17",
                "Toner cartridges",
                "chef@kunde.example",
                "printer, urgent",
                "photo.png",
                "Übersicht März.pdf",
                "History",
                "#17, #23",
            ] {
                assert!(body.contains(want), "{want:?} missing:\n{body}");
            }
        }
        // Newest item first, then the rest newest to oldest.
        let pos = |s: &str| text.find(s).unwrap();
        assert!(pos("Customer called.") < pos("Please restart it."));
        assert!(pos("Please restart it.") < pos("The printer is broken."));
        assert!(text.contains("status: new → open"), "{text}");
        for colour in ["#d32f2f", "#388e3c", "#f9a825"] {
            assert!(html.contains(colour), "{colour} missing");
        }
    }

    #[test]
    fn attachments_round_trip() {
        let raw = render(&head(), &detail(), Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        let got: Vec<(String, Vec<u8>)> = m
            .attachments()
            .map(|a| {
                let name = a.attachment_name().unwrap_or_default().to_string();
                (name, a.contents().to_vec())
            })
            .collect();
        let files = files();
        let want = vec![
            ("photo.png".to_string(), files[0][0].clone()),
            ("Übersicht März.pdf".to_string(), files[0][1].clone()),
            ("notes.txt".to_string(), files[2][0].clone()),
        ];
        assert_eq!(got, want);
        let kinds: Vec<String> = m
            .attachments()
            .map(|a| {
                let ct = a.content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(kinds, ["image/png", "application/pdf", "text/plain"]);
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("filename*=utf-8''%C3%9Cbersicht%20M%C3%A4rz.pdf"));
    }

    #[test]
    fn missing_attachment_bytes_are_left_out() {
        let raw = message(&head(), &detail(), &[], "gw.example.test", Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.attachment_count(), 0);
        assert!(m.body_text(0).unwrap().contains("notes.txt"));
    }

    #[test]
    fn boundary_text_in_item_keeps_structure() {
        let mut d = detail();
        d.items[2].text = "--=_mt.42.7.m\r\n--=_mt.42.7.a--\r\n\r\nContent-Type: text/html\r\n\
                           --=_mt.42.7.m--\nstill the comment"
            .into();
        let raw = render(&head(), &d, Locale::En);
        assert_wire_safe(&raw);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.attachment_count(), 3);
        // Quoted-printable carries line ends as CRLF.
        let text = m.body_text(0).unwrap().replace("\r\n", "\n");
        assert!(
            text.contains("--=_mt.42.7.m--\nstill the comment"),
            "{text}"
        );
        assert!(text.contains("The printer is broken."));
    }

    #[test]
    fn non_ascii_subject_and_name_round_trip() {
        let mut h = head();
        h.subject = "Grüße aus Köln – Drucker 🖨 ".repeat(6);
        h.customer_name = "Jürgen \"JJ\" Groß, Vertrieb".into();
        h.queue = "Vertrieb Süd".into();
        h.status = "Geöffnet".into();
        h.tags = vec!["wichtig".into(), "Rückruf".into()];
        let raw = render(&h, &detail(), Locale::De);
        assert_wire_safe(&raw);
        let header_text = header(&h, "gw.example.test", Locale::De);
        for line in header_text.split("\r\n") {
            assert!(line.len() < 78, "{line:?}");
        }
        let m = MessageParser::default().parse(&raw).unwrap();
        let want = format!("[Vertrieb Süd #42] {}", one_line(&h.subject));
        assert_eq!(m.subject(), Some(want.as_str()));
        let tags = subject::find_tags(m.subject().unwrap());
        assert_eq!(tags[0].queue, "Vertrieb Süd");
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Jürgen \"JJ\" Groß, Vertrieb"));
        assert_eq!(from.address(), Some("hans@kunde.example"));
        assert_eq!(
            m.header_raw("X-Ticket-Status").map(str::trim),
            Some("=?utf-8?B?R2XDtmZmbmV0?=")
        );
    }

    #[test]
    fn quoted_display_name() {
        let mut h = head();
        h.customer_name = "Mueller, Hans (IT)".into();
        let raw = render(&h, &detail(), Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        let from = m.from().unwrap().first().unwrap();
        assert_eq!(from.name(), Some("Mueller, Hans (IT)"));
        assert_eq!(from.address(), Some("hans@kunde.example"));
    }

    #[test]
    fn german_labels() {
        let mut d = detail();
        d.merged_into = Some(40);
        d.spoof_suspect = true;
        let raw = render(&head(), &d, Locale::De);
        let m = MessageParser::default().parse(&raw).unwrap();
        let text = m.body_text(0).unwrap();
        let html = m.body_html(0).unwrap();
        for body in [&text, &html] {
            for want in [
                "Status",
                "Priorität",
                "hoch",
                "Bearbeiter",
                "Bearbeitung bis",
                "Berechnen",
                "Erstellt",
                "Kunde",
                "[LIEFERSPERRE]",
                "Liefersperre",
                "Schlagworte",
                "Beleg",
                "CC",
                "Verlauf",
                "weitere Tickets des Kunden",
                "Antwort",
                "Kommentar",
                "zusammengeführt in Ticket #40",
                "gefälscht",
            ] {
                assert!(body.contains(want), "{want:?} missing:\n{body}");
            }
        }
        assert!(header(&head(), "h", Locale::De).contains("Content-Language: de\r\n"));
    }

    #[test]
    fn english_notes_for_merged_and_spoofed() {
        let mut d = detail();
        d.merged_into = Some(40);
        d.spoof_suspect = true;
        let raw = render(&head(), &d, Locale::En);
        let text = MessageParser::default()
            .parse(&raw)
            .unwrap()
            .body_text(0)
            .unwrap()
            .into_owned();
        assert!(text.contains("merged into ticket #40"), "{text}");
        assert!(text.contains("forged"), "{text}");
    }

    #[test]
    fn html_escapes_item_text() {
        let mut d = detail();
        d.items[0].text = "<script>alert('x')</script> & <b>bold</b>".into();
        let raw = render(&head(), &d, Locale::En);
        let html = MessageParser::default()
            .parse(&raw)
            .unwrap()
            .body_html(0)
            .unwrap()
            .into_owned();
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;"));
    }

    #[test]
    fn odd_input_does_not_break_the_message() {
        let mut h = head();
        h.subject = String::new();
        h.customer_name = "Evil\r\nBcc: victim@example.test\u{0}\u{7f}\u{2028}".into();
        h.from_address = "not an address\r\n".into();
        h.queue = "Sup\nport".into();
        h.assignee = Some("a\r\nX-Injected: 1".into());
        h.tags = vec!["x".repeat(5000), "\u{202e}rtl".into(), String::new()];
        h.status = "\u{0}".into();
        h.last_action_at = i64::MIN;
        h.number = i64::MAX;
        let mut d = detail();
        d.customer = None;
        d.document = None;
        d.items[0].text = format!("{}\r\n{}", "ä".repeat(100_000), "=".repeat(3000));
        d.items[1].text = "\u{0}\u{1b}[31m\u{feff}\u{10ffff}\r\r\n".into();
        d.items[2].attachments = vec![attachment("", ""), attachment(&"ü".repeat(300), "bad type")];
        let files = vec![vec![], vec![], vec![vec![], vec![0xff; 10]]];
        let raw = message(&h, &d, &files, "", Locale::En);
        // Whatever the input, encoded words and folding keep even these lines short.
        assert_lines_within(&raw, 78);
        let head_text = header(&h, "", Locale::En);
        assert!(raw.starts_with(head_text.as_bytes()));
        assert!(!head_text.contains("\r\nBcc:") && !head_text.contains("\r\nX-Injected"));
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            m.subject(),
            Some(format!("[Sup port #{}]", i64::MAX).as_str())
        );
        assert_eq!(
            m.from().unwrap().first().unwrap().address(),
            Some("unknown@invalid")
        );
        let names: Vec<String> = m
            .attachments()
            .map(|a| a.attachment_name().unwrap_or_default().to_string())
            .collect();
        assert_eq!(names, ["attachment".to_string(), "ü".repeat(300)]);
        assert_eq!(m.attachments().nth(1).unwrap().contents(), &[0xff; 10]);
        assert!(m.body_text(0).unwrap().contains(&"=".repeat(3000)));

        let mut empty = detail();
        empty.items.clear();
        empty.history.clear();
        empty.other_tickets.clear();
        empty.customer = None;
        let raw = message(&head(), &empty, &[], "gw", Locale::De);
        assert_wire_safe(&raw);
        let text = MessageParser::default()
            .parse(&raw)
            .unwrap()
            .body_text(0)
            .unwrap()
            .into_owned();
        assert!(text.contains("Keine Einträge."), "{text}");
        assert!(
            text.contains("10023, Hans Mueller [LIEFERSPERRE]"),
            "{text}"
        );
    }

    #[test]
    fn message_ids_round_trip() {
        let id = message_id(42, 7, 103, "gw.example.test");
        assert_eq!(id, "mt.42.v7.i103@gw.example.test");
        let want = Some(TicketVersion {
            number: 42,
            version: 7,
            last_item_id: 103,
        });
        assert_eq!(parse_message_id(&id), want);
        assert_eq!(parse_message_id(&format!("<{id}>")), want);
        assert_eq!(parse_message_id("mt.42.v7.i103@other.host"), want);
        assert_eq!(
            parse_message_id(&message_id(1, 0, 0, "h")),
            Some(TicketVersion {
                number: 1,
                version: 0,
                last_item_id: 0
            })
        );
        let max = message_id(i64::MAX, i64::MAX, i64::MAX, "h");
        assert_eq!(parse_message_id(&max).map(|v| v.number), Some(i64::MAX));
    }

    #[test]
    fn message_ids_rejected() {
        let compose_id = crate::core::compose::message_id(42, "v7", "gw.example.test");
        for bad in [
            compose_id.as_str(),
            "mt.42.ar.0123456789abcdef@gw",
            "mt.42.v7.i103",
            "mt.42.v7.i103@",
            "<mt.42.v7.i103@gw",
            "mt.42.v7.i103@gw>",
            "mt.42.v7@gw",
            "mt.42.v7.i103.x@gw",
            "mt.-42.v7.i103@gw",
            "mt.42.v-7.i103@gw",
            "mt.42.v7.i-1@gw",
            "mt.0.v7.i103@gw",
            "mt.042.v7.i103@gw",
            "mt.+42.v7.i103@gw",
            "mt.9223372036854775808.v1.i1@gw",
            "mt.1.v99999999999999999999.i1@gw",
            "mt.42.V7.I103@gw",
            "mt.42.v.i@gw",
            "xmt.42.v7.i103@gw",
            "mt.4２.v7.i103@gw",
            "",
            "<>",
            "@",
        ] {
            assert_eq!(parse_message_id(bad), None, "{bad:?}");
        }
    }

    /// Strings from a deterministic generator over characters that tend to break mail:
    /// line ends, controls, `=`, quotes, boundary look-alikes, multi-byte and odd Unicode.
    fn nasty_strings(seed: u64, count: usize) -> Vec<String> {
        const PIECES: &[&str] = &[
            "\r\n",
            "\n",
            "\r",
            "\0",
            "\t",
            " ",
            "  ",
            "=",
            "=?",
            "?=",
            "=_mt.1.1.m",
            "--",
            "\"",
            "\\",
            "<",
            ">",
            "@",
            ",",
            ";",
            ":",
            "[",
            "]",
            "#",
            "ä",
            "ß",
            "€",
            "🖨",
            "\u{202e}",
            "\u{2028}",
            "\u{feff}",
            "\u{85}",
            "x",
            "word",
            "Re:",
            "\u{7f}",
        ];
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        (0..count)
            .map(|_| {
                let len = next() % 40;
                (0..len).map(|_| PIECES[next() % PIECES.len()]).collect()
            })
            .collect()
    }

    #[test]
    fn generated_input_stays_wire_safe() {
        for seed in 0..40u64 {
            let s = nasty_strings(seed, 12);
            let mut h = head();
            h.subject = s[0].clone();
            h.customer_name = s[1].clone();
            if seed % 2 == 1 {
                h.from_address = s[2].clone();
            }
            h.queue = s[3].clone();
            h.status = s[4].clone();
            h.tags = vec![s[5].clone(), s[6].clone()];
            h.assignee = Some(s[7].clone());
            let mut d = detail();
            d.items[0].text = s[8].clone();
            d.items[0].attachments[1].name = s[9].clone();
            d.items[0].attachments[1].content_type = s[10].clone();
            d.history[0].old = s[11].clone();
            let raw = render(&h, &d, Locale::De);
            assert_lines_within(&raw, 78);
            let head_text = header(&h, "gw", Locale::De);
            assert_eq!(head_text.matches("\r\n\r\n").count(), 1, "{head_text}");
            let m = MessageParser::default().parse(&raw).unwrap();
            assert_eq!(m.attachment_count(), 3, "seed {seed}");
            assert_eq!(m.attachments().nth(1).unwrap().contents(), files()[0][1]);
            let text = m.body_text(0).unwrap();
            assert!(text.contains("Please restart it."), "seed {seed}");
            let tag = subject::tag(&one_line(&h.queue), 42);
            let want = one_line(&format!("{tag} {}", h.subject));
            assert_eq!(m.subject(), Some(want.as_str()), "seed {seed}");
            let from = m.from().unwrap().first().unwrap();
            if seed % 2 == 0 && !one_line(&h.customer_name).is_empty() {
                let name = one_line(&h.customer_name);
                assert_eq!(from.name(), Some(name.as_str()), "seed {seed}");
                assert_eq!(from.address(), Some("hans@kunde.example"));
            }
        }
    }
}
