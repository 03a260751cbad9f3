//! The ticket tag in subjects (`[<queue name> #N]`): writing it, finding it in any position,
//! and the reply prefixes (`Re:`, `AW:`, `Fwd:` …) that clients put in front of it.

/// A ticket tag found in a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketTag {
    /// Queue name as written in the subject (spacing normalised); compare case-insensitively.
    pub queue: String,
    pub number: i64,
}

/// A new ticket's subject: the mail's, or a placeholder when it has none.
pub fn ticket_subject(mail_subject: &str) -> &str {
    match mail_subject.trim() {
        "" => "(no subject)",
        s => s,
    }
}

/// The tag for ticket `number` of `queue`.
pub fn tag(queue: &str, number: i64) -> String {
    format!("[{} #{}]", queue.trim(), number)
}

/// Every ticket tag in `subject`, in order. Tolerates `[ Sales EU  #12 ]`, `[support#12]`,
/// `[Vertrieb Süd # 12]`; ignores brackets that are not tags (`[EXTERN]`, `[#12]`).
pub fn find_tags(subject: &str) -> Vec<TicketTag> {
    let mut tags = Vec::new();
    let mut rest = subject;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        let inner = &rest[..close];
        if inner.contains('[') {
            // `[[Support #1]`: restart at the inner bracket.
            continue;
        }
        if let Some(t) = parse_tag(inner) {
            tags.push(t);
        }
        rest = &rest[close + 1..];
    }
    tags
}

fn parse_tag(inner: &str) -> Option<TicketTag> {
    let hash = inner.rfind('#')?;
    let queue = normalise_space(&inner[..hash]);
    let digits = inner[hash + 1..].trim();
    if queue.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = digits.parse::<i64>().ok().filter(|n| *n > 0)?;
    Some(TicketTag { queue, number })
}

