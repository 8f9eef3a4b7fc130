//! Hostile components are contained: the host stays up, other rows and
//! other extractors finish, and each failure lands on the right rows with a
//! clear reason.

mod support;

use std::time::Duration;

use strata_host::engine::executor::ExecOptions;
use strata_host::{Engine, Plan};
use support::engine::{engine, errors_of, load, run, text_objects};

const TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `hostile` in `mode` beside `content-hash` over three objects, the
/// middle one carrying the trigger.
fn hostile_run(engine: &Engine, mode: &str) -> Vec<strata_host::Document> {
    support::engine::hostile_run(engine, "hostile", mode)
}

/// Only the triggering row fails, with a reason containing `reason`.
fn check_only_trigger_fails(mode: &str, reason: &str) {
    let engine = engine(TIMEOUT);
    let docs = hostile_run(&engine, mode);
    for i in [0, 2] {
        assert!(
            errors_of(&docs[i], "hostile").is_empty(),
            "{mode}: {:?}",
            docs[i].errors
        );
    }
    assert_eq!(docs[0].features["hostile"]["length"], 9);
    assert_eq!(docs[2].features["hostile"]["length"], 9);
    let errors = errors_of(&docs[1], "hostile");
    assert_eq!(errors.len(), 1, "{mode}: {:?}", docs[1].errors);
    assert!(
        errors[0].contains(reason),
        "{mode}: `{}` should contain `{reason}`",
        errors[0]
    );
    assert!(!docs[1].features.contains_key("hostile"));
    // The host is still up and the engine still works.
    let plan = Plan::new(vec![(load(&engine, "content-hash"), "{}".into())]).expect("plan");
    let (after, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["still here"]),
    );
    assert!(after[0].errors.is_empty());
}

#[test]
fn an_infinite_loop_times_out_on_its_row_only() {
    check_only_trigger_fails("loop", "timed out after 1s");
}

#[test]
fn a_memory_bomb_runs_out_of_memory_on_its_row_only() {
    check_only_trigger_fails("alloc", "out of memory (limit 256 MiB)");
}

#[test]
fn a_refused_growth_followed_by_a_loop_is_a_timeout() {
    check_only_trigger_fails("refused-then-loop", "timed out after 1s");
}

/// Runs `work` on a thread and waits at most `limit` for it: a call that
/// would hang for an hour fails the test instead of stalling the suite.
fn within<T: Send + 'static>(limit: Duration, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still running after {limit:?}"))
}

/// Far past the 1 s deadline, far short of the fixture's hour of sleep.
const LIVENESS: Duration = Duration::from_secs(60);

#[test]
fn a_sleep_in_process_times_out_on_its_row_only() {
    within(LIVENESS, || {
        check_only_trigger_fails("sleep", "timed out after 1s")
    });
}

#[test]
fn a_sleep_in_open_or_columns_times_out_at_planning() {
    for mode in ["sleep-open", "sleep-columns"] {
        let err = within(LIVENESS, move || {
            let engine = engine(TIMEOUT);
            Plan::new(vec![(
                load(&engine, "hostile"),
                format!(r#"{{"mode": "{mode}"}}"#),
            )])
            .expect_err("planning fails")
            .to_string()
        });
        assert_eq!(
            err, "extractor `hostile` cannot be opened: timed out after 1s",
            "{mode}"
        );
    }
}

#[test]
fn a_sleep_in_describe_fails_the_load() {
    let err = within(LIVENESS, || {
        engine(TIMEOUT)
            .load(&support::engine::component("sleeper"))
            .expect_err("refused")
            .to_string()
    });
    assert!(
        err.ends_with("describe failed: timed out after 1s"),
        "{err}"
    );
}

#[test]
fn an_interrupt_ends_calls_in_progress_and_starts_no_more() {
    let engine = engine(Duration::from_secs(3600));
    let plan = Plan::new(vec![(
        load(&engine, "hostile"),
        r#"{"mode": "sleep"}"#.into(),
    )])
    .expect("plan");
    let options = ExecOptions {
        chunk_objects: 1,
        ..ExecOptions::default()
    };
    let interrupt = options.interrupt.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        interrupt.cancel();
    });
    let (docs, stats) = within(LIVENESS, move || {
        run(&plan, &options, text_objects(&["TRIGGER"; 20]))
    });
    stopper.join().expect("stopper");
    assert!(docs.len() < 20, "the run stopped feeding: {}", docs.len());
    assert_eq!(stats.incidents, 0, "an interrupt is not the plugin's fault");
    for doc in &docs {
        assert_eq!(
            errors_of(doc, "hostile"),
            ["interrupted: the run was stopped"]
        );
    }
}

#[test]
fn a_panic_fails_its_row_only_with_the_panic_message() {
    check_only_trigger_fails("panic", "hostile extractor panics on row 0");
}

#[test]
fn files_environment_and_network_are_out_of_reach() {
    support::engine::check_escape_denied(&engine(TIMEOUT), "hostile", "/tmp/strata-hostile-escape");
}

#[test]
fn contract_breaches_fail_the_rows_with_the_reason() {
    let engine = engine(TIMEOUT);
    let cases = [
        ("wrong-rows", "broke the contract: returned 0 rows for 1"),
        (
            "garbage",
            "broke the contract: output is not an Arrow IPC stream",
        ),
        (
            "missing-column",
            "broke the contract: did not return declared column `report`",
        ),
    ];
    for (mode, reason) in cases {
        let docs = hostile_run(&engine, mode);
        for doc in &docs {
            let errors = errors_of(doc, "hostile");
            assert_eq!(errors.len(), 1, "{mode}: {:?}", doc.errors);
            assert!(errors[0].starts_with(reason), "{mode}: `{}`", errors[0]);
        }
    }
}

