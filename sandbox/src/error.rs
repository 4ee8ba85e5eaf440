//! The crate's error type.

use crate::codec::CodecError;

/// What can go wrong setting up or running the pool (not an invocation's own
/// failure: those are outcomes in its `InvocationOutput`).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid pool configuration: {0}")]
    Config(String),
    #[error("cannot start the zygote: {0}")]
    ZygoteStart(String),
    #[error("zygote control channel: {0}")]
    Control(String),
    #[error("worker channel: {0}")]
    Codec(#[from] CodecError),
    #[error("confinement: {0}")]
    Confine(String),
    #[error("system call failed: {0}")]
    Sys(#[from] nix::Error),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
