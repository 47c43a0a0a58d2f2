//! The executors: `echo`, `sleep`, `http` and `command` (`openai` relays are the runner's).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use triforce_core::config::ExecutorSpec;
use triforce_core::failover::{ErrorCode, RemoteError};
use triforce_core::json::RawJson;

use super::http_backend::{CallError, HttpBackends};

/// What running a task produced: its result as the executor wrote it, or the error.
pub type TaskResult = Result<RawJson, RemoteError>;

/// The longest `sleep` task accepted.
const SLEEP_MS_MAX: u64 = 600_000;
/// Most bytes of a command's stderr kept in an error message.
const STDERR_TAIL_MAX: usize = 2_000;
/// Most bytes of a command's stderr read into memory; the rest is read and dropped, so a chatty
/// program neither blocks on a full pipe nor fills the node's memory.
const STDERR_KEPT_MAX: usize = 64 * 1024;
/// The node's environment variables a `command` child sees. Everything else (the PSK in
/// `TRIFORCE_PSK` above all) stays with the node; an executor's `env` table adds more.
pub const COMMAND_ENV_ALLOWED: [&str; 7] =
    ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

/// Runs one task's payload through `spec`; its result may have `result_bytes_max` bytes.
pub async fn run_executor(
    spec: &ExecutorSpec,
    payload: &RawJson,
    http: &HttpBackends,
    result_bytes_max: usize,
) -> TaskResult {
    match spec {
        ExecutorSpec::Echo => Ok(payload.clone()),
        ExecutorSpec::Sleep => {
            let ms = payload
                .to_value()
                .get("ms")
                .and_then(serde_json::Value::as_u64)
                .filter(|ms| *ms <= SLEEP_MS_MAX)
                .ok_or_else(|| {
                    RemoteError::new(
                        ErrorCode::ExecutorFailed,
                        format!("sleep needs payload {{\"ms\": 0..={SLEEP_MS_MAX}}}"),
                    )
                })?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(payload.clone())
        }
        // Each kind's future is boxed: unboxed, every task's future would be as large as the
        // largest kind's (hyper's client, a child process: 9.7 KB), and moving that into the
        // runtime's task cell took 7% of a node's CPU at saturation.
        ExecutorSpec::Http { url, timeout_ms } => {
            Box::pin(run_http(url, *timeout_ms, payload, http, result_bytes_max)).await
        }
        // The runner relays these itself (`Runner::relay`), streaming the answer; it never
        // hands one here.
        ExecutorSpec::Openai { base_url, .. } => Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("a request for {base_url} must be relayed, not run"),
        )),
        ExecutorSpec::Command {
            program,
            args,
            env,
            timeout_ms,
        } => {
            let command = CommandSpec {
                program,
                args,
                env,
                timeout: Duration::from_millis(*timeout_ms),
            };
            Box::pin(run_command(&command, payload, result_bytes_max)).await
        }
    }
}

fn too_large(what: &str, limit: usize) -> RemoteError {
    RemoteError::new(
        ErrorCode::ResultTooLarge,
        format!("{what} is larger than the limit of {limit} bytes (limits.body_bytes_max)"),
    )
}

async fn run_http(
    url: &str,
    timeout_ms: u64,
    payload: &RawJson,
    http: &HttpBackends,
    result_bytes_max: usize,
) -> TaskResult {
    let timeout = Duration::from_millis(timeout_ms);
    let (status, answer) = http
        .post_json(url, payload.as_bytes().to_vec(), timeout, result_bytes_max)
        .await
        .map_err(|error| match error {
            // Never reached the backend: safe to run elsewhere.
            CallError::Unreachable(e) => RemoteError::new(
                ErrorCode::ExecutorUnavailable,
                format!("cannot reach {url}: {e}"),
            ),
            CallError::TooLarge => too_large(&format!("the answer of {url}"), result_bytes_max),
            CallError::Failed(e) => {
                RemoteError::new(ErrorCode::ExecutorFailed, format!("{url}: {e}"))
            }
        })?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&answer);
        return Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{url} answered {status}: {}", tail(&text)),
        ));
    }
    RawJson::parse(&answer).map_err(|e| {
        RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{url} did not answer JSON: {e}"),
        )
    })
}

