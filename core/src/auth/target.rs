//! What a signature covers. The seed's rule: `"{timestamp}:{node}:"` and the raw body, which is
//! empty for a GET. That is enough where the body says what the request does (a task, a
//! control call naming its action), but two calls with empty bodies would share signatures: a
//! status poll's three headers, replayed within the window, would read or cancel a long task.
//! So the calls whose path names what they act on, a long task's `GET` and `DELETE`, sign
//! `METHOD SP PATH LF` followed by the body in place of the body alone.

use std::borrow::Cow;

/// The long task's route; the task id follows.
pub const LONG_TASK_PATH: &str = "/v1/federation/task/";

/// Whether a request of `method` on `path` signs its method and path.
pub fn signs_target(method: &str, path: &str) -> bool {
    matches!(method, "GET" | "DELETE") && path.starts_with(LONG_TASK_PATH)
}

/// The bytes that follow `"{timestamp}:{node}:"` in the signed message of a request.
pub fn signed_payload<'a>(method: &str, path: &str, body: &'a [u8]) -> Cow<'a, [u8]> {
    if !signs_target(method, path) {
        return Cow::Borrowed(body);
    }
    let mut payload = Vec::with_capacity(method.len() + path.len() + 2 + body.len());
    payload.extend_from_slice(method.as_bytes());
    payload.push(b' ');
    payload.extend_from_slice(path.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(body);
    Cow::Owned(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_task_reads_and_cancels_sign_their_target() {
        assert_eq!(&*signed_payload("GET", "/v1/federation/status", b""), b"");
        assert_eq!(
            &*signed_payload("POST", "/v1/federation/task", b"{}"),
            b"{}"
        );
        assert_eq!(
            &*signed_payload("GET", "/v1/federation/task/t-1", b""),
            b"GET /v1/federation/task/t-1\n"
        );
        assert_eq!(
            &*signed_payload("DELETE", "/v1/federation/task/t-1", b"{\"nonce\":\"a\"}"),
            b"DELETE /v1/federation/task/t-1\n{\"nonce\":\"a\"}"
        );
        // A read and a cancellation of one task, and reads of two tasks, never share a message.
        assert_ne!(
            signed_payload("GET", "/v1/federation/task/a", b""),
            signed_payload("DELETE", "/v1/federation/task/a", b"")
        );
        assert_ne!(
            signed_payload("GET", "/v1/federation/task/a", b""),
            signed_payload("GET", "/v1/federation/task/b", b"")
        );
    }
}
