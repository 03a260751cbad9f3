//! The one message of the `Statistics` folder: tickets per queue, per status and opened per
//! day over the last 7 days, as text and HTML tables and a chart image.
//!
//! Pure functions of [`Stats`] and the instant they describe: no clock, no I/O, no
//! randomness. The same input gives the same bytes, PNG included, so the mailbox can keep
//! the message until the numbers change.
//!
//! The chart is drawn with `plotters` (bitmap backend, no default features) into an RGB
//! buffer and encoded with `png` directly: plotters' own encoder feature would bring the
//! whole `image` crate with its JPEG and BMP codecs for one PNG. Text is rendered with
//! plotters' `ab_glyph` feature from DejaVu Sans, committed under `assets/fonts` and
//! embedded in the binary, so the chart looks the same everywhere and needs no system
//! fonts (fontconfig, freetype). plotters keeps registered fonts in a process-wide table;
//! registering the one embedded font there once is the only state this module touches.

use std::error::Error;
use std::sync::OnceLock;

use plotters::backend::RGBPixel;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sha2::{Digest, Sha256};

use crate::core::html::escape;
use crate::core::mime::{
    Header, base64_lines, mailbox, one_line, rfc5322_date, split_words, text_part, unstructured,
};
pub use crate::core::model::Stats;
use crate::core::texts::Locale;
use crate::core::ticket_message::{host_name, language};

/// Size of the chart image in pixels.
pub const CHART_WIDTH: u32 = 640;
pub const CHART_HEIGHT: u32 = 400;

/// DejaVu Sans 2.37 (Bitstream Vera licence, see `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family plotters' own defaults (axis labels, captions) ask for.
const FAMILY: &str = "sans-serif";

/// Counts above this are drawn as this (the tables show the real number); keeps the axis
/// arithmetic far from `i64` overflow.
const CHART_MAX: i64 = 1_000_000_000_000_000;

/// Rows a bar panel shows; more entries are summed up in a last row.
const PANEL_ROWS: usize = 6;

/// Days the chart shows at most, the newest ones.
const CHART_DAYS: usize = 31;

/// The words of the message and chart, per locale.
struct Words {
    title: &'static str,
    as_of: &'static str,
    total: &'static str,
    all_tickets: &'static str,
    queue: &'static str,
    status: &'static str,
    tickets: &'static str,
    day: &'static str,
    opened: &'static str,
    per_queue: &'static str,
    per_status: &'static str,
    opened_per_day: &'static str,
    others: &'static str,
    none: &'static str,
}

const EN: Words = Words {
    title: "Statistics",
    as_of: "As of",
    total: "Total",
    all_tickets: "Total tickets",
    queue: "Queue",
    status: "Status",
    tickets: "Tickets",
    day: "Day",
    opened: "Opened",
    per_queue: "Tickets per queue",
    per_status: "Tickets per status",
    opened_per_day: "Tickets opened per day",
    others: "others",
    none: "none",
};

const DE: Words = Words {
    title: "Statistik",
    as_of: "Stand",
    total: "Gesamt",
    all_tickets: "Tickets gesamt",
    queue: "Warteschlange",
    status: "Status",
    tickets: "Tickets",
    day: "Tag",
    opened: "Eröffnet",
    per_queue: "Tickets pro Warteschlange",
    per_status: "Tickets pro Status",
    opened_per_day: "Eröffnet pro Tag",
    others: "weitere",
    none: "keine",
};

fn words(locale: Locale) -> &'static Words {
    match locale {
        Locale::En => &EN,
        Locale::De => &DE,
    }
}

// ---------------------------------------------------------------------------------------
// Chart

type Area<'a> = DrawingArea<BitMapBackend<'a, RGBPixel>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const GRID: RGBColor = RGBColor(0xe0, 0xe0, 0xe0);
const DAY_BAR: RGBColor = RGBColor(0x19, 0x76, 0xd2);
const STATUS_BAR: RGBColor = RGBColor(0x38, 0x8e, 0x3c);
const QUEUE_BAR: RGBColor = RGBColor(0xf5, 0x7c, 0x00);

/// Registers the embedded font with plotters once per process; false if it was refused.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok())
}

