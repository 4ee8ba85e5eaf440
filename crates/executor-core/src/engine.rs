//! Building the one Rhai engine a runtime uses, and setting its limits.
//!
//! Invariants:
//! - The engine starts from `Engine::new_raw()`: no packages, no module
//!   resolver, no `print` handler. Only the packages listed in [`build`] are
//!   added; the time package is left out on purpose (its `timestamp()` gives
//!   scripts a high-resolution clock, a timing side channel; `now()` gives
//!   whole seconds).
//! - `eval` is disabled at parse time; `import` fails at parse time and, as a
//!   second fence, the dummy module resolver and a module limit of 0 refuse it
//!   at run time.
//! - `print`, `debug` and `log` only ever write to the invocation's
//!   [`LogBuffer`]; nothing reaches stdout or stderr.
//! - The progress hook is installed once and reads the shared [`Budget`],
//!   which the runtime resets per invocation; the token hook likewise reads
//!   the shared [`CompileClock`].
//! - The parser runs without the optimizer (`OptimizationLevel::None`): its
//!   simple level is quadratic in the statements of a block (a 256 KiB
//!   script of `x;` took 2.4 s to optimize, against 68 ms to parse) and runs
//!   after the last token, out of the compile clock's reach. The runtime
//!   optimizes small scripts separately (see `MAX_OPTIMIZED_SOURCE_BYTES`).
//! - Every Rhai limit is set from [`Limits`] by [`apply_limits`] before each
//!   compile and each run; none is left at Rhai's (unlimited) default.

use std::cell::RefCell;
use std::rc::Rc;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{
    BasicArrayPackage, BasicBlobPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage,
    CorePackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, OptimizationLevel};
use shared::Limits;

use crate::budget::Budget;
use crate::compile_clock::CompileClock;
use crate::logs::LogBuffer;
use crate::response::ResponseValue;
use crate::sdk::{self, Rng, script_error};

/// The engine and the state its callbacks share with the runtime.
pub struct EngineParts {
    pub engine: Engine,
    pub budget: Rc<Budget>,
    pub compile_clock: Rc<CompileClock>,
    pub log: Rc<RefCell<LogBuffer>>,
    pub rng: Rng,
}

/// Log levels accepted by `log(level, message)`.
const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error"];

/// Builds the engine with PiCloud's packages, SDK and hooks.
pub fn build() -> EngineParts {
    let mut engine = Engine::new_raw();
    for package in [
        CorePackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BitFieldPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicBlobPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }

    engine.set_module_resolver(DummyModuleResolver::new());
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.set_max_strings_interned(0);
    engine.set_optimization_level(OptimizationLevel::None);

    let budget = Rc::new(Budget::default());
    let hook_budget = Rc::clone(&budget);
    engine.on_progress(move |_| hook_budget.on_operation());

    let compile_clock = Rc::new(CompileClock::default());
    let hook_clock = Rc::clone(&compile_clock);
    // "Deprecated" only marks the API as volatile; rhai is pinned exactly.
    #[allow(deprecated)]
    engine.on_parse_token(move |token, _, _| hook_clock.on_token(token));

    let log = Rc::new(RefCell::new(LogBuffer::default()));
    register_logging(&mut engine, &log);
    register_response(&mut engine);

    let rng = Rng::from_os();
    sdk::register(&mut engine, &rng);

    EngineParts {
        engine,
        budget,
        compile_clock,
        log,
        rng,
    }
}

/// Sets every Rhai limit from `limits` (values beyond `usize` saturate).
pub fn apply_limits(engine: &mut Engine, limits: &Limits) {
    let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    // Rhai's own counter misses callback operations and only backs ours up:
    // one more, so ours (checked after it in the same hook call) trips first.
    engine.set_max_operations(limits.operations.saturating_add(1));
    engine.set_max_call_levels(size(limits.call_depth));
    engine.set_max_expr_depths(size(limits.expr_depth), size(limits.fn_expr_depth));
    engine.set_max_string_size(size(limits.string_bytes));
    engine.set_max_array_size(size(limits.array_len));
    engine.set_max_map_size(size(limits.map_len));
    engine.set_max_variables(size(limits.variables));
    engine.set_max_functions(size(limits.functions));
    engine.set_max_modules(0);
}

fn register_logging(engine: &mut Engine, log: &Rc<RefCell<LogBuffer>>) {
    let print_log = Rc::clone(log);
    engine.on_print(move |text| print_log.borrow_mut().push(text));
    let debug_log = Rc::clone(log);
    engine.on_debug(move |text, _, _| {
        debug_log.borrow_mut().push(&format!("[debug] {text}"));
    });

    let plain_log = Rc::clone(log);
    engine.register_fn("log", move |value: Dynamic| {
        plain_log.borrow_mut().push(&text_of(&value));
    });
    let level_log = Rc::clone(log);
    engine.register_fn(
        "log",
        move |level: &str, value: Dynamic| -> Result<(), Box<EvalAltResult>> {
            let level = level.to_ascii_lowercase();
            if !LOG_LEVELS.contains(&level.as_str()) {
                return Err(script_error(format!(
                    "log: unknown level {:?}; use one of {}",
                    level.chars().take(16).collect::<String>(),
                    LOG_LEVELS.join(", ")
                )));
            }
            level_log
                .borrow_mut()
                .push(&format!("[{level}] {}", text_of(&value)));
            Ok(())
        },
    );
}

/// A string as it is; anything else as `print` would show it.
fn text_of(value: &Dynamic) -> String {
    match value.as_immutable_string_ref() {
        Ok(text) => text.to_string(),
        Err(_) => value.to_string(),
    }
}

fn register_response(engine: &mut Engine) {
    engine.register_type_with_name::<ResponseValue>("Response");
    engine.register_fn(
        "response",
        |status: Dynamic, body: Dynamic| -> Result<ResponseValue, Box<EvalAltResult>> {
            ResponseValue::new(&status, body, &Dynamic::UNIT).map_err(script_error)
        },
    );
    engine.register_fn(
        "response",
        |status: Dynamic,
         body: Dynamic,
         headers: Dynamic|
         -> Result<ResponseValue, Box<EvalAltResult>> {
            ResponseValue::new(&status, body, &headers).map_err(script_error)
        },
    );
}
