//! Spoofing-aware customer assignment (README, "How intake behaves"): DKIM, SPF and DMARC
//! of a customer mail via mail-auth, boiled down to "may this mail be trusted to name its
//! sender's customer?".
//!
//! POP3 intake has no SMTP connection, so SPF runs on the client IP and HELO of the topmost
//! `Received:` line with a bracketed IP and on `Return-Path`; a real connection may override.
//! Offline mode (`with_static_records`) answers every DNS question from a fixed table: names
//! outside it are NXDOMAIN and the resolver has no name servers, so no packet leaves the host.

use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError, DnssecStatus,
    MessageAuthenticator, Parameters, RecordSet, ResolverCache, SpfOutput, SpfResult, Txt,
    common::parse::TxtRecordParser,
    common::verify::DomainKey,
    dmarc::{Dmarc, verify::DmarcParameters},
    hickory_resolver::{
        config::{ResolverConfig, ResolverOpts},
        proto::op::ResponseCode,
    },
    spf::{Spf, verify::SpfParameters},
};
use std::{borrow::Borrow, collections::HashMap, hash::Hash, net::IpAddr, path::Path};

/// DMARC outcome for the From domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcVerdict {
    Pass,
    Fail,
    /// The From domain publishes no DMARC record.
    None,
    /// DNS trouble: nothing can be concluded now.
    TempError,
    /// Broken record.
    PermError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthVerdict {
    pub dmarc: DmarcVerdict,
    /// A passing DKIM signature whose domain aligns with the From domain.
    pub dkim_pass_aligned: bool,
    /// SPF passed for a MAIL FROM domain aligned with the From domain.
    pub spf_pass_aligned: bool,
    /// Do not trust the From address to pick a customer.
    pub suspect: bool,
    /// One line for the ticket history, e.g. `dmarc=fail dkim=fail(kunde.example) spf=none`.
    pub summary: String,
}

/// The SMTP envelope SPF judges: from a real connection or reconstructed from headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub ip: IpAddr,
    pub helo: String,
    /// Empty for the null sender.
    pub mail_from: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read DNS records file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("DNS records file line {line}: {reason}")]
    Syntax { line: usize, reason: String },
}

/// Verifies mail against DNS (system resolver) or a static record table (tests, offline).
pub struct AuthChecker {
    authenticator: Option<MessageAuthenticator>,
    txt: TxtCache,
    records: EmptyRecords,
    host_domain: String,
}

impl AuthChecker {
    /// Real DNS from the system configuration. Without a usable configuration every
    /// lookup fails as a temporary error, so no mail becomes suspect for that reason.
    pub fn system() -> Self {
        let authenticator = MessageAuthenticator::new_system_conf().ok();
        if authenticator.is_none() {
            tracing::warn!("no usable system DNS configuration: DKIM/SPF/DMARC checks disabled");
        }
        AuthChecker {
            authenticator,
            txt: TxtCache(None),
            records: EmptyRecords(false),
            host_domain: "mticket.invalid".into(),
        }
    }

    /// Answers only from `records` (FQDN → TXT value); every other name is NXDOMAIN.
    pub fn with_static_records(records: HashMap<String, String>) -> Self {
        let table = records
            .into_iter()
            .map(|(name, value)| {
                let name = fqdn(&name);
                let txt = parse_txt(&name, &value);
                (name.into_boxed_str(), txt)
            })
            .collect();
        // Belt and braces: a resolver without name servers cannot send a packet even if a
        // lookup ever slipped past the table.
        let mut opts = ResolverOpts::default();
        opts.timeout = std::time::Duration::from_millis(50);
        opts.attempts = 0;
        let authenticator =
            MessageAuthenticator::new(ResolverConfig::from_parts(None, vec![], vec![]), opts).ok();
        AuthChecker {
            authenticator,
            txt: TxtCache(Some(table)),
            records: EmptyRecords(true),
            host_domain: "mticket.invalid".into(),
        }
    }