/// The chart as a PNG of [`CHART_WIDTH`] × [`CHART_HEIGHT`]: a title line with the total,
/// a bar chart of tickets opened per day, and bar panels of tickets per status and per
/// queue (the largest ones and a row that sums up the rest). Labels too long for their
/// place are cut with `…`.
///
/// Never fails: should drawing stop early, the PNG holds what was drawn so far.
pub fn chart_png(stats: &Stats, locale: Locale) -> Vec<u8> {
    let mut pixels = vec![0u8; (CHART_WIDTH * CHART_HEIGHT * 3) as usize];
    if let Ok(backend) =
        BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut pixels, (CHART_WIDTH, CHART_HEIGHT))
    {
        let root = backend.into_drawing_area();
        // A failed drawing leaves a partial picture; the message still carries the tables.
        let _ = draw(&root, stats, words(locale), locale).and_then(|()| Ok(root.present()?));
    }
    encode_png(&pixels, CHART_WIDTH, CHART_HEIGHT)
}

fn draw(root: &Area<'_>, stats: &Stats, w: &Words, locale: Locale) -> DrawResult {
    root.fill(&WHITE)?;
    if !font_ready() {
        // The picture stays white; the tables carry the numbers.
        return Err("font not available".into());
    }
    let (width, _) = root.dim_in_pixel();
    let title = format!("{} – {}: {}", w.title, w.all_tickets, stats.total.max(0));
    let title = fit(root, &title, &text_style(16), width as i32 - 16);
    root.draw_text(&title, &text_style(16), (8, 6))?;
    let body = root.margin(28, 0, 0, 0);
    let (upper, lower) = body.split_vertically(200);
    draw_days(&upper, &stats.opened_per_day, w, locale)?;
    let (left, right) = lower.split_horizontally(width / 2);
    draw_panel(
        &left.margin(4, 4, 8, 4),
        w.per_status,
        &stats.per_status,
        STATUS_BAR,
        w,
    )?;
    draw_panel(
        &right.margin(4, 4, 4, 8),
        w.per_queue,
        &stats.per_queue,
        QUEUE_BAR,
        w,
    )?;
    Ok(())
}

fn text_style(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&INK)
}

/// The bar chart of tickets opened per day, the newest [`CHART_DAYS`] days.
fn draw_days(area: &Area<'_>, days: &[(String, i64)], w: &Words, locale: Locale) -> DrawResult {
    let days = &days[days.len().saturating_sub(CHART_DAYS)..];
    let labels: Vec<String> = days.iter().map(|(d, _)| day_label(d, locale)).collect();
    let counts: Vec<i64> = days.iter().map(|(_, n)| (*n).clamp(0, CHART_MAX)).collect();
    let max = counts.iter().copied().max().unwrap_or(0);
    // Headroom above the highest bar for its number.
    let top = (max + max / 6).max(max + 1);
    // A week's slots at least, so a day or two do not become bars as wide as the chart.
    // A segmented `0..n` has n + 1 segments.
    let slots = days.len().max(7) as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(w.opened_per_day, text_style(14))
        .margin_left(8)
        .margin_right(16)
        .margin_bottom(4)
        .x_label_area_size(22)
        .y_label_area_size(52)
        .build_cartesian_2d((0..slots - 1).into_segmented(), 0i64..top)?;
    let x_label = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let y_label = |v: &i64| short_count(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE)
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_labels((slots as usize).min(10))
        .y_labels(5)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .label_style(text_style(11))
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(DAY_BAR.filled())
            .margin(6)
            .data(counts.iter().enumerate().map(|(i, n)| (i as u32, *n))),
    )?;
    let number = text_style(11).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(counts.iter().enumerate().map(|(i, n)| {
        Text::new(
            short_count(*n),
            (SegmentValue::CenterOf(i as u32), *n),
            number.clone(),
        )
    }))?;
    Ok(())
}

/// `YYYY-MM-DD` as the chart's axis shows it: `Apr 29` or `29.04.`; anything else cut short.
fn day_label(day: &str, locale: Locale) -> String {
    match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(d) => match locale {
            Locale::En => d.format("%b %d").to_string(),
            Locale::De => d.format("%d.%m.").to_string(),
        },
        Err(_) => cut_chars(day, 8),
    }
}