fn normalise_space(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `tag` names `queue` (case- and spacing-insensitive).
pub fn same_queue(tag_queue: &str, queue: &str) -> bool {
    normalise_space(tag_queue).to_lowercase() == normalise_space(queue).to_lowercase()
}

/// Reply/forward prefixes of the common clients and locales, compared case-insensitively.
const PREFIXES: &[&str] = &[
    "re", "aw", "fwd", "fw", "wg", "antw", "sv", "vs", "tr", "rif", "r", "odp", "ref", "res",
];

/// `subject` without leading reply/forward prefixes (`Re: AW: Fwd: Re[2]: x` → `x`).
pub fn strip_reply_prefixes(subject: &str) -> &str {
    let mut s = subject.trim_start();
    loop {
        match strip_one_prefix(s) {
            Some(rest) => s = rest.trim_start(),
            None => return s,
        }
    }
}

fn strip_one_prefix(s: &str) -> Option<&str> {
    let word_len = s
        .char_indices()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(s.len(), |(i, _)| i);
    let word = &s[..word_len];
    if !PREFIXES.iter().any(|p| p.eq_ignore_ascii_case(word)) {
        return None;
    }
    let mut rest = &s[word_len..];
    // Counters: `Re[2]:`, `Re(2):`, `Re^2:`.
    for (open, close) in [("[", "]"), ("(", ")")] {
        if let Some(r) = rest.strip_prefix(open)
            && let Some(end) = r.find(close)
            && r[..end].trim().bytes().all(|b| b.is_ascii_digit())
        {
            rest = &r[end + 1..];
        }
    }
    if let Some(r) = rest.strip_prefix('^') {
        rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let rest = rest.trim_start_matches(' ');
    rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
}

/// Subject of the autoresponse: `[<queue> #N] <original>`; the original keeps its wording,
/// and a subject that already carries this ticket's tag gets no second one.
pub fn autoresponse_subject(queue: &str, number: i64, original: &str) -> String {
    let original = original.trim();
    let has_tag = find_tags(original)
        .iter()
        .any(|t| t.number == number && same_queue(&t.queue, queue));
    if has_tag {
        original.to_string()
    } else if original.is_empty() {
        tag(queue, number)
    } else {
        format!("{} {}", tag(queue, number), original)
    }
}

/// Subject of an agent's reply: exactly one tag, this ticket's, and `Re: ` in front when
/// the agent's subject was a reply; every other tag and reply prefix goes, the rest stays.
pub fn reply_subject(queue: &str, number: i64, agent_subject: &str) -> String {
    let trimmed = agent_subject.trim();
    let mut rest = strip_reply_prefixes(trimmed);
    let mut was_reply = rest.len() != trimmed.len();
    let without_tags = remove_tags(rest);
    rest = strip_reply_prefixes(&without_tags);
    was_reply |= rest.len() != without_tags.len();
    let prefix = if was_reply { "Re: " } else { "" };
    let rest = rest.trim();
    if rest.is_empty() {
        format!("{prefix}{}", tag(queue, number))
    } else {
        format!("{prefix}{} {rest}", tag(queue, number))
    }
}

/// `subject` with every ticket tag taken out and the spacing around them closed.
fn remove_tags(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    let mut rest = subject;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if !after[..close].contains('[') && parse_tag(&after[..close]).is_some() =>
            {
                out.push_str(&rest[..open]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    normalise_space(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(q: &str, n: i64) -> TicketTag {
        TicketTag {
            queue: q.into(),
            number: n,
        }
    }

    #[test]
    fn finds_tags() {
        let cases: &[(&str, Vec<TicketTag>)] = &[
            ("[Support #12] Drucker", vec![t("Support", 12)]),
            ("Re: AW: [support #12] Drucker", vec![t("support", 12)]),
            ("Drucker [ Sales  EU #7 ]", vec![t("Sales EU", 7)]),
            ("[Vertrieb Süd#3]", vec![t("Vertrieb Süd", 3)]),
            ("[Vertrieb # 3]", vec![t("Vertrieb", 3)]),
            (
                "[EXTERN] [Support #1] x [Sales #2]",
                vec![t("Support", 1), t("Sales", 2)],
            ),
            ("[[Support #1]", vec![t("Support", 1)]),
            (
                "[#12] [Support #] [Support #x1] [Support #0] [Support #-1]",
                vec![],
            ),
            ("[Support #99999999999999999999]", vec![]),
            ("no tag", vec![]),
            ("[Support #5", vec![]),
            ("", vec![]),
        ];
        for (subject, want) in cases {
            assert_eq!(&find_tags(subject), want, "{subject}");
        }
    }

    #[test]
    fn strips_prefixes() {
        let cases = [
            ("Re: x", "x"),
            ("RE: AW: Fwd: FW: WG: Antw: SV: x", "x"),
            ("Re[2]: Aw: x", "x"),
            ("re(3): x", "x"),
            ("Re : x", "x"),
            ("Fwd:x", "x"),
            ("Reply: x", "Reply: x"),
            ("Rechnung: x", "Rechnung: x"),
            ("[Support #1] Re: x", "[Support #1] Re: x"),
            ("Re:", ""),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(strip_reply_prefixes(input), want, "{input}");
        }
    }

    #[test]
    fn autoresponse_subjects() {
        let cases = [
            ("Drucker", "[Support #5] Drucker"),
            ("Re: Drucker", "[Support #5] Re: Drucker"),
            ("", "[Support #5]"),
            ("Re: [support #5] Drucker", "Re: [support #5] Drucker"),
            ("[Support #4] Drucker", "[Support #5] [Support #4] Drucker"),
        ];
        for (orig, want) in cases {
            assert_eq!(autoresponse_subject("Support", 5, orig), want);
        }
        assert_eq!(tag("Sales EU", 1), "[Sales EU #1]");
    }

    #[test]
    fn reply_subjects_carry_one_tag() {
        let cases = [
            ("Drucker", "[Support #5] Drucker"),
            ("Re: [Support #5] Drucker", "Re: [Support #5] Drucker"),
            ("AW: Re: [support #5] Drucker", "Re: [Support #5] Drucker"),
            ("[Support #5] Re: Drucker", "Re: [Support #5] Drucker"),
            (
                "Re: [Sales #9] [Support #5] Drucker [EXTERN]",
                "Re: [Support #5] Drucker [EXTERN]",
            ),
            ("", "[Support #5]"),
            ("Re:", "Re: [Support #5]"),
        ];
        for (orig, want) in cases {
            assert_eq!(reply_subject("Support", 5, orig), want, "{orig}");
        }
        assert!(same_queue("sales  eu", "Sales EU"));
    }
}
