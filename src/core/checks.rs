//! Checks on an agent's reply before it goes out (README, "How submission behaves").

/// Words that announce an attachment: the seed's German ones and English ones. Matched
/// case-insensitively at the start of a word, so `Anlagen` and `Anhang:` count too.
pub const ATTACHMENT_WORDS: &[&str] = &[
    "anhang",
    "anhänge",
    "anlage",
    "angehängt",
    "angehangen",
    "screenshot",
    "anbei",
    "attachment",
    "attached",
    "enclosed",
];

/// The first of `words` that `new_text` (the agent's own text, without the quote) uses,
/// when the mail has no attachment: the reply is then refused with a text that explains
/// how to attach or send anyway.
pub fn missing_attachment<'w>(new_text: &str, words: &[&'w str]) -> Option<&'w str> {
    let text = new_text.to_lowercase();
    words.iter().copied().find(|w| {
        let w = w.to_lowercase();
        text.match_indices(&w).any(|(at, _)| {
            text[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seed_word_in_any_case_counts_at_a_word_start() {
        for w in [
            "anhang",
            "anhänge",
            "anlage",
            "angehängt",
            "angehangen",
            "screenshot",
            "anbei",
        ] {
            for text in [
                format!("Sehr geehrte Damen und Herren, {w} die Rechnung."),
                format!("{}: siehe oben", w.to_uppercase()),
                format!("Die {}n liegen bei.", capitalised(w)),
            ] {
                assert_eq!(
                    missing_attachment(&text, ATTACHMENT_WORDS),
                    Some(w),
                    "{text}"
                );
            }
        }
        assert_eq!(
            missing_attachment("Please find the file attached.", ATTACHMENT_WORDS),
            Some("attached")
        );
    }

    #[test]
    fn words_inside_other_words_and_plain_text_do_not() {
        for text in ["Die Wertanlage ist sicher.", "Danke für Ihre Geduld!", ""] {
            assert_eq!(missing_attachment(text, ATTACHMENT_WORDS), None, "{text}");
        }
    }

    fn capitalised(w: &str) -> String {
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default()
    }
}