#[test]
fn a_log_flood_is_capped_and_the_rows_complete() {
    let docs = hostile_run(&engine(Duration::from_secs(30)), "flood");
    for doc in &docs {
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        assert!(doc.features["hostile"]["length"].is_u64());
    }
}

#[test]
fn an_output_that_would_expand_is_a_contract_error() {
    let docs = hostile_run(&engine(TIMEOUT), "amplify");
    for doc in &docs {
        assert_eq!(
            errors_of(doc, "hostile"),
            ["broke the contract: returned column `report` as \
              FixedSizeList(50000 x Dictionary(Int32, Utf8)), declared Utf8"]
        );
    }
}

#[test]
fn huge_error_messages_are_cut() {
    let engine = engine(Duration::from_secs(30));
    for (mode, rows) in [
        ("long-error", [0, 1, 2].as_slice()),
        ("row-error-long", &[1]),
    ] {
        let docs = hostile_run(&engine, mode);
        for &row in rows {
            let errors = errors_of(&docs[row], "hostile");
            assert_eq!(errors.len(), 1, "{mode}");
            assert!(errors[0].len() < 4200, "{mode}: {} bytes", errors[0].len());
            assert!(
                errors[0].ends_with(&format!("… ({} more bytes cut)", (48 << 20) - 4096)),
                "{mode}: {}",
                &errors[0][errors[0].len() - 40..]
            );
        }
    }
}

#[test]
fn repeated_timeouts_disable_the_extractor_for_the_run() {
    let engine = engine(Duration::from_millis(300));
    let plan = Plan::new(vec![(
        load(&engine, "hostile"),
        r#"{"mode": "loop"}"#.into(),
    )])
    .expect("plan");
    let options = ExecOptions {
        max_timeouts: 2,
        ..ExecOptions::default()
    };
    let texts = ["TRIGGER"; 6];
    let (docs, stats) = run(&plan, &options, text_objects(&texts));
    assert_eq!(stats.failed_objects, 6);
    assert_eq!(errors_of(&docs[0], "hostile"), ["timed out after 300ms"]);
    for doc in &docs[1..] {
        assert_eq!(
            errors_of(doc, "hostile"),
            ["extractor disabled for this run after 2 timeouts"]
        );
    }
}

#[test]
fn bad_parameters_are_refused_at_planning_naming_the_parameter() {
    let engine = engine(TIMEOUT);
    let err = Plan::new(vec![(
        load(&engine, "hostile"),
        r#"{"mode": "explode"}"#.into(),
    )])
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "extractor `hostile`: parameter `mode`: unknown mode `explode`"
    );
}

/// A `tracing` writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::ErrorKind::Other)?
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn plugin_output_reaches_the_log_tagged_and_capped() {
    // 15,000 writes across the boundary: a deadline that a loaded machine
    // cannot miss.
    let engine = engine(Duration::from_secs(30));
    let hostile = load(&engine, "hostile");
    let params = r#"{"mode": "flood"}"#;
    let columns = hostile.columns(params).expect("columns");
    let batch = arrow_array::RecordBatch::try_from_iter([(
        "content",
        std::sync::Arc::new(arrow_array::BinaryArray::from(vec![&b"row"[..]]))
            as arrow_array::ArrayRef,
    )])
    .expect("batch");
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut instance = hostile.open(params).expect("open");
        let output = instance
            .process(&batch, &columns)
            .expect("the flood completes");
        assert_eq!(output.num_rows(), 1);
    });
    let log = String::from_utf8_lossy(&captured.0.lock().expect("log")).into_owned();
    // The plugin wrote 5,000 lines of 1 kB to each of log, stdout and stderr.
    assert!(
        log.contains("plugin=hostile"),
        "lines are tagged with the plugin"
    );
    assert!(
        log.contains("stream=\"stdout\"") && log.contains("stream=\"stderr\""),
        "both streams are captured"
    );
    assert!(
        log.contains("plugin log volume over"),
        "the log budget is announced"
    );
    assert!(log.contains("plugin output cut"), "cut output is announced");
    assert!(
        log.len() < 1 << 20,
        "at most the budget reaches the log, got {} bytes",
        log.len()
    );
}

#[test]
fn a_host_at_capacity_makes_work_wait_instead_of_failing_it() {
    let engine = Engine::new(strata_host::EngineConfig {
        cache_dir: Some(support::compile_cache()),
        call_timeout: Duration::from_millis(500),
        max_instances: 1,
        ..strata_host::EngineConfig::default()
    })
    .expect("engine");
    let hash = load(&engine, "content-hash");
    let plan = Plan::new(vec![(hash.clone(), "{}".into())]).expect("plan");
    // The only instance is taken: opening another waits its deadline, then
    // says the host is busy, not that the plugin failed.
    let held = hash.open("{}").expect("the one instance");
    let busy = hash.open("{}").err().expect("no instance free");
    assert!(!busy.is_incident(), "{busy}");
    assert!(
        busy.to_string()
            .starts_with("the host is at capacity: all 1 instances stayed in use for 500ms"),
        "{busy}"
    );
    // A run started while it is held waits for it, and its rows complete.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(held);
    });
    let (docs, stats) = within(LIVENESS, move || {
        run(&plan, &ExecOptions::default(), text_objects(&["a", "b"]))
    });
    releaser.join().expect("released");
    assert_eq!(stats.failed_objects, 0, "{docs:?}");
    assert_eq!(stats.incidents, 0);
}