    /// Our own host name, used in SPF explanations.
    pub fn with_host_domain(mut self, host: &str) -> Self {
        self.host_domain = host.to_string();
        self
    }

    /// Verifies `raw`. `envelope` is the real SMTP connection if there was one; otherwise
    /// it is reconstructed from the headers (see `envelope_from_headers`).
    pub async fn check(&self, raw: &[u8], envelope: Option<&Envelope>) -> AuthVerdict {
        let Some(auth) = &self.authenticator else {
            return unverifiable("dns unavailable");
        };
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return unverifiable("not parseable for authentication");
        };
        let from_domain = from_domain(&message);
        if from_domain.is_empty() {
            return unverifiable("no From domain");
        }
        let dkim = auth.verify_dkim(self.params(&message)).await;
        let derived;
        let envelope = match envelope {
            Some(e) => Some(e),
            None => {
                derived = envelope_from_headers(raw);
                derived.as_ref()
            }
        };
        let mail_from_domain = mail_from_domain(envelope);
        let spf = self.verify_spf(auth, envelope, &mail_from_domain).await;
        let dmarc = auth
            .verify_dmarc(self.params(DmarcParameters::new(
                &message,
                &dkim,
                &mail_from_domain,
                &spf,
            )))
            .await;
        let evidence = Evidence::new(&dkim, &spf, &mail_from_domain, &from_domain);
        let verdict = evidence.dmarc_verdict(&dmarc);
        let suspect = evidence.suspect(verdict);
        AuthVerdict {
            dmarc: verdict,
            dkim_pass_aligned: evidence.dkim_pass_aligned,
            spf_pass_aligned: evidence.spf_pass_aligned,
            suspect,
            summary: summary(verdict, &dkim, spf.result(), &mail_from_domain, suspect),
        }
    }

    /// SPF for the envelope's MAIL FROM (the null sender as `postmaster@` its HELO); no
    /// envelope, no check.
    async fn verify_spf(
        &self,
        auth: &MessageAuthenticator,
        envelope: Option<&Envelope>,
        mail_from_domain: &str,
    ) -> SpfOutput {
        let Some(e) = envelope else {
            return SpfOutput::new(mail_from_domain.to_string());
        };
        let sender = if e.mail_from.is_empty() {
            format!("postmaster@{}", e.helo)
        } else {
            e.mail_from.clone()
        };
        auth.verify_spf(self.params(SpfParameters::verify_mail_from(
            e.ip,
            &e.helo,
            &self.host_domain,
            &sender,
        )))
        .await
    }

    #[allow(clippy::type_complexity)]
    fn params<P>(
        &self,
        p: P,
    ) -> Parameters<'_, P, TxtCache, EmptyRecords, EmptyRecords, EmptyRecords, EmptyRecords> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.records)
            .with_ipv4_cache(&self.records)
            .with_ipv6_cache(&self.records)
            .with_ptr_cache(&self.records)
    }
}

/// The From address's domain, lower-case; empty when it has none.
fn from_domain(message: &AuthenticatedMessage<'_>) -> String {
    message
        .from()
        .rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
        .unwrap_or_default()
}

