//! A customer's mail as the ticket rules see it: the fields the rules need, decoded from
//! any charset and MIME shape by mail-parser. A mail that cannot be understood still
//! yields an `IncomingMail` (with `problems` filled) so its raw bytes are never lost.

/// One address of a header, lower-cased address plus the display name if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Address {
    pub name: Option<String>,
    /// Lower-cased `local@domain`.
    pub address: String,
}

/// An attachment as found in the mail; the bytes stay in the raw mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// Hex sha256 of the decoded bytes.
    pub sha256: String,
    /// mail-parser's part id, to find the bytes again in the raw mail.
    pub part_id: u32,
    pub content_id: Option<String>,
    pub inline: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IncomingMail {
    pub from: Option<Address>,
    pub reply_to: Option<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    /// Decoded subject (RFC 2047), trimmed; empty when missing.
    pub subject: String,
    /// Without angle brackets.
    pub message_id: Option<String>,
    /// Without angle brackets.
    pub in_reply_to: Vec<String>,
    /// Without angle brackets.
    pub references: Vec<String>,
    /// Date header as Unix seconds, if present and valid.
    pub date: Option<i64>,
    /// Plain text of the body: the text part, or the HTML part turned into text.
    pub text: String,
    /// The HTML body, if the mail has one.
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// `Auto-Submitted` value, lower-cased, if present.
    pub auto_submitted: Option<String>,
    /// `Precedence` value, lower-cased, if present.
    pub precedence: Option<String>,
    pub list_id: Option<String>,
    /// `Return-Path` as given by the delivering MTA; `Some("")` for the null sender `<>`.
    pub return_path: Option<String>,
    /// Every `X-Loop` header value (the gateway's own marker shows a loop).
    pub x_loop: Vec<String>,
    /// What went wrong while parsing (noted in the ticket history), empty when all is well.
    pub problems: Vec<String>,
}
