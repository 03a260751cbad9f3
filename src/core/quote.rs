//! What part of an agent's reply is the agent's own text. Mail clients put the mail they
//! answer under or over the answer (Thunderbird, Apple Mail, Gmail, Outlook); the gateway
//! replaces that quote with the queue's own (`--reply-quote`), and the attachment check
//! looks only at the agent's words. The same for the HTML part, and for the command lines
//! at the top of the HTML part.
use crate::core::html::{self, Kind, Token};

/// `text` without the quote the mail client added: `>` lines and the attribution line
/// above them (`On … wrote:`, `Am … schrieb …:`, also wrapped over two lines) wherever they
/// are, and everything from an Outlook separator (`-----Original Message-----`, a
/// `From:`/`Sent:` header block, a line of underscores before one) to the end. The agent's
/// signature above the quote stays. Lines end in `\n`; leading and trailing blank lines go.
pub fn own_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let all: Vec<&str> = text.split('\n').collect();
    let lines = &all[..outlook_separator(&all).unwrap_or(all.len())];
    let mut dropped = vec![false; lines.len()];
    let mut i = 0;
    while i < lines.len() {
        if is_quote_line(lines[i]) {
            dropped[i] = true;
        } else if let Some(n) = attribution_at(lines, i) {
            dropped[i..i + n].iter_mut().for_each(|d| *d = true);
            i += n;
            continue;
        }
        i += 1;
    }
    // A removed block leaves at most one blank line behind.
    let mut out: Vec<&str> = Vec::new();
    let mut after_gap = false;
    for (line, dropped) in lines.iter().zip(dropped) {
        if dropped {
            after_gap = true;
            continue;
        }
        let blank = line.trim().is_empty();
        if blank && after_gap && out.last().is_none_or(|l| l.trim().is_empty()) {
            continue;
        }
        if !blank {
            after_gap = false;
        }
        out.push(line);
    }
    let start = out
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(out.len());
    let end = out
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(start, |e| e + 1);
    let kept = &out[start..end.max(start)];
    if kept.is_empty() {
        String::new()
    } else {
        kept.join("\n") + "\n"
    }
}

fn is_quote_line(line: &str) -> bool {
    line.starts_with('>')
}

/// How many lines (1 or 2) at `i` form an attribution line followed by a `>` quote.
fn attribution_at(lines: &[&str], i: usize) -> Option<usize> {
    let quote_follows = |from: usize| {
        lines
            .get(from..)
            .and_then(|rest| rest.iter().find(|l| !l.trim().is_empty()))
            .is_some_and(|l| is_quote_line(l))
    };
    let line = lines[i].trim();
    if line.is_empty() {
        return None;
    }
    if is_attribution(line) {
        return quote_follows(i + 1).then_some(1);
    }
    // Gmail wraps a long attribution: `On …, Name <` / `addr> wrote:`.
    let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
    if !next.is_empty()
        && (starts_with_ignore_case(line, "on ") || starts_with_ignore_case(line, "am "))
        && is_attribution(&format!("{line} {next}"))
    {
        return quote_follows(i + 2).then_some(2);
    }
    None
}

/// A client's attribution line: `On … wrote:`, `Am … schrieb …:`, `… schrieb:`.
pub(crate) fn is_attribution(line: &str) -> bool {
    let t = line.trim();
    // Every form ends with a colon: most lines are ruled out without lowercasing them.
    if !t.ends_with(':') || t.len() > 400 {
        return false;
    }
    let lower = t.to_lowercase();
    lower.ends_with("wrote:")
        || lower.ends_with("schrieb:")
        || (lower.starts_with("am ") && lower.contains(" schrieb ") && lower.ends_with(':'))
        || lower.ends_with("a écrit :")
        || lower.ends_with("a écrit:")
}