/// A `command` executor's settings, borrowed from its spec.
struct CommandSpec<'a> {
    program: &'a std::path::Path,
    args: &'a [String],
    env: &'a BTreeMap<String, String>,
    timeout: Duration,
}

/// Why a command produced no result.
enum CommandError {
    StdoutTooLarge,
    Io(std::io::Error),
}

async fn run_command(spec: &CommandSpec<'_>, payload: &RawJson, stdout_max: usize) -> TaskResult {
    let program = spec.program.display();
    let mut command = tokio::process::Command::new(spec.program);
    command
        .args(spec.args)
        .env_clear()
        .envs(
            COMMAND_ENV_ALLOWED
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|value| (*name, value))),
        )
        .envs(spec.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| {
        RemoteError::new(
            ErrorCode::ExecutorUnavailable,
            format!("cannot start {program}: {e}"),
        )
    })?;
    let _group = child.id().map(ProcessGroup);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let input = payload.as_bytes();
    // Written and read at once: a program that writes its answer before it has read all of its
    // input (cat with a large payload) would otherwise wait on a full pipe forever.
    let write = async {
        // A program that exits without reading its input is not an error here.
        let _ = stdin.write_all(input).await;
        drop(stdin);
        Ok(())
    };
    let run = async {
        let (_, out, err) = tokio::try_join!(
            write,
            read_capped(stdout, stdout_max),
            read_kept(stderr, STDERR_KEPT_MAX),
        )?;
        let status = child.wait().await.map_err(CommandError::Io)?;
        Ok::<_, CommandError>((status, out, err))
    };
    let (status, stdout, stderr) = tokio::time::timeout(spec.timeout, run)
        .await
        .map_err(|_| {
            RemoteError::new(
                ErrorCode::ExecutorFailed,
                format!(
                    "{program} ran longer than {} ms and was killed",
                    spec.timeout.as_millis()
                ),
            )
        })?
        .map_err(|error| match error {
            CommandError::StdoutTooLarge => {
                too_large(&format!("the output of {program}"), stdout_max)
            }
            CommandError::Io(e) => {
                RemoteError::new(ErrorCode::ExecutorFailed, format!("{program}: {e}"))
            }
        })?;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        return Err(RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{program} exited with {status}: {}", tail(&stderr)),
        ));
    }
    RawJson::parse(&stdout).map_err(|e| {
        RemoteError::new(
            ErrorCode::ExecutorFailed,
            format!("{program} did not print JSON: {e}"),
        )
    })
}

/// All of `reader`, or [`CommandError::StdoutTooLarge`] as soon as it passes `max` bytes.
async fn read_capped(reader: impl AsyncRead + Unpin, max: usize) -> Result<Vec<u8>, CommandError> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .await
        .map_err(CommandError::Io)?;
    if out.len() > max {
        return Err(CommandError::StdoutTooLarge);
    }
    Ok(out)
}

/// The first `kept` bytes of `reader`; the rest is read to its end and dropped.
async fn read_kept(
    mut reader: impl AsyncRead + Unpin,
    kept: usize,
) -> Result<Vec<u8>, CommandError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = reader.read(&mut chunk).await.map_err(CommandError::Io)?;
        if n == 0 {
            return Ok(out);
        }
        let room = kept.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// A child's process group, killed whole when the run ends however it ends (finished, timed
