//! Hashing, time and randomness.
//!
//! `uuid()` draws from a ChaCha-based userspace CSPRNG ([`Rng`]) so that a
//! confined worker never needs the `getrandom` syscall: the runtime seeds it
//! from the OS when it is built, and the sandbox re-seeds it in every forked
//! worker before confinement ([`crate::ScriptRuntime::reseed`]), so sibling
//! workers never share a stream. `now()` reads `CLOCK_REALTIME` (vDSO).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rhai::{Dynamic, Engine, EvalAltResult, FuncRegistration, INT};
use sha2::{Digest, Sha256};

use super::{bytes_of, script_error};

type Res<T> = Result<T, Box<EvalAltResult>>;

/// The OS refused to provide a seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the OS random source failed: {0}")]
pub struct RngSeedError(String);

/// The runtime's random generator; `None` until a seed was obtained.
#[derive(Debug, Clone, Default)]
pub struct Rng(Rc<RefCell<Option<StdRng>>>);

impl Rng {
    /// A generator seeded from the OS, or an unseeded one if the OS failed
    /// (then `uuid()` is a script error until [`Rng::reseed`] succeeds).
    pub fn from_os() -> Self {
        let rng = Self::default();
        // A failure here is reported by the next `reseed` or by `uuid()`.
        let _ = rng.reseed();
        rng
    }

    /// Replaces the state with a fresh seed from the OS (`getrandom`).
    pub fn reseed(&self) -> Result<(), RngSeedError> {
        let fresh = StdRng::try_from_os_rng().map_err(|err| RngSeedError(err.to_string()))?;
        *self.0.borrow_mut() = Some(fresh);
        Ok(())
    }

    fn fill(&self, bytes: &mut [u8]) -> Res<()> {
        match self.0.borrow_mut().as_mut() {
            Some(rng) => {
                rng.fill_bytes(bytes);
                Ok(())
            }
            None => Err(script_error("uuid: no random source is available")),
        }
    }

    /// A random (v4) UUID in its hyphenated form.
    pub fn uuid(&self) -> Res<String> {
        let mut bytes = [0; 16];
        self.fill(&mut bytes)?;
        Ok(uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string())
    }
}

pub fn register(engine: &mut Engine, rng: &Rng) {
    engine.register_fn("sha256", |value: Dynamic| -> Res<String> {
        Ok(hex::encode(Sha256::digest(bytes_of("sha256", &value)?)))
    });
    engine.register_fn(
        "hmac_sha256",
        |key: Dynamic, message: Dynamic| -> Res<String> {
            let key = bytes_of("hmac_sha256", &key)?;
            let message = bytes_of("hmac_sha256", &message)?;
            let mut mac =
                Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
            mac.update(&message);
            Ok(hex::encode(mac.finalize().into_bytes()))
        },
    );
    // Volatile: a fresh value on every call, never folded by the optimizer.
    FuncRegistration::new("now")
        .with_volatility(true)
        .register_into_engine(engine, unix_seconds);
    let rng = rng.clone();
    FuncRegistration::new("uuid")
        .with_volatility(true)
        .register_into_engine(engine, move || rng.uuid());
}

fn unix_seconds() -> INT {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| INT::try_from(d.as_secs()).unwrap_or(INT::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_v4_and_differ() {
        let rng = Rng::from_os();
        let a = rng.uuid().unwrap();
        let b = rng.uuid().unwrap();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
    }

    #[test]
    fn reseeding_forks_the_stream() {
        let rng = Rng::from_os();
        let copy = Rng(Rc::new(RefCell::new(rng.0.borrow().clone())));
        // A forked copy repeats the parent's stream until it is re-seeded.
        assert_eq!(rng.uuid().unwrap(), copy.uuid().unwrap());
        copy.reseed().unwrap();
        assert_ne!(rng.uuid().unwrap(), copy.uuid().unwrap());
    }

    #[test]
    fn an_unseeded_rng_is_a_script_error() {
        assert!(Rng::default().uuid().is_err());
    }
}