/// Where an Outlook-style quote starts: everything from there on is the answered mail.
fn outlook_separator(lines: &[&str]) -> Option<usize> {
    let next_nonblank = |from: usize| {
        lines
            .get(from..)
            .and_then(|rest| rest.iter().map(|l| l.trim()).find(|l| !l.is_empty()))
    };
    let prev_nonblank = |before: usize| {
        lines[..before]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
    };
    for (i, raw) in lines.iter().enumerate() {
        if is_quote_line(raw) {
            continue;
        }
        let line = raw.trim();
        if starts_original_message(line) {
            return Some(i);
        }
        if line.len() >= 10
            && line.chars().all(|c| c == '_')
            && next_nonblank(i + 1).is_some_and(|l| header_word(l, FROM))
        {
            return Some(i);
        }
        if header_word(line, FROM)
            && lines
                .get(i + 1)
                .is_some_and(|l| header_word(l.trim(), SENT))
            && !prev_nonblank(i).is_some_and(is_forward_marker)
        {
            return Some(i);
        }
    }
    None
}

const FROM: &[&str] = &["from:", "von:"];
const SENT: &[&str] = &["sent:", "gesendet:", "date:", "datum:"];

fn header_word(line: &str, words: &[&str]) -> bool {
    let line = line.trim_start_matches('*');
    words.iter().any(|w| starts_with_ignore_case(line, w))
}

/// `text` starts with the ASCII `prefix`, in any case (without lowercasing all of `text`:
/// this runs for every line of every reply).
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn is_forward_marker(line: &str) -> bool {
    let lower = line.to_lowercase();
    lower.contains("forward") || lower.contains("weitergeleitet")
}

/// `-----Original Message-----`, `-----Ursprüngliche Nachricht-----` and their variants,
/// at the start of `text`.
pub(crate) fn starts_original_message(text: &str) -> bool {
    let t = text.trim_start();
    let dashes = t.len() - t.trim_start_matches('-').len();
    if dashes < 2 {
        return false;
    }
    let rest = t[dashes..].trim_start().to_lowercase();
    [
        "original message",
        "ursprüngliche nachricht",
        "originalnachricht",
        "original-nachricht",
    ]
    .iter()
    .any(|w| {
        rest.strip_prefix(w)
            .is_some_and(|after| after.trim_start().starts_with("--"))
    })
}

/// `html` without the quote the mail client added: Thunderbird's and Apple Mail's
/// `<blockquote type="cite">` (with Thunderbird's `moz-cite-prefix` attribution or an
/// attribution `<div>` right before it), Gmail's `gmail_quote` and `gmail_attr`, and from
/// Outlook's separator (`divRplyFwdMsg`, `appendonsend`, the `<hr>` before them, the
/// bordered `From:` block, `-----Original Message-----`) to the end of the body, closing
/// what was open there. Quotes inside quotes go with their outer quote.
pub fn strip_html_quote(html: &str) -> String {
    let toks = html::tokens(html);
    let cut = outlook_cut(html, &toks);
    let limit = cut.unwrap_or(toks.len());
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < limit {
        let t = &toks[i];
        let Kind::Open { name, .. } = &t.kind else {
            i += 1;
            continue;
        };
        let src = &html[t.start..t.end];
        let is_cite = name == "blockquote"
            && html::attribute(src, "type").is_some_and(|v| v.eq_ignore_ascii_case("cite"));
        let is_client_quote = matches!(name.as_str(), "div" | "blockquote")
            && (html::has_class(src, "gmail_quote")
                || html::has_class(src, "gmail_attr")
                || html::has_class(src, "moz-cite-prefix"));
        if !(is_cite || is_client_quote) {
            i += 1;
            continue;
        }
        let end = element_end(&toks, i, limit);
        let start = if is_cite {
            attribution_before(html, &toks, i)
        } else {
            i
        };
        ranges.push((start, end));
        i = end + 1;
    }

    let mut out = String::with_capacity(html.len());
    let mut pos = 0;
    for (s, e) in ranges {
        out.push_str(&html[pos..toks[s].start.max(pos)]);
        pos = pos.max(toks[e].end);
    }
    match cut {
        None => out.push_str(&html[pos..]),
        Some(c) => {
            out.push_str(&html[pos..toks[c].start.max(pos)]);
            let open = html::open_elements(&toks, c);
            let inside = match open.iter().position(|(_, n)| n == "body") {
                Some(b) => &open[b + 1..],
                None => &open[open.iter().take_while(|(_, n)| n == "html").count()..],
            };
            for (_, name) in inside.iter().rev() {
                out.push_str(&format!("</{name}>"));
            }
            let resume = toks[c..]
                .iter()
                .find(|t| t.is_close("body") || t.is_close("html"))
                .map_or(html.len(), |t| t.start);
            out.push_str(&html[resume..]);
        }
    }
    out
}

