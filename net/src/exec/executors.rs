//! The executors: `echo`, `sleep`, `http` and `command`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use triforce_core::config::ExecutorSpec;
use triforce_core::failover::RemoteError;

use super::http_backend::{CallError, HttpBackends};
use super::{code, remote_error};

/// What running a task produced.
pub type TaskResult = Result<Value, RemoteError>;

/// The longest `sleep` task accepted.
const SLEEP_MS_MAX: u64 = 600_000;
/// Most bytes of a command's stderr kept in an error message.
const STDERR_TAIL_MAX: usize = 2_000;

/// Runs one task's payload through `spec`; an `http` answer may have `answer_bytes_max` bytes.
pub async fn run_executor(
    spec: &ExecutorSpec,
    payload: &Value,
    http: &HttpBackends,
    answer_bytes_max: usize,
) -> TaskResult {
    match spec {
        ExecutorSpec::Echo => Ok(payload.clone()),
        ExecutorSpec::Sleep => {
            let ms = payload
                .get("ms")
                .and_then(Value::as_u64)
                .filter(|ms| *ms <= SLEEP_MS_MAX)
                .ok_or_else(|| {
                    remote_error(
                        code::EXECUTOR_FAILED,
                        format!("sleep needs payload {{\"ms\": 0..={SLEEP_MS_MAX}}}"),
                    )
                })?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(payload.clone())
        }
        ExecutorSpec::Http { url, timeout_ms } => {
            run_http(url, *timeout_ms, payload, http, answer_bytes_max).await
        }
        ExecutorSpec::Command {
            program,
            args,
            timeout_ms,
        } => run_command(program, args, *timeout_ms, payload).await,
    }
}

async fn run_http(
    url: &str,
    timeout_ms: u64,
    payload: &Value,
    http: &HttpBackends,
    answer_bytes_max: usize,
) -> TaskResult {
    let body = serde_json::to_vec(payload).expect("a JSON value serializes");
    let timeout = Duration::from_millis(timeout_ms);
    let (status, answer) = http
        .post_json(url, body, timeout, answer_bytes_max)
        .await
        .map_err(|error| match error {
            // Never reached the backend: safe to run elsewhere.
            CallError::Unreachable(e) => remote_error(
                code::EXECUTOR_UNAVAILABLE,
                format!("cannot reach {url}: {e}"),
            ),
            CallError::Failed(e) => remote_error(code::EXECUTOR_FAILED, format!("{url}: {e}")),
        })?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&answer);
        return Err(remote_error(
            code::EXECUTOR_FAILED,
            format!("{url} answered {status}: {}", tail(&text)),
        ));
    }
    serde_json::from_slice(&answer).map_err(|e| {
        remote_error(
            code::EXECUTOR_FAILED,
            format!("{url} did not answer JSON: {e}"),
        )
    })
}

async fn run_command(
    program: &std::path::Path,
    args: &[String],
    timeout_ms: u64,
    payload: &Value,
) -> TaskResult {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            remote_error(
                code::EXECUTOR_UNAVAILABLE,
                format!("cannot start {}: {e}", program.display()),
            )
        })?;
    let input = serde_json::to_vec(payload).expect("a JSON value serializes");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let run = async move {
        // A program that exits without reading its input is not an error here.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(Duration::from_millis(timeout_ms), run)
        .await
        .map_err(|_| {
            remote_error(
                code::EXECUTOR_FAILED,
                format!(
                    "{} ran longer than {timeout_ms} ms and was killed",
                    program.display()
                ),
            )
        })?
        .map_err(|e| remote_error(code::EXECUTOR_FAILED, format!("{}: {e}", program.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(remote_error(
            code::EXECUTOR_FAILED,
            format!(
                "{} exited with {}: {}",
                program.display(),
                output.status,
                tail(&stderr)
            ),
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        remote_error(
            code::EXECUTOR_FAILED,
            format!("{} did not print JSON: {e}", program.display()),
        )
    })
}

fn tail(text: &str) -> &str {
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL_MAX);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn command_gets_stdin_and_returns_stdout_json() {
        let http = HttpBackends::default();
        let cat = ExecutorSpec::Command {
            program: "/bin/cat".into(),
            args: vec![],
            timeout_ms: 5_000,
        };
        assert_eq!(
            run_executor(&cat, &json!({"a": 1}), &http, 1 << 20).await,
            Ok(json!({"a": 1}))
        );
        let fail = ExecutorSpec::Command {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo oops >&2; exit 3".into()],
            timeout_ms: 5_000,
        };
        let error = run_executor(&fail, &json!(null), &http, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(error.code, code::EXECUTOR_FAILED);
        assert!(error.message.contains("oops"), "{}", error.message);
        let missing = ExecutorSpec::Command {
            program: "/nonexistent/tool".into(),
            args: vec![],
            timeout_ms: 5_000,
        };
        let error = run_executor(&missing, &json!(null), &http, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            error.retryable,
            "a program that never started may run elsewhere"
        );
        let slow = ExecutorSpec::Command {
            program: "/bin/sleep".into(),
            args: vec!["5".into()],
            timeout_ms: 100,
        };
        assert!(run_executor(&slow, &json!(null), &http, 1 << 20)
            .await
            .unwrap_err()
            .message
            .contains("killed"));
    }

    #[tokio::test]
    async fn sleep_checks_its_payload() {
        let http = HttpBackends::default();
        assert!(
            run_executor(&ExecutorSpec::Sleep, &json!({"ms": 1}), &http, 1 << 20)
                .await
                .is_ok()
        );
        assert!(
            run_executor(&ExecutorSpec::Sleep, &json!({"ms": "x"}), &http, 1 << 20)
                .await
                .is_err()
        );
    }
}
