//! A hostile Python guest (`tests/fixtures/hostile-py`, the raw `columnar`
//! interface) is contained exactly as a Rust one: loops and memory bombs
//! end on their rows, exceptions trap their rows only, and every breach of
//! the contract (row counts, types, names, row errors, sizes) is a named
//! error while the other extractor and the host go on.

mod support;

use std::time::Duration;

use strata_host::engine::executor::ExecOptions;
use strata_host::{Engine, Plan};
use support::engine::{engine, errors_of, load, run, text_objects};

/// Runs `hostile-py` in `mode` beside `content-hash` over three objects, the
/// middle one carrying the trigger.
fn hostile_run(engine: &Engine, mode: &str) -> Vec<strata_host::Document> {
    support::engine::hostile_run(engine, "hostile-py", mode)
}

/// Only the triggering row fails, with a reason containing `reason`; the
/// engine still works afterwards.
fn check_only_trigger_fails(engine: &Engine, mode: &str, reason: &str) {
    let docs = hostile_run(engine, mode);
    for i in [0, 2] {
        assert!(
            errors_of(&docs[i], "hostile-py").is_empty(),
            "{mode}: {:?}",
            docs[i].errors
        );
        assert_eq!(docs[i].features["hostile-py"]["length"], 9, "{mode}");
    }
    let errors = errors_of(&docs[1], "hostile-py");
    assert_eq!(errors.len(), 1, "{mode}: {:?}", docs[1].errors);
    assert!(
        errors[0].contains(reason),
        "{mode}: `{}` should contain `{reason}`",
        errors[0]
    );
    assert!(!docs[1].features.contains_key("hostile-py"));
    let plan = Plan::new(vec![(load(engine, "hostile-py"), "{}".into())]).expect("plan");
    let (after, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["still here"]),
    );
    assert!(after[0].errors.is_empty(), "{:?}", after[0].errors);
    assert_eq!(after[0].features["hostile-py"]["length"], 10);
}

#[test]
fn a_python_loop_times_out_on_its_row_only() {
    check_only_trigger_fails(&engine(Duration::from_secs(2)), "loop", "timed out");
}

#[test]
fn a_python_memory_bomb_runs_out_of_memory_on_its_row_only() {
    check_only_trigger_fails(&engine(Duration::from_secs(30)), "alloc", "memory");
}

#[test]
fn a_python_exception_fails_its_row_only() {
    check_only_trigger_fails(&engine(Duration::from_secs(30)), "raise", "trap");
}

#[test]
fn a_python_row_error_fails_its_row_only() {
    check_only_trigger_fails(
        &engine(Duration::from_secs(30)),
        "row-error",
        "hostile-py failed this row",
    );
}

#[test]
fn python_contract_breaches_fail_their_rows_with_the_reason() {
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
        check_only_trigger_fails(&engine, mode, reason);
    }
}

#[test]
fn a_huge_python_error_message_is_cut() {
    let engine = engine(Duration::from_secs(60));
    let docs = hostile_run(&engine, "long-error");
    let errors = errors_of(&docs[1], "hostile-py");
    assert_eq!(errors.len(), 1, "{:?}", docs[1].errors);
    assert!(errors[0].len() < 4200, "{} bytes", errors[0].len());
    assert!(
        errors[0].ends_with(&format!("… ({} more bytes cut)", (48 << 20) - 4096)),
        "{}",
        &errors[0][errors[0].len() - 40..]
    );
    for i in [0, 2] {
        assert!(
            errors_of(&docs[i], "hostile-py").is_empty(),
            "{:?}",
            docs[i].errors
        );
    }
}
