//! Hostile guests of the `columnar` interface are contained exactly as a
//! Rust one: a Python (`tests/fixtures/hostile-py`) and a JavaScript
//! (`hostile-js`) guest, each on the raw interface, with the same modes.
//! Loops and memory bombs end on their rows, exceptions fail their rows
//! only, log floods are capped, and every breach of the contract (row
//! counts, types, names, row errors, sizes) is a named error while the
//! other extractor and the host go on. The Python guest also sleeps in
//! WASI and tries files, environment and network, as the Rust one does. A Rust guest of the raw interface (`columnar-raw`) returns values
//! that all point at the same bytes: lifting them stops at the call's byte
//! limit.

mod support;

use std::time::Duration;

use strata_host::engine::executor::ExecOptions;
use strata_host::{Engine, Plan};
use support::engine::{engine, errors_of, load, run, text_objects};

/// Only the triggering row of `fixture` (run in `mode` beside
/// `content-hash`) fails, with a reason containing `reason`; the engine
/// still works afterwards.
fn check_only_trigger_fails(engine: &Engine, fixture: &str, mode: &str, reason: &str) {
    let docs = support::engine::hostile_run(engine, fixture, mode);
    for i in [0, 2] {
        assert!(
            errors_of(&docs[i], fixture).is_empty(),
            "{fixture} {mode}: {:?}",
            docs[i].errors
        );
        assert_eq!(docs[i].features[fixture]["length"], 9, "{fixture} {mode}");
    }
    let errors = errors_of(&docs[1], fixture);
    assert_eq!(errors.len(), 1, "{fixture} {mode}: {:?}", docs[1].errors);
    assert!(
        errors[0].contains(reason),
        "{fixture} {mode}: `{}` should contain `{reason}`",
        errors[0]
    );
    assert!(!docs[1].features.contains_key(fixture));
    let plan = Plan::new(vec![(load(engine, fixture), "{}".into())]).expect("plan");
    let (after, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["still here"]),
    );
    assert!(after[0].errors.is_empty(), "{:?}", after[0].errors);
    assert_eq!(after[0].features[fixture]["length"], 10);
}

/// The tests of one hostile guest, `$fixture`.
macro_rules! hostile_guest_tests {
    ($language:ident, $fixture:literal) => {
        mod $language {
            use super::*;

            const FIXTURE: &str = $fixture;

            #[test]
            fn a_loop_times_out_on_its_row_only() {
                check_only_trigger_fails(&engine(Duration::from_secs(2)), FIXTURE, "loop", "timed out");
            }

            #[test]
            fn a_memory_bomb_runs_out_of_memory_on_its_row_only() {
                check_only_trigger_fails(&engine(Duration::from_secs(30)), FIXTURE, "alloc", "memory");
            }

            #[test]
            fn an_exception_fails_its_row_only() {
                check_only_trigger_fails(&engine(Duration::from_secs(30)), FIXTURE, "raise", "trap");
            }

            #[test]
            fn a_row_error_fails_its_row_only() {
                check_only_trigger_fails(
                    &engine(Duration::from_secs(30)),
                    FIXTURE,
                    "row-error",
                    &format!("{FIXTURE} failed this row"),
                );
            }

            #[test]
            fn contract_breaches_fail_their_rows_with_the_reason() {
                // A call that breaks the contract is retried row by row, as for a Rust
                // extractor: the rows that do not set the breach off complete.
                let engine = engine(Duration::from_secs(30));
                let cases = [
                    (
                        "wrong-rows",
                        "broke the contract: returned 0 values in column `length` for 1 rows",
                    ),
                    (
                        "wrong-types",
                        "broke the contract: returned column `length` as strings, but it is UInt64 (integers)",
                    ),
                    (
                        "wrong-names",
                        "broke the contract: returned columns [size, report], expected [length, report]",
                    ),
                    (
                        "bad-row-error",
                        "broke the contract: returned an error for row 6 of 1",
                    ),
                    (
                        "overflow",
                        "broke the contract: column `length` does not fit UInt64",
                    ),
                    (
                        "many-errors",
                        "broke the contract: returned 2 row errors for 1 rows",
                    ),
                    (
                        "huge-string",
                        "returned more than 64 MiB in one call, over the limit",
                    ),
                ];
                for (mode, reason) in cases {
                    check_only_trigger_fails(&engine, FIXTURE, mode, reason);
                }
            }

            #[test]
            fn a_log_flood_is_capped_and_the_rows_complete() {
                let engine = engine(Duration::from_secs(60));
                let docs = support::engine::hostile_run(&engine, FIXTURE, "flood");
                for doc in &docs {
                    assert!(doc.errors.is_empty(), "{:?}", doc.errors);
                    assert!(doc.features[FIXTURE]["length"].is_u64());
                }
            }

            #[test]
            fn a_huge_error_message_is_cut() {
                let engine = engine(Duration::from_secs(60));
                let docs = support::engine::hostile_run(&engine, FIXTURE, "long-error");
                let errors = errors_of(&docs[1], FIXTURE);
                assert_eq!(errors.len(), 1, "{:?}", docs[1].errors);
                assert!(errors[0].len() < 4200, "{} bytes", errors[0].len());
                assert!(
                    errors[0].ends_with(&format!("… ({} more bytes cut)", (48 << 20) - 4096)),
                    "{}",
                    &errors[0][errors[0].len() - 40..]
                );
                for i in [0, 2] {
                    assert!(
                        errors_of(&docs[i], FIXTURE).is_empty(),
                        "{:?}",
                        docs[i].errors
                    );
                }
            }

        }
    };
}