/// Axis numbers: `950`, `12.5k`, `2.5M`, `10G`.
fn short_count(n: i64) -> String {
    if n < 10_000 {
        return n.to_string();
    }
    let (divisor, unit) = [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")]
        .into_iter()
        .take_while(|(d, _)| n as f64 >= *d)
        .last()
        .unwrap_or((1e3, "k"));
    let text = format!("{:.1}", n as f64 / divisor);
    format!("{}{unit}", text.strip_suffix(".0").unwrap_or(&text))
}

/// A titled list of horizontal bars: name, bar, count. When there are more entries than
/// rows, the largest come first and the last row sums up the rest.
fn draw_panel(
    area: &Area<'_>,
    title: &str,
    entries: &[(String, i64)],
    colour: RGBColor,
    w: &Words,
) -> DrawResult {
    let (width, height) = area.dim_in_pixel();
    let (width, height) = (width as i32, height as i32);
    let heading = text_style(14);
    area.draw_text(&fit(area, title, &heading, width), &heading, (0, 0))?;
    let rows = panel_rows(entries, w);
    if rows.is_empty() {
        area.draw_text(&format!("({})", w.none), &text_style(12), (0, 26))?;
        return Ok(());
    }
    let row_height = ((height - 22) / PANEL_ROWS as i32).clamp(8, 24);
    let label_width = width * 2 / 5;
    let number_width = 64;
    let bar_room = (width - label_width - number_width).max(1);
    let max = rows.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let style = text_style(12).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, count)) in rows.iter().enumerate() {
        let top = 22 + i as i32 * row_height;
        let middle = top + row_height / 2;
        let label = fit(area, name, &style, label_width - 6);
        area.draw_text(&label, &style, (0, middle))?;
        let length = ((*count as f64 / max as f64) * bar_room as f64) as i32;
        let length = if *count > 0 { length.max(1) } else { 0 };
        if length > 0 {
            area.draw(&Rectangle::new(
                [
                    (label_width, top + 3),
                    (label_width + length, top + row_height - 3),
                ],
                colour.filled(),
            ))?;
        }
        area.draw_text(
            &short_count(*count),
            &style,
            (label_width + length + 4, middle),
        )?;
    }
    Ok(())
}

/// The rows of a panel: every entry when they fit, else the largest and `others (n)`.
fn panel_rows(entries: &[(String, i64)], w: &Words) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = entries
        .iter()
        .map(|(name, n)| (name.clone(), (*n).clamp(0, CHART_MAX)))
        .collect();
    if rows.len() <= PANEL_ROWS {
        return rows;
    }
    // Stable: equal counts keep the store's order (queues by name, statuses by position).
    rows.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let rest = rows.split_off(PANEL_ROWS - 1);
    let sum = rest.iter().fold(0i64, |s, (_, n)| s.saturating_add(*n));
    rows.push((format!("{} ({})", w.others, rest.len()), sum.min(CHART_MAX)));
    rows
}

/// `text` on one line, cut with `…` so it is at most `max_width` pixels wide in `style`.
fn fit(area: &Area<'_>, text: &str, style: &TextStyle<'_>, max_width: i32) -> String {
    let text = one_line(text);
    // No label is worth more than this many characters; keeps the measuring short.
    let mut chars: Vec<char> = text.chars().take(80).collect();
    let mut cut = chars.len() < text.chars().count();
    loop {
        let candidate: String = if cut {
            chars.iter().chain(['…'].iter()).collect()
        } else {
            chars.iter().collect()
        };
        let fits = area
            .estimate_text_size(&candidate, style)
            .map(|(w, _)| w as i32 <= max_width)
            .unwrap_or(true);
        if fits || chars.is_empty() {
            return candidate;
        }
        chars.pop();
        cut = true;
    }
}