/// Last token index of the element opened at `open`; an element never closed ends before
/// `</body>`/`</html>` or at `limit`.
fn element_end(toks: &[Token], open: usize, limit: usize) -> usize {
    match html::matching_close(toks, open) {
        Some(c) if c < limit => c,
        _ => {
            let stop = toks[open + 1..limit]
                .iter()
                .position(|t| t.is_close("body") || t.is_close("html"))
                .map_or(limit, |p| open + 1 + p);
            stop.saturating_sub(1).max(open)
        }
    }
}

/// Start token of a quote at `open`: the attribution element right before it (skipping
/// blank text and `<br>`), when there is one.
fn attribution_before(html: &str, toks: &[Token], open: usize) -> usize {
    let mut j = open;
    while j > 0 {
        let t = &toks[j - 1];
        let skip = match &t.kind {
            Kind::Text => html[t.start..t.end].trim().is_empty(),
            Kind::Open { name, .. } => name == "br",
            _ => false,
        };
        if !skip {
            break;
        }
        j -= 1;
    }
    if j == 0 {
        return open;
    }
    let close = j - 1;
    let Some(name) = toks[close]
        .name()
        .filter(|_| matches!(toks[close].kind, Kind::Close { .. }))
    else {
        return open;
    };
    if name != "div" && name != "p" {
        return open;
    }
    // Find the element's start by walking back over nested elements of the same name.
    let mut depth = 0usize;
    let mut k = close;
    let start = loop {
        if k == 0 {
            return open;
        }
        k -= 1;
        if toks[k].is_close(name) {
            depth += 1;
        } else if toks[k].is_open(name) {
            if depth == 0 {
                break k;
            }
            depth -= 1;
        }
    };
    let src = &html[toks[start].start..toks[start].end];
    if html::has_class(src, "moz-cite-prefix")
        || is_attribution(&html::text_of(html, toks, start, close + 1))
    {
        start
    } else {
        open
    }
}

/// The token where an Outlook quote starts, outside any other quote.
fn outlook_cut(html: &str, toks: &[Token]) -> Option<usize> {
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let in_quote = stack.iter().any(|(s, n)| {
            n == "blockquote" || html::has_class(&html[toks[*s].start..toks[*s].end], "gmail_quote")
        });
        match &t.kind {
            Kind::Open { name, self_closing } => {
                let src = &html[t.start..t.end];
                if !in_quote && name == "div" {
                    let id = html::attribute(src, "id").unwrap_or("");
                    if id.eq_ignore_ascii_case("appendonsend") {
                        return Some(i);
                    }
                    if id.eq_ignore_ascii_case("divRplyFwdMsg") {
                        return Some(hr_before(html, toks, i).unwrap_or(i));
                    }
                    if is_outlook_header_border(src) {
                        let end = html::matching_close(toks, i).unwrap_or(toks.len());
                        let text = html::text_of(html, toks, i, end);
                        if header_word(&text, FROM) {
                            return Some(i);
                        }
                    }
                }
                if !self_closing && !html::is_void(name) {
                    stack.push((i, name.clone()));
                }
            }
            Kind::Close { name } => {
                if let Some(p) = stack.iter().rposition(|(_, n)| n == name) {
                    stack.truncate(p);
                }
            }
            Kind::Text if !in_quote => {
                let text = crate::core::mail::decode_entities(&html[t.start..t.end]);
                if starts_original_message(&text) {
                    return Some(enclosing_block_start(html, toks, &stack, i).unwrap_or(i));
                }
            }
            _ => {}
        }
    }
    None
}

