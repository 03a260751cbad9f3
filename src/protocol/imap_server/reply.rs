//! How a store failure reaches the IMAP client: the one mapping from a [`StoreError`] to a
//! tagged NO with an RFC 5530 response code. The client learns what could not be done and
//! whether trying again may help; the error's own text (SQL, ids, paths) goes to the log only.
use imap_next::imap_types::core::Tag;
use imap_next::imap_types::response::{Code, CodeOther};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::store::StoreError;

/// The response code and text of the tagged NO for `e`; `action` says what failed
/// ("cannot change the ticket").
pub(super) fn refusal(e: &StoreError, action: &str) -> (Code<'static>, String) {
    let (code, why) = if e.is_transient() {
        ("UNAVAILABLE", "try again later")
    } else {
        match e {
            StoreError::NotFound(_) => ("NONEXISTENT", "it no longer exists"),
            // Permanent: the same request can never work.
            StoreError::Conflict(_) | StoreError::Invalid(_) => {
                ("CANNOT", "the helpdesk does not allow it")
            }
            _ => ("SERVERBUG", "the server failed"),
        }
    };
    (
        Code::Other(CodeOther::unvalidated(code.as_bytes())),
        format!("{action}: {why}"),
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Logs `e` and answers the command with its [`refusal`].
    pub(super) fn refuse(&mut self, tag: Tag<'static>, action: &str, e: &StoreError) {
        tracing::warn!(error = %e, "IMAP: {action}");
        let (code, text) = refusal(e, action);
        self.no_code(tag, Some(code), text);
    }
}

#[cfg(test)]
mod tests {
    use imap_codec::ResponseCodec;
    use imap_codec::encode::Encoder;
    use imap_next::imap_types::response::{Response, Status};

    use super::*;

    /// The tagged line a client gets for `e`.
    fn wire(e: StoreError) -> String {
        let (code, text) = refusal(&e, "cannot change the ticket");
        let tag = Tag::try_from("a1").expect("valid tag");
        let status = Status::no(Some(tag), Some(code), text).expect("valid status");
        let bytes = ResponseCodec::default()
            .encode(&Response::Status(status))
            .dump();
        String::from_utf8(bytes).expect("ASCII")
    }

    #[test]
    fn each_kind_of_store_error_gets_its_code_and_no_internals() {
        let cases = [
            (
                StoreError::Db(sqlx::Error::PoolTimedOut),
                "a1 NO [UNAVAILABLE] cannot change the ticket: try again later\r\n",
            ),
            (
                StoreError::LeaseLost("poll:1".into()),
                "a1 NO [UNAVAILABLE] cannot change the ticket: try again later\r\n",
            ),
            (
                StoreError::NotFound("no ticket with id 42".into()),
                "a1 NO [NONEXISTENT] cannot change the ticket: it no longer exists\r\n",
            ),
            (
                StoreError::Conflict("this tag exists already".into()),
                "a1 NO [CANNOT] cannot change the ticket: the helpdesk does not allow it\r\n",
            ),
            (
                StoreError::Invalid("bad status name \"x\"".into()),
                "a1 NO [CANNOT] cannot change the ticket: the helpdesk does not allow it\r\n",
            ),
            (
                StoreError::Db(sqlx::Error::RowNotFound),
                "a1 NO [SERVERBUG] cannot change the ticket: the server failed\r\n",
            ),
        ];
        for (e, expected) in cases {
            assert_eq!(wire(e), expected);
        }
    }
}