fn cut_chars(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// RGB pixels as a PNG: 8 bits per channel, no ancillary chunks (no time, no gamma), fixed
/// compression, so equal pixels give equal bytes.
fn encode_png(pixels: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let written = encoder.write_header().and_then(|mut writer| {
        writer
            .write_image_data(pixels)
            .and_then(|()| writer.finish())
    });
    if written.is_err() {
        // Only a wrong buffer size gets here, which `chart_png` never passes.
        out.clear();
    }
    out
}

// ---------------------------------------------------------------------------------------
// Message

/// The hex digest that names one set of numbers in one locale: the Message-ID, the
/// boundaries and the image's Content-ID are made from it. `generated_at` is not part of
/// it, so a caller can compare ids to learn whether the numbers changed.
fn fingerprint(stats: &Stats, locale: Locale) -> String {
    let mut h = Sha256::new();
    h.update(language(locale).as_bytes());
    h.update(stats.total.to_be_bytes());
    for list in [&stats.per_queue, &stats.per_status, &stats.opened_per_day] {
        h.update((list.len() as u64).to_be_bytes());
        for (name, n) in list {
            h.update((name.len() as u64).to_be_bytes());
            h.update(name.as_bytes());
            h.update(n.to_be_bytes());
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// The Message-ID (without `< >`) of the statistics message for these numbers:
/// `mt.stats.<digest>@<hostname>`. Same numbers and locale, same id. It never parses as a
/// ticket's id ([`crate::core::ticket_message::parse_message_id`]).
pub fn message_id(stats: &Stats, hostname: &str, locale: Locale) -> String {
    format!(
        "mt.stats.{}@{}",
        fingerprint(stats, locale),
        host_name(hostname)
    )
}

/// The subject: `Statistics 2024-05-01` or `Statistik 01.05.2024`.
pub fn subject(generated_at: i64, locale: Locale) -> String {
    format!(
        "{} {}",
        words(locale).title,
        date(generated_at, locale, false)
    )
}

/// The day (and time) of `secs` in UTC, in the locale's format; clamped like the Date
/// header.
fn date(secs: i64, locale: Locale, with_time: bool) -> String {
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let t = chrono::DateTime::from_timestamp(secs.clamp(0, LAST), 0).unwrap_or_default();
    let format = match (locale, with_time) {
        (Locale::En, false) => "%Y-%m-%d",
        (Locale::En, true) => "%Y-%m-%d %H:%M UTC",
        (Locale::De, false) => "%d.%m.%Y",
        (Locale::De, true) => "%d.%m.%Y %H:%M UTC",
    };
    t.format(format).to_string()
}

/// The statistics message: From and To the gateway (`mticket@<hostname>`), Date
/// `generated_at`, Subject [`subject`], Message-ID [`message_id`]; a multipart/related body
/// of text and HTML tables (multipart/alternative) and the chart of [`chart_png`], which the
/// HTML shows inline through its Content-ID. 7-bit, CRLF, the same bytes for the same
/// input.
///
/// Queue and status names are shown as given (the caller passes the locale's names).
pub fn message(stats: &Stats, generated_at: i64, hostname: &str, locale: Locale) -> Vec<u8> {
    let w = words(locale);
    let digest = fingerprint(stats, locale);
    let host = host_name(hostname);
    let address = format!("mticket@{host}");
    let related = format!("=_mt.stats.{}.r", &digest[..12]);
    let alternative = format!("=_mt.stats.{}.a", &digest[..12]);
    let content_id = format!("chart.{digest}@{host}");

    let mut h = Header::default();
    h.field("Date", split_words(&rfc5322_date(generated_at)));
    h.field("From", mailbox("mticket", &address));
    h.field("To", mailbox("mticket", &address));
    h.field("Subject", unstructured(&subject(generated_at, locale)));
    h.field(
        "Message-ID",
        vec![format!("<{}>", message_id(stats, hostname, locale))],
    );
    h.field("MIME-Version", vec!["1.0".into()]);
    h.field(
        "Content-Type",
        vec![
            "multipart/related;".into(),
            "type=\"multipart/alternative\";".into(),
            format!("boundary=\"{related}\""),
        ],
    );
    h.field("Content-Language", vec![language(locale).into()]);
    let mut out = h.finish();

    let tables = Tables::new(stats, w);
    let as_of = date(generated_at, locale, true);
    out.push_str(&format!("--{related}\r\n"));
    out.push_str(&format!(
        "Content-Type: multipart/alternative;\r\n boundary=\"{alternative}\"\r\n\r\n"
    ));
    out.push_str(&format!("--{alternative}\r\n"));
    text_part(&mut out, "text/plain", &tables.text(w, &as_of));
    out.push_str(&format!("\r\n--{alternative}\r\n"));
    text_part(&mut out, "text/html", &tables.html(w, &as_of, &content_id));
    out.push_str(&format!("\r\n--{alternative}--\r\n"));
    out.push_str(&format!("\r\n--{related}\r\n"));
    let mut part = Header::default();
    part.field(
        "Content-Type",
        vec!["image/png;".into(), "name=\"statistics.png\"".into()],
    );
    part.field("Content-Transfer-Encoding", vec!["base64".into()]);
    part.field("Content-ID", vec![format!("<{content_id}>")]);
    part.field(
        "Content-Disposition",
        vec!["inline;".into(), "filename=\"statistics.png\"".into()],
    );
    out.push_str(&part.finish());
    base64_lines(&mut out, &chart_png(stats, locale));
    out.push_str(&format!("\r\n--{related}--\r\n"));
    out.into_bytes()
}

/// One table of the message: heading, column names, rows and the sum of the counts.
struct Table {
    heading: &'static str,
    columns: [&'static str; 2],
    rows: Vec<(String, String)>,
    sum: String,
}

struct Tables {
    total: i64,
    tables: [Table; 3],
}

impl Tables {
    fn new(stats: &Stats, w: &Words) -> Tables {
        let table = |heading, name_column, count_column, list: &[(String, i64)]| Table {
            heading,
            columns: [name_column, count_column],
            rows: list
                .iter()
                .map(|(name, n)| (one_line(name), n.to_string()))
                .collect(),
            sum: list
                .iter()
                .fold(0i64, |s, (_, n)| s.saturating_add(*n))
                .to_string(),
        };
        Tables {
            total: stats.total,
            tables: [
                table(w.per_queue, w.queue, w.tickets, &stats.per_queue),
                table(w.per_status, w.status, w.tickets, &stats.per_status),
                table(w.opened_per_day, w.day, w.opened, &stats.opened_per_day),
            ],
        }
    }

    /// The text/plain part: a title, then each table with aligned columns.
    fn text(&self, w: &Words, as_of: &str) -> String {
        // No `=` in the text: quoted-printable would triple it.
        let mut t = format!("{}\n{}: {as_of}\n\n", w.title, w.as_of);
        t.push_str(&format!("{}: {}\n", w.all_tickets, self.total));
        for table in &self.tables {
            t.push_str(&format!("\n## {}\n\n", table.heading));
            let names = table
                .rows
                .iter()
                .map(|(name, _)| name.as_str())
                .chain([table.columns[0], w.total]);
            // Very long names stick out instead of widening every line.
            let name_width = names.map(|s| s.chars().count()).max().unwrap_or(0).min(40);
            let count_width = table
                .rows
                .iter()
                .map(|(_, n)| n.len())
                .chain([table.columns[1].chars().count(), table.sum.len()])
                .max()
                .unwrap_or(0);
            let line = |t: &mut String, name: &str, count: &str| {
                let pad = name_width.saturating_sub(name.chars().count());
                let count_pad = count_width.saturating_sub(count.chars().count());
                t.push_str(&format!(
                    "{name}{}  {}{count}\n",
                    " ".repeat(pad),
                    " ".repeat(count_pad)
                ));
            };
            line(&mut t, table.columns[0], table.columns[1]);
            for (name, count) in &table.rows {
                line(&mut t, name, count);
            }
            line(&mut t, w.total, &table.sum);
        }
        t
    }

    /// The text/html part: the chart inline (`cid:`), then the tables; every text escaped.
    fn html(&self, w: &Words, as_of: &str, content_id: &str) -> String {
        let mut h = String::from(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\n\
             <body style=\"font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#222\">\n",
        );
        h.push_str(&format!(
            "<h2 style=\"margin:0 0 4px\">{}</h2>\n<p style=\"margin:0 0 8px;color:#666\">\
             {}: {}</p>\n",
            escape(w.title),
            escape(w.as_of),
            escape(as_of)
        ));
        h.push_str(&format!(
            "<p><strong>{}: {}</strong></p>\n",
            escape(w.all_tickets),
            self.total
        ));
        h.push_str(&format!(
            "<p><img src=\"cid:{}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" \
             alt=\"{}\"></p>\n",
            escape(content_id),
            escape(w.title)
        ));
        let cell = "padding:2px 16px 2px 0;border-bottom:1px solid #ddd";
        for table in &self.tables {
            h.push_str(&format!(
                "<h3 style=\"margin:16px 0 6px\">{}</h3>\n\
                 <table style=\"border-collapse:collapse\">\n<tr><th style=\"text-align:left;\
                 {cell}\">{}</th><th style=\"text-align:right;{cell}\">{}</th></tr>\n",
                escape(table.heading),
                escape(table.columns[0]),
                escape(table.columns[1])
            ));
            for (name, count) in &table.rows {
                h.push_str(&format!(
                    "<tr><td style=\"{cell}\">{}</td><td style=\"text-align:right;{cell}\">\
                     {count}</td></tr>\n",
                    escape(name)
                ));
            }
            h.push_str(&format!(
                "<tr><th style=\"text-align:left;{cell}\">{}</th>\
                 <th style=\"text-align:right;{cell}\">{}</th></tr>\n</table>\n",
                escape(w.total),
                table.sum
            ));
        }
        h.push_str("</body></html>\n");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    /// 2024-05-01T12:00:00Z
    const NOW: i64 = 1_714_564_800;

    fn stats() -> Stats {
        Stats {
            per_queue: vec![
                ("Billing".into(), 12),
                ("Support".into(), 30),
                ("Vertrieb Süd".into(), 4),
            ],
            per_status: vec![
                ("open".into(), 20),
                ("waiting".into(), 6),
                ("closed".into(), 20),
            ],
            opened_per_day: [
                ("2024-04-25", 3),
                ("2024-04-26", 0),
                ("2024-04-27", 7),
                ("2024-04-28", 2),
                ("2024-04-29", 9),
                ("2024-04-30", 1),
                ("2024-05-01", 4),
            ]
            .map(|(d, n)| (d.to_string(), n))
            .into(),
            total: 46,
        }
    }

    fn empty() -> Stats {
        Stats {
            per_queue: vec![],
            per_status: vec![],
            opened_per_day: vec![],
            total: 0,
        }
    }

    /// Width, height and RGB pixels of a PNG.
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "PNG signature");
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .expect("PNG header");
        let mut pixels = vec![0; reader.output_buffer_size().expect("buffer size")];
        let info = reader.next_frame(&mut pixels).expect("PNG data");
        assert_eq!(info.color_type, png::ColorType::Rgb);
        pixels.truncate(info.buffer_size());
        (info.width, info.height, pixels)
    }

    fn has_colour(pixels: &[u8], c: RGBColor) -> bool {
        pixels.chunks(3).any(|p| p == [c.0, c.1, c.2])
    }

    /// Pixels that are neither white nor one of the bar colours: text, axes, anti-aliasing.
    fn dark_pixels(pixels: &[u8]) -> usize {
        pixels
            .chunks(3)
            .filter(|p| p.iter().all(|v| *v < 0x80))
            .count()
    }

    #[test]
    fn chart_is_a_png_of_the_announced_size_with_bars_and_text() {
        assert!(font_ready(), "the embedded font loads");
        let (width, height, pixels) = decode(&chart_png(&stats(), Locale::En));
        assert_eq!((width, height), (CHART_WIDTH, CHART_HEIGHT));
        assert!(has_colour(&pixels, DAY_BAR));
        assert!(has_colour(&pixels, STATUS_BAR));
        assert!(has_colour(&pixels, QUEUE_BAR));
        assert!(dark_pixels(&pixels) > 500, "labels and axes are drawn");
    }

    #[test]
    fn chart_is_deterministic() {
        let a = chart_png(&stats(), Locale::De);
        let b = chart_png(&stats(), Locale::De);
        assert_eq!(a, b);
        assert_ne!(
            a,
            chart_png(&stats(), Locale::En),
            "labels follow the locale"
        );
        let mut more = stats();
        more.per_queue[0].1 += 1;
        assert_ne!(a, chart_png(&more, Locale::De));
    }

    #[test]
    fn message_is_deterministic() {
        let a = message(&stats(), NOW, "gw.example.test", Locale::En);
        assert_eq!(a, message(&stats(), NOW, "gw.example.test", Locale::En));
        let later = message(&stats(), NOW + 60, "gw.example.test", Locale::En);
        assert_ne!(a, later, "the Date header moves");
    }

    #[test]
    fn message_id_names_the_numbers() {
        let host = "gw.example.test";
        let id = message_id(&stats(), host, Locale::En);
        assert!(id.starts_with("mt.stats.") && id.ends_with("@gw.example.test"));
        assert_eq!(id, message_id(&stats(), host, Locale::En));
        assert_ne!(id, message_id(&stats(), host, Locale::De));
        let mut other = stats();
        other.opened_per_day[6].1 += 1;
        assert_ne!(id, message_id(&other, host, Locale::En));
        // A name moving between lists changes the id too.
        let mut moved = stats();
        let q = moved.per_queue.pop().unwrap();
        moved.per_status.insert(0, q);
        assert_ne!(id, message_id(&moved, host, Locale::En));
        assert_eq!(crate::core::ticket_message::parse_message_id(&id), None);
        // The message carries it, whenever it is generated.
        for at in [NOW, NOW + 3600] {
            let raw = message(&stats(), at, host, Locale::En);
            let m = MessageParser::default().parse(&raw).unwrap();
            assert_eq!(m.message_id(), Some(id.as_str()));
        }
    }

    #[test]
    fn message_parses_with_tables_and_inline_chart() {
        let raw = message(&stats(), NOW, "gw.example.test", Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("Statistics 2024-05-01"));
        let from = m.from().and_then(|a| a.first()).unwrap();
        assert_eq!(from.address(), Some("mticket@gw.example.test"));
        let to = m.to().and_then(|a| a.first()).unwrap();
        assert_eq!(to.address(), Some("mticket@gw.example.test"));
        assert_eq!(m.date().map(|d| d.to_timestamp()), Some(NOW));
        let ct = m.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("related")));

        let text = m.body_text(0).unwrap();
        assert!(text.contains("Total tickets: 46"), "{text}");
        for (name, count) in stats().per_queue.iter().chain(&stats().per_status) {
            let line = text
                .lines()
                .find(|l| l.starts_with(name.as_str()))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            assert!(line.trim_end().ends_with(&format!(" {count}")), "{line}");
        }
        let day = text.lines().find(|l| l.starts_with("2024-04-29")).unwrap();
        assert!(day.ends_with(" 9"), "{day}");
        assert!(text.contains("Tickets per queue") && text.contains("Tickets opened per day"));

        let image = m
            .parts
            .iter()
            .find(|p| p.content_type().is_some_and(|c| c.ctype() == "image"))
            .expect("image part");
        assert_eq!(image.content_type().unwrap().subtype(), Some("png"));
        assert_eq!(image.contents(), chart_png(&stats(), Locale::En).as_slice());
        let cid = image.content_id().expect("Content-ID");
        assert!(cid.starts_with("chart.") && cid.ends_with("@gw.example.test"));

        let html = m.body_html(0).unwrap();
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "{html}");
        assert!(html.contains(
            "<td style=\"padding:2px 16px 2px 0;border-bottom:1px solid #ddd\">Vertrieb Süd</td>"
        ));
    }

    #[test]
    fn message_is_seven_bit_with_crlf_and_short_lines() {
        let mut s = stats();
        s.per_queue.push(("Ünïcödé ".repeat(300), 1));
        let raw = message(&s, NOW, "gw.example.test", Locale::De);
        assert!(raw.is_ascii());
        for (i, b) in raw.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(raw[i - 1], b'\r', "bare LF at {i}");
            }
        }
        let text = String::from_utf8(raw).unwrap();
        assert!(text.split("\r\n").all(|l| l.len() <= 78));
        assert!(text.ends_with("--\r\n"));
    }

    #[test]
    fn empty_stats() {
        let (width, height, _) = decode(&chart_png(&empty(), Locale::En));
        assert_eq!((width, height), (CHART_WIDTH, CHART_HEIGHT));
        let raw = message(&empty(), NOW, "", Locale::En);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert!(m.message_id().unwrap().ends_with("@localhost"));
        let text = m.body_text(0).unwrap();
        assert!(text.contains("Total tickets: 0"));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines
                .windows(2)
                .any(|l| l == ["Queue  Tickets", "Total        0"]),
            "{text}"
        );
        let image = m.parts.iter().find(|p| p.content_id().is_some()).unwrap();
        assert_eq!(image.contents(), chart_png(&empty(), Locale::En).as_slice());
    }

    #[test]
    fn german_labels() {
        let raw = message(&stats(), NOW, "gw.example.test", Locale::De);
        let m = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(m.subject(), Some("Statistik 01.05.2024"));
        let text = m.body_text(0).unwrap();
        for word in [
            "Stand: 01.05.2024 12:00 UTC",
            "Tickets gesamt: 46",
            "Tickets pro Warteschlange",
            "Warteschlange",
            "Status",
            "Eröffnet pro Tag",
            "Gesamt",
        ] {
            assert!(text.contains(word), "{word} in {text}");
        }
        let html = m.body_html(0).unwrap();
        assert!(html.contains("Eröffnet pro Tag") && html.contains("<th style"));
        let header = String::from_utf8_lossy(&raw);
        assert!(header.contains("Content-Language: de\r\n"));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let long = "Sehr lange Warteschlange für Überlänge ".repeat(40);
        let cases = [
            Stats {
                per_queue: vec![("Support".into(), 10_000_000)],
                per_status: vec![("open".into(), 10_000_000)],
                opened_per_day: vec![("2024-05-01".into(), 10_000_000)],
                total: 10_000_000,
            },
            Stats {
                per_queue: (0..200).map(|i| (format!("Queue {i:03}"), i)).collect(),
                per_status: (0..40).map(|i| (format!("s{i}"), 1)).collect(),
                opened_per_day: (0..400).map(|i| (format!("day {i}"), i % 5)).collect(),
                total: 19_900,
            },
            Stats {
                per_queue: vec![
                    (long.clone(), 3),
                    ("日本語のキュー🎫".into(), 2),
                    (String::new(), 1),
                ],
                per_status: vec![("\r\n\t<b>&</b>".into(), 1)],
                opened_per_day: vec![(long, 1), ("2024-13-40".into(), 2)],
                total: 6,
            },
            Stats {
                per_queue: vec![("max".into(), i64::MAX), ("min".into(), i64::MIN)],
                per_status: vec![("max".into(), i64::MAX), ("max2".into(), i64::MAX)],
                opened_per_day: vec![("2024-05-01".into(), i64::MAX), ("x".into(), -5)],
                total: i64::MIN,
            },
        ];
        for s in &cases {
            for locale in [Locale::En, Locale::De] {
                let (width, height, _) = decode(&chart_png(s, locale));
                assert_eq!((width, height), (CHART_WIDTH, CHART_HEIGHT));
                let raw = message(s, i64::MAX, "gw.example.test", locale);
                let m = MessageParser::default().parse(&raw).unwrap();
                let text = m.body_text(0).unwrap();
                for (name, n) in &s.per_queue {
                    let name = one_line(name);
                    assert!(text.contains(&name) && text.contains(&n.to_string()));
                }
            }
        }
        let html = message(&cases[2], NOW, "h", Locale::En);
        let html = MessageParser::default().parse(&html).unwrap();
        let html = html.body_html(0).unwrap();
        assert!(html.contains("&lt;b&gt;&amp;&lt;/b&gt;") && !html.contains("<b>&"));
    }

    #[test]
    fn panel_sums_up_what_does_not_fit() {
        let queues: Vec<(String, i64)> = (0..200).map(|i| (format!("q{i}"), i)).collect();
        let rows = panel_rows(&queues, &EN);
        assert_eq!(rows.len(), PANEL_ROWS);
        assert_eq!(rows[0], ("q199".to_string(), 199));
        let shown: i64 = (195..200).sum();
        let all: i64 = (0..200).sum();
        assert_eq!(rows[5], ("others (195)".to_string(), all - shown));
        // Few entries keep their order.
        let few = &queues[..3];
        assert_eq!(panel_rows(few, &DE), few.to_vec());
    }

    #[test]
    fn labels_are_cut_to_fit() {
        assert!(font_ready());
        let mut pixels = vec![0u8; 100 * 20 * 3];
        let backend =
            BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut pixels, (100, 20)).unwrap();
        let area = backend.into_drawing_area();
        let style = text_style(12);
        assert_eq!(fit(&area, "Support", &style, 200), "Support");
        let cut = fit(&area, &"Warteschlange ".repeat(20), &style, 120);
        assert!(
            cut.ends_with('…') && cut.starts_with("Warteschlange"),
            "{cut}"
        );
        let width = area.estimate_text_size(&cut, &style).unwrap().0;
        assert!(width <= 120, "{width}");
        assert!(fit(&area, "x", &style, 0).chars().count() <= 1);
    }

    /// Odd numbers (huge counts, a whole month, 200 queues, nothing at all) still give a
    /// chart of the announced size with its labels, and bars where there are counts. With
    /// `$MTICKET_CHART_DIR` set, the charts are also written there for a look.
    #[test]
    fn charts_of_odd_numbers_are_drawn_whole() {
        let many = Stats {
            per_queue: (0..200)
                .map(|i| (format!("Warteschlange Nummer {i}"), i))
                .collect(),
            ..stats()
        };
        let huge = Stats {
            per_queue: vec![("Support".into(), 10_000_000)],
            per_status: vec![("open".into(), 9_999_999), ("closed".into(), 1)],
            opened_per_day: vec![("2024-05-01".into(), 10_000_000)],
            total: 10_000_000,
        };
        let month = Stats {
            opened_per_day: (1..=31).map(|d| (format!("2024-01-{d:02}"), d)).collect(),
            ..stats()
        };
        let dir = std::env::var_os("MTICKET_CHART_DIR").map(std::path::PathBuf::from);
        for (name, s, locale) in [
            ("huge.png", huge, Locale::En),
            ("month.png", month, Locale::En),
            ("en.png", stats(), Locale::En),
            ("de.png", stats(), Locale::De),
            ("empty.png", empty(), Locale::En),
            ("many.png", many, Locale::De),
        ] {
            let png = chart_png(&s, locale);
            let (width, height, pixels) = decode(&png);
            assert_eq!((width, height), (CHART_WIDTH, CHART_HEIGHT), "{name}");
            assert!(
                dark_pixels(&pixels) > 500,
                "{name}: labels and axes are drawn"
            );
            let bars = [
                (DAY_BAR, &s.opened_per_day),
                (STATUS_BAR, &s.per_status),
                (QUEUE_BAR, &s.per_queue),
            ];
            for (colour, entries) in bars {
                let counted = entries.iter().any(|(_, n)| *n > 0);
                assert_eq!(has_colour(&pixels, colour), counted, "{name}: {colour:?}");
            }
            if let Some(dir) = &dir {
                std::fs::write(dir.join(name), png).unwrap();
            }
        }
    }

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short_count(0), "0");
        assert_eq!(short_count(9_999), "9999");
        assert_eq!(short_count(12_500), "12.5k");
        assert_eq!(short_count(2_500_000), "2.5M");
        assert_eq!(short_count(10_000_000), "10M");
        assert_eq!(short_count(CHART_MAX), "1000T");
        assert_eq!(day_label("2024-04-29", Locale::En), "Apr 29");
        assert_eq!(day_label("2024-04-29", Locale::De), "29.04.");
    }
}