/// The domain SPF and DMARC judge: MAIL FROM's, else the HELO's for the null sender.
fn mail_from_domain(envelope: Option<&Envelope>) -> String {
    envelope
        .and_then(|e| {
            e.mail_from
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
        })
        .or_else(|| envelope.map(|e| e.helo.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// What DKIM and SPF say about the From domain.
struct Evidence {
    /// A passing signature of the From domain (or one aligned with it).
    dkim_pass_aligned: bool,
    /// A signature of the From domain that did not pass.
    dkim_aligned_failed: bool,
    spf_pass: bool,
    /// SPF passed for a MAIL FROM domain aligned with the From domain.
    spf_pass_aligned: bool,
}

impl Evidence {
    fn new(dkim: &[DkimOutput<'_>], spf: &SpfOutput, mail_from: &str, from: &str) -> Self {
        let signed_by_from =
            |d: &DkimOutput<'_>| d.signature().is_some_and(|s| aligned(&s.d, from));
        let spf_pass = spf.result() == SpfResult::Pass;
        Evidence {
            dkim_pass_aligned: dkim
                .iter()
                .any(|d| d.result() == &DkimResult::Pass && signed_by_from(d)),
            dkim_aligned_failed: dkim
                .iter()
                .any(|d| d.result() != &DkimResult::Pass && signed_by_from(d)),
            spf_pass,
            spf_pass_aligned: spf_pass && aligned(mail_from, from),
        }
    }

    /// The DMARC outcome: with a record, pass on aligned evidence; without one, only DNS
    /// trouble or a broken record is worth telling apart from "none".
    fn dmarc_verdict(&self, dmarc: &DmarcOutput) -> DmarcVerdict {
        let temp = |r: &DmarcResult| matches!(r, DmarcResult::TempError(_));
        let perm = |r: &DmarcResult| matches!(r, DmarcResult::PermError(_));
        let any =
            |f: &dyn Fn(&DmarcResult) -> bool| f(dmarc.dkim_result()) || f(dmarc.spf_result());
        if dmarc.dmarc_record().is_some() {
            if self.dkim_pass_aligned || self.spf_pass_aligned {
                DmarcVerdict::Pass
            } else if any(&temp) {
                DmarcVerdict::TempError
            } else {
                DmarcVerdict::Fail
            }
        } else if any(&temp) {
            DmarcVerdict::TempError
        } else if any(&perm) {
            DmarcVerdict::PermError
        } else {
            DmarcVerdict::None
        }
    }

    fn suspect(&self, verdict: DmarcVerdict) -> bool {
        match verdict {
            DmarcVerdict::Fail => true,
            // Without a DMARC record only a broken signature of the From domain itself, with
            // no SPF pass to vouch for the mail, is evidence of forgery.
            DmarcVerdict::None | DmarcVerdict::PermError => {
                self.dkim_aligned_failed && !self.dkim_pass_aligned && !self.spf_pass
            }
            DmarcVerdict::Pass | DmarcVerdict::TempError => false,
        }
    }
}

/// The history line: `dmarc=fail dkim=fail(kunde.example) spf=none(kunde.example) suspect`.
fn summary(
    verdict: DmarcVerdict,
    dkim: &[DkimOutput<'_>],
    spf: SpfResult,
    mail_from_domain: &str,
    suspect: bool,
) -> String {
    let dkim_text = if dkim.is_empty() {
        "none".to_string()
    } else {
        dkim.iter()
            .map(|d| {
                let dom = d.signature().map_or("?", |s| s.d.as_str());
                format!("{}({dom})", dkim_word(d.result()))
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let dmarc_text = match verdict {
        DmarcVerdict::Pass => "pass",
        DmarcVerdict::Fail => "fail",
        DmarcVerdict::None => "none",
        DmarcVerdict::TempError => "temperror",
        DmarcVerdict::PermError => "permerror",
    };
    let mail_from = if mail_from_domain.is_empty() {
        "-"
    } else {
        mail_from_domain
    };
    let suspect = if suspect { " suspect" } else { "" };
    format!(
        "dmarc={dmarc_text} dkim={dkim_text} spf={}({mail_from}){suspect}",
        spf_word(spf)
    )
}

fn unverifiable(why: &str) -> AuthVerdict {
    AuthVerdict {
        dmarc: DmarcVerdict::TempError,
        dkim_pass_aligned: false,
        spf_pass_aligned: false,
        suspect: false,
        summary: format!("not verified: {why}"),
    }
}

fn dkim_word(r: &DkimResult) -> &'static str {
    match r {
        DkimResult::Pass => "pass",
        DkimResult::Neutral(_) => "neutral",
        DkimResult::Fail(_) => "fail",
        DkimResult::PermError(_) => "permerror",
        DkimResult::TempError(_) => "temperror",
        DkimResult::None => "none",
    }
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// Relaxed alignment, approximated without a public-suffix list: one domain is the other
/// or a subdomain of it.
fn aligned(a: &str, b: &str) -> bool {
    let a = a.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    !a.is_empty()
        && !b.is_empty()
        && (a == b || a.ends_with(&format!(".{b}")) || b.ends_with(&format!(".{a}")))
}

/// Client IP and HELO from the topmost `Received:` with a bracketed public IP, MAIL FROM
/// from `Return-Path`.
pub fn envelope_from_headers(raw: &[u8]) -> Option<Envelope> {
    let mail_from = crate::core::mail::header_values(raw, "Return-Path")
        .into_iter()
        .next()
        .map(|v| {
            let v = v.trim();
            match (v.find('<'), v.rfind('>')) {
                (Some(a), Some(b)) if a < b => v[a + 1..b].trim().to_string(),
                _ => v.to_string(),
            }
        })
        .unwrap_or_default();
    crate::core::mail::header_values(raw, "Received")
        .iter()
        .find_map(|r| received_client(r))
        .map(|(ip, helo)| Envelope {
            ip,
            helo,
            mail_from,
        })
}

fn received_client(value: &str) -> Option<(IpAddr, String)> {
    let lower = value.to_ascii_lowercase();
    let from = lower.strip_prefix("from ").map(|_| 5)?;
    let helo: String = value[from..]
        .split_whitespace()
        .next()?
        .trim_matches(|c| c == '(' || c == ')')
        .to_string();
    // The client clause ends where the receiving host starts.
    let clause_end = lower.find(" by ").unwrap_or(lower.len());
    let clause = &value[..clause_end];
    let open = clause.find('[')?;
    let close = open + clause[open..].find(']')?;
    let inner = clause[open + 1..close].trim();
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    let ip: IpAddr = inner.parse().ok()?;
    let internal = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    };
    (!internal).then_some((ip, helo))
}

/// Loads a static DNS table: one `name value` per line, `#` comments; the value is the TXT
/// text, optionally in double quotes (several quoted strings are joined, as in DNS).
pub fn load_static_records(path: &Path) -> Result<HashMap<String, String>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_static_records(&text)
}

/// The parser behind `load_static_records`.
pub fn parse_static_records(text: &str) -> Result<HashMap<String, String>, AuthError> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = |reason: &str| AuthError::Syntax {
            line: n + 1,
            reason: reason.into(),
        };
        let (name, value) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| syntax("expected `name value`"))?;
        let value = value.trim();
        let value = value.strip_prefix("TXT ").map_or(value, str::trim);
        let value = if value.starts_with('"') {
            unquote_txt(value).ok_or_else(|| syntax("unterminated quote"))?
        } else {
            value.to_string()
        };
        if map.insert(fqdn(name), value).is_some() {
            return Err(syntax("name given twice"));
        }
    }
    Ok(map)
}

fn unquote_txt(v: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = v.chars();
    loop {
        match chars.next() {
            None => return Some(out),
            Some('"') => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => out.push(chars.next()?),
                    c => out.push(c),
                }
            },
            Some(c) if c.is_whitespace() => {}
            Some(_) => return None,
        }
    }
}

fn fqdn(name: &str) -> String {
    let mut n = name.trim().to_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// Parses a TXT value into what mail-auth expects under that name.
fn parse_txt(name: &str, value: &str) -> Txt {
    let bytes = value.as_bytes();
    if name.starts_with("_dmarc.") {
        Dmarc::parse(bytes).into()
    } else if name.contains("._domainkey.") {
        DomainKey::parse(bytes).into()
    } else {
        Spf::parse(bytes).into()
    }
}

fn nxdomain() -> mail_auth::Error {
    mail_auth::Error::Dns(DnsError::RecordNotFound(ResponseCode::NXDomain))
}

/// TXT answers: the static table (misses are NXDOMAIN), or pass-through to real DNS.
struct TxtCache(Option<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let table = self.0.as_ref()?;
        Some(table.get(name).cloned().unwrap_or(Txt::Error(nxdomain())))
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, _: Txt, _: std::time::Instant) {}
}

/// MX, A, AAAA and PTR answers: in static mode always empty (SPF `a`/`mx` never match),
/// otherwise pass-through.
struct EmptyRecords(bool);

impl<K, T> ResolverCache<K, RecordSet<T>> for EmptyRecords {
    fn get<Q>(&self, _: &Q) -> Option<RecordSet<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.then(|| RecordSet {
            rrset: Vec::new().into(),
            dnssec_status: DnssecStatus::default(),
        })
    }

    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: K, _: RecordSet<T>, _: std::time::Instant) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use mail_auth::{
        common::{crypto::Ed25519Key, headers::HeaderWriter},
        dkim::DkimSigner,
    };

    // The ed25519 key pair of RFC 8463 appendix A: a published test key, never a secret.
    const SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
    const PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn sign(raw: &str, domain: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = Ed25519Key::from_seed_and_public_key(
            &b64.decode(SEED).unwrap(),
            &b64.decode(PUBLIC).unwrap(),
        )
        .unwrap();
        let sig = DkimSigner::from_key(key)
            .domain(domain)
            .selector("test")
            .headers(["From", "To", "Subject", "Date", "Message-ID"])
            .sign(raw.as_bytes())
            .unwrap();
        format!("{}{}", sig.to_header(), raw)
    }

    fn mail(from: &str, body: &str) -> String {
        format!(
            "Received: from mx.kunde.example (mx.kunde.example [192.0.2.10])\r\n by mx.example.test with ESMTP; Mon, 2 Nov 2026 10:00:00 +0000\r\n\
Return-Path: <{from}>\r\nFrom: Kunde <{from}>\r\nTo: support@example.test\r\nSubject: Drucker\r\n\
Date: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a1@kunde.example>\r\n\r\n{body}\r\n"
        )
    }

    fn checker() -> AuthChecker {
        let mut r = HashMap::new();
        r.insert(
            "test._domainkey.kunde.example".to_string(),
            format!("v=DKIM1; k=ed25519; p={PUBLIC}"),
        );
        r.insert(
            "_dmarc.kunde.example".to_string(),
            "v=DMARC1; p=reject".to_string(),
        );
        r.insert("kunde.example".to_string(), "v=spf1 -all".to_string());
        r.insert(
            "test._domainkey.nodmarc.example".to_string(),
            format!("v=DKIM1; k=ed25519; p={PUBLIC}"),
        );
        AuthChecker::with_static_records(r)
    }

    #[tokio::test]
    async fn verdicts() {
        let c = checker();
        let signed = sign(&mail("kunde@kunde.example", "Hallo"), "kunde.example");
        let tampered = signed.replace("Hallo", "Bitte zahlen Sie an IBAN XY");
        let cases: Vec<(&str, String, DmarcVerdict, bool)> = vec![
            ("signed", signed, DmarcVerdict::Pass, false),
            ("body changed", tampered, DmarcVerdict::Fail, true),
            (
                "unsigned",
                mail("kunde@kunde.example", "Hallo"),
                DmarcVerdict::Fail,
                true,
            ),
            (
                "no dmarc, unsigned",
                mail("a@nodmarc.example", "Hallo"),
                DmarcVerdict::None,
                false,
            ),
            (
                "no dmarc, signature broken",
                sign(&mail("a@nodmarc.example", "Hallo"), "nodmarc.example").replace("Hallo", "Hi"),
                DmarcVerdict::None,
                true,
            ),
            (
                "no dmarc, signed",
                sign(&mail("a@nodmarc.example", "Hallo"), "nodmarc.example"),
                DmarcVerdict::None,
                false,
            ),
            (
                "unknown domain",
                mail("x@unknown.example", "Hallo"),
                DmarcVerdict::None,
                false,
            ),
        ];
        for (name, raw, dmarc, suspect) in cases {
            let v = c.check(raw.as_bytes(), None).await;
            assert_eq!(v.dmarc, dmarc, "{name}: {}", v.summary);
            assert_eq!(v.suspect, suspect, "{name}: {}", v.summary);
        }
        let v = c
            .check(
                sign(&mail("kunde@kunde.example", "Hallo"), "kunde.example").as_bytes(),
                None,
            )
            .await;
        assert!(v.dkim_pass_aligned && !v.spf_pass_aligned, "{}", v.summary);
        assert!(
            v.summary
                .starts_with("dmarc=pass dkim=pass(kunde.example) spf=fail")
        );
    }

    #[tokio::test]
    async fn spf_pass_from_received_header_aligns() {
        let mut r = HashMap::new();
        r.insert(
            "kunde.example".into(),
            "v=spf1 ip4:192.0.2.0/24 -all".into(),
        );
        r.insert(
            "_dmarc.kunde.example".into(),
            "v=DMARC1; p=quarantine".into(),
        );
        let c = AuthChecker::with_static_records(r);
        let raw = mail("kunde@kunde.example", "Hallo");
        let v = c.check(raw.as_bytes(), None).await;
        assert!(v.spf_pass_aligned && !v.suspect, "{}", v.summary);
        // A real connection from elsewhere overrides the headers.
        let env = Envelope {
            ip: "198.51.100.7".parse().unwrap(),
            helo: "evil.example".into(),
            mail_from: "kunde@kunde.example".into(),
        };
        let v = c.check(raw.as_bytes(), Some(&env)).await;
        assert!(!v.spf_pass_aligned && v.suspect, "{}", v.summary);
    }

    /// Static mode answers every question from its table: a domain outside it has no
    /// records (NXDOMAIN), never a DNS error from an attempt to ask the network (that would
    /// read `temperror`). A signature whose key does not exist is the From domain's own
    /// broken signature, and without DMARC and SPF to vouch for the mail that is suspect.
    #[tokio::test]
    async fn static_mode_answers_names_outside_the_table_as_missing() {
        let c = AuthChecker::with_static_records(HashMap::new());
        let raw = sign(&mail("a@somewhere.example", "x"), "somewhere.example");
        let want = AuthVerdict {
            dmarc: DmarcVerdict::None,
            dkim_pass_aligned: false,
            spf_pass_aligned: false,
            suspect: true,
            summary: "dmarc=none dkim=permerror(somewhere.example) spf=none(somewhere.example) \
                      suspect"
                .into(),
        };
        assert_eq!(c.check(raw.as_bytes(), None).await, want);
    }

    #[test]
    fn envelope_and_records_parsing() {
        let raw = b"Received: from localhost (localhost [127.0.0.1]) by a\r\n\
Received: from helo.example (host.example [IPv6:2001:db8::1])\r\n\tby b; x\r\n\
Return-Path: <>\r\nFrom: a@b\r\n\r\n";
        let e = envelope_from_headers(raw).unwrap();
        assert_eq!(e.ip, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(e.helo, "helo.example");
        assert_eq!(e.mail_from, "");
        assert!(envelope_from_headers(b"From: a@b\r\n\r\n").is_none());

        let m = parse_static_records(
            "# test\nKunde.Example v=spf1 -all\n_dmarc.kunde.example. \"v=DMARC1; \" \"p=reject\"\n\
s._domainkey.x TXT \"v=DKIM1; p=abc\"\n",
        )
        .unwrap();
        assert_eq!(m["kunde.example."], "v=spf1 -all");
        assert_eq!(m["_dmarc.kunde.example."], "v=DMARC1; p=reject");
        assert_eq!(m["s._domainkey.x."], "v=DKIM1; p=abc");
        assert!(parse_static_records("a \"open").is_err());
        assert!(parse_static_records("lonely").is_err());
        assert!(parse_static_records("a x\nA y").is_err());
        assert!(aligned("mail.kunde.example", "kunde.example"));
        assert!(!aligned("kunde.example.evil", "kunde.example"));
    }
}