/// out, output too large, task cancelled), so nothing it started outlives it.
struct ProcessGroup(u32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Ok(group) = libc::pid_t::try_from(self.0) else {
            return;
        };
        // SAFETY: killpg has no memory effects; the group id is the child's pid, which
        // `process_group(0)` made the id of its own group. A group already gone gives ESRCH.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
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

    fn raw(value: serde_json::Value) -> RawJson {
        RawJson::from(value)
    }

    fn command(program: &str, args: &[&str], timeout_ms: u64) -> ExecutorSpec {
        ExecutorSpec::Command {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            timeout_ms,
        }
    }

    #[tokio::test]
    async fn command_gets_stdin_and_returns_stdout_json() {
        let http = HttpBackends::default();
        let cat = command("/bin/cat", &[], 5_000);
        let payload = RawJson::parse(b"{\"a\": 1e15}").unwrap();
        assert_eq!(
            run_executor(&cat, &payload, &http, 1 << 20).await,
            Ok(payload.clone()),
            "the payload reaches the program byte for byte"
        );
        let fail = command("/bin/sh", &["-c", "echo oops >&2; exit 3"], 5_000);
        let error = run_executor(&fail, &raw(json!(null)), &http, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::ExecutorFailed);
        assert!(error.message.contains("oops"), "{}", error.message);
        let missing = command("/nonexistent/tool", &[], 5_000);
        let error = run_executor(&missing, &raw(json!(null)), &http, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            error.retryable(),
            "a program that never started may run elsewhere"
        );
        let slow = command("/bin/sleep", &["5"], 100);
        assert!(run_executor(&slow, &raw(json!(null)), &http, 1 << 20)
            .await
            .unwrap_err()
            .message
            .contains("killed"));
    }

    #[tokio::test]
    async fn cat_of_a_large_payload_does_not_deadlock() {
        let http = HttpBackends::default();
        let cat = command("/bin/cat", &[], 5_000);
        let big = raw(json!(vec!["x".repeat(100); 6_000]));
        assert!(big.len() > 600_000);
        assert_eq!(run_executor(&cat, &big, &http, 1 << 20).await, Ok(big));
    }

    #[tokio::test]
    async fn output_over_the_limit_is_result_too_large() {
        let http = HttpBackends::default();
        let yes = command("/bin/sh", &["-c", "yes 1"], 5_000);
        let error = run_executor(&yes, &raw(json!(null)), &http, 4096)
            .await
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::ResultTooLarge, "{}", error.message);
        assert!(!error.retryable(), "it ran");
    }

    #[tokio::test]
    async fn the_child_sees_no_psk_and_only_allowed_variables() {
        std::env::set_var("TRIFORCE_PSK", "must-not-leak-0123456789");
        let http = HttpBackends::default();
        let spec = ExecutorSpec::Command {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "printf '\"%s\"' \"$(env | sort | tr '\\n' ' ')\"".into(),
            ],
            env: BTreeMap::from([("MODEL".to_string(), "tiny".to_string())]),
            timeout_ms: 5_000,
        };
        let printed = run_executor(&spec, &raw(json!(null)), &http, 1 << 20)
            .await
            .unwrap()
            .to_value();
        let printed = printed.as_str().unwrap();
        assert!(!printed.contains("must-not-leak"), "{printed}");
        assert!(printed.contains("MODEL=tiny"), "{printed}");
        for variable in printed.split_whitespace() {
            let name = variable.split('=').next().unwrap();
            assert!(
                COMMAND_ENV_ALLOWED.contains(&name)
                    || ["MODEL", "PWD", "SHLVL", "_"].contains(&name),
                "{name} leaked into the child"
            );
        }
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let http = HttpBackends::default();
        let marker =
            std::env::temp_dir().join(format!("triforce-grandchild-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let spec = command("/bin/sh", &["-c", &script], 200);
        assert!(run_executor(&spec, &raw(json!(null)), &http, 1 << 20)
            .await
            .is_err());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!marker.exists(), "the grandchild outlived the timeout");
    }

    #[tokio::test]
    async fn sleep_checks_its_payload() {
        let http = HttpBackends::default();
        assert!(
            run_executor(&ExecutorSpec::Sleep, &raw(json!({"ms": 1})), &http, 1 << 20)
                .await
                .is_ok()
        );
        assert!(run_executor(
            &ExecutorSpec::Sleep,
            &raw(json!({"ms": "x"})),
            &http,
            1 << 20
        )
        .await
        .is_err());
    }
}