/// Outlook's `border-top` block around the quoted header (`border:none;border-top:solid`).
fn is_outlook_header_border(tag_src: &str) -> bool {
    let style: String = html::attribute(tag_src, "style")
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    style.contains("border-top:solid") && style.contains("border:none")
}

/// The `<hr>` right before the token at `at` (only blank text between), if any.
fn hr_before(html: &str, toks: &[Token], at: usize) -> Option<usize> {
    let mut j = at;
    while j > 0 {
        j -= 1;
        match &toks[j].kind {
            Kind::Text if html[toks[j].start..toks[j].end].trim().is_empty() => continue,
            Kind::Open { name, .. } if name == "hr" => return Some(j),
            _ => return None,
        }
    }
    None
}

/// The innermost open `<p>`/`<div>` when the text at `at` is its first text.
fn enclosing_block_start(
    html: &str,
    toks: &[Token],
    stack: &[(usize, String)],
    at: usize,
) -> Option<usize> {
    let (open, _) = stack.iter().rev().find(|(_, n)| n == "p" || n == "div")?;
    let before = html::text_of(html, toks, open + 1, at);
    before.is_empty().then_some(*open)
}

/// `html` without the command lines at the top of its body: the leading lines whose text
/// is `#word …` (and blank lines among them), exactly what `commands::split` reads from the
/// text part. A line is what a block element or `<br>` delimits; an element left empty by
/// the removal goes too. Without command lines `html` is returned unchanged.
pub fn strip_html_commands(html: &str) -> String {
    let toks = html::tokens(html);
    let body = toks
        .iter()
        .position(|t| t.is_open("body"))
        .map_or(0, |i| i + 1);

    // The leading lines: token indices of their text and `<br>`, and their text.
    let mut removed: Vec<usize> = Vec::new();
    let mut line: Vec<usize> = Vec::new();
    let mut text = String::new();
    let mut content = false;
    let mut any_command = false;
    // Decides a finished line; false stops the scan at the first line of real text.
    let mut finish = |line: &mut Vec<usize>, text: &mut String, content: &mut bool| -> bool {
        let t = html::collapse(&crate::core::mail::decode_entities(text));
        let is_command = t
            .strip_prefix('#')
            .and_then(|r| r.chars().next())
            .is_some_and(char::is_alphabetic);
        let keep_going = if *content && !is_command {
            false
        } else if t.is_empty() {
            removed.append(line);
            true
        } else if is_command {
            any_command = true;
            removed.append(line);
            true
        } else {
            false
        };
        line.clear();
        text.clear();
        *content = false;
        keep_going
    };
    let mut i = body;
    while i < toks.len() {
        let t = &toks[i];
        let go_on = match &t.kind {
            Kind::Text => {
                line.push(i);
                text.push_str(&html[t.start..t.end]);
                true
            }
            Kind::Open { name, .. } if name == "br" => {
                line.push(i);
                finish(&mut line, &mut text, &mut content)
            }
            Kind::Open { name, .. } | Kind::Close { name } if html::is_block(name) => {
                if name == "hr" {
                    content = true;
                }
                line.is_empty() && !content || finish(&mut line, &mut text, &mut content)
            }
            Kind::Open { name, .. } if html::is_void(name) => {
                content = true;
                true
            }
            _ => true,
        };
        if !go_on {
            break;
        }
        i += 1;
    }
    if i == toks.len() && !line.is_empty() {
        finish(&mut line, &mut text, &mut content);
    }
    if !any_command {
        return html.to_string();
    }
    removed.sort_unstable();
    without_tokens(html, &toks, body, &removed)
}

