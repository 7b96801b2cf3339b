//! Errors as etcdctl reports them: `Error: <message>` on stderr and one of its exit codes.

use std::fmt;

use tonic::{Code, Status};

/// etcdctl's exit codes (its `cobrautl` package).
pub mod exit {
    /// A command failed (the server refused, a timeout, ...).
    pub const ERROR: u8 = 1;
    /// No connection to any endpoint.
    pub const BAD_CONNECTION: u8 = 2;
    /// Input that cannot be used (a malformed txn script, a bad file).
    pub const INVALID_INPUT: u8 = 3;
    /// A feature the server or the format does not have.
    pub const BAD_FEATURE: u8 = 4;
    /// Interrupted (by a signal).
    pub const INTERRUPTED: u8 = 5;
    /// Reading or writing a local file failed. etcdctl defines it but exits with it nowhere.
    #[allow(dead_code)]
    pub const IO: u8 = 6;
    /// Wrong arguments or flags.
    pub const BAD_ARGS: u8 = 128;
}

/// A failed command: what to print after `Error: ` and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// One of [`exit`]'s codes.
    pub code: u8,
    /// The message, without the `Error: ` prefix.
    pub message: String,
}

impl CliError {
    /// An error with `code`.
    pub fn new(code: u8, message: impl fmt::Display) -> CliError {
        CliError {
            code,
            message: message.to_string(),
        }
    }

    /// [`exit::ERROR`].
    pub fn error(message: impl fmt::Display) -> CliError {
        CliError::new(exit::ERROR, message)
    }

    /// [`exit::BAD_ARGS`].
    pub fn bad_args(message: impl fmt::Display) -> CliError {
        CliError::new(exit::BAD_ARGS, message)
    }

    /// [`exit::INVALID_INPUT`].
    pub fn invalid_input(message: impl fmt::Display) -> CliError {
        CliError::new(exit::INVALID_INPUT, message)
    }

    /// [`exit::BAD_CONNECTION`].
    pub fn bad_connection(message: impl fmt::Display) -> CliError {
        CliError::new(exit::BAD_CONNECTION, message)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Status> for CliError {
    fn from(status: Status) -> CliError {
        CliError::error(status_text(&status))
    }
}

/// The text etcd's Go client gives a failed call: etcd's own errors (`etcdserver: ...`) by
/// their description alone; the client's deadline as Go's context error; anything else as
/// gRPC's `rpc error: code = <Code> desc = <message>`.
pub fn status_text(status: &Status) -> String {
    let message = status.message();
    if message.starts_with("etcdserver: ") {
        return message.to_string();
    }
    match status.code() {
        Code::DeadlineExceeded if message.is_empty() || message.contains("deadline") => {
            "context deadline exceeded".to_string()
        }
        Code::Cancelled if message.is_empty() => "context canceled".to_string(),
        code => format!("rpc error: code = {} desc = {message}", go_code_name(code)),
    }
}

/// gRPC status codes as Go's `codes.Code.String()` names them.
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}