hostile_guest_tests!(python, "hostile-py");

/// Far past the 1 s deadline, far short of the fixture's hour of sleep.
const LIVENESS: Duration = Duration::from_secs(60);

#[test]
fn a_python_sleep_times_out_on_its_row_only() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        check_only_trigger_fails(
            &engine(Duration::from_secs(1)),
            "hostile-py",
            "sleep",
            "timed out after 1s",
        );
        let _ = tx.send(());
    });
    rx.recv_timeout(LIVENESS)
        .unwrap_or_else(|_| panic!("still running after {LIVENESS:?}"));
}

#[test]
fn files_environment_and_network_are_out_of_a_python_guests_reach() {
    support::engine::check_escape_denied(
        &engine(Duration::from_secs(30)),
        "hostile-py",
        "/tmp/strata-hostile-py-escape",
    );
}
hostile_guest_tests!(javascript, "hostile-js");

/// Runs `columnar-raw` in `mode` after `hostile` (in `hostile_mode`) over
/// three objects, the middle one carrying the trigger.
fn raw_run(engine: &Engine, hostile_mode: &str, mode: &str) -> Vec<strata_host::Document> {
    let plan = Plan::new(vec![
        (
            load(engine, "hostile"),
            format!(r#"{{"mode": "{hostile_mode}"}}"#),
        ),
        (
            load(engine, "columnar-raw"),
            format!(r#"{{"mode": "{mode}"}}"#),
        ),
    ])
    .expect("plan");
    let (docs, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["first row", "TRIGGER the second row", "third row"]),
    );
    assert_eq!(docs.len(), 3, "every object has a document");
    docs
}

#[test]
fn output_aliasing_one_buffer_stops_at_the_call_byte_limit() {
    // Each mode returns 200 values that share one 1 MiB buffer of a guest
    // limited to 32 MiB: 200 MiB if the host copied them all.
    let engine = engine(Duration::from_secs(30));
    for mode in [
        "alias-lists",
        "alias-strings",
        "alias-names",
        "alias-row-errors",
    ] {
        let docs = raw_run(&engine, "", mode);
        for i in [0, 2] {
            assert!(docs[i].errors.is_empty(), "{mode}: {:?}", docs[i].errors);
            assert_eq!(docs[i].features["columnar-raw"]["length"], 9, "{mode}");
        }
        let errors = errors_of(&docs[1], "columnar-raw");
        assert_eq!(errors.len(), 1, "{mode}: {:?}", docs[1].errors);
        assert!(
            errors[0].contains("returned more than 64 MiB in one call, over the limit"),
            "{mode}: {}",
            errors[0]
        );
        assert_eq!(docs[1].features["hostile"]["length"], 22, "{mode}");
    }
    // Without the trigger, the same guest answers each kind as declared.
    let docs = raw_run(&engine, "", "");
    let features = &docs[1].features["columnar-raw"];
    assert_eq!(features["length"], 22);
    assert_eq!(features["upstream"], 22);
    assert_eq!(
        features["words"],
        serde_json::json!(["TRIGGER", "the", "second", "row"])
    );
    assert!(features["report"].is_null());
}

#[test]
fn an_input_integer_beyond_s64_fails_its_row_only() {
    // `hostile` answers u64::MAX as the triggering row's length; the
    // columnar interface's integers are s64.
    let docs = raw_run(&engine(Duration::from_secs(30)), "huge-length", "");
    assert_eq!(docs[1].features["hostile"]["length"], u64::MAX);
    let errors = errors_of(&docs[1], "columnar-raw");
    assert_eq!(
        errors,
        [
            "input `hostile.length` holds an integer beyond the columnar interface's 64-bit signed range"
        ],
        "{:?}",
        docs[1].errors
    );
    assert!(!docs[1].features.contains_key("columnar-raw"));
    for i in [0, 2] {
        assert!(docs[i].errors.is_empty(), "{:?}", docs[i].errors);
        assert_eq!(docs[i].features["columnar-raw"]["upstream"], 9);
    }
}