/// `html` without the tokens `removed` (sorted); `<p>`/`<div>` elements that lose their
/// content that way go as a whole.
fn without_tokens(html: &str, toks: &[Token], body: usize, removed: &[usize]) -> String {
    struct Frame {
        name: String,
        out_start: usize,
        content: bool,
        touched: bool,
    }
    let mut out = String::with_capacity(html.len());
    let mut stack: Vec<Frame> = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let src = &html[t.start..t.end];
        if i < body {
            out.push_str(src);
            continue;
        }
        if removed.binary_search(&i).is_ok() {
            if let Some(f) = stack.last_mut() {
                f.touched = true;
            }
            continue;
        }
        match &t.kind {
            Kind::Open {
                name,
                self_closing: false,
            } if name == "p" || name == "div" => {
                stack.push(Frame {
                    name: name.clone(),
                    out_start: out.len(),
                    content: false,
                    touched: false,
                });
                out.push_str(src);
            }
            Kind::Close { name } if name == "p" || name == "div" => {
                out.push_str(src);
                let Some(p) = stack.iter().rposition(|f| &f.name == name) else {
                    continue;
                };
                let inner: Vec<Frame> = stack.drain(p + 1..).collect();
                let mut f = stack.pop().expect("position found above");
                f.content |= inner.iter().any(|x| x.content);
                f.touched |= inner.iter().any(|x| x.touched);
                let emptied = !f.content && f.touched;
                if emptied {
                    out.truncate(f.out_start);
                }
                if let Some(parent) = stack.last_mut() {
                    parent.touched |= emptied;
                    parent.content |= !emptied;
                }
            }
            Kind::Text => {
                out.push_str(src);
                let decoded = crate::core::mail::decode_entities(src);
                if !html::collapse(&decoded).is_empty()
                    && let Some(f) = stack.last_mut()
                {
                    f.content = true;
                }
            }
            Kind::Open { name, .. } if html::is_void(name) && name != "br" => {
                out.push_str(src);
                if let Some(f) = stack.last_mut() {
                    f.content = true;
                }
            }
            _ => out.push_str(src),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thunderbird_bottom_post_keeps_the_answer_below_the_quote() {
        let text = "Am 26.11.2026 um 10:00 schrieb Erika Muster:\n> Mein Drucker\n> druckt nicht.\n\
                    \nHaben Sie ihn eingeschaltet?\n\n-- \nMax Agent\nSupport\n";
        assert_eq!(
            own_text(text),
            "Haben Sie ihn eingeschaltet?\n\n-- \nMax Agent\nSupport\n"
        );
    }

    #[test]
    fn thunderbird_top_post_keeps_the_signature_above_the_quote() {
        let text = "Guten Tag,\r\nbitte neu starten.\r\n\r\n-- \r\nMax Agent\r\n\r\n\
                    On 26.11.26 10:00, Kunde wrote:\r\n> Mein Drucker\r\n>\r\n> druckt nicht.\r\n";
        assert_eq!(
            own_text(text),
            "Guten Tag,\nbitte neu starten.\n\n-- \nMax Agent\n"
        );
    }

    #[test]
    fn apple_mail_attribution_outside_or_inside_the_quote() {
        let outside =
            "Erledigt.\n\n> On 26. Nov 2026, at 10:00, Kunde <k@x.de> wrote:\n> \n> Hallo\n";
        assert_eq!(own_text(outside), "Erledigt.\n");
        let de = "Erledigt.\n\nAm 26.11.2026 um 10:00 schrieb Kunde <k@x.de>:\n\n> Hallo\n";
        assert_eq!(own_text(de), "Erledigt.\n");
    }

    #[test]
    fn gmail_attribution_wrapped_over_two_lines() {
        let text =
            "Danke!\n\nOn Thu, Nov 26, 2026 at 10:00 AM Kunde <\nk@x.de> wrote:\n\n> Hallo\n>\n";
        assert_eq!(own_text(text), "Danke!\n");
        let de = "Danke!\n\nAm Do., 26. Nov. 2026 um 10:00 Uhr schrieb Erika Muster <\n\
                  erika@kunde.example>:\n\n> Hallo\n";
        assert_eq!(own_text(de), "Danke!\n");
    }

    #[test]
    fn interleaved_answers_stay() {
        let text =
            "Erika Muster wrote:\n> Frage eins?\nAntwort eins.\n\n> Frage zwei?\n\nAntwort zwei.\n";
        assert_eq!(own_text(text), "Antwort eins.\n\nAntwort zwei.\n");
    }

    #[test]
    fn outlook_separators_cut_to_the_end() {
        let cases = [
            "Antwort\r\n\r\n-----Original Message-----\r\nFrom: Kunde\r\nSent: x\r\n\r\nalt\r\n",
            "Antwort\n\n-----Ursprüngliche Nachricht-----\nVon: Kunde\nGesendet: x\n",
            "Antwort\n\n________________________________\nFrom: Kunde <k@x.de>\nSent: Thursday\n",
            "Antwort\n\nVon: Kunde <k@x.de>\nGesendet: Donnerstag, 26. November 2026 10:00\nAn: s\n",
            "Antwort\n\nFrom: Kunde\nDate: Thursday\nTo: s\n",
            "Antwort\n\n-------- Original Message --------\nSubject: x\n",
        ];
        for text in cases {
            assert_eq!(own_text(text), "Antwort\n", "{text:?}");
        }
    }

    #[test]
    fn text_that_only_looks_like_a_quote_stays() {
        let cases = [
            "Am Montag schrieb ich Ihnen:\nBitte neu starten.\n",
            "From: wem auch immer\nBitte neu starten.\n",
            "---------- Forwarded message ---------\nFrom: Lieferant\nDate: Thu\n\nText\n",
            "Kein Zitat hier.\n",
        ];
        for text in cases {
            assert_eq!(own_text(text), text, "{text:?}");
        }
        assert_eq!(own_text(""), "");
        assert_eq!(own_text("> nur Zitat\n"), "");
    }

    #[test]
    fn a_separator_inside_a_quote_does_not_cut_the_answer() {
        let text =
            "On x, K wrote:\n> -----Original Message-----\n> From: a\n> Sent: b\n\nAntwort\n";
        assert_eq!(own_text(text), "Antwort\n");
    }

    #[test]
    fn original_message_variants() {
        for t in [
            "-----Original Message-----",
            "----- Original Message -----",
            "-----Ursprüngliche Nachricht-----",
            "-------- Originalnachricht --------",
        ] {
            assert!(starts_original_message(t), "{t}");
        }
        for t in [
            "Original Message",
            "- Original Message -",
            "--- Originale ---",
        ] {
            assert!(!starts_original_message(t), "{t}");
        }
    }

    #[test]
    fn html_thunderbird_cite_and_prefix_go() {
        let html = "<html><head></head><body><p>Antwort</p>\n<div class=\"moz-signature\">-- <br>Max</div>\n\
                    <div class=\"moz-cite-prefix\">Am 26.11.2026 um 10:00 schrieb Kunde:<br>\n</div>\n\
                    <blockquote type=\"cite\" cite=\"mid:a@b\">Alt<blockquote type=\"cite\">Älter</blockquote>\
                    </blockquote>\n</body></html>";
        assert_eq!(
            strip_html_quote(html),
            "<html><head></head><body><p>Antwort</p>\n<div class=\"moz-signature\">-- <br>Max</div>\n\n</body></html>"
        );
    }

    #[test]
    fn html_apple_mail_cite_with_attribution_inside() {
        let html = "<html><body>Erledigt.<div><br><blockquote type=\"cite\"><div>On 26. Nov 2026, at 10:00, \
                    Kunde &lt;k@x.de&gt; wrote:</div><br class=\"Apple-interchange-newline\"><div>Alt</div>\
                    </blockquote></div><br></body></html>";
        assert_eq!(
            strip_html_quote(html),
            "<html><body>Erledigt.<div><br></div><br></body></html>"
        );
        let before = "<div>Ok</div><div>Am 26.11.2026 um 10:00 schrieb Kunde:</div><br><BLOCKQUOTE TYPE=CITE>x</BLOCKQUOTE>";
        assert_eq!(strip_html_quote(before), "<div>Ok</div>");
    }

    #[test]
    fn html_gmail_quote_goes() {
        let html = "<div dir=\"ltr\">Danke</div><br><div class=\"gmail_quote gmail_quote_container\">\
                    <div dir=\"ltr\" class=\"gmail_attr\">On Thu, Nov 26, 2026 at 10:00 AM K &lt;k@x.de&gt; wrote:<br></div>\
                    <blockquote class=\"gmail_quote\" style=\"margin:0\"><div>Alt</div></blockquote></div>";
        assert_eq!(strip_html_quote(html), "<div dir=\"ltr\">Danke</div><br>");
    }

    #[test]
    fn html_outlook_separators_cut_to_the_end_of_the_body() {
        let owa = "<html><body><div>Antwort</div><div id=\"appendonsend\"></div><hr style=\"display:inline-block\">\
                   <div id=\"divRplyFwdMsg\" dir=\"ltr\"><b>From:</b> K</div><div>Alt</div></body></html>";
        assert_eq!(
            strip_html_quote(owa),
            "<html><body><div>Antwort</div></body></html>"
        );
        let hr = "<body><div>Antwort</div><hr tabindex=\"-1\"><div id=\"divRplyFwdMsg\">Von: K</div></body>";
        assert_eq!(strip_html_quote(hr), "<body><div>Antwort</div></body>");
        let word = "<body><div class=WordSection1><p class=MsoNormal>Antwort<o:p></o:p></p><div>\
                    <div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm'>\
                    <p class=MsoNormal><b>Von:</b> K<br><b>Gesendet:</b> x</p></div></div><p>Alt</p></div></body>";
        assert_eq!(
            strip_html_quote(word),
            "<body><div class=WordSection1><p class=MsoNormal>Antwort<o:p></o:p></p><div></div></div></body>"
        );
        let original =
            "<body><p>Antwort</p><p>-----Original Message-----<br>From: K</p><p>Alt</p></body>";
        assert_eq!(strip_html_quote(original), "<body><p>Antwort</p></body>");
        let nothing = "<p>Antwort</p><blockquote>zitiert ohne cite</blockquote>";
        assert_eq!(strip_html_quote(nothing), nothing);
    }

    #[test]
    fn html_separator_inside_a_cite_does_not_cut_the_answer() {
        let html = "<body><blockquote type=\"cite\"><pre>-----Original Message-----\nFrom: a</pre></blockquote>\
                    <p>Antwort</p></body>";
        assert_eq!(strip_html_quote(html), "<body><p>Antwort</p></body>");
    }

    #[test]
    fn html_command_lines_go() {
        let cases = [
            (
                "<html><body><p>#status closed</p><div>#tag +x</div><p>Hallo</p></body></html>",
                "<html><body><p>Hallo</p></body></html>",
            ),
            ("<body>#force<br>Hallo</body>", "<body>Hallo</body>"),
            (
                "<body>\n  <p>#status closed<br>\n    #tag +x<br>\n  </p>\n  <p>Hallo,</p></body>",
                "<body><p>Hallo,</p></body>",
            ),
            ("<div>#status closed<br>Hallo</div>", "<div>Hallo</div>"),
            (
                "<body><div>#noattachcheck</div><div><br></div><div>Text</div></body>",
                "<body><div>Text</div></body>",
            ),
            (
                "<body><p class=MsoNormal>#status\r\nclosed<o:p></o:p></p><p class=MsoNormal><o:p>&nbsp;</o:p></p><p>Text</p></body>",
                "<body><p>Text</p></body>",
            ),
        ];
        for (html, want) in cases {
            assert_eq!(strip_html_commands(html), want, "{html}");
        }
    }

    #[test]
    fn html_without_commands_is_unchanged() {
        for html in [
            "<body><p>Hallo</p><p>#status closed</p></body>",
            "<body><p>#1 priority</p></body>",
            "<body><img src=x><p>#status closed</p></body>",
            "",
            "<body></body>",
        ] {
            assert_eq!(strip_html_commands(html), html, "{html}");
        }
    }
}
