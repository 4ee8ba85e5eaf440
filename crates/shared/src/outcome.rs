//! The one outcome table: how an invocation ended, and what HTTP says about it.

use serde::{Deserialize, Serialize};

macro_rules! outcome_table {
    ($( $variant:ident => $kind:literal, $status:literal, $doc:literal; )*) => {
        /// How an invocation ended.
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Outcome {
            $( #[doc = $doc] $variant, )*
        }

        impl Outcome {
            /// Every outcome, in table order.
            pub const ALL: &'static [Outcome] = &[ $( Outcome::$variant, )* ];

            /// The `error` kind in JSON error bodies and the name in records and metrics.
            pub const fn kind(self) -> &'static str {
                match self { $( Outcome::$variant => $kind, )* }
            }

            /// The HTTP status the platform answers with. For [`Outcome::Ok`] the
            /// script chooses; 200 is only the value when it did not.
            pub const fn http_status(self) -> u16 {
                match self { $( Outcome::$variant => $status, )* }
            }

            /// What the outcome means, for docs and tooling.
            pub const fn describe(self) -> &'static str {
                match self { $( Outcome::$variant => $doc, )* }
            }
        }

        impl std::str::FromStr for Outcome {
            type Err = UnknownOutcome;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $kind => Ok(Outcome::$variant), )*
                    _ => Err(UnknownOutcome(s.chars().take(64).collect())),
                }
            }
        }
    };
}

outcome_table! {
    Ok               => "ok",                200, "The script returned a value; the status is the script's own.";
    ScriptError      => "script_error",      500, "The script raised a runtime error or returned an invalid response.";
    CompileError     => "compile_error",     500, "The stored source failed to compile in the worker.";
    Timeout          => "timeout",           504, "The wall-clock budget ran out.";
    OperationLimit   => "operation_limit",   500, "The operation budget ran out.";
    MemoryLimit      => "memory_limit",      500, "The heap cap was reached (or the worker's address-space limit killed it).";
    CpuLimit         => "cpu_limit",         500, "The worker's lifetime CPU limit killed it (SIGXCPU).";
    OutputLimit      => "output_limit",      500, "The response body exceeded its cap.";
    WorkerCrashed    => "worker_crashed",    502, "The worker died, misbehaved on the wire, or was killed.";
    SandboxViolation => "sandbox_violation", 502, "The worker attempted a forbidden system call and was killed (SIGSYS).";
    Overloaded       => "overloaded",        503, "No worker became free in time, or the script is at its concurrency cap (sent with Retry-After).";
}

/// A string that names no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(pub String);

impl Outcome {
    /// Whether the invocation counts as an error in statistics.
    pub const fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_match_serde() {
        for o in Outcome::ALL {
            assert_eq!(o.kind().parse::<Outcome>(), Ok(*o));
            assert_eq!(
                serde_json::to_string(o).unwrap(),
                format!("\"{}\"", o.kind())
            );
        }
    }

    #[test]
    fn statuses_follow_the_table() {
        assert_eq!(Outcome::Timeout.http_status(), 504);
        assert_eq!(Outcome::Overloaded.http_status(), 503);
        assert_eq!(Outcome::SandboxViolation.http_status(), 502);
        assert_eq!(Outcome::MemoryLimit.http_status(), 500);
    }
}
